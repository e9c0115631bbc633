"""Local contrast for the detector's input: CLAHE on the lightness of a frame.

Fog lowers contrast most where the scene is far, so a global stretch leaves distant objects faint. Contrast-limited
adaptive histogram equalisation (Zuiderveld, 1994; OpenCV's `CLAHE`) equalises each tile of the frame on its own,
with the gain limited so that flat regions (sky, fog) do not turn into amplified noise. Only the lightness L of
CIELAB is equalised: colours keep their hue, which the detector's classes depend on.

It is an option for the frames the detector reads (`FrameDetector(contrast=True)`, the node's
`detection_contrast`, `eval`'s `SOURCE+clahe` methods), not a dehazer: it estimates no haze, transmission or depth.
The settings are OpenCV's customary ones (clip limit 2 in units of the tile's mean histogram height, 8 x 8 tiles),
kept after clip limits 1, 2 and 4 were compared on the DAWN photos outside the judging part
(`tools/choose_contrast_clip.py`, docs/RESULTS.md).
"""
from __future__ import annotations

import threading

import cv2
import numpy as np

from dgdehaze_core.io.images import ImageError

CLIP_LIMIT = 2.0
TILES = (8, 8)

_local = threading.local()


def _equaliser(clip_limit: float) -> cv2.CLAHE:
    """One CLAHE object per thread and clip limit (OpenCV's keeps per-call state)."""
    equalisers = _local.__dict__.setdefault("equalisers", {})
    if clip_limit not in equalisers:
        equalisers[clip_limit] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=TILES)
    return equalisers[clip_limit]


def local_contrast(frame: np.ndarray, clip_limit: float = CLIP_LIMIT) -> np.ndarray:
    """A new uint8 BGR frame: `frame` (uint8 BGR, H x W x 3) with its CIELAB lightness equalised per tile, each
    tile's gain limited by `clip_limit` (> 0).

    ImageError for anything but a non-empty uint8 three-channel frame; ValueError for a clip limit <= 0."""
    if not clip_limit > 0:
        raise ValueError(f"the clip limit must be positive, got {clip_limit}")
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise ImageError(f"local contrast takes a uint8 BGR frame (H, W, 3), got {getattr(frame, 'dtype', None)} "
                         f"{shape}")
    if frame.size == 0:
        raise ImageError(f"local contrast of an empty frame ({frame.shape[1]}x{frame.shape[0]})")
    lab = cv2.cvtColor(frame, cv2.COLOR_BGR2LAB)
    lab[:, :, 0] = _equaliser(clip_limit).apply(np.ascontiguousarray(lab[:, :, 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)
