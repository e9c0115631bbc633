"""Whether a state_dict fits a network, said in one line, and whether its weights are finite (the checkpoint
loaders' refusals)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch


def misfit(model: torch.nn.Module, state_dict: Mapping[str, Any]) -> str:
    """In one line, how `state_dict` does not fit `model` (missing, unexpected, mis-shaped tensors), or ''."""
    expected = model.state_dict()
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    misshaped = [name for name in expected if name in state_dict and isinstance(state_dict[name], torch.Tensor)
                 and state_dict[name].shape != expected[name].shape]
    if not (missing or unexpected or misshaped):
        return ""
    first = (misshaped or missing or unexpected)[0]
    return (f"{len(missing)} tensors missing, {len(unexpected)} unexpected, {len(misshaped)} of another shape "
            f"(first: {first!r})")


def check_finite(state_dict: Mapping[str, Any], path: Path) -> None:
    """ValueError naming `path` and the first tensor holding NaN or infinity (a diverged training run's weights)."""
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path} holds weights that are not finite (NaN or infinity), first in {name!r}: "
                             "a training run that diverged?")
