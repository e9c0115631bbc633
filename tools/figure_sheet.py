"""What the before/after figures of docs/images share: labelled panels of one height, rows of them on one sheet, and
the sheet written atomically in the format its path's suffix names (.jpg at quality 92, .png, ...)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dgdehaze_core.io.atomic_files import atomic_write_bytes

HEIGHT = 240
"""The height (pixels) of every panel."""
JPEG_QUALITY = 92


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
