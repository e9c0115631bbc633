"""The guided filter (He, Sun and Tang, 2010/2013): edge-preserving smoothing of a map by a guide image.

Box filters come from OpenCV, so the cost is O(pixels) whatever the radius. `fast_guided_filter` computes the linear
coefficients on a subsampled grid and upsamples them (He and Sun, 2015), which is how the DCP baseline meets its
real-time budget and how the network's low-resolution transmission is lifted to the camera's resolution.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from dgdehaze_core.physics.work_buffers import WorkBuffers


def _is_integer(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def check_window(radius: int, eps: float, subsample: int = 1) -> None:
    """ValueError unless `radius` is an integer >= 1, `eps` a finite number > 0 and `subsample` (the fast filter's
    grid step) an integer >= 1: a radius below 1 smooths nothing or makes OpenCV's box filter fail, an eps that is
    not positive divides by zero or turns every value NaN, and a step below 1 divides by zero or is no grid."""
    if not _is_integer(radius) or radius < 1:
        raise ValueError(f"radius must be an integer >= 1, got {radius!r}")
    if not 0.0 < eps < math.inf:
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if not _is_integer(subsample) or subsample < 1:
        raise ValueError(f"subsample must be an integer >= 1, got {subsample!r}")


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
    """Filter `source` (HxW float) guided by the grayscale `guide` (HxW float in [0, 1]) over windows of `radius`,
    cut to half the guide's longer side (at least 1) where the image is smaller than the window. ValueError for a
    `radius` or `eps` out of range (`check_window`)."""
    check_window(radius, eps)
    guide = guide.astype(np.float32, copy=False)
    source = source.astype(np.float32, copy=False)
    radius = max(1, min(radius, max(guide.shape) // 2))
    a, b = _coefficients(guide, source, radius, eps)
    return _box(a, radius) * guide + _box(b, radius)


class SelfGuidedSmoother:
    """Edge-preserving smoothing of every channel of an image (HxW or HxWxC float) guided by itself, over windows of
    `radius`: texture whose local variance is well below `eps` (noise) is flattened, edges well above it are kept.

    The intermediate maps live in buffers kept from call to call while the image's shape stays the same: allocating
    them afresh costs as much as the filtering (every new multi-megabyte array is fresh pages from the kernel). One
    instance per thread; each call returns a new array, or writes into `out`."""

    def __init__(self, radius: int, eps: float) -> None:
        """ValueError for a `radius` or `eps` out of range (`check_window`)."""
        check_window(radius, eps)
        self.radius, self.eps = radius, np.float32(eps)
        self._buffers = WorkBuffers()

    def _box_into(self, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        size = 2 * self.radius + 1
        return cv2.boxFilter(image, cv2.CV_32F, (size, size), dst=out, borderType=cv2.BORDER_REFLECT)

    def __call__(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """`image` smoothed, as float32 of its shape, in `out` when given (C-contiguous float32 of that shape)."""
        image = np.ascontiguousarray(image, dtype=np.float32)
        mean, variance, a, scratch = (self._buffers(name, image.shape) for name in ("mean", "variance", "a", "scratch"))
        self._box_into(image, mean)
        self._box_into(np.multiply(image, image, out=scratch), variance)
        variance -= np.multiply(mean, mean, out=scratch)
        np.divide(variance, np.add(variance, self.eps, out=scratch), out=a)
        mean -= np.multiply(a, mean, out=scratch)  # now b, each window's offset
        smoothed = np.multiply(self._box_into(a, variance), image, out=out)
        smoothed += self._box_into(mean, scratch)
        return smoothed


def smooth_base(image: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """`SelfGuidedSmoother(radius, eps)(image)`, once."""
    return SelfGuidedSmoother(radius, eps)(image)


def fast_guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float,
                       subsample: int = 4) -> np.ndarray:
    """Guided filter with coefficients computed at 1/`subsample` resolution and applied at full resolution.

    `source` may be smaller than `guide` (a low-resolution transmission): it is resized to the subsampled grid. The
    window on that grid is `radius // subsample`, at least 1 (a radius below the step spans one grid cell), cut to
    half the grid's longer side. ValueError for a `radius`, `eps` or `subsample` out of range (`check_window`).
    """
    check_window(radius, eps, subsample)
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
