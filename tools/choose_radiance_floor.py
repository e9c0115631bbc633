"""Choose the boundary constraint's radiance floor (`physics.boundary_constraint`) on validation data only: `lite`
(or a weights file) without the constraint and at each floor, on
- the DAWN fog photos outside the judging part (learn and validation, pooled): mAP50 and F1 against human boxes, and
  the share of pixels newly crushed to black or blown to white;
- the SOTS-indoor validation rooms: PSNR and SSIM against the clear rooms;
- the clear frames of kitti-seq (the validation drive): what dehazing does without fog (`eval --measure clear`).
The judging photos, rooms and drives are never read.

    .venv/bin/python tools/choose_radiance_floor.py [WEIGHTS] [--floors 0,0.01,0.02,0.04] [--limit N] [--json FILE]
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.io.atomic_files import check_json_output  # noqa: E402
from dgdehaze_core.io.tables import emit, write_json  # noqa: E402
from dgdehaze_core.datasets.paths import REPO_DIR  # noqa: E402
from tools.tool_cli import DAWN_FOG_SPLIT, one_line_errors, shared_data  # noqa: E402

FLOORS = (0.0, 0.01, 0.02, 0.04)
ROOMS_SPLIT = REPO_DIR / "data" / "splits" / "sots-indoor.yaml"
KITTI_SEQ = ("depth", "kitti-seq")
OUTSIDE_THE_JUDGING_PART = (f"@{DAWN_FOG_SPLIT}:learn", f"@{DAWN_FOG_SPLIT}:validation")


def floors(text: str) -> list[float]:
    """`--floors`: comma-separated numbers in [0, 0.5], none twice (each names a row); ValueError naming the option
    otherwise."""
    from dgdehaze_core.physics.boundary_constraint import check_radiance_floor

    try:
        chosen = [check_radiance_floor(float(item)) for item in text.split(",")]
    except ValueError as error:
        raise ValueError(f"--floors {text}: {error}") from None
    twice = sorted({floor for floor in chosen if chosen.count(floor) > 1})
    if twice:
        raise ValueError(f"--floors {text}: {', '.join(f'{floor:g}' for floor in twice)} given more than once")
    return chosen


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Print (and with --json write) the three tables, one row per floor (`none`: without the constraint)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="?", default="lite")
    parser.add_argument("--floors", default=",".join(f"{floor:g}" for floor in FLOORS),
                        help="comma-separated floors in [0, 0.5] (default: %(default)s)")
    parser.add_argument("--data", type=Path, default=None, help="the shared data folder (default: $DGDEHAZE_DATA "
                        "or ../shared/data)")
    parser.add_argument("--limit", type=int, default=None, help="the first N photos, rooms and frames of each set")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    chosen_floors = floors(args.floors)
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    data = shared_data(args.data)
    if args.json is not None:
        check_json_output(args.json, inputs=[data, Path(args.weights)])
    from dgdehaze_core.datasets.paired_sets import find_pairs  # these import torch: after the checks
    from dgdehaze_core.datasets.splits import expand_patterns
    from dgdehaze_core.detection.detector import Detector
    from dgdehaze_core.evaluation.clear_eval import evaluate_clear
    from dgdehaze_core.evaluation.depth_datasets import load_depth_set
    from dgdehaze_core.evaluation.detection_eval import (AP_SCORE_FLOOR, choosing_images, labelled_rows,
                                                         match_labelled)
    from dgdehaze_core.evaluation.methods import MethodSpec, load_method
    from dgdehaze_core.evaluation.quality_eval import evaluate_quality

    photos = choosing_images(data / "detection" / "dawn-fog", OUTSIDE_THE_JUDGING_PART, ())[:args.limit]
    rooms = expand_patterns([f"@{ROOMS_SPLIT}:validation"])
    pairs = find_pairs(data / "paired" / "sots-indoor", choose=lambda paths: [
        path for path in paths if any(fnmatch.fnmatch(path.name, room) for room in rooms)])[:args.limit]
    drive = load_depth_set(data.joinpath(*KITTI_SEQ))
    drive.frames = drive.frames[:args.limit]
    detector = Detector(conf=AP_SCORE_FLOOR, max_det=300)
    methods = [load_method(MethodSpec(name, args.weights), radiance_floor=floor)
               for name, floor in [("none", None), *((f"floor {floor:g}", floor) for floor in chosen_floors)]]
    detection = labelled_rows(match_labelled(photos, methods, detector, "DAWN learn+validation",
                                             detector.names.values()))
    tables = {
        "dawn-learn-validation": {name: row for name, row in detection.items() if "[" not in name},
        "sots-indoor-validation": evaluate_quality(pairs, methods, "validation rooms"),
        "kitti-seq-clear": evaluate_clear(drive, methods, detector, label="kitti-seq clear frames"),
    }
    for name, rows in tables.items():
        emit(rows, f"Radiance floor of {args.weights}: {name}")
    if args.json:
        write_json(args.json, {f"{table}/{name}": row for table, rows in tables.items() for name, row in rows.items()})


if __name__ == "__main__":
    sys.exit(main())
