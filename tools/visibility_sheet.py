"""Visibility estimates on real foggy photos, drawn on the photos: a contact sheet for a person to judge.

Real fog has no ground-truth visibility, so the check is a look: does the estimate tell 40 m fog from 150 m fog?
Each photo goes through each method, the shipped detector on its output and the node's estimator
(dgdehaze_core/physics/visibility.py: on the road users standing on the road in view, physics/dark_objects.py, else
on the road) with an assumed camera (height, pitch and horizontal field of view, principal point at the centre: web
photos do not say theirs);
the sheet shows each photo with its road region outlined and each method's visibility, or why there is none. One
frame at a time, no smoothing. It prints a Markdown table of the median visibility per kind of photo (the name's
prefix before '-': foggy, haze, mist in DAWN) over every selected photo, the sheet showing every Nth of them.
--json writes {photo: {method: {visibility_m, at_most, beta_per_m, measured_on, measured, reason}}} (`measured_on`:
road or objects, `measured` how many road pixels or road users), `at_most` true where
the fog hides the road in view and visibility_m is the most the visibility can be (the sheet's "<="). A photo that
cannot be read is skipped with an error logged, as `dgdehaze dehaze` skips one, and the tool then exits 1; --out
and --json are refused before any work when they cannot be written or lie in the photo folder (where they would
overwrite a photo or be read as one next time).

    .venv/bin/python tools/visibility_sheet.py ../shared/data/detection/dawn-fog \
        --include @data/splits/dawn-fog.yaml:judge --method lite,dcp --every 6 \
        --out docs/images/dawn-visibility.jpg --json docs/results/dawn-visibility.json
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.datasets.splits import expand_patterns  # noqa: E402
from dgdehaze_core.inference.pipeline import load_pipeline  # noqa: E402
from dgdehaze_core.io.atomic_files import (atomic_path, atomic_write_text, check_json_output,  # noqa: E402
                                           refuse_input_as_output, refuse_inside)
from dgdehaze_core.io.images import ImageError, list_images, read_image, to_bgr8  # noqa: E402
from dgdehaze_core.physics.visibility import (Intrinsics, Mounting, VisibilityEstimator,  # noqa: E402
                                              VisibilityReading, fog_contrast)
from tools.tool_cli import check_image_output, one_line_errors  # noqa: E402

LOG = logging.getLogger("visibility_sheet")

THUMB_WIDTH = 320
COLUMNS = 4


def assumed_camera(width: int, height: int, hfov_deg: float) -> Intrinsics:
    """Square pixels, the principal point at the centre, the focal length from the horizontal field of view."""
    focal = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return Intrinsics(focal, focal, width / 2.0, height / 2.0)


def label(reading: VisibilityReading) -> str:
    """The estimate as drawn: "N m", "N m (cars)" where measured on road users, "<= N m", "no fog" or "no road"."""
    if math.isfinite(reading.visibility):
        on = " (cars)" if reading.measurement.source == "objects" else ""
        return f"{'<= ' if reading.at_most else ''}{reading.visibility:.0f} m{on}"
    return "no fog" if reading.reason.startswith("no fog") else "no road"


def thumbnail(frame: np.ndarray, mounting: Mounting, name: str, text: str) -> np.ndarray:
    """The photo at THUMB_WIDTH with its road region outlined, its name and the estimate."""
    height, width = frame.shape[:2]
    left, top, right, bottom = mounting.road_region
    image = frame.copy()
    cv2.rectangle(image, (int(left * width), int(top * height)), (int(right * width) - 1, int(bottom * height) - 1),
                  (0, 255, 255), max(1, width // 320))
    image = cv2.resize(image, (THUMB_WIDTH, round(height * THUMB_WIDTH / width)), interpolation=cv2.INTER_AREA)
    y = 0
    for line in (name, text):
        (text_width, text_height), _ = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(image, (0, y), (text_width + 10, y + text_height + 10), (0, 0, 0), cv2.FILLED)
        cv2.putText(image, line, (5, y + text_height + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
        y += text_height + 10
    return image


def sheet(thumbnails: list[np.ndarray]) -> np.ndarray:
    """Thumbnails in rows of COLUMNS, each row as tall as its tallest."""
    rows = []
    for start in range(0, len(thumbnails), COLUMNS):
        row = thumbnails[start:start + COLUMNS]
        tallest = max(t.shape[0] for t in row)
        padded = [cv2.copyMakeBorder(t, 0, tallest - t.shape[0], 0, 0, cv2.BORDER_CONSTANT) for t in row]
        padded += [np.zeros((tallest, THUMB_WIDTH, 3), np.uint8)] * (COLUMNS - len(row))
        rows.append(np.hstack(padded))
    return np.vstack(rows)


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Write the sheet (and --json), print the table; 0, or 1 when a photo was skipped as unreadable."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="a folder of photos")
    parser.add_argument("--include", action="append", default=None, metavar="GLOB",
                        help="only photos whose name matches (repeatable; @FILE:PART names a split's part)")
    parser.add_argument("--method", default="lite", help="comma-separated of dcp, lite or weights files (default lite)")
    parser.add_argument("--camera-height", type=float, default=1.4, help="assumed height above the road, m")
    parser.add_argument("--camera-pitch", type=float, default=0.0, help="assumed pitch, rad, positive nose down")
    parser.add_argument("--hfov", type=float, default=60.0, help="assumed horizontal field of view, degrees")
    parser.add_argument("--every", type=int, default=1,
                        help="the sheet shows every Nth selected photo that could be read, by name")
    parser.add_argument("--out", type=Path, required=True, help="the contact sheet (.png or .jpg)")
    parser.add_argument("--json", type=Path, default=None, help="also write the estimates as JSON")
    args = parser.parse_args(argv)
    if not 0.0 < args.hfov < 180.0:
        raise ValueError(f"--hfov {args.hfov:g}: a field of view lies between 0 and 180 degrees")
    refuse_inside(args.out, args.photos, "--out", "the input folder")
    check_image_output(args.out, "--out")
    if args.json is not None:
        check_json_output(args.json)  # first: '-' is refused as such, not as a file '-' in the folder
        refuse_inside(args.json, args.photos, "--json", "the input folder")
        refuse_input_as_output(args.json, [args.out], "--json", what="--out")
    photos = list_images(args.photos)
    if args.include:
        globs = expand_patterns(args.include)
        photos = [p for p in photos if any(fnmatch.fnmatch(p.name, g) for g in globs)]
    if not photos:
        raise ImageError(f"no photos in {args.photos}" + (f" matching {args.include}" if args.include else ""))
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    if not methods:
        raise ValueError(f"--method {args.method!r} names no method: give e.g. lite,dcp")
    from dgdehaze_core.detection.detector import Detector  # imports torch: after the checks
    from dgdehaze_core.physics.dark_objects import measure_objects_beta

    pipelines = {method: load_pipeline(method) for method in methods}
    detector = Detector()
    mounting = Mounting(args.camera_height, args.camera_pitch)
    thumbnails, figures, skipped = [], {}, 0
    for path in tqdm(photos, desc="visibility", unit="photo"):
        try:
            frame = read_image(path)
        except ImageError as exc:
            LOG.error("skipped: %s", exc)
            skipped += 1
            continue
        shown = len(figures) % max(1, args.every) == 0
        camera, contrast = assumed_camera(frame.shape[1], frame.shape[0], args.hfov), fog_contrast(frame)
        results = {method: pipeline(frame) for method, pipeline in pipelines.items()}
        readings = {method: VisibilityEstimator(mounting, time_constant=0.0).update(
            result.transmission, camera, 0.0, contrast, result.transmission_floor,
            measure_objects_beta(to_bgr8(frame), detector(result.image), camera, mounting))
            for method, result in results.items()}
        figures[path.name] = {method: {
            "visibility_m": r.visibility if math.isfinite(r.visibility) else None,
            "at_most": r.at_most,
            "beta_per_m": r.measurement.beta if math.isfinite(r.measurement.beta) else None,
            "measured_on": r.measurement.source, "measured": r.measurement.pixels, "reason": r.reason}
            for method, r in readings.items()}
        if shown:
            text = ", ".join(f"{method} {label(r)}" for method, r in readings.items())
            thumbnails.append(thumbnail(frame, mounting, path.stem, text))
    if not figures:
        raise ImageError(f"none of the {len(photos)} photos of {args.photos} could be read")
    with atomic_path(args.out) as tmp:
        if not cv2.imwrite(str(tmp), sheet(thumbnails)):
            raise OSError(f"could not write {args.out}")
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    print(summary_table(figures, methods))
    if skipped:
        LOG.error("%d of %d photos skipped as unreadable: the sheet and the table leave them out", skipped,
                  len(photos))
    return 1 if skipped else 0


def summary_table(figures: dict[str, dict[str, dict]], methods: list[str]) -> str:
    """Markdown: per kind of photo, each method's median visibility over the photos it measured and how many it
    read as no fog or could not measure."""
    kinds = sorted({name.split("-")[0] for name in figures})
    lines = ["| photos | " + " | ".join(f"{m}: median visibility (m) | {m}: no estimate" for m in methods) + " |",
             "|---|" + "---|---|" * len(methods)]
    for kind in [*kinds, "all"]:
        names = [n for n in figures if kind == "all" or n.split("-")[0] == kind]
        cells = []
        for method in methods:
            values = [figures[n][method]["visibility_m"] for n in names]
            measured = [v for v in values if v is not None]
            cells += [f"{np.median(measured):.0f}" if measured else "n/a", f"{len(values) - len(measured)}"]
        lines.append(f"| {kind} ({len(names)}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
