"""Scattering accuracy on a paired set: each method's airlight A and transmission t against the pair's own A and t.

A hazy/clear pair fixes the scattering model I = J t + A (1 - t) up to the airlight: for a gray airlight a, each
pixel's 1 - t is the least-squares ratio of (I - J) to (a - J) over the colour channels, and a is the value on a
grid that leaves the smallest residual. On synthesized sets (SOTS) this recovers the A and t the set was made with;
on real haze (O-HAZE) the residual says how far the model holds. Pixels whose clear colour is too close to the
airlight to tell t (|a - J| < MIN_CONTRAST) are left out. The fit explains what a quality figure does not: whether
a method's error comes from its airlight or from its transmission, and whether it over- or under-estimates haze.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm import tqdm

from dgdehaze_core.datasets.paired_sets import Pair, load_pair
from dgdehaze_core.evaluation import NotApplicable
from dgdehaze_core.evaluation.methods import Method
from dgdehaze_core.io.images import ImageError, ReadImage, read_image

AIRLIGHT_GRID = np.round(np.arange(0.30, 1.0001, 0.01), 2)
MIN_CONTRAST = 0.1
SCATTERING_COLUMNS = ("airlight_error", "t_mae", "t_bias", "fit_rmse", "pairs")


@dataclass(frozen=True)
class ScatteringFit:
    """The scattering model of one pair: gray airlight, per-pixel transmission (NaN where undetermined) and the
    RMS residual of I - (J t + A (1 - t)) in [0, 1] units."""

    airlight: float
    transmission: np.ndarray
    rmse: float


def fit_scattering(hazy: np.ndarray, clear: np.ndarray) -> ScatteringFit:
    """Fit A (gray, on AIRLIGHT_GRID) and per-pixel t to a uint8 BGR hazy/clear pair of the same size."""
    if hazy.shape != clear.shape or hazy.ndim != 3 or hazy.shape[2] != 3:
        raise ImageError(f"a scattering fit needs two BGR images of one size, got {hazy.shape} and {clear.shape}")
    observed = hazy.astype(np.float32) / 255.0
    truth = clear.astype(np.float32) / 255.0
    lifted = observed - truth
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    for airlight in AIRLIGHT_GRID:
        span = np.float32(airlight) - truth
        energy = np.einsum("hwc,hwc->hw", span, span)
        haze = np.clip(np.einsum("hwc,hwc->hw", lifted, span) / np.maximum(energy, 1e-6), 0.0, 1.0)
        error = float(np.mean((lifted - span * haze[:, :, None]) ** 2))
        if best is None or error < best[0]:
            best = (error, float(airlight), haze, energy)
    assert best is not None
    error, airlight, haze, energy = best
    transmission = np.where(energy >= MIN_CONTRAST ** 2, 1.0 - haze, np.nan).astype(np.float32)
    return ScatteringFit(airlight=airlight, transmission=transmission, rmse=float(np.sqrt(error)))


def scattering_errors(transmission: np.ndarray, airlight: np.ndarray, fit: ScatteringFit) -> dict[str, float]:
    """A method's |A - A_fit| (mean over channels), mean |t - t_fit| and mean t - t_fit (positive: the method
    sees less haze than there is) over the pixels where the fit determines t."""
    if transmission.shape != fit.transmission.shape:
        raise ImageError(f"transmission {transmission.shape} does not match the pair {fit.transmission.shape}")
    valid = np.isfinite(fit.transmission)
    if not valid.any():
        raise ValueError("the pair determines no transmission (its clear image matches the airlight everywhere)")
    difference = transmission[valid].astype(np.float64) - fit.transmission[valid]
    return {"airlight_error": float(np.mean(np.abs(np.asarray(airlight, np.float64) - fit.airlight))),
            "t_mae": float(np.mean(np.abs(difference))), "t_bias": float(np.mean(difference))}


def scattering_methods(methods: Sequence[Method]) -> list[Method]:
    """The methods that estimate A and t (`Method.gives_transmission`): not the references (`hazy`, `clear`), nor a
    depth network, whose t = 1 and A = 1 would be scored as an estimate."""
    return [method for method in methods if method.gives_transmission]


def evaluate_scattering(pairs: Sequence[Pair], methods: Sequence[Method],
                        label: str = "scattering", read: ReadImage = read_image,
                        progress: bool = True) -> dict[str, dict[str, float]]:
    """{method: {airlight_error, t_mae, t_bias, fit_rmse, pairs}} as means over `pairs`, each read with `read`
    (fit_rmse: the fit's own);
    NotApplicable when no method estimates A and t."""
    if not pairs:
        raise ValueError("scattering needs at least one hazy/clear pair")
    if not methods:
        raise NotApplicable("scattering needs a method that estimates A and t (not only hazy or clear)")
    scores: dict[str, dict[str, list[float]]] = {m.name: {} for m in methods}
    residuals = []
    for pair in tqdm(pairs, desc=label, unit="pair", disable=not progress):
        hazy, clear = load_pair(pair, read)
        fit = fit_scattering(hazy, clear)
        residuals.append(fit.rmse)
        for method in methods:
            result = method.dehaze(hazy)
            for key, value in scattering_errors(result.transmission, result.airlight, fit).items():
                scores[method.name].setdefault(key, []).append(value)
    return {name: {**{key: float(np.mean(values)) for key, values in row.items()},
                   "fit_rmse": float(np.mean(residuals)), "pairs": len(pairs)}
            for name, row in scores.items()}
