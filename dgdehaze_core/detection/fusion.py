"""Detection on the raw and the dehazed frame at once: the two sets of boxes merged by weighted box fusion.

Dehazing helps a detector on most foggy frames and hurts it on some (an object the haze model mistakes for sky, a
colour cast). Running the detector on both frames and fusing the boxes keeps what either finds. Weighted box fusion
(Solovyev et al., 2021): boxes are taken from the best score down; each joins the cluster of its class whose fused
box it overlaps most (IoU >= `iou`), else starts one, and a cluster's box is the score-weighted mean of its
members' corners. Unlike the reference implementation (ensemble_boxes), a cluster takes at most one box from each
set: two objects one frame's detector told apart (NMS kept both) are never merged into one, so the fused list keeps
every box a frame found, and a set fused with nothing comes back as it was. Corners and scores are float64; a
cluster of identical boxes gives that box back exactly.

`score` says what a merged box scores:
- `max`: the best score among the merged boxes, so a box either frame finds keeps its score (the union);
- `avg`: the mean over the sets, a set that missed the object counting 0, so agreement ranks first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from dgdehaze_core.detection.boxes import inside_frame
from dgdehaze_core.detection.contrast import local_contrast
from dgdehaze_core.detection.detector import Detection
from dgdehaze_core.io.images import to_bgr8

FUSION_SCORES = ("max", "avg")
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


@dataclass
class _Cluster:
    """Boxes of one class, at most one from each set, and their score-weighted mean box."""

    first: Detection
    box: np.ndarray
    members: list[tuple[int, np.ndarray, float]] = field(default_factory=list)

    def add(self, set_index: int, box: np.ndarray, score: float) -> None:
        self.members.append((set_index, box, score))
        scores = np.array([member[2] for member in self.members])
        weights = scores if scores.sum() > 0 else np.ones_like(scores)  # score-0 boxes: a plain mean
        origin = self.members[0][1]  # offsets from the first box: identical boxes give it back exactly
        offsets = np.stack([member[1] - origin for member in self.members])
        self.box = origin + (weights[:, None] * offsets).sum(axis=0) / weights.sum()

    def takes_from(self, set_index: int) -> bool:
        return all(member[0] != set_index for member in self.members)

    def score(self, rule: str, sets: int) -> float:
        """The fused box's score under `rule` (one of FUSION_SCORES) when `sets` sets were fused."""
        scores = [member[2] for member in self.members]
        return float(max(scores)) if rule == "max" else float(sum(scores) / sets)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def fuse_detections(sets: Sequence[Sequence[Detection]], size: tuple[int, int],
                    settings: FusionSettings = FusionSettings()) -> list[Detection]:
    """One list of detections from several detector runs on frames of `size` (width, height), highest score
    first. Boxes are clipped to the frame (one with no area left, or not finite, is dropped: `inside_frame`); an
    empty set contributes nothing."""
    width, height = size
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if not sets:
        raise ValueError("fusion needs at least one set of detections")
    found = [(index, detection) for index, detections in enumerate(sets) for detection in detections]
    clipped, usable = inside_frame(np.array([d.box for _, d in found], np.float64), width, height)
    boxes = [(index, detection, box) for (index, detection), box, keep in zip(found, clipped, usable) if keep]
    clusters: list[_Cluster] = []
    for index, detection, box in sorted(boxes, key=lambda item: -item[1].score):
        overlaps = [(_iou(cluster.box, box), cluster) for cluster in clusters
                    if cluster.first.class_id == detection.class_id and cluster.takes_from(index)]
        best_iou, best = max(overlaps, key=lambda pair: pair[0], default=(0.0, None))
        if best is None or best_iou < settings.iou:
            best = _Cluster(detection, box)
            clusters.append(best)
        best.add(index, box, detection.score)
    fused = [Detection(cluster.first.class_id, cluster.first.class_name, cluster.score(settings.score, len(sets)),
                       tuple(float(v) for v in cluster.box)) for cluster in clusters]
    return sorted(fused, key=lambda d: -d.score)


class FrameDetector:
    """The detector as the node applies it to a frame: on the dehazed frame, the raw one, or both fused
    (`detection_input`, one of DETECTION_INPUTS), each with its local contrast equalised first when `contrast`
    (by `equalise`: `detection.contrast.local_contrast`, or a caller's memo of it). Call with (dehazed, raw), both
    frames of one size the detector reads (uint8 BGR, grey or 16-bit; equalised as BGR), the frames of one stream
    in order. With `max_det` (read at each frame: the detector's own limit, which a node changes while it runs), the
    fused boxes are cut to the best that many, as the detector cuts each run's (two runs of up to that many each
    would give up to twice as many). With `track` (`Detector.track`), what the detector found, or the fused boxes,
    get their identities across frames."""

    def __init__(self, detector: Callable[[np.ndarray], list[Detection]], detection_input: str = "dehazed",
                 fusion: FusionSettings = FusionSettings(), contrast: bool = False,
                 equalise: Callable[[np.ndarray], np.ndarray] = local_contrast,
                 track: Callable[[list[Detection], np.ndarray], list[Detection]] | None = None,
                 max_det: Callable[[], int] | None = None) -> None:
        self.detector = detector
        self.track = track
        self.max_det = max_det
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
        return self.detector(self.equalise(to_bgr8(frame)) if self.contrast else frame)

    def __call__(self, dehazed: np.ndarray, raw: np.ndarray) -> list[Detection]:
        if self._detection_input == "dehazed":
            found, frame = self._detect(dehazed), dehazed
        elif self._detection_input == "raw":
            found, frame = self._detect(raw), raw
        else:
            found = fuse_detections([self._detect(raw), self._detect(dehazed)], (raw.shape[1], raw.shape[0]),
                                    self.fusion)
            if self.max_det is not None:
                found = found[:self.max_det()]
            frame = raw  # the camera's own pixels for a tracker's motion compensation
        return found if self.track is None else self.track(found, to_bgr8(frame))
