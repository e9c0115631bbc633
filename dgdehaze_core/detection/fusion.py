"""Detection on the raw and the dehazed frame at once: the two sets of boxes merged by weighted box fusion.

Dehazing helps a detector on most foggy frames and hurts it on some (an object the haze model mistakes for sky, a
colour cast). Running the detector on both frames and fusing the boxes keeps what either finds: boxes of one class
that overlap (IoU >= `iou`) are merged into one whose corners are the score-weighted mean of theirs
(ZFTurbo's `ensemble_boxes.weighted_boxes_fusion`, the reference implementation of Solovyev et al., 2021).

`score` says what a merged box scores:
- `max`: the best score among the merged boxes, so a box either frame finds keeps its score (the union);
- `avg`: the mean over both frames, a frame that missed the object counting 0, so agreement ranks first;
- `box_and_model_avg`: the mean of the merged boxes, scaled by the share of frames that found the object.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from dgdehaze_core.detection.contrast import local_contrast
from dgdehaze_core.detection.detector import Detection

FUSION_SCORES = ("max", "avg", "box_and_model_avg")
DETECTION_INPUTS = ("dehazed", "raw", "fused")
"""What the detector runs on: the dehazed frame, the raw frame, or both with their boxes fused."""


@dataclass(frozen=True)
class FusionSettings:
    """Weighted box fusion: IoU that merges two boxes of one class, and how a merged box is scored."""

    iou: float = 0.55
    score: str = "max"

    def __post_init__(self) -> None:
        if not 0.0 < self.iou <= 1.0:
            raise ValueError(f"fusion IoU must lie in (0, 1], got {self.iou}")
        if self.score not in FUSION_SCORES:
            raise ValueError(f"fusion score must be one of {', '.join(FUSION_SCORES)}, got {self.score!r}")


def _normalised(detections: Sequence[Detection], width: int, height: int) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    boxes = np.array([d.box for d in detections], np.float64).reshape(-1, 4) / [width, height, width, height]
    scores = np.array([d.score for d in detections], np.float64)
    labels = np.array([d.class_id for d in detections], np.int64)
    return np.clip(boxes, 0.0, 1.0), scores, labels


def fuse_detections(sets: Sequence[Sequence[Detection]], size: tuple[int, int],
                    settings: FusionSettings = FusionSettings()) -> list[Detection]:
    """One list of detections from several detector runs on frames of `size` (width, height), highest score
    first. Boxes are clipped to the frame; an empty set contributes nothing."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if not sets:
        raise ValueError("fusion needs at least one set of detections")
    names = {d.class_id: d.class_name for detections in sets for d in detections}
    if not names:
        return []
    from ensemble_boxes import weighted_boxes_fusion

    arrays = [_normalised(detections, width, height) for detections in sets]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns on every zero-area box, which it drops
        boxes, scores, labels = weighted_boxes_fusion([a[0] for a in arrays], [a[1] for a in arrays],
                                                      [a[2] for a in arrays], iou_thr=settings.iou,
                                                      skip_box_thr=0.0, conf_type=settings.score)
    fused = [Detection(int(label), names[int(label)], float(score),
                       (float(box[0] * width), float(box[1] * height), float(box[2] * width), float(box[3] * height)))
             for box, score, label in zip(boxes, scores, labels)]
    return sorted(fused, key=lambda d: -d.score)


class FrameDetector:
    """The detector as the node applies it to a frame: on the dehazed frame, the raw one, or both fused
    (`detection_input`, one of DETECTION_INPUTS), each with its local contrast equalised first when `contrast`
    (by `equalise`: `detection.contrast.local_contrast`, or a caller's memo of it). Call with (dehazed, raw), both
    uint8 BGR of one size."""

    def __init__(self, detector: Callable[[np.ndarray], list[Detection]], detection_input: str = "dehazed",
                 fusion: FusionSettings = FusionSettings(), contrast: bool = False,
                 equalise: Callable[[np.ndarray], np.ndarray] = local_contrast) -> None:
        self.detector = detector
        self.detection_input = detection_input
        self.fusion = fusion
        self.contrast = contrast
        self.equalise = equalise

    @property
    def detection_input(self) -> str:
        return self._detection_input

    @detection_input.setter
    def detection_input(self, value: str) -> None:
        if value not in DETECTION_INPUTS:
            raise ValueError(f"detection_input must be one of {', '.join(DETECTION_INPUTS)}, got {value!r}")
        self._detection_input = value

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        return self.detector(self.equalise(frame) if self.contrast else frame)

    def __call__(self, dehazed: np.ndarray, raw: np.ndarray) -> list[Detection]:
        if self._detection_input == "dehazed":
            return self._detect(dehazed)
        if self._detection_input == "raw":
            return self._detect(raw)
        return fuse_detections([self._detect(raw), self._detect(dehazed)], (raw.shape[1], raw.shape[0]),
                               self.fusion)
