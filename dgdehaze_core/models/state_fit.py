"""Whether a state_dict fits a network, said in one line, and whether its weights are finite (the checkpoint
loaders' refusals)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch


def misfit(model: torch.nn.Module, state_dict: Mapping[str, Any]) -> str:
    """In one line, how `state_dict` does not fit `model` (missing, unexpected, mis-shaped tensors, or tensors of
    integers or complex numbers where the network holds real ones, or the reverse: torch's load_state_dict casts
    them without a word, so weights stored as int32 loaded rounded, and complex ones without their imaginary
    part), or ''."""
    expected = model.state_dict()
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    given = {name: state_dict[name] for name in expected if isinstance(state_dict.get(name), torch.Tensor)}
    misshaped = [name for name, tensor in given.items() if tensor.shape != expected[name].shape]
    mistyped = [name for name, tensor in given.items()
                if tensor.is_complex() or tensor.is_floating_point() != expected[name].is_floating_point()]
    if not (missing or unexpected or misshaped or mistyped):
        return ""
    first = (misshaped or mistyped or missing or unexpected)[0]
    kinds = (f", {len(mistyped)} of another kind of number (integers or complex numbers for real ones, or the "
             "reverse)" if mistyped else "")
    return (f"{len(missing)} tensors missing, {len(unexpected)} unexpected, {len(misshaped)} of another shape{kinds} "
            f"(first: {first!r})")


def check_finite(state_dict: Mapping[str, Any], path: Path) -> None:
    """ValueError naming `path` and the first tensor holding NaN or infinity (a diverged training run's weights)."""
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ValueError(f"{path} holds weights that are not finite (NaN or infinity), first in {name!r}: "
                             "a training run that diverged?")
