"""The atmospheric scattering model (Koschmieder): I = J * t + A * (1 - t), t = exp(-beta * d).

I is the hazy image, J the clear scene radiance, A the airlight (global atmospheric light), t the transmission,
beta the scattering coefficient and d the depth. Every function works on numpy arrays and on torch tensors alike;
the caller shapes the airlight so that it broadcasts against the image ((3,) for HxWx3, (B, 3, 1, 1) for BCHW).
"""
from __future__ import annotations

from typing import Any

import numpy as np

T_MIN = 0.05
"""Smallest transmission used when inverting: below it the inversion amplifies noise without bound."""


def _backend(x: Any) -> Any:
    """numpy, or torch when `x` is a tensor: both provide exp, log and clip with the same signature."""
    if type(x).__module__.startswith("torch"):
        import torch

        return torch
    return np


def transmission_from_depth(depth: Any, beta: Any) -> Any:
    """t = exp(-beta * d)."""
    return _backend(depth).exp(-beta * depth)


def depth_from_transmission(transmission: Any, beta: Any, t_min: float = 1e-6) -> Any:
    """d = -ln(t) / beta, with t clipped to [t_min, 1] so that the result is finite."""
    xp = _backend(transmission)
    return -xp.log(xp.clip(transmission, t_min, 1.0)) / beta


def synthesize_haze(clear: Any, depth: Any, beta: Any, airlight: Any) -> Any:
    """Hazy image I = J * t + A * (1 - t) from a clear image J in [0, 1] and a depth map.

    `depth` must broadcast against `clear` (HxWx1 for HxWx3 numpy images, Bx1xHxW for tensors).
    """
    t = transmission_from_depth(depth, beta)
    return clear * t + airlight * (1.0 - t)


def invert_scattering(hazy: Any, transmission: Any, airlight: Any, t_min: float = T_MIN) -> Any:
    """Clear image J = (I - A) / max(t, t_min) + A, clipped to [0, 1]."""
    xp = _backend(hazy)
    t = xp.clip(transmission, t_min, 1.0)
    return xp.clip((hazy - airlight) / t + airlight, 0.0, 1.0)
