"""A training run's starting weights (the recipe's `init_weights`): shipped weights or a checkpoint file, checked
against the recipe's network before the first step."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from dgdehaze_core.io.checkpoints import read_checkpoint_and_digest
from dgdehaze_core.io.file_paths import existing_file
from dgdehaze_core.models import MODEL_CONFIGS, model_from_checkpoint, weights_file

LOG = logging.getLogger(__name__)

FROM_SCRATCH: dict[str, Any] = {"init_weights": ""}
"""What a run's checkpoint metadata says (`started_from`) when its model started from random weights."""


def init_weights_file(init_weights: str) -> Path:
    """The file `init_weights` names: the shipped weights of a model name (FileNotFoundError saying that the model
    ships none, where it does not: `base`), else the path itself."""
    return weights_file(init_weights) if init_weights in MODEL_CONFIGS else Path(init_weights)


def start_from(model: torch.nn.Module, init_weights: str, config: str, depth_guidance: bool) -> dict[str, Any]:
    """Load the weights `init_weights` names into `model` (the recipe's `config` network with `depth_guidance`)
    and say where they came from, for the run's checkpoint metadata: the setting, the file, its sha256, and the
    recipe, iterations and commit its own metadata records. ValueError (FileNotFoundError for a missing file)
    naming the file and the reason when it is missing, unreadable, holds weights that are not finite, or holds
    another network (configuration or depth guidance) than the recipe's. torch's random state is left as it was,
    so a run draws the same data and haze whatever weights it starts from."""
    try:
        path = existing_file(init_weights_file(init_weights), "weights file")
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"init_weights: {exc}") from None
    with torch.random.fork_rng(devices=[]):
        try:
            checkpoint, sha256 = read_checkpoint_and_digest(path, "dgdehaze checkpoint")
            loaded = model_from_checkpoint(checkpoint, path)
        except ValueError as exc:
            raise ValueError(f"init_weights: {exc}") from None
    held = (getattr(loaded, "config_name", type(loaded).__name__), bool(getattr(loaded, "depth_guidance", True)))
    if held != (config, depth_guidance):
        raise ValueError(f"init_weights: {path} holds a {held[0]!r} network with depth_guidance {held[1]}; the "
                         f"recipe trains {config!r} with depth_guidance {depth_guidance}: set init_weights to "
                         "weights of the recipe's model, or change 'model' and 'depth_guidance'")
    model.load_state_dict(loaded.state_dict())
    meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
    LOG.info("the model starts from %s (%s)", path, init_weights)
    return {"init_weights": init_weights, "file": str(path), "sha256": sha256,
            **{key: meta[key] for key in ("recipe", "iterations", "commit") if key in meta}}
