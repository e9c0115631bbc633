"""PyTorch backend: the network in eager mode on CPU or CUDA, fp32 or fp16."""
from __future__ import annotations

import logging

import numpy as np
import torch

from dgdehaze_core.backends import OUTPUT_NAMES, check_outputs
from dgdehaze_core.models import DGDehazeNet

LOG = logging.getLogger(__name__)


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device, with a clear RuntimeError when CUDA is asked for and absent."""
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was requested but CUDA is not available on this machine")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use cpu, cuda or cuda:N")
    return resolved


class TorchBackend:
    """Runs a `DGDehazeNet` under `torch.inference_mode`; half=True stores weights and activations in fp16;
    `outputs` PHYSICS_OUTPUTS skips the decoder's image branch."""

    name = "torch"

    def __init__(self, model: DGDehazeNet, device: str | torch.device = "cpu", half: bool = False,
                 outputs: tuple[str, ...] = OUTPUT_NAMES) -> None:
        self.outputs = check_outputs(outputs)
        self.device = resolve_device(device)
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.stride = model.stride
        self.fixed_size = None
        LOG.info("torch backend: %s model on %s, %s", model.config_name, self.device,
                 "fp16" if half else "fp32")

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            hazy = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)
            outputs = self.model(hazy, with_clear="clear" in self.outputs)
            return {name: outputs[name].float().cpu().numpy() for name in self.outputs}
