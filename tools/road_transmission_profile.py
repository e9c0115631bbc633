"""How each method's transmission over the road follows distance: the measurement #19's visibility rests on.

On a KITTI set (true LiDAR depth), fog is synthesized at each visibility as `eval --measure visibility` does it, and
for each band of flat-road distance (the camera's mounting and intrinsics, `physics.visibility.ground_range`) inside
the road region the tool prints the median over the frames of each band's median optical depth -ln t: the truth
(beta times the LiDAR distance along the ray) and each method's. `flat_road_ratio` is the LiDAR distance over the
flat-road distance: 1 where the band is road, below 1 where vehicles stand on it. Under uniform fog the truth grows
with distance and a method that measures fog follows it; a constant offset on clear frames is a method reading the
road's own grey as haze. A second table gives each method's mean absolute difference from the truth over the bands
up to `--error-to` metres (kitti-seq's road is clear of its traffic queue to about 15 m), per condition and over
all of them (`all`): one figure to compare recipes by.

    .venv/bin/python tools/road_transmission_profile.py ../shared/data/depth/kitti-seq --every 4 [--json FILE]

Use it on the drives where choices are made (kitti-seq): a frame that only judges (kitti-tiny,
`dgdehaze_core.datasets.splits.judging_files`) is refused before any frame is read.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.datasets.splits import refuse_judging_files  # noqa: E402
from dgdehaze_core.evaluation.depth_datasets import kitti_depth_files, load_kitti  # noqa: E402
from dgdehaze_core.io.images import ImageError  # noqa: E402
from dgdehaze_core.io.tables import emit  # noqa: E402
from dgdehaze_core.physics.visibility import KOSCHMIEDER, Mounting, ground_range, ray_norms, road_mask  # noqa: E402
from dgdehaze_core.io.atomic_files import check_json_output  # noqa: E402
from tools.tool_cli import one_line_errors  # noqa: E402

BANDS = (5.0, 8.0, 11.0, 15.0, 20.0, 25.0, 30.0)
"""Edges (m) of the flat-road distance bands: the estimator reads road up to 30 m (Mounting.road_max_distance)."""
BAND_RANGES = tuple(zip(BANDS[:-1], BANDS[1:]))
"""(near, far) edges (m) of each band."""


def band_name(near: float, far: float) -> str:
    """A band's column in both tables."""
    return f"{near:g}-{far:g} m"


def error_json(path: Path) -> Path:
    """Where the error table goes beside the profile's --json file."""
    return path.with_name(f"{path.stem}-error{path.suffix}")


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Print (and with --json write) both tables; every argument, output and frame is checked before a frame is
    read."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--method", default="dcp,lite")
    parser.add_argument("--every", type=int, default=1, help="use every Nth frame")
    parser.add_argument("--error-to", type=float, default=15.0,
                        help="farthest band edge (m) of the error table: bands beyond it are left out")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    if not BANDS[1] <= args.error_to:
        parser.error(f"--error-to must reach at least the first band's far edge, {BANDS[1]:g} m")
    if args.json is not None:
        check_json_output(args.json, inputs=[args.dataset])
        check_json_output(error_json(args.json), "--json's error table", [args.dataset])
    if not args.dataset.is_dir():
        raise FileNotFoundError(f"no such folder: {args.dataset}")
    frames = kitti_depth_files(args.dataset)
    if not frames:
        raise ImageError(f"{args.dataset} holds no KITTI frames with proj_depth/ LiDAR depth")
    refuse_judging_files(frames, f"{args.dataset}: the profile chooses recipes, so it reads no judging frame")
    from dgdehaze_core.evaluation.depth_eval import dense_depth  # these import torch: after the checks
    from dgdehaze_core.evaluation.methods import load_methods, parse_methods
    from dgdehaze_core.evaluation.visibility_eval import (KITTI_CAMERA_HEIGHT, KITTI_PITCH, SKY_DISTANCE,
                                                          VISIBILITIES, kitti_intrinsics, synthesize_fog)

    depth_set = load_kitti(args.dataset)
    methods = [m for m in load_methods(parse_methods(args.method)) if m.gives_transmission]
    mounting = Mounting(KITTI_CAMERA_HEIGHT, KITTI_PITCH)
    conditions = {"clear": math.inf, **VISIBILITIES}
    values: dict[str, list[list[float]]] = {}
    depth_set.frames = depth_set.frames[::args.every]
    for sample in tqdm(depth_set.samples(), total=len(depth_set.frames), desc="road profile", unit="frame"):
        intrinsics = kitti_intrinsics(args.dataset, sample.name)
        norms = ray_norms(sample.depth.shape, intrinsics)
        along_ray = sample.depth * norms
        distance = ground_range(sample.depth.shape, intrinsics, mounting)
        road = road_mask(distance.shape, mounting.road_region) & np.isfinite(distance)
        bands = [road & (distance >= low) & (distance < high) for low, high in BAND_RANGES]
        lidar = [band & np.isfinite(along_ray) for band in bands]
        values.setdefault("flat_road_ratio", []).append(
            [float(np.median(along_ray[b] / distance[b])) if b.any() else math.nan for b in lidar])
        dense = dense_depth(sample.depth, SKY_DISTANCE, depth_set.sparse)
        for condition, visibility in conditions.items():
            beta = KOSCHMIEDER / visibility
            values.setdefault(f"truth@{condition}", []).append(
                [float(np.median(beta * along_ray[b])) if b.any() else math.nan for b in lidar])
            hazy = sample.image if condition == "clear" else synthesize_fog(sample, dense, norms, visibility)
            for method in methods:
                optical = -np.log(np.clip(method.dehaze(hazy).transmission, 1e-6, 1.0))
                values.setdefault(f"{method.name}@{condition}", []).append(
                    [float(np.median(optical[b])) if b.any() else math.nan for b in bands])
    table = {name: {band_name(*edges): float(np.nanmedian([frame[i] for frame in rows]))
                    for i, edges in enumerate(BAND_RANGES)}
             for name, rows in values.items()}
    emit(table, f"Median optical depth -ln t over the road by flat-road distance ({args.dataset.name}, "
                f"{len(depth_set.frames)} frames)", args.json)
    errors = error_table(table, [m.name for m in methods], conditions, args.error_to)
    emit(errors, f"Mean |method - truth| of the band medians up to {args.error_to:g} m",
         error_json(args.json) if args.json else None)


def error_table(table: dict[str, dict[str, float]], methods: list[str], conditions: Iterable[str],
                error_to: float) -> dict[str, dict[str, float]]:
    """{method: {condition: mean |method - truth| over the bands whose far edge is within `error_to`, "all":
    the mean of those}} from the profile table."""
    bands = [band_name(near, far) for near, far in BAND_RANGES if far <= error_to]
    rows: dict[str, dict[str, float]] = {}
    for method in methods:
        row = {condition: float(np.mean([abs(table[f"{method}@{condition}"][band] - table[f"truth@{condition}"][band])
                                         for band in bands])) for condition in conditions}
        rows[method] = {**row, "all": float(np.mean(list(row.values())))}
    return rows


if __name__ == "__main__":
    sys.exit(main())
