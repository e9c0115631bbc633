"""Choose the clip limit of the detector's contrast equaliser (`detection.contrast`) on DAWN photos outside the
judging part: mAP50 and F1 against human boxes of the detector on the raw frame and on the dehazed frame (`lite` or
a weights file), each as it is and equalised at each clip limit. The judging photos are never read.

    .venv/bin/python tools/choose_contrast_clip.py [WEIGHTS] [--split @FILE:PART ...] [--json FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.detection.contrast import local_contrast  # noqa: E402
from dgdehaze_core.io.images import read_image  # noqa: E402
from dgdehaze_core.io.tables import emit, write_json  # noqa: E402
from dgdehaze_core.io.atomic_files import check_json_output  # noqa: E402
from tools.tool_cli import DAWN_FOG_SPLIT, one_line_errors, shared_data  # noqa: E402

CLIP_LIMITS = (1.0, 2.0, 4.0)
OUTSIDE_THE_JUDGING_PART = (f"@{DAWN_FOG_SPLIT}:learn", f"@{DAWN_FOG_SPLIT}:validation")


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Print (and with --json write) the table; a --json that cannot be written and photos that choose nothing are
    refused before a model loads."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="?", default="lite")
    parser.add_argument("--data", type=Path, default=None,
                        help="the DAWN fog photos (default: detection/dawn-fog in $DGDEHAZE_DATA or ../shared/data)")
    parser.add_argument("--split", action="append", default=None,
                        help="split parts to read (repeatable; default: learn and validation)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.data = shared_data(args.data, "detection", "dawn-fog")
    if args.json is not None:
        check_json_output(args.json, inputs=[args.data, Path(args.weights)])
    parts = args.split or list(OUTSIDE_THE_JUDGING_PART)
    from dgdehaze_core.detection.detector import Detector  # these import torch: after the checks
    from dgdehaze_core.evaluation.detection_eval import (AP_SCORE_FLOOR, choosing_images, known_references,
                                                         match_image, score_matches)
    from dgdehaze_core.evaluation.methods import MethodSpec, load_method

    chosen = choosing_images(args.data, parts, ())  # photos refused before the detector loads (seconds)
    detector = Detector(conf=AP_SCORE_FLOOR, max_det=300)
    images = known_references(chosen, detector.names.values())
    method = load_method(MethodSpec("dehazed", args.weights))
    matches: dict[str, list] = {}
    for item in tqdm(images, desc="clip limits", unit="image"):
        hazy = read_image(item.image)
        for source, frame in (("hazy", hazy), ("dehazed", method.dehaze(hazy).image)):
            matches.setdefault(source, []).append(match_image(item.boxes, detector(frame)))
            for clip in CLIP_LIMITS:
                matches.setdefault(f"{source}+clahe{clip:g}", []).append(
                    match_image(item.boxes, detector(local_contrast(frame, clip))))
    rows = {name: score_matches(rows) for name, rows in matches.items()}
    emit(rows, f"Contrast clip limits on {', '.join(parts)} ({len(images)} photos, weights {args.weights})")
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    sys.exit(main())
