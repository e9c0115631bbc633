"""The physics path's inversion of a camera frame, J = (I - A) / t + A, on bands of rows in parallel.

`FrameInverter` takes a uint8 BGR frame, its transmission and airlight and returns the dehazed uint8 BGR frame,
with fine detail amplified at most `max_detail_gain` times (`scattering.invert_scattering_detail_limited`, its base
layer from `guided_filter.SelfGuidedSmoother`) or exactly (`max_detail_gain` None). Numpy runs one core per call, so
the frame is cut into one band of rows per worker: each band is converted, smoothed and inverted on its own thread
(numpy and OpenCV release the GIL) with a margin of rows that the base layer's two box filters reach, so that the
result is the same as on the whole frame.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from dgdehaze_core.cpu_threads import default_threads
from dgdehaze_core.io.images import unit_float
from dgdehaze_core.physics.guided_filter import SelfGuidedSmoother
from dgdehaze_core.physics.scattering import invert_scattering, invert_scattering_detail_limited
from dgdehaze_core.physics.work_buffers import WorkBuffers

MIN_BAND_ROWS = 64
"""Bands shorter than this are not worth a thread of their own."""


class FrameInverter:
    """uint8 BGR frame, transmission (HxW, already bounded below) and airlight (RGB, (3,)) in, uint8 BGR out.

    One caller at a time: each band keeps its work buffers from frame to frame, so that its thread allocates no
    frame-sized array after the first frame of a size (`work_buffers`)."""

    def __init__(self, max_detail_gain: float | None, radius: int, eps: float, workers: int | None = None) -> None:
        """radius, eps: the base layer's smoothing (`guided_filter.check_window`); workers: bands in parallel, an
        integer >= 1 (None: `default_threads()`). ValueError for any out of range."""
        if max_detail_gain is not None and not max_detail_gain >= 1.0:
            raise ValueError(f"max_detail_gain must be >= 1 (or None: exact inversion), got {max_detail_gain}")
        self.max_detail_gain = max_detail_gain
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                    or workers < 1):
            raise ValueError(f"workers must be an integer >= 1 (or None: as many as default_threads()), got "
                             f"{workers!r}")
        self.workers = default_threads() if workers is None else int(workers)
        self.margin = 2 * radius
        """Rows beyond a band that its base layer reads: a box filter of `radius` over another's output."""
        self._smoothers = [SelfGuidedSmoother(radius, eps) for _ in range(self.workers)]
        self._buffers = [WorkBuffers() for _ in range(self.workers)]
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="inversion") if self.workers > 1 else None

    def __call__(self, frame: np.ndarray, transmission: np.ndarray, airlight_rgb: np.ndarray) -> np.ndarray:
        height = frame.shape[0]
        airlight_bgr = np.ascontiguousarray(airlight_rgb[::-1])
        image = np.empty(frame.shape, np.uint8)
        bands = max(1, min(self.workers, height // MIN_BAND_ROWS))
        edges = [height * index // bands for index in range(bands + 1)]
        if bands == 1 or self._pool is None:
            self._band(0, frame, transmission, airlight_bgr, 0, height, image)
            return image
        futures = [self._pool.submit(self._band, index, frame, transmission, airlight_bgr, start, stop, image)
                   for index, (start, stop) in enumerate(zip(edges[:-1], edges[1:]))]
        for future in futures:
            future.result()
        return image

    def _band(self, index: int, frame: np.ndarray, transmission: np.ndarray, airlight_bgr: np.ndarray,
              start: int, stop: int, image: np.ndarray) -> None:
        """Rows start:stop into the same rows of `image`, worked in the frame's BGR order (the channels are
        independent until the output), in the band's buffers kept from frame to frame (`work_buffers`)."""
        if self.max_detail_gain is None:
            clear = invert_scattering(unit_float(frame[start:stop]), transmission[start:stop, :, None], airlight_bgr)
            _to_bytes(clear, image[start:stop])
            return
        buffers = self._buffers[index]
        first, last = max(0, start - self.margin), min(frame.shape[0], stop + self.margin)
        shape = (last - first, *frame.shape[1:])
        scaled = unit_float(frame[first:last], buffers("scaled", shape))
        base = self._smoothers[index](scaled, buffers("base", shape))
        kept = slice(start - first, stop - first)
        _to_bytes(invert_scattering_detail_limited(scaled[kept], base[kept], transmission[start:stop], airlight_bgr,
                                                   self.max_detail_gain, buffers=buffers), image[start:stop])


def _to_bytes(image: np.ndarray, out: np.ndarray) -> None:
    """Float in [0, 1] to uint8 in `out` (rounded to nearest as `images.rgb_float_to_bgr` does), in one OpenCV
    pass."""
    cv2.convertScaleAbs(image, dst=out, alpha=255.0)
