"""Depth accuracy of a method's depth output against metric ground truth, on clear images and synthesized haze.

The methods predict relative depth, so each prediction is scaled by median(true) / median(predicted) over the valid
pixels (per image, Monodepth-style), clipped to [MIN_DEPTH, the set's max depth], and scored where the ground truth
is valid:
- AbsRel = mean(|d - d*| / d*);  RMSE(log) = sqrt(mean((ln d - ln d*)^2));
- delta<1.25 = share of max(d/d*, d*/d) < 1.25.
Figures are means over the images.

A depth that guides a robot in fog must not move an object because the fog thickened: `change_vs_clear` is, per
haze density, mean(|h - c| / d*) over the measured pixels, with h and c the method's depth of the hazy and of the
clear frame, each median-scaled to the ground truth d*: how far the haze moved the depth, as a share of the true
distance. 0 means the haze changed nothing; it is not defined for the clear row.

Haze is synthesized from the true depth with the scattering model, I = J t + A (1 - t), t = exp(-beta d), at three
densities. beta is solved per image so that the mean transmission over the image is 0.70 (light), 0.45 (medium)
or 0.25 (dense): a fixed beta would mean very different haze on KITTI (5-80 m) and Middlebury (3-30 m). The airlight
is a neutral grey A = 0.9. Synthesis needs depth at every pixel: the unknown pixels of the ground truth are filled
with the nearest known depth, and for sparse LiDAR everything above the topmost return of each column (sky, tree
tops; a column without any return takes its nearest column's) is set to the set's max depth. Scores are only ever
computed on the measured pixels.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import brentq
from tqdm import tqdm

from dgdehaze_core.evaluation import NotApplicable
from dgdehaze_core.evaluation.depth_datasets import MIN_DEPTH, DepthSet
from dgdehaze_core.evaluation.methods import Method
from dgdehaze_core.io.images import ImageError, bgr_to_rgb_float, rgb_float_to_bgr
from dgdehaze_core.physics.scattering import synthesize_haze, transmission_from_depth

LOG = logging.getLogger(__name__)

HAZE_LEVELS = {"t0.70": 0.70, "t0.45": 0.45, "t0.25": 0.25}
"""Condition name -> mean transmission of the synthesized haze."""
CONDITIONS = ("clear", *HAZE_LEVELS)
AIRLIGHT = 0.9
CONSTANT_ROW = "constant"
"""The reference row of a depth that knows nothing: one constant value, median-scaled like the others."""


def depth_errors(predicted: np.ndarray, true: np.ndarray, max_depth: float,
                 min_depth: float = MIN_DEPTH) -> dict[str, float]:
    """AbsRel, RMSE(log) and delta<1.25 of `predicted` (relative depth) after median scaling to `true` (metres).

    Both are HxW; ground truth is valid where finite and within [min_depth, max_depth]. Predicted pixels that are
    not finite are left out; predictions <= 0 count as the smallest depth.
    """
    if predicted.shape != true.shape:
        raise ValueError(f"predicted depth is {predicted.shape} but the ground truth is {true.shape}")
    valid = np.isfinite(true) & (true >= min_depth) & (true <= max_depth) & np.isfinite(predicted)
    if not valid.any():
        raise ValueError("no pixel has both a valid ground-truth depth and a finite prediction")
    gt = true[valid].astype(np.float64)
    pred = _median_scaled(predicted[valid], gt, min_depth, max_depth)
    ratio = np.maximum(pred / gt, gt / pred)
    return {"absrel": float(np.mean(np.abs(pred - gt) / gt)),
            "rmse_log": float(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2))),
            "delta1": float(np.mean(ratio < 1.25))}


def _median_scaled(predicted: np.ndarray, true: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Relative depths scaled by median(true) / median(predicted) (predictions <= 0 count as the smallest depth),
    clipped to [min_depth, max_depth]."""
    pred = np.maximum(predicted.astype(np.float64), 1e-9)
    return np.clip(pred * (np.median(true) / np.median(pred)), min_depth, max_depth)


def change_between(hazy: np.ndarray, clear: np.ndarray, true: np.ndarray, max_depth: float,
                   min_depth: float = MIN_DEPTH) -> float:
    """mean |h - c| / d* over the measured pixels, with `hazy` and `clear` (relative depths of the same frame)
    each median-scaled to `true` (d*): how far haze moved the method's depth, relative to the true distance."""
    valid = (np.isfinite(true) & (true >= min_depth) & (true <= max_depth) & np.isfinite(hazy)
             & np.isfinite(clear))
    if not valid.any():
        raise ValueError("no pixel has a valid ground-truth depth and both predictions finite")
    gt = true[valid].astype(np.float64)
    scaled = [_median_scaled(d[valid], gt, min_depth, max_depth) for d in (hazy, clear)]
    return float(np.mean(np.abs(scaled[0] - scaled[1]) / gt))


def dense_depth(true: np.ndarray, max_depth: float, sparse: bool) -> np.ndarray:
    """Ground truth filled for haze synthesis: nearest known depth; above sparse LiDAR's top return (`_top_returns`),
    max depth."""
    known = np.isfinite(true)
    if not known.any():
        raise ValueError("the ground-truth depth holds no valid value to synthesize haze from")
    _, (rows, cols) = ndimage.distance_transform_edt(~known, return_indices=True)
    filled = np.clip(true[rows, cols], MIN_DEPTH, max_depth)
    if sparse:
        filled[np.arange(true.shape[0])[:, None] < _top_returns(known)[None, :]] = max_depth
    return filled.astype(np.float32)


def _top_returns(known: np.ndarray) -> np.ndarray:
    """The row of each column's topmost return; a column without any (a gap in the projected scan) takes that
    of its nearest column with returns, so that the road below the gap is not made sky."""
    has_return = known.any(axis=0)
    _, (nearest,) = ndimage.distance_transform_edt(~has_return, return_indices=True)
    return known.argmax(axis=0)[nearest]


def beta_for_transmission(depth: np.ndarray, mean_transmission: float) -> float:
    """The beta at which mean(exp(-beta * depth)) equals `mean_transmission` (0 < it < 1)."""
    if not 0.0 < mean_transmission < 1.0:
        raise ValueError(f"mean transmission must lie in (0, 1), got {mean_transmission}")
    flat = depth[np.isfinite(depth)].astype(np.float64)
    if flat.size == 0 or flat.max() <= 0:
        raise ValueError("depth must hold positive values to synthesize haze")
    upper = 1.0
    while np.mean(np.exp(-upper * flat)) > mean_transmission:
        upper *= 2.0
    return float(brentq(lambda beta: np.mean(np.exp(-beta * flat)) - mean_transmission, 0.0, upper, xtol=1e-9))


def synthesize(image: np.ndarray, depth: np.ndarray, beta: float, airlight: float = AIRLIGHT) -> np.ndarray:
    """A uint8 BGR hazy frame from a clear uint8 BGR frame and dense depth."""
    hazy = synthesize_haze(bgr_to_rgb_float(image), depth[:, :, None], beta, np.float32(airlight))
    return rgb_float_to_bgr(hazy)


def evaluate_depth(depth_set: DepthSet, methods: Sequence[Method],
                   label: str = "depth", progress: bool = True) -> dict[str, dict[str, float]]:
    """{"METHOD@CONDITION": {absrel, rmse_log, delta1, change_vs_clear, images, mean_beta}} for every method that
    predicts depth, and a "constant" row: what a depth without any information scores (the floor to beat);
    NotApplicable when no method predicts depth; ImageError naming a frame without ground truth in the set's range,
    ValueError naming the frame and the method whose depth has no finite value where the ground truth is measured.
    Reads the set's frames one at a time, each when it is scored."""
    depth_methods = [m for m in methods if m.gives_depth]
    if not depth_methods:
        raise NotApplicable("none of the methods predicts depth (hazy and clear do not): add dcp or a model")
    scores: dict[str, list[dict[str, float]]] = {f"{m.name}@{c}": [] for m in depth_methods for c in CONDITIONS}
    scores[CONSTANT_ROW] = []
    betas: dict[str, list[float]] = {condition: [] for condition in HAZE_LEVELS}
    for sample in tqdm(depth_set.samples(), total=len(depth_set.frames), desc=label, unit="image",
                       disable=not progress):
        if not depth_set.measures(sample):
            raise ImageError(f"{sample.name}: no ground-truth depth within {depth_set.max_depth:g} m to score against")
        inputs = {"clear": sample.image}
        filled = dense_depth(sample.depth, depth_set.max_depth, depth_set.sparse)
        for condition, transmission in HAZE_LEVELS.items():
            beta = beta_for_transmission(filled, transmission)
            betas[condition].append(beta)
            inputs[condition] = synthesize(sample.image, filled, beta)
            LOG.debug("%s %s: beta %.4f, mean t %.3f", sample.name, condition, beta,
                      float(transmission_from_depth(filled, beta).mean()))
        scores[CONSTANT_ROW].append(depth_errors(np.ones_like(sample.depth), sample.depth, depth_set.max_depth))
        for method in depth_methods:
            clear_depth = method.dehaze(inputs["clear"]).depth
            for condition, frame in inputs.items():
                predicted = clear_depth if condition == "clear" else method.dehaze(frame).depth
                try:
                    row = depth_errors(predicted, sample.depth, depth_set.max_depth)
                    row["change_vs_clear"] = (float("nan") if condition == "clear" else change_between(
                        predicted, clear_depth, sample.depth, depth_set.max_depth))
                except ValueError as exc:  # a method's depth of another size, or with no finite value where measured
                    raise ValueError(f"{sample.name} ({condition}) through {method.name}: {exc}") from None
                scores[f"{method.name}@{condition}"].append(row)
    table: dict[str, dict[str, float]] = {}
    for key, rows in scores.items():
        condition = key.rsplit("@", 1)[-1]
        table[key] = {name: float(np.mean([row.get(name, np.nan) for row in rows]))
                      for name in ("absrel", "rmse_log", "delta1", "change_vs_clear")}
        table[key]["images"] = len(rows)
        table[key]["mean_beta"] = float(np.mean(betas[condition])) if condition in betas else float("nan")
    return table
