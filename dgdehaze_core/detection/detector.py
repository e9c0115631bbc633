"""Object detection on (dehazed) frames with Ultralytics YOLO, and the depth of each detection.

The detector file's suffix picks Ultralytics' backend: `.pt` (torch), `.onnx` (ONNX Runtime) or `.engine` (TensorRT).
A `.pt` is unpickled only after `detection.checkpoint` has found nothing in it but network layers and data.
A segmentation or pose model detects too (its boxes; `BOX_TASKS`), read as the task it was made for.
A dynamically quantised `.onnx` (the shipped file) runs as its float rebuild where that is faster (`precision`,
see `detection.precision`).
Nothing is downloaded: a weights path must exist on disk. The package ships one offline default,
`dgdehaze_core/weights/yolov8n_int8.onnx` (COCO YOLOv8n, int8, AGPL-3.0; see weights/README.md).
"""
from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dgdehaze_core.cpu_threads import threads_kept
from dgdehaze_core.datasets.paths import DEFAULT_DETECTOR
from dgdehaze_core.detection.boxes import inside_frame
from dgdehaze_core.detection.checkpoint import UnsafeCheckpoint, named_as_given, verified_copy
from dgdehaze_core.detection.input_size import check_imgsz
from dgdehaze_core.detection.offline import UltralyticsTooOld, offline_ultralytics
from dgdehaze_core.detection.precision import check_precision, runtime_weights
from dgdehaze_core.detection.tracking import TRACKERS, BoxTracker, TrackIds
from dgdehaze_core.io.file_paths import existing_file, file_suffix
from dgdehaze_core.io.images import to_bgr8
from dgdehaze_core.io.onnx_files import read_onnx

LOG = logging.getLogger(__name__)

DETECTOR_SUFFIXES = (".pt", ".onnx", ".engine")
BOX_TASKS = ("detect", "segment", "pose")
"""The Ultralytics tasks whose results hold boxes: a segmentation or pose model detects its classes too (Ultralytics
still computes its masks or keypoints, which are left unused)."""


class DetectorUnavailable(RuntimeError):
    """No usable detector: missing weights, unsupported format, a file Ultralytics cannot load, or an Ultralytics
    older than the package works with (`offline.ULTRALYTICS_FLOOR`)."""


@dataclass(frozen=True)
class Detection:
    """One detected object; `box` is (x1, y1, x2, y2) in pixels of the frame it was detected in."""

    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]
    track_id: int | None = None
    """The object's identity across frames when the detector tracks (`Detector(tracker=...)`, by
    `detection.tracking.BoxTracker`), else None."""


def default_detector_weights() -> Path | None:
    """The shipped offline detector, or None if the package was installed without it."""
    return DEFAULT_DETECTOR if DEFAULT_DETECTOR.is_file() else None


def _check_weights(weights: str | Path | None) -> Path:
    if weights is None or str(weights) == "":
        default = default_detector_weights()
        if default is None:
            raise DetectorUnavailable(f"no detector weights given and the default {DEFAULT_DETECTOR} is missing")
        return default
    path = Path(weights).expanduser()
    if file_suffix(path) not in DETECTOR_SUFFIXES:
        raise DetectorUnavailable(f"detector weights must be one of {', '.join(DETECTOR_SUFFIXES)} files, got {path}")
    try:
        existing_file(path, "detector weights file")
    except FileNotFoundError as exc:  # missing, a folder, a link to nothing, a pipe: each said as such
        raise DetectorUnavailable(f"{exc}; nothing is downloaded: give a local file") from None
    if path.stat().st_size == 0:  # an ONNX file of 0 bytes parses as an empty model, and failed as an IndexError
        raise DetectorUnavailable(f"{path} is empty (0 bytes): no detector weights in it")
    return path


def export_task(weights: Path) -> str:
    """The Ultralytics task an `.onnx` or `.engine` file was exported for, from the metadata Ultralytics embeds in
    it; "detect" for a file without any (a third-party export)."""
    offline_ultralytics()
    from ultralytics.nn.backends.base import BaseBackend

    return str(BaseBackend.read_metadata(weights).get("task") or "detect")


def _load_yolo(yolo_class: Any, weights: Path) -> Any:
    """YOLO over `weights` for the task the file was made for, so that Ultralytics reads its outputs as that task's:
    a `.pt`'s own (Ultralytics takes it from the checkpoint, which is loaded from a private copy that passed
    `check_detector_checkpoint`), an export's from its metadata (`export_task`; read as a detector, a segmentation
    or pose model's mask coefficients or keypoints would be taken for class scores). DetectorUnavailable for a task
    whose results hold no boxes (BOX_TASKS), or an ONNX file whose outputs are not a box model's
    (`_check_box_outputs`)."""
    if file_suffix(weights) != ".pt":
        yolo = yolo_class(str(weights), task=export_task(weights))
    else:
        with tempfile.TemporaryDirectory(prefix="dgdehaze-detector-") as folder:
            copy = verified_copy(weights, Path(folder))
            try:
                yolo = yolo_class(str(copy))
            except Exception as exc:  # Ultralytics raises many types, naming the file it read: the private copy
                raise DetectorUnavailable(f"could not load detector {weights}: "
                                          f"{named_as_given(exc, copy, weights)}") from exc
    if yolo.task not in BOX_TASKS:
        raise DetectorUnavailable(f"{weights} is an Ultralytics {yolo.task} model, whose results hold no boxes: give "
                                  f"a model of one of the tasks {', '.join(BOX_TASKS)}")
    if file_suffix(weights) == ".onnx":
        _check_box_outputs(weights)
    return yolo


def _check_box_outputs(weights: Path) -> None:
    """DetectorUnavailable for an ONNX file whose first output is not (batch, rows, columns), the shape every
    Ultralytics box model's first output has: another network (a dehazer export, whose outputs are images) would
    fail at its first run with an error about a reduction over its image."""
    outputs = read_onnx(weights, "ONNX detector").graph.output
    if len(outputs[0].type.tensor_type.shape.dim) != 3:
        dims = [[dim.dim_param or str(dim.dim_value) for dim in out.type.tensor_type.shape.dim] for out in outputs]
        shapes = ", ".join(f"{out.name} ({', '.join(shape)})" for out, shape in zip(outputs, dims))
        raise DetectorUnavailable(f"{weights} is not a detector: its outputs are {shapes}, where an Ultralytics "
                                  "detector's first output is (batch, 4 + classes, boxes) or (batch, boxes, 6)")


class Detector:
    """Ultralytics YOLO behind a small, validated interface: BGR frame in, `Detection`s out. `weights` is the file
    as given, `runtime_file` the one that runs (the same file or its float rebuild, by `precision`); `threads`: the
    intra-op threads of an ONNX file's session on the CPU (None: ONNX Runtime's choice). `half` runs a `.pt` in
    fp16 on a CUDA device; Ultralytics runs an ONNX file or an engine at the precision of its own input whatever
    `half` says (fp16 only for a file exported with half). `track_ids`: the identities a tracker's stream has been
    given (`tracking.TrackIds`), shared with the detector this one replaces, so its tracks' ids follow on."""

    def __init__(self, weights: str | Path | None = None, *, imgsz: int = 640, conf: float = 0.25, iou: float = 0.45,
                 classes: Sequence[int | str] | None = None, max_det: int = 100, device: str = "cpu",
                 half: bool = False, tracker: str | None = None, precision: str = "auto",
                 threads: int | None = None, track_ids: TrackIds | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1 (or None: ONNX Runtime's choice), got {threads}")
        check_imgsz(imgsz)
        if not 0.0 <= conf <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"conf and iou must lie in [0, 1], got conf={conf} iou={iou}")
        if max_det < 1:
            raise ValueError(f"max_det must be at least 1, got {max_det}")
        if tracker and tracker not in TRACKERS:
            raise ValueError(f"unknown tracker {tracker!r}; known: {', '.join(TRACKERS)}")
        check_precision(precision)
        try:
            offline_ultralytics()
        except UltralyticsTooOld as exc:  # before the tracker, which an older Ultralytics would number wrongly
            raise DetectorUnavailable(str(exc)) from None
        self.tracker = tracker or None
        self._tracks = BoxTracker(tracker, track_ids) if tracker else None
        self.weights = _check_weights(weights)
        try:
            with threads_kept():  # a rebuild or an export runs Ultralytics' own predictor and exporter
                self.runtime_file = runtime_weights(self.weights, precision, device)
        except ValueError as exc:
            raise DetectorUnavailable(str(exc)) from None
        except Exception as exc:  # Ultralytics' export raises many types
            raise DetectorUnavailable(f"could not rebuild detector {self.weights} in float: {exc}") from exc
        try:
            with threads_kept():  # reading the names sets up a predictor, which sets torch's threads
                self.model = _load_yolo(offline_ultralytics().YOLO, self.runtime_file)
                self.names: dict[int, str] = {int(k): str(v) for k, v in dict(self.model.names).items()}
        except DetectorUnavailable:
            raise
        except UnsafeCheckpoint as exc:
            raise DetectorUnavailable(str(exc)) from None
        except Exception as exc:  # Ultralytics raises many types for unreadable files
            raise DetectorUnavailable(f"could not load detector {self.weights}: {exc}") from exc
        self.imgsz, self.conf, self.iou, self.max_det = imgsz, conf, iou, max_det
        self._quiet_session: Any = None
        self.device, self.half, self.threads = device, half, threads
        self.classes = self.class_ids(classes)
        try:  # Ultralytics opens .onnx/.engine files at the first predict: fail here, not on the first frame
            self.detect(np.zeros((imgsz, imgsz, 3), np.uint8))
        except Exception as exc:
            raise DetectorUnavailable(f"could not run detector {self.weights}: {exc}") from exc
        LOG.info("detector %s: %d classes, on %s", self.label, len(self.names), device)

    def _reopen_quietly(self) -> None:
        """Ultralytics opens an ONNX file in a default ONNX Runtime session, whose threads spin after each run and
        take the cores from the dehazer that runs next; on the CPU provider it is reopened with the dehazer's
        session options (`threads`, no spinning). Ultralytics opens a new one when it builds a new predictor, so
        this runs after every prediction and acts on a session it has not reopened yet. Other runtimes and
        providers are left as they are."""
        backend = getattr(getattr(getattr(self.model, "predictor", None), "model", None), "backend", None)
        session = getattr(backend, "session", None)
        if session is None or session is self._quiet_session or file_suffix(self.runtime_file) != ".onnx" or \
                session.get_providers() != ["CPUExecutionProvider"]:
            return
        import onnxruntime

        from dgdehaze_core.inference.backends.onnxruntime_backend import session_options

        self._quiet_session = backend.session = onnxruntime.InferenceSession(
            str(self.runtime_file), session_options(self.threads or 0), providers=["CPUExecutionProvider"])

    @property
    def label(self) -> str:
        """The weights' file name, and "(float rebuild)" when that is what runs."""
        return self.weights.name + ("" if self.runtime_file == self.weights else " (float rebuild)")

    def class_ids(self, classes: Sequence[int | str] | None) -> list[int] | None:
        """The ids of `classes` (names or ids, as strings or ints), None for all; ValueError for a class this
        detector does not have."""
        if not classes:
            return None
        by_name = {name: idx for idx, name in self.names.items()}
        ids: list[int] = []
        for item in classes:
            if isinstance(item, str) and not (item.isascii() and item.isdigit()):
                if item not in by_name:
                    raise ValueError(f"unknown class {item!r}; the detector knows {sorted(by_name)}")
                ids.append(by_name[item])
            else:
                idx = int(item)
                if idx not in self.names:
                    raise ValueError(f"class id {idx} is outside the detector's 0..{len(self.names) - 1}")
                ids.append(idx)
        return ids

    def reset_tracks(self) -> None:
        """Forget every track (a new stream starts): the next frame is the tracker's first, whose objects are
        confirmed at once, with identities above every one given before. Nothing without a tracker."""
        if self._tracks is not None:
            self._tracks.reset()

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        """Detect objects in one uint8 BGR frame; with a tracker, the frames of one stream in order, each
        detection with its `track_id` (objects the tracker has not confirmed yet are left out)."""
        frame = to_bgr8(frame)
        return self.track(self.detect(frame), frame)

    def track(self, detections: Sequence[Detection], frame: np.ndarray) -> list[Detection]:
        """`detections` of the stream's next `frame` (from this detector, or several of its runs fused) with their
        track ids; as they are without a tracker."""
        return list(detections) if self._tracks is None else self._tracks(detections, frame)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """The objects in one frame (uint8 BGR, grey or 16-bit), without tracking. Every box lies inside the frame
        (Ultralytics clips a YOLO's boxes, not an RT-DETR's) and is finite: a box with a coordinate that is not a
        number (a diverged model) or with no area inside the frame is dropped, so that nothing downstream (fusion,
        the tracker, messages, drawings) meets one."""
        options = {"imgsz": self.imgsz, "conf": self.conf, "iou": self.iou, "classes": self.classes,
                   "max_det": self.max_det, "device": self.device, "quantize": 16 if self.half else None,
                   "verbose": False}
        frame = to_bgr8(frame)
        with threads_kept():  # a new predictor sets torch's threads for the whole process
            result = self.model.predict(frame, **options)[0]
        self._reopen_quietly()
        boxes = result.boxes
        xyxy, usable = inside_frame(boxes.xyxy.cpu().numpy(), frame.shape[1], frame.shape[0])
        scores = boxes.conf.cpu().numpy().astype(float)
        ids = boxes.cls.cpu().numpy().astype(int)
        return [Detection(int(c), self.names.get(int(c), str(c)), float(s), tuple(float(v) for v in box))
                for box, s, c, keep in zip(xyxy, scores, ids, usable) if keep]


def median_depth(detection: Detection, depth: np.ndarray) -> float:
    """Median of the finite depth values inside the detection's box (NaN when there are none, or the box has a
    coordinate that is not a number)."""
    height, width = depth.shape[:2]
    if not all(map(math.isfinite, detection.box)):
        return float("nan")
    x1, y1, x2, y2 = detection.box
    left, top = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    right, bottom = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
    if right <= left or bottom <= top:
        return float("nan")
    values = depth[top:bottom, left:right]
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")
