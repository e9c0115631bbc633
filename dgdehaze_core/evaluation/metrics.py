"""Full-reference image quality: PSNR, SSIM and CIEDE2000, computed the way the dehazing literature does.

All three take two uint8 BGR frames of the same size and compare them at full resolution in RGB:
- PSNR on RGB scaled to [0, 1], over all pixels and channels, capped at `PSNR_CAP` (100 dB) so that an identical
  pair (infinite PSNR) leaves a set's mean finite, as common evaluation code does;
- SSIM as scikit-image's `structural_similarity` over the RGB channels (7x7 uniform window, data range 1), the
  mean of the three channels' as its `channel_axis` takes it, the convention of the paper's evaluation code;
- CIEDE2000 as the mean per-pixel colour difference in CIELAB (scikit-image), lower is better.
"""
from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab
from skimage.metrics import structural_similarity

from dgdehaze_core.io.images import ImageError

PSNR_CAP = 100.0
"""The highest PSNR (dB) a pair gets; identical images get it. Real pairs lie far below (8-bit images one level
apart at every pixel: 48 dB)."""
SSIM_MIN_SIDE = 7
"""The shortest side SSIM takes (its 7x7 window)."""


def _pair(result: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if result.shape != reference.shape:
        raise ImageError(f"images differ in size: {result.shape} vs {reference.shape}")
    if result.dtype != np.uint8 or reference.dtype != np.uint8 or result.ndim != 3 or result.shape[2] != 3:
        raise ImageError(f"metrics take two uint8 BGR frames, got {result.dtype} {result.shape} and "
                         f"{reference.dtype} {reference.shape}")
    return (result[:, :, ::-1].astype(np.float64) / 255.0, reference[:, :, ::-1].astype(np.float64) / 255.0)


def psnr(result: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, at most `PSNR_CAP` (which identical images get)."""
    a, b = _pair(result, reference)
    mse = float(np.mean((a - b) ** 2))
    return PSNR_CAP if mse == 0.0 else min(PSNR_CAP, float(10.0 * np.log10(1.0 / mse)))


def ssim(result: np.ndarray, reference: np.ndarray) -> float:
    """Structural similarity (scikit-image, RGB channels, data range 1): the mean of the channels' SSIM, which
    `structural_similarity(channel_axis=2)` computes; channel by channel here because scikit-image 0.18 (Ubuntu
    22.04's, ROS 2 Humble's) has no `channel_axis` and takes a colour image for a 3-D volume there."""
    a, b = _pair(result, reference)
    if min(a.shape[:2]) < SSIM_MIN_SIDE:
        raise ImageError(f"SSIM needs images of at least {SSIM_MIN_SIDE}x{SSIM_MIN_SIDE} pixels, got "
                         f"{a.shape[1]}x{a.shape[0]}")
    return float(np.mean([structural_similarity(a[:, :, c], b[:, :, c], data_range=1.0) for c in range(3)]))


def ciede2000(result: np.ndarray, reference: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference (0 for identical images)."""
    a, b = _pair(result, reference)
    return float(np.mean(deltaE_ciede2000(rgb2lab(a), rgb2lab(b))))
