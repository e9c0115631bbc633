"""The atmospheric scattering model (Koschmieder): I = J * t + A * (1 - t), t = exp(-beta * d).

I is the hazy image, J the clear scene radiance, A the airlight (global atmospheric light), t the transmission,
beta the scattering coefficient and d the depth. Every function works on numpy arrays and on torch tensors alike;
the caller shapes the airlight so that it broadcasts against the image ((3,) for HxWx3, (B, 3, 1, 1) for BCHW).
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from dgdehaze_core.physics.work_buffers import WorkBuffers, fresh

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
    if xp is np and _is_interleaved_frame(hazy, t, airlight):
        return _invert_interleaved(hazy, t, airlight)
    return xp.clip((hazy - airlight) / t + airlight, 0.0, 1.0)


def invert_scattering_detail_limited(hazy: np.ndarray, base: np.ndarray, transmission: np.ndarray,
                                     airlight: np.ndarray, max_detail_gain: float, t_min: float = T_MIN,
                                     buffers: WorkBuffers | None = None) -> np.ndarray:
    """The inversion with noise kept in check: J = (B - A) / t + A + (I - B) * min(1 / t, max_detail_gain).

    `base` B is `hazy` I smoothed with its edges kept (HxWxC like I; `transmission` HxWx1 or HxW; `airlight` one
    value per channel, or one for all; the result has the images' dtype). The inversion is linear, so splitting I
    into B and the fine detail I - B changes nothing where 1 / t <= `max_detail_gain`; where fog is denser, the
    scene's base layer is still recovered in full while its fine detail, and the sensor and JPEG noise riding on
    it, is amplified `max_detail_gain` times instead of 1 / t. Clipped to [0, 1]. `buffers`: where its work arrays
    and the result are kept from call to call (the result is then overwritten by the next call); None: new ones.
    """
    if not max_detail_gain >= 1.0:
        raise ValueError(f"max_detail_gain must be >= 1 (1: detail not amplified), got {max_detail_gain}")
    take = fresh if buffers is None else buffers
    height, width, channels = hazy.shape
    dtype = np.result_type(hazy, base, transmission)
    rows = (height, width * channels)
    inverse = np.clip(transmission.reshape(height, width), t_min, 1.0, out=take("inverse", (height, width), dtype))
    np.divide(1.0, inverse, out=inverse)
    gain = np.minimum(inverse, dtype.type(max_detail_gain), out=take("gain", (height, width), dtype))
    airlight_row = _channel_row(airlight, width, channels, dtype)
    base_rows = base.reshape(rows)
    clear = np.subtract(base_rows, airlight_row, dtype=dtype, out=take("clear", rows, dtype))
    clear *= _interleaved(inverse, channels, take("spread", rows, dtype))
    clear += airlight_row
    detail = np.subtract(hazy.reshape(rows), base_rows, dtype=dtype, out=take("detail", rows, dtype))
    detail *= _interleaved(gain, channels, take("spread", rows, dtype))
    clear += detail
    return np.clip(clear, 0.0, 1.0, out=clear).reshape(height, width, channels)


def _channel_row(values: Any, width: int, channels: int, dtype: np.dtype) -> np.ndarray:
    """Per-channel values (or one for every channel; an array, list or number) repeated along a row of `width`
    interleaved pixels (W*C values)."""
    return np.tile(np.broadcast_to(np.asarray(values, dtype=dtype).reshape(-1), (channels,)), width)


def _interleaved(plane: np.ndarray, channels: int, out: np.ndarray | None = None) -> np.ndarray:
    """An HxW map repeated for each channel as H rows of W*C values (written into `out`, H x W*C of the map's
    dtype, when given): numpy broadcasts a length-C axis one pixel at a time, which is several times slower than
    whole rows."""
    height, width = plane.shape
    planes = [np.ascontiguousarray(plane)] * channels
    if out is None:
        return cv2.merge(planes).reshape(height, width * channels)
    cv2.merge(planes, dst=out.reshape(height, width, channels))
    return out


def _is_interleaved_frame(hazy: Any, t: Any, airlight: Any) -> bool:
    """An HxWxC numpy frame with one transmission per pixel and one airlight per channel (a camera frame)."""
    return (isinstance(hazy, np.ndarray) and hazy.ndim == 3 and isinstance(t, np.ndarray)
            and t.shape[:2] == hazy.shape[:2] and t.size == hazy.shape[0] * hazy.shape[1]
            and np.size(airlight) == hazy.shape[2])


def _invert_interleaved(hazy: np.ndarray, t: np.ndarray, airlight: Any) -> np.ndarray:
    """The inversion on rows of W*C values in one buffer (`_interleaved`)."""
    height, width, channels = hazy.shape
    dtype = np.result_type(hazy, t)
    airlight_row = _channel_row(airlight, width, channels, dtype)
    clear = np.subtract(hazy.reshape(height, width * channels), airlight_row, dtype=dtype)
    clear /= _interleaved(t.reshape(height, width).astype(dtype, copy=False), channels)
    clear += airlight_row
    return np.clip(clear, 0.0, 1.0, out=clear).reshape(height, width, channels)
