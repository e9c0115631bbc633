"""The dark channel prior (He, Sun and Tang, CVPR 2009 / TPAMI 2011): the classical, weight-free dehazer.

In most patches of a haze-free outdoor image at least one colour channel is near zero; haze lifts that minimum.
The prior gives the transmission t = 1 - omega * dark(I / A), refined here with a (fast) guided filter, and
J = (I - A) / max(t, t0) + A. Everything is vectorised with OpenCV; see `dgdehaze bench dcp` for its speed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from dgdehaze_core.inference.dehaze_result import DehazeResult
from dgdehaze_core.io.images import to_bgr8
from dgdehaze_core.physics.guided_filter import check_window, fast_guided_filter, gray_guide, guided_filter
from dgdehaze_core.physics.scattering import depth_from_transmission, invert_scattering


def channel_min(image: np.ndarray) -> np.ndarray:
    """Per-pixel minimum over the channels of an HxWxC image (OpenCV: several times faster than numpy's)."""
    return _across_channels(image, cv2.min)


def channel_max(image: np.ndarray) -> np.ndarray:
    """Per-pixel maximum over the channels of an HxWxC image (`channel_min`'s counterpart)."""
    return _across_channels(image, cv2.max)


def _across_channels(image: np.ndarray, pick: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    channels = cv2.split(image)
    picked = channels[0]
    for channel in channels[1:]:
        picked = pick(picked, channel)
    return picked


def dark_channel(image: np.ndarray, patch: int = 15) -> np.ndarray:
    """Per-pixel minimum over the colour channels and a `patch` x `patch` window (HxWx3 -> HxW, same dtype)."""
    return window_min(channel_min(image), patch)


def window_min(minimum: np.ndarray, patch: int = 15) -> np.ndarray:
    """The dark channel from an image's `channel_min`: its minimum over a `patch` x `patch` window."""
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (patch, patch))
    return cv2.erode(minimum, kernel, borderType=cv2.BORDER_REFLECT)


def estimate_airlight(image: np.ndarray, dark: np.ndarray, top_fraction: float = 0.001) -> np.ndarray:
    """Mean colour of the pixels whose dark channel is in the brightest `top_fraction`, as floats in [0, 1] (3,).

    `image` is uint8 (scaled by 1/255) or float in [0, 1]; `dark` is its dark channel.
    """
    flat_dark = dark.reshape(-1)
    count = max(1, int(round(flat_dark.size * top_fraction)))
    top = np.argpartition(flat_dark, flat_dark.size - count)[-count:]
    colour = image.reshape(-1, image.shape[-1])[top].astype(np.float32).mean(axis=0)
    return colour / 255.0 if image.dtype == np.uint8 else colour.astype(np.float32)


def haze_density(image: np.ndarray, patch: int = 15) -> float:
    """Dark-channel haze density of a uint8 BGR frame: the mean dark channel, 0 for clear, towards 1 for dense haze."""
    frame = to_bgr8(image)
    return float(dark_channel(frame, patch).mean()) / 255.0


@dataclass
class DarkChannelDehazer:
    """He et al.'s dehazer with a fast guided-filter refinement.

    patch: dark-channel window; omega: haze kept for depth perception (0.95); t0: lower bound on t;
    radius, eps: guided filter; subsample: guided-filter subsampling (1 = exact filter); top_fraction: the share of
    pixels, those of the brightest dark channel, whose mean colour is the airlight. Out-of-range values are refused.
    """

    patch: int = 15
    omega: float = 0.95
    t0: float = 0.1
    radius: int = 60
    eps: float = 1e-4
    subsample: int = 4
    top_fraction: float = 0.001

    def __post_init__(self) -> None:
        if isinstance(self.patch, bool) or not isinstance(self.patch, (int, np.integer)):
            raise ValueError(f"patch must be an integer, got {self.patch!r}")
        if self.patch < 1 or self.patch % 2 == 0:
            raise ValueError(f"patch must be a positive odd number, got {self.patch}")
        if not 0.0 < self.omega <= 1.0:
            raise ValueError(f"omega must lie in (0, 1], got {self.omega}")
        if not 0.0 < self.t0 < 1.0:
            raise ValueError(f"t0 must lie in (0, 1), got {self.t0}")
        check_window(self.radius, self.eps, self.subsample)
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must lie in (0, 1], got {self.top_fraction}")

    def transmission(self, frame: np.ndarray, airlight: np.ndarray) -> np.ndarray:
        """Refined transmission of a uint8 BGR frame under `airlight` ((3,) BGR in [0, 1])."""
        scales = 1.0 / (255.0 * np.maximum(airlight, 1e-3))
        normalised = [channel * np.float32(scale) for channel, scale in zip(cv2.split(frame), scales)]
        minimum = cv2.min(cv2.min(normalised[0], normalised[1]), normalised[2])
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (self.patch, self.patch))
        raw = 1.0 - self.omega * cv2.erode(minimum, kernel, borderType=cv2.BORDER_REFLECT)
        gray = gray_guide(frame)
        if self.subsample > 1:
            refined = fast_guided_filter(gray, raw, self.radius, self.eps, self.subsample)
        else:
            refined = guided_filter(gray, raw, self.radius, self.eps)
        return np.clip(refined, self.t0, 1.0).astype(np.float32)

    def scattering(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The prior's (transmission, airlight BGR, dark channel) of a uint8 BGR frame, without the inversion."""
        dark = dark_channel(frame, self.patch)
        airlight = estimate_airlight(frame, dark, self.top_fraction)
        return self.transmission(frame, airlight), airlight, dark

    def dehaze(self, frame: np.ndarray) -> DehazeResult:
        """Dehaze one uint8 BGR frame (grayscale, 16-bit and BGRA are converted first)."""
        frame = to_bgr8(frame)
        t, airlight, dark = self.scattering(frame)
        return DehazeResult(image=recover_radiance(frame, t, airlight), depth=depth_from_transmission(t, 1.0),
                            transmission=t, airlight=airlight, haze_density=float(dark.mean()) / 255.0,
                            transmission_floor=self.t0)


def recover_radiance(frame: np.ndarray, transmission: np.ndarray, airlight: np.ndarray) -> np.ndarray:
    """J = (I - A) / t + A on a uint8 BGR frame, channel by channel with OpenCV, saturated to uint8.

    The same inversion as `scattering.invert_scattering`, written for speed; `transmission` must already be
    bounded below (t0). Frames one pixel wide go through numpy: OpenCV reads such arrays as scalars.
    """
    if min(frame.shape[:2]) < 2:
        clear = invert_scattering(frame.astype(np.float32) / 255.0, transmission[:, :, None], airlight, t_min=0.0)
        return np.clip(clear * 255.0 + 0.5, 0, 255).astype(np.uint8)
    inverse_t = 1.0 / transmission
    channels = []
    for channel, light in zip(cv2.split(frame), airlight * 255.0):
        recovered = cv2.subtract(channel, float(light), dtype=cv2.CV_32F)
        channels.append(cv2.add(cv2.multiply(recovered, inverse_t), float(light)))
    merged = cv2.merge(channels)
    return cv2.convertScaleAbs(np.maximum(merged, 0.0, out=merged))
