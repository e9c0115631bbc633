"""The networks: `build_model(config)` for a fresh model, `load_model(path or config)` for trained weights.

Checkpoint files (.pt) hold {"config": name, "depth_guidance": bool, "state_dict": ..., "meta": {...}}; a config
name passed to `load_model` loads the shipped weights `dgdehaze_core/weights/dgdehaze_<name>.pt`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch

from dgdehaze_core.datasets.paths import WEIGHTS_DIR
from dgdehaze_core.io.checkpoints import checkpoint_provenance, read_checkpoint_and_digest, write_checkpoint
from dgdehaze_core.io.file_paths import existing_file
from dgdehaze_core.models.depth_net import DepthNet
from dgdehaze_core.models.dgdehaze_net import DGDehazeNet
from dgdehaze_core.models.dghat import DGHAT, dghat_base, dghat_lite
from dgdehaze_core.models.paper_net import PaperNet, is_official_state_dict, load_official
from dgdehaze_core.models.state_fit import check_finite, misfit

LOG = logging.getLogger(__name__)

MODEL_CONFIGS: dict[str, Callable[[], tuple[DepthNet, DGHAT]]] = {
    "lite": lambda: (DepthNet(widths=(16, 24, 40, 64), blocks=(0, 1, 1, 1), input_scale=2), dghat_lite()),
    "base": lambda: (DepthNet(widths=(24, 32, 64, 128, 192), blocks=(0, 1, 2, 2, 1)), dghat_base()),
}
"""Configuration name -> factory of (depth network, dehazer)."""
CHECKPOINT_SUFFIXES = (".pt", ".pth")
"""Weights files torch loads: dgdehaze checkpoints (.pt) and the paper's released state_dict (.pth)."""
PAPER = "paper"
"""The paper's released network (models/paper_net.py): built here, its weights are the authors' file."""

CHECKPOINT_KEYS = ("config", "depth_guidance", "state_dict", "meta")

# Checkpoints written before the trainer stored the torch version as a plain str hold a TorchVersion (a str
# subclass); allowing it keeps `weights_only` loading (no arbitrary code) working for those files.
torch.serialization.add_safe_globals([torch.torch_version.TorchVersion])

__all__ = ["CHECKPOINT_SUFFIXES", "MODEL_CONFIGS", "PAPER", "DGDehazeNet", "DGHAT", "DepthNet", "PaperNet",
           "build_model", "checkpoint_state", "load_model", "load_model_and_record", "model_from_checkpoint",
           "save_checkpoint", "shipped_weights_path", "weights_file"]


def build_model(config: str = "lite", depth_guidance: bool = True) -> DGDehazeNet | PaperNet:
    """A freshly initialised model of configuration `config` (seed torch first for reproducible weights); `paper`
    is the released network's architecture, always depth-guided (ValueError when asked without)."""
    if config == PAPER:
        if not depth_guidance:
            raise ValueError(f"the {PAPER} network is always depth-guided: it has no configuration without "
                             "depth guidance")
        return PaperNet()
    if config not in MODEL_CONFIGS:
        raise ValueError(f"unknown model configuration {config!r}; known: {', '.join(MODEL_CONFIGS)}, {PAPER}")
    depth_net, dehazer = MODEL_CONFIGS[config]()
    return DGDehazeNet(config, depth_net, dehazer, depth_guidance=depth_guidance)


def shipped_weights_path(config: str) -> Path:
    """Where the weights shipped for `config` live inside the package."""
    return WEIGHTS_DIR / f"dgdehaze_{config}.pt"


def checkpoint_state(model: DGDehazeNet, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint file of `model` holds, its weights copied to the CPU: later steps do not change it."""
    return {"config": model.config_name, "depth_guidance": model.depth_guidance,
            "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()},
            "meta": dict(meta or {})}


def save_checkpoint(model: DGDehazeNet, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write `model` to `path` atomically (a reader never sees half a checkpoint); OSError naming `path` when it
    cannot be written (a full disk: ENOSPC)."""
    return write_checkpoint(checkpoint_state(model, meta), path)


def _checked(checkpoint: Any, path: Path) -> dict[str, Any]:
    """`checkpoint` when it has the shape of a dgdehaze checkpoint; ValueError naming `path` and what is wrong
    otherwise (a `depth_guidance` of "False" would have read as true, a list of weights as an AttributeError)."""
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in CHECKPOINT_KEYS):
        raise ValueError(f"{path} is not a dgdehaze checkpoint (expected keys {', '.join(CHECKPOINT_KEYS)})")
    _check_tensors(checkpoint["state_dict"], path)
    if checkpoint["config"] not in (*MODEL_CONFIGS, PAPER):
        raise ValueError(f"{path} names the model configuration {checkpoint['config']!r}, which this version does "
                         f"not know (known: {', '.join(MODEL_CONFIGS)}, {PAPER})")
    if not isinstance(checkpoint["depth_guidance"], bool):
        raise ValueError(f"{path}: its depth_guidance is {checkpoint['depth_guidance']!r}, not true or false")
    if checkpoint["config"] == PAPER and not checkpoint["depth_guidance"]:
        raise ValueError(f"{path} names the {PAPER} network without depth guidance, which it does not have: it "
                         "would run depth-guided")
    return checkpoint


def load_model(source: str | os.PathLike[str], device: str | torch.device = "cpu") -> DGDehazeNet | PaperNet:
    """Load a checkpoint file, or the shipped weights of a configuration name, in eval mode on `device`. A file
    holding the paper's released state_dict (`model_Roadmap.pth`) loads as the `paper` network."""
    return load_model_and_record(source, device)[0]


def load_model_and_record(source: str | os.PathLike[str], device: str | torch.device = "cpu",
                          read: tuple[Any, str] | None = None) -> tuple[DGDehazeNet | PaperNet, dict[str, Any]]:
    """`load_model`'s model and the record of the weights it holds, from one read of the file: its name (`path`),
    the sha256 of the bytes the model was loaded from (12 hex digits) and, for a `.pt`, its training metadata
    (`checkpoints.checkpoint_provenance`). What the pipeline names its weights by (/diagnostics, reports) and what an
    export of the model records (`to_onnx.EXPORTED_FROM`): a file replaced after the read is not named for them.
    `read`: the file's contents and sha256 where the caller has read it already
    (`checkpoints.read_checkpoint_and_digest`, to tell what it holds): it is not read again."""
    path = weights_file(source)
    checkpoint, sha256 = read or read_checkpoint_and_digest(path, "dgdehaze checkpoint")
    record = {"path": path.name, **checkpoint_provenance(path, checkpoint, sha256)}
    return model_from_checkpoint(checkpoint, path).to(device).eval(), record


def model_from_checkpoint(checkpoint: Any, path: Path) -> DGDehazeNet | PaperNet:
    """The network the contents of the checkpoint file `path` hold (as read, `checkpoints.read_checkpoint_and_digest`),
    in eval mode on the CPU: a checkpoint of this package, or the paper's released state_dict. ValueError naming
    `path` when they are no such thing, hold weights that are not finite, or do not fit the network they name."""
    if isinstance(checkpoint, dict) and is_official_state_dict(checkpoint):
        _check_tensors(checkpoint, path)
        check_finite(checkpoint, path)
        model = load_official(checkpoint)
        LOG.info("loaded the paper's released network from %s", path)
        return model.eval()
    checkpoint = _checked(checkpoint, path)
    check_finite(checkpoint["state_dict"], path)
    model = build_model(str(checkpoint["config"]), depth_guidance=bool(checkpoint["depth_guidance"]))
    problem = misfit(model, checkpoint["state_dict"])
    if problem:
        raise ValueError(f"{path} does not fit the {checkpoint['config']!r} network it names: {problem}; was it "
                         "saved from another configuration?")
    model.load_state_dict(checkpoint["state_dict"])
    LOG.info("loaded %s model from %s", model.config_name, path)
    return model.eval()


def weights_file(source: str | os.PathLike[str]) -> Path:
    """The checkpoint file `load_model` reads for `source`: a configuration's shipped weights, or the file given;
    FileNotFoundError saying what to do when there is none, or that it is a folder."""
    if isinstance(source, str) and source == PAPER:
        raise FileNotFoundError("the paper's released weights are not shipped: pass the path of the authors' file "
                                "(model_Roadmap.pth, docs/DEPLOYMENT.md)")
    if isinstance(source, str) and source in MODEL_CONFIGS:
        path = shipped_weights_path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"no trained weights for the {source!r} model at {path}; train them with the recipe in "
                f"training/ (dgdehaze train) and save them there, or pass the path of a checkpoint (.pt)")
        return path
    return existing_file(source, "checkpoint")


def _check_tensors(state: Any, path: Path) -> None:
    """ValueError naming `path` unless `state` maps names to tensors (a list, or a value that is no tensor, would
    have reached torch's loader and failed there without naming the file)."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"{path}: its state_dict is not a mapping of names to tensors")
