"""What the before/after figures of docs/images share: their command line (photos, --weights, --out, every photo
read before a model loads), labelled panels of one height, rows of them on one sheet, and the sheet written
atomically in the format its path's suffix names (.jpg at quality 92, .png, ...)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dgdehaze_core.io.atomic_files import atomic_write_bytes
from dgdehaze_core.io.images import read_image
from tools.tool_cli import check_image_output, shared_data

HEIGHT = 240
"""The height (pixels) of every panel."""
JPEG_QUALITY = 92


def figure_photos(argv: list[str] | None, description: str, out: Path, photos: Sequence[Sequence[str]],
                  photos_help: str) -> tuple[argparse.Namespace, dict[Path, np.ndarray]]:
    """A figure tool's arguments (PHOTO ..., --weights, --out) parsed from `argv`, and each photo read (uint8 BGR);
    without photos, `photos`, each the parts of a path under the shared data folder. --out where OpenCV writes no
    image of its suffix, a place that takes no file or one of the photos, and a photo that cannot be read are
    refused here, before any model loads."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", type=Path, help=photos_help)
    parser.add_argument("--weights", default="lite")
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    args.photos = args.photos or [shared_data(None, *parts) for parts in photos]
    check_image_output(args.out, "--out", args.photos)
    return args, {photo: read_image(photo) for photo in args.photos}


def labelled(image: np.ndarray, text: str) -> np.ndarray:
    """`image` scaled to HEIGHT with `text` in white on black at its top left."""
    scaled = cv2.resize(image, (round(image.shape[1] * HEIGHT / image.shape[0]), HEIGHT), interpolation=cv2.INTER_AREA)
    (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(scaled, (0, 0), (width + 10, height + 12), (0, 0, 0), -1)
    cv2.putText(scaled, text, (5, height + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return scaled


def write_sheet(rows: list[np.ndarray], out: Path) -> None:
    """The `rows` (HEIGHT high, any widths: the narrower padded black on the right) stacked and written to `out`;
    RuntimeError where OpenCV cannot encode its suffix's format."""
    width = max(row.shape[1] for row in rows)
    sheet = np.vstack([np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows])
    jpeg = out.suffix.lower() in (".jpg", ".jpeg", ".jpe")
    ok, encoded = cv2.imencode(out.suffix, sheet, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if jpeg else [])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode the figure as {out.suffix}")
    atomic_write_bytes(out, encoded.tobytes())
