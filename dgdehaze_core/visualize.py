"""Pictures for people: colour-mapped depth and side-by-side panels."""
from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, low_percentile: float = 2.0, high_percentile: float = 98.0) -> np.ndarray:
    """Depth (HxW float, NaN invalid) to a uint8 BGR turbo image: near is red, far is blue, invalid is black."""
    valid = np.isfinite(depth)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    low, high = np.percentile(depth[valid], [low_percentile, high_percentile])
    scaled = np.clip((depth - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    scaled = np.where(valid, scaled, 0.0)
    colored = cv2.applyColorMap(((1.0 - scaled) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    out[valid] = colored[valid]
    return out


def side_by_side(*images: np.ndarray, height: int | None = None) -> np.ndarray:
    """Concatenate BGR images horizontally after resizing each to a common height."""
    height = height or images[0].shape[0]
    resized = [cv2.resize(im, (max(1, round(im.shape[1] * height / im.shape[0])), height)) for im in images]
    return np.concatenate(resized, axis=1)
