"""No-reference haze density of real hazy photos before and after dehazing: FADE and the dark-channel density.

- FADE (Choi, You and Bovik, TIP 2015), the Fog Aware Density Evaluator: a perceptual fog density from natural-scene
  statistics against models of fog-free and foggy images; lower is clearer (about 0.3-0.5 for clear photos, above
  1 for visible fog). Computed by the `fade-python` package (import name `pyfade`), which reproduces the authors'
  MATLAB release; where it is not installed or fails, the FADE column reads n/a and the reason is logged.
- Dark-channel density (`dark_channel.haze_density`): the mean dark channel in [0, 1]; lower is clearer. Cheap, but
  it rewards any darkening, so read it beside FADE.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from dgdehaze_core.dark_channel import haze_density
from dgdehaze_core.evaluation.methods import Method
from dgdehaze_core.image_io import ImageError, read_image, to_bgr8

LOG = logging.getLogger(__name__)

HAZE_COLUMNS = ("fade", "dark_channel", "images")


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


def evaluate_haze(images: Sequence[Path], methods: Sequence[Method],
                  label: str = "haze") -> dict[str, dict[str, float]]:
    """{method name: {fade, dark_channel, images}} as means over the hazy photos `images`."""
    if not images:
        raise ImageError("no hazy images to measure")
    reason = fade_unavailable_reason()
    if reason is not None:
        LOG.warning("FADE column left empty: %s", reason)
    scores: dict[str, dict[str, list[float]]] = {m.name: {"fade": [], "dark_channel": []} for m in methods}
    for path in tqdm(images, desc=label, unit="image"):
        hazy = read_image(path)
        for method in methods:
            output = method.dehaze(hazy).image
            scores[method.name]["dark_channel"].append(haze_density(output))
            if reason is None:
                scores[method.name]["fade"].append(fade_density(output))
    return {name: {"fade": float(np.mean(row["fade"])) if row["fade"] else float("nan"),
                   "dark_channel": float(np.mean(row["dark_channel"])), "images": len(images)}
            for name, row in scores.items()}
