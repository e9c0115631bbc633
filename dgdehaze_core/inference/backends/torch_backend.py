"""PyTorch backend: the network in eager mode on CPU or CUDA, fp32 or fp16."""
from __future__ import annotations

import logging

import numpy as np
import torch

from dgdehaze_core.devices import resolve_device
from dgdehaze_core.inference.backends import OUTPUT_NAMES, check_outputs
from dgdehaze_core.models import DGDehazeNet

LOG = logging.getLogger(__name__)


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
        self.fixed_size = self.max_size = None
        self.max_batch = None
        LOG.info("torch backend: %s model on %s, %s", model.config_name, self.device,
                 "fp16" if half else "fp32")

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            hazy = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtype)
            outputs = self.model(hazy, with_clear="clear" in self.outputs)
            return {name: outputs[name].float().cpu().numpy() for name in self.outputs}
