"""Visibility and metric depth in fog: `dgdehaze eval --measure visibility`.

Fog of a known visibility V (50, 150 and 400 m; beta = 3.912 / V) is synthesized on each clear frame from its true
depth, along each pixel's ray (t = exp(-beta r), r = Z |ray|, the airlight a neutral grey 0.9), with the sky (above
the topmost LiDAR return) at SKY_DISTANCE so that it is white fog. Each method's transmission then goes through the
node's `VisibilityEstimator` with the camera's known mounting and intrinsics, one frame at a time (no smoothing), with
a ceiling of MAX_VISIBILITY (twice the thinnest fog synthesized, above the node's default), and nothing is scaled
from the ground truth:
- visibility_rel_error: median over the frames of |V_est / V - 1| (a frame without an estimate counts as infinitely
  wrong, so the error is inf when half the frames or more have none); visibility_median: the median estimate (m);
- absrel_metric: mean over the frames of mean |d - d*| / d* over the pixels with ground truth (up to the set's max
  depth) that the method calls valid (a finite metric depth);
- coverage: mean over the frames of the share of ground-truth pixels nearer than V (along the ray) that the method
  calls valid;
- no_fog_share: the share of frames where the method reports no fog (NaN visibility).
With a detector (the eval command's), beta is measured as the node measures it: on the dark undersides of the road
users the detector finds on the method's output, at the distance where each stands on the road
(`physics/dark_objects.py`), and on the road where none does; rows `METHOD+road@...` then measure it on the road
alone. The metric depth is the method's transmission with that beta.
A row `METHOD@clear` runs the clear frames themselves: there no_fog_share should be 1 (a clear day read as fog
thinner than MAX_VISIBILITY counts against it), and the other columns are empty.
Only KITTI has a road and a known mounting (the colour cameras 1.65 m above the road, pitch about 0; intrinsics
from calib_cam_to_cam.txt's P_rect in the raw layout, from each frame's intrinsics/ file in the depth selection,
whose principal point already accounts for the crop); Middlebury's indoor scenes have neither and are refused with
that reason.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from dgdehaze_core.detection.detector import Detection
from dgdehaze_core.evaluation import NotApplicable
from dgdehaze_core.evaluation.depth_datasets import (DepthSample, DepthSet, is_kitti_selection_set, is_kitti_set,
                                                     selection_intrinsics)
from dgdehaze_core.evaluation.depth_eval import AIRLIGHT, dense_depth
from dgdehaze_core.evaluation.methods import Method
from dgdehaze_core.io.folder_walk import linked_rglob
from dgdehaze_core.io.images import ImageError, bgr_to_rgb_float, rgb_float_to_bgr
from dgdehaze_core.physics.dark_objects import measure_objects_beta
from dgdehaze_core.physics.scattering import synthesize_haze
from dgdehaze_core.physics.visibility import (KOSCHMIEDER, Intrinsics, Mounting, VisibilityEstimator, fog_contrast,
                                              ray_norms)

LOG = logging.getLogger(__name__)

VISIBILITIES = {"vis50": 50.0, "vis150": 150.0, "vis400": 400.0}
"""Condition name -> visibility (m) of the synthesized fog."""
MAX_VISIBILITY = 2.0 * max(VISIBILITIES.values())
"""The estimator's ceiling here (m): fog thinner than this reads as no fog. Twice the thinnest synthesized fog, so
that every condition can be read correctly (the node's default, 200 m, lies below 400 m and would turn a right
reading at 400 m into "no fog") and a reading up to twice too high still counts as an estimate."""
KITTI_CAMERA_HEIGHT = 1.65
"""KITTI's colour cameras above the road (m), from the recording platform's description."""
KITTI_PITCH = 0.0
SKY_DISTANCE = 5000.0
"""Distance (m) given to the sky when synthesizing fog: far enough to be the airlight at every visibility here."""
VISIBILITY_COLUMNS = ("visibility_rel_error", "visibility_median", "absrel_metric", "coverage", "no_fog_share",
                      "images")
CLEAR = "clear"
ROAD = "+road"
"""The suffix of a method's rows whose beta comes from the road alone, where the method's own rows (with a detector)
take it from the road users' dark undersides as the node does (`dark_objects`)."""


def kitti_intrinsics(folder: Path, sample_name: str) -> Intrinsics:
    """The rectified intrinsics of the camera of `sample_name` (DRIVE/image_0X/FRAME) from the calib file of its
    date folder: the one above the drive folder under `folder`, or above `folder` where it is that drive."""
    drive, camera, _ = sample_name.split("/")
    drives = ([folder] if folder.name == drive else []) + linked_rglob(folder, drive)
    calib = next((d.parent / "calib_cam_to_cam.txt" for d in drives if d.is_dir()), None)
    if calib is None or not calib.is_file():
        raise ValueError(f"{folder} has no calib_cam_to_cam.txt beside {drive}: the camera's intrinsics are unknown")
    key = f"P_rect_{camera.removeprefix('image_')}:"
    try:
        lines = calib.read_text().splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{calib} is not a KITTI calibration text file") from None
    for line in lines:
        if line.startswith(key):
            try:
                p = [float(v) for v in line.split()[1:]]
                if len(p) != 12:
                    raise ValueError(f"{len(p)} numbers, not the 12 of a 3x4 projection")
                return Intrinsics.from_k([p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]])
            except ValueError as exc:
                raise ValueError(f"{calib}: {key} {exc}") from None
    raise ValueError(f"{calib} has no {key} line for {sample_name}")


def frame_intrinsics(folder: Path, sample_name: str) -> Intrinsics:
    """The rectified intrinsics of frame `sample_name` (DRIVE/image_0X/FRAME) of the KITTI set `folder`: its own
    intrinsics/ file in the depth-selection layout, its camera's P_rect in the raw layout's calib file."""
    if is_kitti_selection_set(folder):
        return selection_intrinsics(folder, sample_name)
    return kitti_intrinsics(folder, sample_name)


def synthesize_fog(sample: DepthSample, dense: np.ndarray, norms: np.ndarray, visibility: float) -> np.ndarray:
    """The clear frame under fog of `visibility` (m), attenuated along each ray."""
    distance = (dense * norms)[:, :, None].astype(np.float32)
    hazy = synthesize_haze(bgr_to_rgb_float(sample.image), distance, KOSCHMIEDER / visibility, np.float32(AIRLIGHT))
    return rgb_float_to_bgr(hazy)


def frame_scores(estimate: np.ndarray, true: np.ndarray, norms: np.ndarray, visibility: float,
                 max_depth: float) -> tuple[float, float]:
    """(AbsRel over the valid estimated pixels with ground truth, coverage of the ground truth nearer than the
    visibility); AbsRel is NaN when the method calls no such pixel valid."""
    known = np.isfinite(true) & (true > 0) & (true <= max_depth)
    called = known & np.isfinite(estimate)
    absrel = float(np.mean(np.abs(estimate[called] - true[called]) / true[called])) if called.any() else math.nan
    near = known & (true * norms < visibility)
    coverage = float(np.mean(np.isfinite(estimate[near]))) if near.any() else math.nan
    return absrel, coverage


def evaluate_visibility(depth_set: DepthSet, folder: Path, methods: Sequence[Method],
                        label: str = "visibility", progress: bool = True,
                        detector: Callable[[np.ndarray], list[Detection]] | None = None) -> dict[str, dict[str, float]]:
    """{"METHOD@visV": {VISIBILITY_COLUMNS}} and "METHOD@clear" for every method that gives a transmission, with beta
    measured as the node measures it: with a `detector` (boxes of a frame), on the dark undersides of the road users
    it finds on the method's output (`dark_objects`), the road's where none stands on the road in view, and then also
    "METHOD+road@...", the road alone; without one, on the road (rows "METHOD@..."). NotApplicable
    for a set without a road (Middlebury) or without such a method. Reads the set's frames one at a time, each when
    it is scored."""
    if not (is_kitti_set(folder) or is_kitti_selection_set(folder)):
        raise NotApplicable(f"{folder.name} has no road and no known camera mounting (an indoor Middlebury set): "
                         "visibility is measured on the road, on KITTI sets only")
    fog_methods = [m for m in methods if m.gives_transmission]
    if not fog_methods:
        raise NotApplicable("none of the methods estimates a transmission (hazy, clear and a depth network do not): "
                            "add dcp or a model")
    mounting = Mounting(KITTI_CAMERA_HEIGHT, KITTI_PITCH)
    boxes_of = {"": detector} if detector is None else {"": detector, ROAD: None}  # row suffix -> road users' boxes
    rows: dict[str, list[tuple[float, float, float]]] = {f"{m.name}{suffix}@{c}": [] for m in fog_methods
                                                         for suffix in boxes_of for c in (CLEAR, *VISIBILITIES)}
    for sample in tqdm(depth_set.samples(), total=len(depth_set.frames), desc=label, unit="image",
                       disable=not progress):
        if not (np.isfinite(sample.depth) & (sample.depth > 0) & (sample.depth <= depth_set.max_depth)).any():
            raise ImageError(f"{sample.name}: no ground-truth depth within {depth_set.max_depth:g} m, so its "
                             "AbsRel and coverage would be left out of the means without a word")
        intrinsics = frame_intrinsics(folder, sample.name)
        norms = ray_norms(sample.depth.shape, intrinsics)
        dense = dense_depth(sample.depth, SKY_DISTANCE, depth_set.sparse)
        for condition, visibility in {CLEAR: math.inf, **VISIBILITIES}.items():
            hazy = sample.image if condition == CLEAR else synthesize_fog(sample, dense, norms, visibility)
            contrast = fog_contrast(hazy)
            for method in fog_methods:
                result = method.dehaze(hazy)
                for suffix, boxes in boxes_of.items():
                    objects = (measure_objects_beta(hazy, boxes(result.image), intrinsics, mounting)
                               if boxes is not None else None)
                    reading = VisibilityEstimator(mounting, time_constant=0.0, max_visibility=MAX_VISIBILITY).update(
                        result.transmission, intrinsics, 0.0, contrast, result.transmission_floor, objects)
                    absrel, coverage = frame_scores(reading.depth, sample.depth, norms, visibility,
                                                    depth_set.max_depth)
                    LOG.debug("%s %s %s%s: visibility %.1f m (%s, %s), AbsRel %.3f, coverage %.3f", sample.name,
                              condition, method.name, suffix, reading.visibility, reading.reason or "measured",
                              reading.measurement.source, absrel, coverage)
                    rows[f"{method.name}{suffix}@{condition}"].append((reading.visibility, absrel, coverage))
    return {key: condition_row(values, VISIBILITIES.get(key.rsplit("@", 1)[1], math.inf))
            for key, values in rows.items()}


def condition_row(values: list[tuple[float, float, float]], visibility: float) -> dict[str, float]:
    """The row of one condition from its frames' (visibility estimate, AbsRel, coverage); `visibility` inf: the
    clear frames, which have only a median and a share. NaN where a figure has nothing to measure; the error is inf
    where half the frames or more have no estimate."""
    estimates = np.array([v[0] for v in values])
    measured = estimates[np.isfinite(estimates)]
    row = {name: math.nan for name in VISIBILITY_COLUMNS}
    row.update(visibility_median=float(np.median(measured)) if measured.size else math.nan,
               no_fog_share=float(np.mean(np.isnan(estimates))), images=len(values))
    if math.isfinite(visibility):
        error = float(np.median(np.where(np.isfinite(estimates), np.abs(estimates / visibility - 1.0), np.inf)))
        absrels = [v[1] for v in values if math.isfinite(v[1])]
        row.update(visibility_rel_error=error,
                   absrel_metric=float(np.mean(absrels)) if absrels else math.nan,
                   coverage=float(np.nanmean([v[2] for v in values])))
    return row
