"""What every dehazing method returns for one frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dgdehaze_core.physics.scattering import T_MIN


@dataclass
class DehazeResult:
    """One dehazed frame and the scene quantities estimated with it.

    image: uint8 BGR (H, W, 3), the dehazed frame at the input's size.
    depth: float32 (H, W), relative depth, larger is farther, NaN where invalid (REP-117). Units are relative
        optical depth for DCP (-ln t) and the depth network's relative units for the learned models; scale it to
        metres with a known reference before metric use.
    transmission: float32 (H, W) in [transmission_floor, 1].
    airlight: float32 (3,), BGR in [0, 1].
    haze_density: the input's dark-channel haze density in [0, 1] (`dark_channel.haze_density`).
    transmission_floor: the least transmission the method gives: a pixel there is as dense as it can tell (DCP's
        t0, the networks' T_MIN), whatever the fog.
    """

    image: np.ndarray
    depth: np.ndarray
    transmission: np.ndarray
    airlight: np.ndarray
    haze_density: float
    transmission_floor: float = T_MIN
