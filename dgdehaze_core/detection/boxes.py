"""Boxes (x1, y1, x2, y2) in a frame: their overlap (what the evaluation matches detections to references by, and
what the tracker tells one object named twice by) and their part inside the frame."""
from __future__ import annotations

import numpy as np


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU of every box in (N, 4) against every box in (M, 4), boxes as x1, y1, x2, y2 -> (N, M); against a box
    of `boxes_b` flagged in `crowd` (M bools), the intersection over the area of the box of `boxes_a` (COCO's
    overlap with a crowd region, as pycocotools' `iou(dt, gt, iscrowd)`)."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[None, :], area_a[:, None], union)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def inside_frame(boxes: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) boxes clipped to a frame of `width` x `height`, and which of them are boxes there: every coordinate
    finite (a detector or tracker that diverged gives NaN or infinity, which clipping keeps or makes an edge of)
    and some area inside the frame."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    clipped = np.clip(boxes, 0.0, [width, height, width, height])
    usable = np.isfinite(boxes).all(axis=1) & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, usable
