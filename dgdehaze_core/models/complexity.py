"""Parameters and multiply-accumulates of a network, counted by running it once.

MACs come from PyTorch's FlopCounterMode, which counts every convolution and matrix product, attention's
functional matmuls included (module-hook counters such as thop miss those), halved from FLOPs to MACs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def count_macs(model: nn.Module, height: int, width: int, **forward_options: object) -> int:
    """MACs of one forward pass of `model` on a 1x3xHxW input (eval mode, no gradients); `forward_options` go to
    the forward, e.g. with_clear=False for a DGDehazeNet run for the physics path."""
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    example = torch.rand(1, 3, height, width, device=parameter.device, dtype=parameter.dtype)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(example, **forward_options)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
