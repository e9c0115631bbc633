"""Identities across frames: Ultralytics' multi-object trackers fed with any stream of detections.

Ultralytics' own `track` mode runs its tracker on one detector's boxes for one image. A `BoxTracker` takes the
boxes from wherever they come (one frame's detections, or the raw and the dehazed frame's fused by
`detection.fusion`) and gives each confirmed object its track id, as Ultralytics' track mode would: the box is
the tracker's (the matched detection smoothed by its Kalman filter), clipped to the frame as Ultralytics clips it
(the filter's velocity carries an object leaving the frame past its edge), and objects not yet confirmed are left
out. One object the detector reports as two classes in a frame (a car in fog also seen as a truck: its NMS keeps
one box per class) is tracked once, as the class it scored higher (`one_box_per_object`): its track keeps its id
whichever class it is seen as, where it would otherwise get a second track and id for the second class.
Identities are never reused within a stream (`TrackIds`): a tracker that resets, or one that replaces it, numbers
its tracks above every identity given before, so a planner never meets an old object's id on another object.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence, TypeVar

import numpy as np

from dgdehaze_core.detection.boxes import box_iou, inside_frame
from dgdehaze_core.detection.offline import offline_ultralytics

TRACKERS = ("bytetrack", "botsort")
"""Ultralytics' multi-object trackers (its cfg/trackers/NAME.yaml, shipped inside the package: nothing downloaded)."""
SAME_OBJECT_IOU = 0.8
"""Boxes of two classes that overlap by this much are one object (the detector's NMS, per class, kept both); the
same vehicle as car and truck in real fog overlaps by 0.9 and more (DAWN), a rider and their bicycle far less."""

Box = TypeVar("Box")
"""A detection: a frozen dataclass with `box` (x1, y1, x2, y2), `score`, `class_id` and `track_id`
(`detection.detector.Detection`)."""


class TrackIds:
    """The identities one stream has been given (`given`: the highest), shared by its trackers: one that starts or
    resets numbers its tracks from `given` + 1 as it stands at its first frame (Ultralytics' own count from 1
    again)."""

    def __init__(self) -> None:
        self.given = 0


class BoxTracker:
    """One stream's tracker: `kind` is one of TRACKERS (its configuration is the YAML file Ultralytics ships);
    `ids`: the identities given so far, shared with the trackers it replaces or that replace it (default: its
    own)."""

    def __init__(self, kind: str, ids: TrackIds | None = None) -> None:
        if kind not in TRACKERS:
            raise ValueError(f"unknown tracker {kind!r}; known: {', '.join(TRACKERS)}")
        offline_ultralytics()
        from ultralytics.engine.results import Boxes
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        settings = IterableSimpleNamespace(**YAML.load(check_yaml(f"{kind}.yaml")))
        self.kind = kind
        self._boxes = Boxes
        self._tracker: Any = TRACKER_MAP[settings.tracker_type](args=settings)
        self.ids = TrackIds() if ids is None else ids
        self._first_id: int | None = None
        """The id of the stream's first track, taken at its first frame (not at a reset: a tracker loaded to
        replace another resets before that one's last frames)."""
        self._size: tuple[int, ...] | None = None

    def reset(self) -> None:
        """Forget every track (a new stream starts): the next frame's objects are confirmed at once, with
        identities above every one given before."""
        self._tracker.reset()
        self._first_id = None
        self._size = None

    def __call__(self, detections: Sequence[Box], frame: np.ndarray) -> list[Box]:
        """The confirmed objects among `detections` of the stream's next `frame` (whose pixels the camera-motion
        compensation of botsort reads), each with its `track_id` and the tracker's box inside the frame. The boxes
        must be finite, as `Detector.detect` and fusion give them: from an infinite one the Kalman filter makes NaN
        boxes. A frame of another size than the last starts a new stream (`reset`): the old tracks' boxes are in
        other pixels, and botsort's motion compensation fails on every frame after a size change."""
        if self._size is not None and frame.shape[:2] != self._size:
            self.reset()
        self._size = frame.shape[:2]
        if self._first_id is None:
            self._first_id = self.ids.given + 1
        detections = one_box_per_object(detections)
        rows = np.array([[*d.box, d.score, d.class_id] for d in detections], np.float32).reshape(-1, 6)
        tracks = np.asarray(self._tracker.update(self._boxes(rows, frame.shape[:2]), frame), np.float64).reshape(-1, 8)
        boxes, _ = inside_frame(tracks[:, :4], frame.shape[1], frame.shape[0])
        found = [dataclasses.replace(detections[int(row[7])], box=tuple(float(v) for v in box),
                                     track_id=self._first_id - 1 + int(row[4])) for row, box in zip(tracks, boxes)]
        self.ids.given = max([self.ids.given] + [d.track_id for d in found])
        return found


def one_box_per_object(detections: Sequence[Box]) -> list[Box]:
    """`detections` (in their order) less each box that overlaps one of another class scored higher by at least
    SAME_OBJECT_IOU: one object the detector named twice."""
    if len(detections) < 2:
        return list(detections)
    boxes = np.array([d.box for d in detections], np.float64)
    iou = box_iou(boxes, boxes)
    kept: list[int] = []
    for index in sorted(range(len(detections)), key=lambda i: -detections[i].score):
        if not any(iou[index, k] >= SAME_OBJECT_IOU and detections[k].class_id != detections[index].class_id
                   for k in kept):
            kept.append(index)
    return [detections[i] for i in sorted(kept)]
