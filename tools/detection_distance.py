"""How far each detection is: candidate rules for a box's z (metres along the optical axis) against KITTI's LiDAR.

The shipped detector runs on each clear KITTI frame (boxes of confidence >= --min-score, every class). Each box's
true z comes from the frame's own sparse LiDAR returns (`true_z`): those inside the box's middle 60 % of columns
(TRUTH_COLUMNS: a box's sides are where a neighbour in the queue intrudes), less those within GROUND_CLEARANCE of
the flat road 1.65 m below the camera (road, not object) and those inside another detection's box that stands in
front (its bottom edge IN_FRONT pixels lower: on a road the lower contact is the nearer), are sorted by z and split
where z jumps by more than max(1.5 m, 10 %): separate surfaces. The true z is the median of the surface with the
most returns (`--truth largest`: what fills the box is the object, not the background seen past it or through its
windows, nor a car in front covering part of it) or, as a check on that definition, of the nearest surface holding
a fifth of them (`--truth nearest`). A box with fewer than MIN_TRUE_RETURNS such returns has no truth.

Each rule reads one depth map per frame, and its relative error is |z - true z| / true z:
- `lidar`: the LiDAR densified (nearest return, NaN above the topmost return), the depth the node would publish
  with perfect geometry;
- `fogV` (--fog V, repeatable): fog of visibility V m synthesized from the LiDAR depth as `eval --measure
  visibility` does it, dehazed by --method (default lite, the node's network) and turned into metres by the node's
  `VisibilityEstimator` with KITTI's mounting: the depth the chain itself publishes (NaN where it has none: such a
  box counts under `missing`).
The detections are the clear frame's in every condition, so that only the depth and the rule differ.
Rules (`box_distance_rules`): `median` (the whole box's median: the node's rule until 2026-12-06), `central` (the
median over the middle half of the columns and rows 40-90 % of the box's height), `p25` (the box's 25th
percentile), `cluster` (the nearest major peak of the box's log-z histogram), `ground` (the flat road's z at the
box's bottom edge from the camera's height and pitch, no depth read: `ground_contact.detection_contact`, NaN for a
box cut off by the frame's bottom or a contact beyond the mounting's 30 m of road), `ground,median` (the node's
rule: `ground` where the box has one, else `median`; `FrameChain.detect`), `cluster+ground` (the histogram peak
nearest that ground z), and `median|ground`, `central|ground` (that rule's z, replaced by the ground z where the box
has one and the two differ by more than GROUND_CHECK).

    .venv/bin/python tools/detection_distance.py ../shared/data/depth/kitti-seq --fog 50 --fog 150 [--json FILE]

Choose on kitti-seq; kitti-tiny (a drive that only judges) is read to report a rule chosen there, never to choose.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.detection.detector import Detection, Detector, median_depth  # noqa: E402
from dgdehaze_core.evaluation.depth_datasets import load_kitti  # noqa: E402
from dgdehaze_core.evaluation.depth_eval import dense_depth  # noqa: E402
from dgdehaze_core.evaluation.methods import MethodSpec, load_method  # noqa: E402
from dgdehaze_core.evaluation.visibility_eval import (KITTI_CAMERA_HEIGHT, KITTI_PITCH, MAX_VISIBILITY,  # noqa: E402
                                                      kitti_intrinsics, synthesize_fog)
from dgdehaze_core.io.atomic_files import check_json_output  # noqa: E402
from dgdehaze_core.io.tables import emit  # noqa: E402
from dgdehaze_core.physics.ground_contact import detection_contact  # noqa: E402
from dgdehaze_core.physics.visibility import (Intrinsics, Mounting, VisibilityEstimator, fog_contrast,  # noqa: E402
                                              ray_norms)
from tools.tool_cli import one_line_errors  # noqa: E402

GROUND_CLEARANCE = 0.3
"""LiDAR returns less than this (m) above the flat road are road, not the object."""
MIN_TRUE_RETURNS = 10
"""Fewest object returns for a box's true z."""
TRUTH_GAP = (1.5, 0.10)
"""A jump in the sorted returns' z of more than max(metres, fraction of z) separates two surfaces."""
TRUTH_SHARE = 0.2
"""Least share of the box's returns on the surface taken as the object."""
IN_FRONT = 5.0
"""A box whose bottom edge lies this many pixels or more below another's stands in front of it (on a road, the lower
contact is the nearer): its returns are not the other's."""
TRUTH_COLUMNS = (0.2, 0.8)
"""The part of a box's width whose returns give its true z."""
TRUTHS = ("largest", "nearest")
GROUND_CHECK = 1.3
"""The `|ground` rules keep a depth within this factor of the ground contact's z, else take the contact's."""
HISTOGRAM_BIN = 0.04
"""Width of the `cluster` rule's histogram bins in log z (about 4 % of z)."""


def box_pixels(box: tuple[float, float, float, float], shape: tuple[int, int],
               columns: tuple[float, float] = (0.0, 1.0),
               rows: tuple[float, float] = (0.0, 1.0)) -> tuple[slice, slice]:
    """(rows, columns) slices of the part of `box` given in fractions of its width and height, inside the frame."""
    x1, y1, x2, y2 = box
    height, width = shape
    left, right = x1 + columns[0] * (x2 - x1), x1 + columns[1] * (x2 - x1)
    top, bottom = y1 + rows[0] * (y2 - y1), y1 + rows[1] * (y2 - y1)
    return (slice(max(0, int(math.floor(top))), min(height, int(math.ceil(bottom)))),
            slice(max(0, int(math.floor(left))), min(width, int(math.ceil(right)))))


def finite_values(depth: np.ndarray, box: tuple[float, float, float, float], **part: tuple[float, float]) -> np.ndarray:
    """The positive finite depth values in the part of `box` that `part` (columns, rows: see `box_pixels`) names."""
    values = depth[box_pixels(box, depth.shape, **part)]
    return values[np.isfinite(values) & (values > 0)]


def true_z(lidar: np.ndarray, box: tuple[float, float, float, float], intrinsics: Intrinsics,
           mounting: Mounting, others: list[tuple[float, float, float, float]], truth: str = "largest") -> float:
    """The object's z from the sparse LiDAR returns in the box (module docstring), those inside a box of `others`
    standing in front of it left out; NaN with too few."""
    lidar = lidar.copy()
    for other in others:
        if other[3] >= box[3] + IN_FRONT:
            lidar[box_pixels(other, lidar.shape)] = np.nan
    rows, cols = box_pixels(box, lidar.shape, columns=TRUTH_COLUMNS)
    z = lidar[rows, cols]
    v = np.arange(lidar.shape[0], dtype=np.float64)[rows, None] * np.ones((1, z.shape[1]))
    known = np.isfinite(z) & (z > 0)
    z, v = z[known].astype(np.float64), v[known]
    down = (v - intrinsics.cy) / intrinsics.fy * z  # below the optical axis (m)
    height = mounting.height - (down * math.cos(mounting.pitch) + z * math.sin(mounting.pitch))
    z = np.sort(z[height > GROUND_CLEARANCE])
    if z.size < MIN_TRUE_RETURNS:
        return math.nan
    cuts = np.flatnonzero(np.diff(z) > np.maximum(TRUTH_GAP[0], TRUTH_GAP[1] * z[:-1])) + 1
    groups = np.split(z, cuts)
    if truth == "largest":
        return float(np.median(max(groups, key=len)))
    for group in groups:
        if group.size >= max(MIN_TRUE_RETURNS // 2, TRUTH_SHARE * z.size):
            return float(np.median(group))
    return math.nan


def histogram_peaks(values: np.ndarray) -> list[np.ndarray]:
    """The values of each major peak of their log-z histogram, nearest first: local maxima of the smoothed
    histogram at least half as high as its highest, each with the bins around it above a third of its height."""
    logs = np.log(values)
    edges = np.arange(logs.min(), logs.max() + 2 * HISTOGRAM_BIN, HISTOGRAM_BIN)
    counts = np.convolve(np.pad(np.histogram(logs, edges)[0].astype(np.float64), 1), [0.25, 0.5, 0.25],
                         mode="valid")
    peaks = [i for i in range(counts.size)
             if counts[i] >= 0.5 * counts.max() and counts[i] >= counts[max(0, i - 1)]
             and counts[i] >= counts[min(counts.size - 1, i + 1)]]
    groups = []
    for peak in peaks:
        low = peak
        while low > 0 and counts[low - 1] > counts[peak] / 3:
            low -= 1
        high = peak
        while high < counts.size - 1 and counts[high + 1] > counts[peak] / 3:
            high += 1
        groups.append(values[(logs >= edges[low]) & (logs < edges[high + 1])])
    return groups


def median_or_nan(values: np.ndarray) -> float:
    """The median of `values`; NaN for none."""
    return float(np.median(values)) if values.size else math.nan


def cluster_z(values: np.ndarray, prior: float = math.nan) -> float:
    """The median of the nearest major histogram peak; with a finite `prior`, of the peak nearest it."""
    if not values.size:
        return math.nan
    groups = histogram_peaks(values)
    if math.isfinite(prior):
        return float(min((np.median(g) for g in groups), key=lambda z: abs(math.log(z / prior))))
    return float(np.median(groups[0]))


def ground_checked(z: float, ground: float) -> float:
    """`z`, or the ground contact's z where there is one and `z` lies more than GROUND_CHECK from it (or is NaN)."""
    if math.isfinite(ground) and not (math.isfinite(z) and abs(math.log(z / ground)) <= math.log(GROUND_CHECK)):
        return ground
    return z


Rule = Callable[[np.ndarray, Detection, float], float]


def box_distance_rules() -> dict[str, Rule]:
    """name -> rule(depth, detection, ground contact z) -> z (NaN when it has none); `ground,median` is the node's
    own (`FrameChain.detect`), `median` its rule before (`detector.median_depth`)."""
    return {
        "median": lambda depth, d, ground: median_depth(d, depth),
        "central": lambda depth, d, ground: median_or_nan(finite_values(depth, d.box, columns=(0.25, 0.75),
                                                                        rows=(0.4, 0.9))),
        "p25": lambda depth, d, ground: (float(np.percentile(v, 25)) if (v := finite_values(depth, d.box)).size
                                         else math.nan),
        "cluster": lambda depth, d, ground: cluster_z(finite_values(depth, d.box)),
        "ground": lambda depth, d, ground: ground,
        "ground,median": lambda depth, d, ground: ground if math.isfinite(ground) else median_depth(d, depth),
        "cluster+ground": lambda depth, d, ground: cluster_z(finite_values(depth, d.box), ground),
        "median|ground": lambda depth, d, ground: ground_checked(median_depth(d, depth), ground),
        "central|ground": lambda depth, d, ground: ground_checked(
            median_or_nan(finite_values(depth, d.box, columns=(0.25, 0.75), rows=(0.4, 0.9))), ground),
    }


def summary(errors: list[float], missing: int) -> dict[str, float]:
    values = np.asarray(errors, np.float64)
    return {"median_rel": float(np.median(values)) if values.size else math.nan,
            "p90_rel": float(np.percentile(values, 90)) if values.size else math.nan,
            "max_rel": float(values.max()) if values.size else math.nan,
            "count": float(values.size), "missing": float(missing)}


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Print (and with --json write) the table of each rule's relative error per depth source."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--fog", type=float, action="append", default=[],
                        help="also synthesize fog of this visibility (m) and read the chain's metric depth")
    parser.add_argument("--method", default="lite", help="the dehazing method for --fog (default: lite)")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--every", type=int, default=1, help="use every Nth frame")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--truth", choices=TRUTHS, default=TRUTHS[0],
                        help="which surface in the box is the object: the one with the most LiDAR returns "
                             "(default) or the nearest holding a fifth of them (a check on the definition)")
    parser.add_argument("--per-box", action="store_true", help="print each box's truth and rules' z")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    if not all(v > 0 for v in args.fog):
        parser.error("--fog takes a positive visibility in metres")
    if args.json is not None:
        check_json_output(args.json, inputs=[args.dataset])
    depth_set = load_kitti(args.dataset)
    depth_set.frames = depth_set.frames[::args.every]
    detector = Detector()
    method = load_method(MethodSpec(args.method, args.method)) if args.fog else None
    mounting = Mounting(KITTI_CAMERA_HEIGHT, KITTI_PITCH)
    rules = box_distance_rules()
    sources = ["lidar", *(f"fog{v:g}" for v in args.fog)]
    errors: dict[str, list[float]] = {f"{r}@{s}": [] for s in sources for r in rules}
    missing = dict.fromkeys(errors, 0)
    untrue = boxes = 0
    for sample in tqdm(depth_set.samples(), total=len(depth_set.frames), desc="frames", unit="frame"):
        intrinsics = kitti_intrinsics(args.dataset, sample.name)
        detections: list[Detection] = [d for d in detector.detect(sample.image) if d.score >= args.min_score]
        if not detections:
            continue
        norms = ray_norms(sample.depth.shape, intrinsics)
        filled = dense_depth(sample.depth, np.inf, depth_set.sparse)
        maps = {"lidar": np.where(np.isfinite(filled), filled, np.nan).astype(np.float32)}
        for visibility in args.fog:
            hazy = synthesize_fog(sample, dense_depth(sample.depth, 5000.0, True), norms, visibility)
            result = method.dehaze(hazy)
            estimator = VisibilityEstimator(mounting, time_constant=0.0, max_visibility=MAX_VISIBILITY)
            maps[f"fog{visibility:g}"] = estimator.update(result.transmission, intrinsics, 0.0, fog_contrast(hazy),
                                                          result.transmission_floor).depth
        for detection in detections:
            boxes += 1
            truth = true_z(sample.depth, detection.box, intrinsics, mounting,
                           [d.box for d in detections if d is not detection], args.truth)
            if not math.isfinite(truth):
                untrue += 1
                continue
            ground = detection_contact(detection, sample.depth.shape, intrinsics, mounting).z
            line = [f"{sample.name} {detection.class_name} {detection.score:.2f} "
                    f"{[round(c) for c in detection.box]} true {truth:.1f}"]
            for source, depth in maps.items():
                for name, rule in rules.items():
                    z = rule(depth, detection, ground)
                    line.append(f"{name}@{source} {z:.1f}")
                    if math.isfinite(z):
                        errors[f"{name}@{source}"].append(abs(z - truth) / truth)
                    else:
                        missing[f"{name}@{source}"] += 1
            if args.per_box:
                print(", ".join(line))
    table = {row: summary(values, missing[row]) for row, values in errors.items()}
    emit(table, f"Relative error of each rule's z against the LiDAR's ({args.dataset.name}, "
                f"{len(depth_set.frames)} frames, {boxes} boxes of confidence >= {args.min_score:g}, "
                f"{untrue} without LiDAR truth)", args.json)


if __name__ == "__main__":
    sys.exit(main())
