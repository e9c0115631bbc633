"""The dark channel prior (He, Sun and Tang, CVPR 2009 / TPAMI 2011): the classical, weight-free dehazer.

In most patches of a haze-free outdoor image at least one colour channel is near zero; haze lifts that minimum.
The prior gives the transmission t = 1 - omega * dark(I / A), refined here with a (fast) guided filter, and
J = (I - A) / max(t, t0) + A. Everything is vectorised with OpenCV; see `dgdehaze bench dcp` for its speed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dgdehaze_core.dehaze_result import DehazeResult
from dgdehaze_core.guided_filter import fast_guided_filter, guided_filter
from dgdehaze_core.image_io import to_bgr8
from dgdehaze_core.scattering import depth_from_transmission, invert_scattering


def dark_channel(image: np.ndarray, patch: int = 15) -> np.ndarray:
    """Per-pixel minimum over the colour channels and a `patch` x `patch` window (float HxWx3 -> HxW)."""
    minimum = image.min(axis=2)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(minimum, kernel, borderType=cv2.BORDER_REFLECT)


def estimate_airlight(image: np.ndarray, dark: np.ndarray, top_fraction: float = 0.001) -> np.ndarray:
    """Mean colour of the pixels whose dark channel is in the brightest `top_fraction` (float HxWx3 -> (3,))."""
    flat_dark = dark.reshape(-1)
    count = max(1, int(round(flat_dark.size * top_fraction)))
    top = np.argpartition(flat_dark, flat_dark.size - count)[-count:]
    return image.reshape(-1, 3)[top].mean(axis=0).astype(np.float32)


def haze_density(image: np.ndarray, patch: int = 15) -> float:
    """Dark-channel haze density of a uint8 BGR frame: the mean dark channel, 0 for clear, towards 1 for dense haze."""
    frame = to_bgr8(image)
    return float(dark_channel(frame, patch).mean() / 255.0)


@dataclass
class DarkChannelDehazer:
    """He et al.'s dehazer with a fast guided-filter refinement.

    patch: dark-channel window; omega: haze kept for depth perception (0.95); t0: lower bound on t;
    radius, eps: guided filter; subsample: guided-filter subsampling (1 = exact filter).
    """

    patch: int = 15
    omega: float = 0.95
    t0: float = 0.1
    radius: int = 60
    eps: float = 1e-4
    subsample: int = 4
    top_fraction: float = 0.001

    def __post_init__(self) -> None:
        if self.patch < 1 or self.patch % 2 == 0:
            raise ValueError(f"patch must be a positive odd number, got {self.patch}")
        if not 0.0 < self.omega <= 1.0:
            raise ValueError(f"omega must lie in (0, 1], got {self.omega}")
        if not 0.0 < self.t0 < 1.0:
            raise ValueError(f"t0 must lie in (0, 1), got {self.t0}")
        if self.radius < 1 or self.eps <= 0 or self.subsample < 1:
            raise ValueError("radius and subsample must be >= 1 and eps > 0")

    def transmission(self, image: np.ndarray, airlight: np.ndarray) -> np.ndarray:
        """Refined transmission of a float BGR image in [0, 1] under `airlight`."""
        normalised = image / np.maximum(airlight, 1e-3)
        raw = 1.0 - self.omega * dark_channel(normalised, self.patch)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if self.subsample > 1:
            refined = fast_guided_filter(gray, raw, self.radius, self.eps, self.subsample)
        else:
            refined = guided_filter(gray, raw, self.radius, self.eps)
        return np.clip(refined, self.t0, 1.0).astype(np.float32)

    def dehaze(self, frame: np.ndarray) -> DehazeResult:
        """Dehaze one uint8 BGR frame (grayscale, 16-bit and BGRA are converted first)."""
        frame = to_bgr8(frame)
        image = frame.astype(np.float32) * (1.0 / 255.0)
        dark = dark_channel(image, self.patch)
        airlight = estimate_airlight(image, dark, self.top_fraction)
        t = self.transmission(image, airlight)
        clear = invert_scattering(image, t[:, :, None], airlight, t_min=self.t0)
        out = np.clip(clear * 255.0 + 0.5, 0, 255).astype(np.uint8)
        depth = depth_from_transmission(t, 1.0).astype(np.float32)
        return DehazeResult(image=out, depth=depth, transmission=t, airlight=airlight,
                            haze_density=float(dark.mean()))
