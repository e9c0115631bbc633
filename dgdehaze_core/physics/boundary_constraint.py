"""The boundary constraint (Meng, Wang, Duan, Xiang and Pan, ICCV 2013) as a floor under an estimated transmission.

The inversion J = (I - A)/t + A keeps every channel of the scene's radiance J within [floor, 1] only where
t >= max_c max((A_c - I_c)/(A_c - floor), (I_c - A_c)/(1 - A_c)): a transmission below that makes a dark pixel
black (crushed) or a bright one white (blown). `boundary_transmission` is that bound, closed over a patch (a maximum
then a minimum filter, as in the paper) so that it follows regions rather than single pixels; the network pipeline
raises its transmission to it. In fog the bound is low and the network's transmission stands; where a frame shows
it has little or no fog (dark pixels, clear colours) it is near 1, and there the frame is left nearly as the camera
saw it. A dull frame without fog (overcast, no dark pixels) gives it nothing to go on.
"""
from __future__ import annotations

import cv2
import numpy as np

from dgdehaze_core.physics.dark_channel import channel_max

RADIANCE_FLOOR = 0.02
"""The least scene radiance (of 1) the inversion may give a channel; chosen on validation data (docs/RESULTS.md,
"The boundary constraint"), against 0, 0.01 and 0.04."""
BOUNDARY_PATCH = 15
"""Side (pixels) of the window the bound is closed over (the dark channel prior's patch)."""
_LEVELS = np.arange(256, dtype=np.float64) / 255.0


def check_radiance_floor(floor: float) -> float:
    """`floor` as a float in [0, 0.5]; ValueError otherwise (a floor near the airlight would forbid any
    dehazing)."""
    if isinstance(floor, bool) or not isinstance(floor, (int, float, np.floating)) or not 0.0 <= floor <= 0.5:
        raise ValueError(f"radiance_floor must be a number in [0, 0.5], got {floor!r}")
    return float(floor)


def boundary_lookup(airlight_bgr: np.ndarray, floor: float) -> np.ndarray:
    """The bound for each 8-bit level of each channel (256x1x3 uint8, in 255ths, rounded up so that it stays a
    floor): what `cv2.LUT` applies to a BGR frame. An airlight at or below `floor` in a channel forbids any
    dehazing of that channel's darker pixels (t = 1); one at 1 never blows out."""
    airlight = np.asarray(airlight_bgr, np.float64).reshape(1, 3)
    levels = _LEVELS[:, None]
    below = np.where(levels < airlight, (airlight - levels) / np.maximum(airlight - floor, 1e-6), 0.0)
    above = np.where(levels > airlight, (levels - airlight) / np.maximum(1.0 - airlight, 1e-6), 0.0)
    bound = np.clip(np.ceil(np.maximum(below, above) * 255.0 - 1e-9), 0, 255)
    return bound.astype(np.uint8).reshape(256, 1, 3)


def boundary_transmission(frame: np.ndarray, airlight_rgb: np.ndarray, floor: float = RADIANCE_FLOOR,
                          patch: int = BOUNDARY_PATCH) -> np.ndarray:
    """The least transmission (HxW float32 in [0, 1]) at which inverting the uint8 BGR `frame` with `airlight_rgb`
    (RGB in [0, 1]) keeps every channel within [`floor`, 1], in 255ths rounded up (`boundary_lookup`), and 1 where
    no transmission can (a channel at or below `floor` and darker than the airlight); closed over a `patch` x `patch`
    window, which only raises it."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"boundary_transmission takes a uint8 BGR frame, got {frame.dtype} of shape {frame.shape}")
    lookup = boundary_lookup(np.asarray(airlight_rgb, np.float64)[::-1], check_radiance_floor(floor))
    least = channel_max(cv2.LUT(frame, lookup))
    if patch > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
        least = cv2.morphologyEx(least, cv2.MORPH_CLOSE, kernel, borderType=cv2.BORDER_REFLECT)
    return least.astype(np.float32) * np.float32(1.0 / 255.0)
