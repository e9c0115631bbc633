"""Pictures for people: colour-mapped depth, side-by-side panels, and detections drawn on a frame."""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from dgdehaze_core.detection.detector import Detection

BOX_COLOR = (0, 255, 255)


def colorize_depth(depth: np.ndarray, low_percentile: float = 2.0, high_percentile: float = 98.0) -> np.ndarray:
    """Depth (HxW float, NaN invalid) to a uint8 BGR turbo image: near is red, far is blue, invalid is black."""
    valid = np.isfinite(depth)
    out = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return out
    low, high = np.percentile(depth[valid], [low_percentile, high_percentile])
    scaled = np.clip((depth - low) / max(float(high - low), 1e-6), 0.0, 1.0)
    scaled = np.where(valid, scaled, 0.0)
    colored = cv2.applyColorMap(((1.0 - scaled) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    out[valid] = colored[valid]
    return out


def side_by_side(*images: np.ndarray, height: int | None = None) -> np.ndarray:
    """Concatenate BGR images horizontally after resizing each to a common height."""
    height = height or images[0].shape[0]
    resized = [cv2.resize(im, (max(1, round(im.shape[1] * height / im.shape[0])), height)) for im in images]
    return np.concatenate(resized, axis=1)


def _label(out: np.ndarray, text: str, left: int, top: int, color: tuple[int, int, int]) -> None:
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    top = max(0, top)
    cv2.rectangle(out, (left, top), (left + width + 2, top + height + baseline + 2), color, -1)
    cv2.putText(out, text, (left + 1, top + height + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def draw_detections(image: np.ndarray, detections: Sequence[Detection], depths: Sequence[float] = (),
                    unit: str = "m", banner: str = "") -> np.ndarray:
    """A copy of the BGR frame with each detection's box and 'class score' label drawn, 'id:N class score' for a
    tracked one (N its `track_id`, ~/detections' Detection2D.id, as Ultralytics' plots label it); with `depths`,
    each label also gives the detection's depth (in `unit`: "m" for metres, "" for relative depth; none where NaN),
    and a `banner` (e.g. the visibility) is written in the top-left corner."""
    out = image.copy()
    thickness = max(1, round(min(out.shape[:2]) / 240))
    for index, detection in enumerate(detections):
        x1, y1, x2, y2 = (int(round(v)) for v in detection.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOR, thickness)
        text = f"{detection.class_name} {detection.score:.2f}"
        if detection.track_id is not None:
            text = f"id:{detection.track_id} {text}"
        depth = depths[index] if index < len(depths) else math.nan
        if math.isfinite(depth):
            text += f" {depth:.1f} m" if unit == "m" else f" d {depth:.2f}"
        (_, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        _label(out, text, x1, y1 - height - baseline - 2, BOX_COLOR)
    if banner:
        _label(out, banner, 0, 0, (255, 255, 255))
    return out
