"""Visibility estimates on real foggy photos, drawn on the photos: a contact sheet for a person to judge.

Real fog has no ground-truth visibility, so the check is a look: does the estimate tell 40 m fog from 150 m fog?
Each photo goes through the method and the node's estimator (dgdehaze_core/physics/visibility.py) with an assumed camera
(height, pitch and horizontal field of view, principal point at the centre: web photos do not say theirs); the
sheet shows each photo with its road region outlined and the visibility, or why there is none. One frame at a
time, no smoothing. --json writes {photo: {visibility_m, beta_per_m, road_pixels, reason}}.

    .venv/bin/python tools/visibility_sheet.py ../shared/data/detection/dawn-fog --every 8 --out out/dawn_visibility.png
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.io.images import list_images, read_image
from dgdehaze_core.physics.visibility import (Intrinsics, Mounting, VisibilityEstimator, VisibilityReading,
                                              fog_contrast)

THUMB_WIDTH = 320
COLUMNS = 4


def assumed_camera(width: int, height: int, hfov_deg: float) -> Intrinsics:
    """Square pixels, the principal point at the centre, the focal length from the horizontal field of view."""
    focal = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return Intrinsics(focal, focal, width / 2.0, height / 2.0)


def label(reading: VisibilityReading) -> str:
    if math.isfinite(reading.visibility):
        return f"{reading.visibility:.0f} m"
    return "no fog" if reading.reason.startswith("no fog") else "no road"


def thumbnail(frame: np.ndarray, mounting: Mounting, name: str, text: str) -> np.ndarray:
    """The photo at THUMB_WIDTH with its road region outlined, its name and the estimate."""
    height, width = frame.shape[:2]
    left, top, right, bottom = mounting.road_region
    image = frame.copy()
    cv2.rectangle(image, (int(left * width), int(top * height)), (int(right * width) - 1, int(bottom * height) - 1),
                  (0, 255, 255), max(1, width // 320))
    image = cv2.resize(image, (THUMB_WIDTH, round(height * THUMB_WIDTH / width)), interpolation=cv2.INTER_AREA)
    caption = f"{name}: {text}"
    (text_width, text_height), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)
    cv2.rectangle(image, (0, 0), (text_width + 10, text_height + 12), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, caption, (5, text_height + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", type=Path, help="a folder of photos")
    parser.add_argument("--method", default="lite", help="dcp, lite or a weights file (default lite)")
    parser.add_argument("--camera-height", type=float, default=1.4, help="assumed height above the road, m")
    parser.add_argument("--camera-pitch", type=float, default=0.0, help="assumed pitch, rad, positive nose down")
    parser.add_argument("--hfov", type=float, default=60.0, help="assumed horizontal field of view, degrees")
    parser.add_argument("--every", type=int, default=1, help="every Nth photo of the folder, sorted by name")
    parser.add_argument("--out", type=Path, required=True, help="the contact sheet (.png or .jpg)")
    parser.add_argument("--json", type=Path, default=None, help="also write the estimates as JSON")
    args = parser.parse_args(argv)
    photos = list_images(args.photos)[::max(1, args.every)]
    if not photos:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2
    pipeline = load_pipeline(args.method)
    mounting = Mounting(args.camera_height, args.camera_pitch)
    thumbnails, figures = [], {}
    for path in photos:
        frame = read_image(path)
        camera = assumed_camera(frame.shape[1], frame.shape[0], args.hfov)
        result = pipeline(frame)
        reading = VisibilityEstimator(mounting, time_constant=0.0).update(result.transmission, camera, 0.0,
                                                                          fog_contrast(frame))
        thumbnails.append(thumbnail(frame, mounting, path.stem, label(reading)))
        figures[path.name] = {"visibility_m": reading.visibility if math.isfinite(reading.visibility) else None,
                              "beta_per_m": reading.measurement.beta if math.isfinite(reading.measurement.beta)
                              else None, "road_pixels": reading.measurement.pixels, "reason": reading.reason}
        print(f"{path.name}: {label(reading)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), sheet(thumbnails))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
