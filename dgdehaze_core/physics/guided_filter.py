"""The guided filter (He, Sun and Tang, 2010/2013): edge-preserving smoothing of a map by a guide image.

Box filters come from OpenCV, so the cost is O(pixels) whatever the radius. `fast_guided_filter` computes the linear
coefficients on a subsampled grid and upsamples them (He and Sun, 2015), which is how the DCP baseline meets its
real-time budget and how the network's low-resolution transmission is lifted to the camera's resolution.
"""
from __future__ import annotations

import cv2
import numpy as np


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    return cv2.boxFilter(image, cv2.CV_32F, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def _coefficients(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """The local linear model source ~ a * guide + b of each window."""
    mean_i = _box(guide, radius)
    mean_p = _box(source, radius)
    cov_ip = _box(guide * source, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    return a, mean_p - a * mean_i


def gray_guide(frame: np.ndarray) -> np.ndarray:
    """The guide for filtering a map of a uint8 BGR frame: its gray image as float32 in [0, 1]."""
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32) * np.float32(1.0 / 255.0)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Filter `source` (HxW float) guided by the grayscale `guide` (HxW float in [0, 1])."""
    guide = guide.astype(np.float32, copy=False)
    source = source.astype(np.float32, copy=False)
    radius = max(1, min(radius, max(guide.shape) // 2))
    a, b = _coefficients(guide, source, radius, eps)
    return _box(a, radius) * guide + _box(b, radius)


def smooth_base(image: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-preserving smoothing of every channel of `image` (HxW or HxWxC float) guided by itself: texture whose
    local variance is well below `eps` (noise) is flattened, edges well above it are kept."""
    image = image.astype(np.float32, copy=False)
    mean = _box(image, radius)
    variance = _box(image * image, radius) - mean * mean
    a = variance / (variance + eps)
    return _box(a, radius) * image + _box(mean - a * mean, radius)


def fast_guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float,
                       subsample: int = 4) -> np.ndarray:
    """Guided filter with coefficients computed at 1/`subsample` resolution and applied at full resolution.

    `source` may be smaller than `guide` (a low-resolution transmission): it is resized to the subsampled grid.
    """
    height, width = guide.shape[:2]
    small_h, small_w = max(1, height // subsample), max(1, width // subsample)
    guide_small = cv2.resize(guide, (small_w, small_h), interpolation=cv2.INTER_AREA)
    source_small = cv2.resize(source.astype(np.float32, copy=False), (small_w, small_h),
                              interpolation=cv2.INTER_AREA)
    radius_small = max(1, radius // subsample)
    radius_small = min(radius_small, max(1, max(small_h, small_w) // 2))
    a, b = _coefficients(guide_small, source_small, radius_small, eps)
    mean_a = cv2.resize(_box(a, radius_small), (width, height), interpolation=cv2.INTER_LINEAR)
    mean_b = cv2.resize(_box(b, radius_small), (width, height), interpolation=cv2.INTER_LINEAR)
    return mean_a * guide.astype(np.float32, copy=False) + mean_b
