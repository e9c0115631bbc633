"""No-reference haze density of real hazy photos before and after dehazing: FADE and the dark-channel density.

- FADE (Choi, You and Bovik, TIP 2015), the Fog Aware Density Evaluator: a perceptual fog density from natural-scene
  statistics against models of fog-free and foggy images; lower is clearer (about 0.3-0.5 for clear photos, above
  1 for visible fog). Computed by the `fade-python` package (import name `pyfade`), which reproduces the authors'
  MATLAB release; where it is not installed or fails, the FADE column reads n/a and the reason is logged.
- Dark-channel density (`dark_channel.haze_density`): the mean dark channel in [0, 1]; lower is clearer. Cheap, but
  it rewards any darkening, so read it beside FADE.
- Noise (`noise_sigma`): the standard deviation of the image's noise in 8-bit levels, Donoho's robust estimate from
  the finest wavelet coefficients (`skimage.restoration.estimate_sigma`, averaged over the colour channels).
  Dehazing divides by the transmission, so where fog is dense it amplifies the sensor's and the JPEG's noise with
  the scene; `noise_ratio` is the mean over the photos of each output's noise over its input's (1: no amplification).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from dgdehaze_core.evaluation.methods import Method
from dgdehaze_core.io.images import ImageError, read_image, to_bgr8
from dgdehaze_core.physics.dark_channel import haze_density

LOG = logging.getLogger(__name__)

NOISE_FLOOR = 0.1
"""Input noise below this (8-bit levels: a synthetic, noiseless image) is taken as this in `noise_ratio`."""
HAZE_COLUMNS = ("fade", "dark_channel", "noise_sigma", "noise_ratio", "images")


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
    """FADE of a uint8 BGR frame (lower is clearer); RuntimeError when fade-python cannot run here."""
    reason = fade_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"FADE unavailable: {reason}")
    from pyfade import fade

    return float(fade(np.ascontiguousarray(to_bgr8(image)[:, :, ::-1])))


def haze_methods(methods: Sequence[Method]) -> list[Method]:
    """The methods the no-reference measure applies to: all but the clear-image references (real hazy photos have
    no clear image)."""
    return [method for method in methods if not method.spec.reads_clear]


def noise_sigma(image: np.ndarray) -> float:
    """Noise standard deviation of a uint8 frame in 8-bit levels (wavelet MAD estimate, mean over channels)."""
    from skimage.restoration import estimate_sigma

    frame = to_bgr8(image).astype(np.float32) / 255.0
    return float(estimate_sigma(frame, channel_axis=-1, average_sigmas=True)) * 255.0


def evaluate_haze(images: Sequence[Path], methods: Sequence[Method],
                  label: str = "haze") -> dict[str, dict[str, float]]:
    """{method name: {fade, dark_channel, noise_sigma, noise_ratio, images}} as means over the hazy photos."""
    if not images:
        raise ImageError("no hazy images to measure")
    reason = fade_unavailable_reason()
    if reason is not None:
        LOG.warning("FADE column left empty: %s", reason)
    scores: dict[str, dict[str, list[float]]] = {m.name: {"fade": [], "dark_channel": [], "noise_sigma": [],
                                                         "noise_ratio": []} for m in methods}
    for path in tqdm(images, desc=label, unit="image"):
        hazy = read_image(path)
        input_noise = max(noise_sigma(hazy), NOISE_FLOOR)
        for method in methods:
            output = method.dehaze(hazy).image
            row = scores[method.name]
            row["dark_channel"].append(haze_density(output))
            row["noise_sigma"].append(noise_sigma(output))
            row["noise_ratio"].append(row["noise_sigma"][-1] / input_noise)
            if reason is None:
                row["fade"].append(fade_density(output))
    return {name: {"fade": float(np.mean(row["fade"])) if row["fade"] else float("nan"),
                   **{key: float(np.mean(row[key])) for key in ("dark_channel", "noise_sigma", "noise_ratio")},
                   "images": len(images)}
            for name, row in scores.items()}
