"""Choose the detection-fusion rule (score, IoU) on the DAWN validation part: mAP50 and F1 of each rule against
human boxes, the detector run once per image on the input and on the dehazed image (`lite` or a weights file).
Only the validation part is read, so the choice leaves the judging photos untouched.

    .venv/bin/python tools/choose_fusion_rule.py [WEIGHTS] [--json FILE]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.io.images import read_image  # noqa: E402
from dgdehaze_core.io.tables import emit, write_json  # noqa: E402
from dgdehaze_core.io.atomic_files import check_json_output  # noqa: E402
from tools.tool_cli import DAWN_FOG_SPLIT, one_line_errors, shared_data  # noqa: E402

IOUS = (0.5, 0.55, 0.6)


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Print (and with --json write) the table; a --json that cannot be written and photos that choose nothing are
    refused before a model loads."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="?", default="lite")
    parser.add_argument("--data", type=Path, default=None,
                        help="the DAWN fog photos (default: detection/dawn-fog in $DGDEHAZE_DATA or ../shared/data)")
    parser.add_argument("--split", default=f"@{DAWN_FOG_SPLIT}:validation",
                        help="split part to read (default: data/splits/dawn-fog.yaml's validation part)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.data = shared_data(args.data, "detection", "dawn-fog")
    if args.json is not None:
        check_json_output(args.json, inputs=[args.data, Path(args.weights)])
    from dgdehaze_core.detection.detector import Detector  # these import torch: after the checks
    from dgdehaze_core.detection.fusion import FUSION_SCORES, FusionSettings, fuse_detections
    from dgdehaze_core.evaluation.detection_eval import (AP_SCORE_FLOOR, choosing_images, known_references,
                                                         match_image, score_matches)
    from dgdehaze_core.evaluation.methods import MethodSpec, load_method

    chosen = choosing_images(args.data, [args.split], ())  # photos refused before the detector loads (seconds)
    detector = Detector(conf=AP_SCORE_FLOOR, max_det=300)
    images = known_references(chosen, detector.names.values())
    method = load_method(MethodSpec("dehazed", args.weights))
    runs = []
    for item in images:
        hazy = read_image(item.image)
        runs.append((item, detector(hazy), detector(method.dehaze(hazy).image), (hazy.shape[1], hazy.shape[0])))
    rows = {"hazy": score_matches([match_image(item.boxes, raw) for item, raw, _, _ in runs]),
            "dehazed": score_matches([match_image(item.boxes, dehazed) for item, _, dehazed, _ in runs])}
    for score in FUSION_SCORES:
        for iou in IOUS:
            settings = FusionSettings(iou=iou, score=score)
            rows[f"fused-{score}@{iou}"] = score_matches(
                [match_image(item.boxes, fuse_detections([raw, dehazed], size, settings))
                 for item, raw, dehazed, size in runs])
    emit(rows, f"Fusion rules on {args.split} ({len(runs)} photos, weights {args.weights})")
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    sys.exit(main())
