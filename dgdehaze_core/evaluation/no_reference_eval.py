"""No-reference haze density of real hazy photos before and after dehazing: FADE and the dark-channel density.

- FADE (Choi, You and Bovik, TIP 2015), the Fog Aware Density Evaluator: a perceptual fog density from natural-scene
  statistics against models of fog-free and foggy images; lower is clearer (about 0.3-0.5 for clear photos, above
  1 for visible fog). Computed by the `fade-python` package (import name `pyfade`), which reproduces the authors'
  MATLAB release; where it is not installed or fails, the FADE column reads n/a and the reason is logged.
- Dark-channel density (`dark_channel.haze_density`): the mean dark channel in [0, 1]; lower is clearer. Cheap, but
  it rewards any darkening, so read it beside FADE.
- Noise (`noise_sigma`): the standard deviation of the image's noise in 8-bit levels, Donoho's robust estimate from
  the finest wavelet coefficients (as `skimage.restoration.estimate_sigma` makes it, averaged over the colour
  channels; flat regions at any grey level are left out, see `noise_sigma`).
  Dehazing divides by the transmission, so where fog is dense it amplifies the sensor's and the JPEG's noise with
  the scene; `noise_ratio` is the mean over the photos of each output's noise over its input's (1: no amplification).
A figure that is not finite for one photo (FADE and the noise of a flat, smooth or black image, FADE of an image
under 8x8 pixels) is left out of that column's mean with a warning naming the photo; `skipped` counts the photos
left out of any column, so that one such photo does not blank a column.
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from dgdehaze_core.evaluation.methods import Method
from dgdehaze_core.io.images import ImageError, ReadImage, read_image, to_bgr8
from dgdehaze_core.physics.dark_channel import haze_density

LOG = logging.getLogger(__name__)

NOISE_FLOOR = 0.1
"""Noise below this (8-bit levels: all but noiseless, as a synthetic image with a few fine details) is taken as this
in `noise_ratio`, on both sides: a near-noiseless output of a near-noiseless input amplified nothing (1, not 0)."""
NO_DETAIL = 1e-6
"""A finest wavelet coefficient at or below this (8-bit levels) is round-off of zero: no detail to measure."""
MAD_TO_SIGMA = 0.6744897501960817
"""The median absolute deviation of a unit normal distribution (its 75th percentile)."""
FADE_MIN_SIDE = 8
"""fade-python's smallest image side (pixels)."""
FIGURES = ("fade", "dark_channel", "noise_sigma", "noise_ratio")


@functools.lru_cache(maxsize=1)
def fade_unavailable_reason() -> str | None:
    """None when FADE works here, else why not (checked once by scoring a small test image)."""
    try:
        from pyfade import fade
    except ImportError as exc:
        return f"the fade-python package is not installed ({exc}); pip install fade-python"
    try:
        probe = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        score = float(fade(probe))
    except Exception as exc:  # a third-party numerical package: any failure means "not usable here"
        return f"fade-python is installed but failed on a test image: {exc}"
    if not np.isfinite(score):
        return f"fade-python returned {score} on a test image"
    return None


def fade_density(image: np.ndarray) -> float:
    """FADE of a uint8 BGR frame (lower is clearer; NaN for a flat or black frame); RuntimeError when fade-python
    cannot run here, ImageError for a frame under FADE_MIN_SIDE pixels on a side."""
    reason = fade_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"FADE unavailable: {reason}")
    height, width = image.shape[:2]
    if min(height, width) < FADE_MIN_SIDE:
        raise ImageError(f"FADE needs at least {FADE_MIN_SIDE}x{FADE_MIN_SIDE} pixels, got {width}x{height}")
    from pyfade import fade

    return float(fade(np.ascontiguousarray(to_bgr8(image)[:, :, ::-1])))


def haze_methods(methods: Sequence[Method]) -> list[Method]:
    """The methods the no-reference measure applies to: all but the clear-image references (real hazy photos have
    no clear image)."""
    return [method for method in methods if not method.spec.reads_clear]


def noise_sigma(image: np.ndarray) -> float:
    """Noise standard deviation of a uint8 frame in 8-bit levels: Donoho's robust estimate (the median absolute
    finest diagonal db2 wavelet coefficient over 0.6745, as `skimage.restoration.estimate_sigma` makes it), the mean
    over the channels; NaN for a flat or black frame (no wavelet detail to estimate it from).

    Coefficients under NO_DETAIL are left out as skimage leaves out exact zeros: a flat (or linear) region has
    none but round-off, and in a flat region at any level but 0 round-off is not exactly zero; counted, a bright
    flat sky pulled the median, and the estimate, towards zero."""
    import pywt

    frame = to_bgr8(image).astype(np.float64)
    sigmas = []
    for channel in np.moveaxis(frame, -1, 0):
        detail = np.abs(pywt.dwtn(channel, "db2")["dd"])
        detail = detail[detail > NO_DETAIL]
        sigmas.append(float(np.median(detail)) / MAD_TO_SIGMA if detail.size else math.nan)
    return float(np.mean(sigmas))


def output_figures(output: np.ndarray, input_noise: float, with_fade: bool) -> dict[str, float]:
    """FIGURES of one output (FADE only `with_fade`), `input_noise` being its input's `noise_sigma`; NaN where a
    figure is undefined: FADE and the noise of a flat or black frame, FADE of a frame under FADE_MIN_SIDE pixels on
    a side, the noise ratio of a black input."""
    sigma = noise_sigma(output)
    figures = {"dark_channel": haze_density(output), "noise_sigma": sigma,
               "noise_ratio": (max(sigma, NOISE_FLOOR) / max(input_noise, NOISE_FLOOR) if math.isfinite(input_noise)
                               else math.nan)}
    if with_fade:
        figures["fade"] = fade_density(output) if min(output.shape[:2]) >= FADE_MIN_SIDE else math.nan
    return figures


def evaluate_haze(images: Sequence[Path], methods: Sequence[Method],
                  label: str = "haze", read: ReadImage = read_image,
                  progress: bool = True) -> dict[str, dict[str, float]]:
    """{method name: {fade, dark_channel, noise_sigma, noise_ratio, images, skipped}}: each figure the mean over the
    photos where it is finite (NaN where none is; FADE NaN throughout when fade-python cannot run here), `images`
    the photos measured and `skipped` how many of them were left out of at least one figure's mean (each with a
    warning naming it). Each photo is read with `read`."""
    if not images:
        raise ImageError("no hazy images to measure")
    reason = fade_unavailable_reason()
    if reason is not None:
        LOG.warning("FADE column left empty: %s", reason)
    scores: dict[str, dict[str, list[float]]] = {m.name: {name: [] for name in FIGURES} for m in methods}
    skipped = {m.name: 0 for m in methods}
    for path in tqdm(images, desc=label, unit="image", disable=not progress):
        hazy = read(path)
        input_noise = noise_sigma(hazy)
        for method in methods:
            figures = output_figures(method.dehaze(hazy).image, input_noise, reason is None)
            undefined = [name for name, value in figures.items() if not math.isfinite(value)]
            if undefined:
                LOG.warning("%s through %s: %s not finite (a flat, smooth or black image, or FADE under %dx%d "
                            "pixels): left out of those means", path, method.name, ", ".join(undefined), FADE_MIN_SIDE,
                            FADE_MIN_SIDE)
                skipped[method.name] += 1
            for name, value in figures.items():
                if math.isfinite(value):
                    scores[method.name][name].append(value)
    return {name: {**{figure: float(np.mean(values)) if values else math.nan for figure, values in row.items()},
                   "images": len(images), "skipped": skipped[name]}
            for name, row in scores.items()}
