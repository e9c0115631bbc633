"""Depth of clear frames learned from video (`dgdehaze train-depth`): DepthNet with a bounded disparity head.

The encoder-decoder is `DepthNet`'s; its head is read as a sigmoid disparity s in (0, 1) and mapped to depth
1 / (1 / max_depth + s (1 / min_depth - 1 / max_depth)), monodepth2's parameterisation: depth stays within
[min_depth, max_depth] and the gradient is spread over near and far alike. The units are those of the training
video's motion (relative: self-supervision cannot tell the scale).

`ClearDepthPredictor` runs a trained network on a camera frame of any size: the frame is resized to the
training size, and the depth is resized back (bilinear on the disparity, as monodepth2 evaluates).

Checkpoint files (.pt) hold {"kind": "clear_depth", "architecture": {...}, "input_size": [w, h], "state_dict",
"meta"}; `load_clear_depth` reads them (`load_clear_depth_and_record` with the record of the weights it loaded) and
`is_clear_depth_checkpoint` tells them from dehazer checkpoints (`holds_clear_depth` the contents of one read).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dgdehaze_core.io.checkpoints import (checkpoint_provenance, read_checkpoint, read_checkpoint_and_digest,
                                          write_checkpoint)
from dgdehaze_core.io.file_paths import existing_file, file_suffix
from dgdehaze_core.io.images import MAX_PIXELS
from dgdehaze_core.models.depth_net import DepthNet
from dgdehaze_core.models.state_fit import check_finite, misfit

CHECKPOINT_KIND = "clear_depth"


@dataclass(frozen=True)
class ClearDepthArchitecture:
    """What builds a `ClearDepthNet`: DepthNet's widths, blocks and input scale, and the depth range."""

    widths: tuple[int, ...] = (16, 32, 48, 96, 128)
    blocks: tuple[int, ...] = (0, 1, 1, 2, 1)
    input_scale: int = 1
    min_depth: float = 0.1
    max_depth: float = 100.0

    @property
    def stride(self) -> int:
        """What the input's height and width must be multiples of (DepthNet halves the size once per width)."""
        return self.input_scale * 2 ** len(self.widths)

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}


class ClearDepthNet(nn.Module):
    """RGB in [0, 1], (B, 3, H, W) with H and W multiples of `stride` -> (B, 1, H, W) depth in [min, max]."""

    def __init__(self, architecture: ClearDepthArchitecture = ClearDepthArchitecture()) -> None:
        super().__init__()
        if not 0.0 < architecture.min_depth < architecture.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {architecture.min_depth}, {architecture.max_depth}")
        self.architecture = architecture
        self.net = DepthNet(architecture.widths, architecture.blocks, architecture.input_scale)
        self.stride = self.net.stride

    def disparity(self, image: torch.Tensor) -> torch.Tensor:
        """The sigmoid disparity in (0, 1): 0 is max_depth, 1 is min_depth."""
        return torch.sigmoid(self.net.logits(image))

    def depth_from_disparity(self, disparity: torch.Tensor) -> torch.Tensor:
        low, high = 1.0 / self.architecture.max_depth, 1.0 / self.architecture.min_depth
        return 1.0 / (low + (high - low) * disparity)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.depth_from_disparity(self.disparity(image))


def save_clear_depth(model: ClearDepthNet, input_size: tuple[int, int], path: str | os.PathLike[str],
                     meta: dict[str, Any] | None = None) -> Path:
    """Write `model` (and the (w, h) it was trained at) to `path` atomically; OSError naming `path` when it cannot
    be written (a full disk: ENOSPC)."""
    checkpoint = {"kind": CHECKPOINT_KIND, "architecture": model.architecture.as_dict(),
                  "input_size": list(input_size),
                  "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                  "meta": dict(meta or {})}
    return write_checkpoint(checkpoint, path)


def is_clear_depth_checkpoint(source: str | os.PathLike[str]) -> bool:
    """True when `source` is a readable .pt file written by `save_clear_depth` (or a training last.pt)."""
    path = Path(source)
    if file_suffix(path) != ".pt" or not path.is_file():
        return False
    try:
        checkpoint = read_checkpoint(path)
    except ValueError:
        return False
    return holds_clear_depth(checkpoint)


def holds_clear_depth(checkpoint: Any) -> bool:
    """True when the contents of a checkpoint file (as read: `checkpoints.read_checkpoint`) are a clear-depth
    network's, written by `save_clear_depth`."""
    return isinstance(checkpoint, dict) and checkpoint.get("kind") == CHECKPOINT_KIND


def architecture_from_dict(raw: dict[str, Any]) -> ClearDepthArchitecture:
    return ClearDepthArchitecture(widths=tuple(int(w) for w in raw["widths"]),
                                  blocks=tuple(int(b) for b in raw["blocks"]),
                                  input_scale=int(raw["input_scale"]), min_depth=float(raw["min_depth"]),
                                  max_depth=float(raw["max_depth"]))


def load_clear_depth(path: str | os.PathLike[str],
                     device: str | torch.device = "cpu") -> tuple[ClearDepthNet, tuple[int, int]]:
    """The network of a clear-depth checkpoint in eval mode, and the (w, h) input size it was trained at."""
    model, input_size, _ = load_clear_depth_and_record(path, device)
    return model, input_size


def load_clear_depth_and_record(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                                read: tuple[Any, str] | None = None
                                ) -> tuple[ClearDepthNet, tuple[int, int], dict[str, Any]]:
    """`load_clear_depth`'s network and input size, and the record of the weights they hold from the same read of
    the file, as `models.load_model_and_record` gives a dehazer's: its name (`path`), the sha256 of the bytes loaded
    (12 hex digits) and its training metadata (`checkpoints.checkpoint_provenance`). `read`: the file's contents
    and sha256 where the caller has read it already (`checkpoints.read_checkpoint_and_digest`): not read again.
    ValueError naming `path` when it is no clear-depth checkpoint, is damaged, or holds weights that are not finite
    (a diverged run's, which would give NaN depth for every frame)."""
    path = Path(path) if read is not None else existing_file(path, "depth checkpoint")
    checkpoint, sha256 = read or read_checkpoint_and_digest(path)
    if not holds_clear_depth(checkpoint):
        raise ValueError(f"{path} is not a clear-depth checkpoint (written by dgdehaze train-depth)")
    try:
        model = ClearDepthNet(architecture_from_dict(checkpoint["architecture"]))
        width, height = (int(v) for v in checkpoint["input_size"])
        problem = misfit(model, checkpoint["state_dict"])
        if not problem:
            model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:  # a value that is no tensor
        raise ValueError(f"{path} does not match its own architecture: {' '.join(str(exc).split())}") from None
    except (KeyError, TypeError, ValueError) as exc:  # a field missing or malformed: a damaged or foreign file
        raise ValueError(f"{path} is a damaged clear-depth checkpoint ({type(exc).__name__}: {exc})") from None
    if problem:
        raise ValueError(f"{path} does not match its own architecture: {problem}")
    check_finite(checkpoint["state_dict"], path)
    if min(width, height) < 1 or width % model.stride or height % model.stride or width * height > MAX_PIXELS:
        raise ValueError(f"{path} is a damaged clear-depth checkpoint (its input_size {width}x{height} is not a "
                         f"positive multiple of the network's stride {model.stride} within 8K's pixels)")
    record = {"path": path.name, **checkpoint_provenance(path, checkpoint, sha256)}
    return model.to(device).eval(), (width, height), record


class ClearDepthPredictor:
    """uint8 BGR frame (any size) -> float32 (H, W) relative depth at the frame's size. `weights`: the record of the
    checkpoint it was loaded from (`load_clear_depth_and_record`), None for a network built in memory."""

    def __init__(self, model: ClearDepthNet, input_size: tuple[int, int], device: str | torch.device = "cpu",
                 weights: Mapping[str, Any] | None = None) -> None:
        self.model = model.to(device).eval()
        self.input_size = input_size
        self.device = torch.device(device)
        self.weights = weights

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu",
                        read: tuple[Any, str] | None = None) -> ClearDepthPredictor:
        """The network of the clear-depth checkpoint `path` (`read`: as `load_clear_depth_and_record`'s)."""
        model, input_size, weights = load_clear_depth_and_record(path, device, read)
        return cls(model, input_size, device, weights)

    @torch.no_grad()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 BGR frame (H, W, 3), got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        small = cv2.resize(frame, self.input_size, interpolation=cv2.INTER_AREA)
        image = torch.from_numpy(np.ascontiguousarray(small[:, :, ::-1])).permute(2, 0, 1)[None]
        was_training = self.model.training
        self.model.eval()
        try:
            disparity = self.model.disparity(image.to(self.device).float() / 255.0)
        finally:
            self.model.train(was_training)
        disparity = F.interpolate(disparity, size=(height, width), mode="bilinear", align_corners=False)
        return self.model.depth_from_disparity(disparity)[0, 0].cpu().numpy().astype(np.float32)
