"""Benchmark rows for the detector: input size and int8 against float, speed and what each keeps.

Variants, all YOLOv8n on ONNX Runtime with the CPU provider, each file run as it is (`detection.rebuild` explains
the rebuilt files; `detector-fp32` is what `Detector` runs for the shipped file by default on x86):
- `detector-int8-shipped`: the shipped `yolov8n_int8.onnx`, fixed at 640x640 (Ultralytics ignores other sizes);
- `detector-int8`: the same uint8 weights in a graph with dynamic height and width, at each `imgsz`;
- `detector-fp32`: the float model (dequantised weights) at each `imgsz`.
Speed is timed on one hazy frame of the bench's first `--sizes` (640x480 by default) through `Detector`
(Ultralytics pre- and post-processing included); a row's `@N` is the detector's input size, not the frame's, and
its `ratio_to_dcp` divides by DCP's time on that frame, measured right before the row.
`detections_kept_pct` is the share of the shipped model's detections at 640 (conf 0.25) that a variant finds
again (same class, IoU >= 0.5) on real hazy frames; `detections_per_frame` is how many it finds per frame.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from dgdehaze_core.benchmarks.networks import BenchSettings, DcpBeside, Row, against_dcp
from dgdehaze_core.datasets.paths import shared_data_dir
from dgdehaze_core.detection.detector import DEFAULT_DETECTOR, Detection, Detector
from dgdehaze_core.io.images import ImageError, list_images, read_image

LOG = logging.getLogger(__name__)

MATCH_IOU = 0.5
VIDEO_FRAMES = {"foggy_road_night.mp4": 16, "mist_park.mp4": 8}
"""Frames taken, evenly spaced, from each shared fog video for the detections-kept figure."""


def real_hazy_frames(video_frames: dict[str, int] = VIDEO_FRAMES) -> list[np.ndarray]:
    """Real hazy frames from the shared data: RESIDE URHI and O-HAZE photos and frames of the fog videos
    (empty where the shared data is absent)."""
    data = shared_data_dir()
    if data is None:
        return []
    frames: list[np.ndarray] = []
    for folder in ("urhi", "o-haze"):
        for path in list_images(data / "hazy-real" / folder) if (data / "hazy-real" / folder).is_dir() else []:
            try:
                frames.append(read_image(path))
            except ImageError as exc:
                LOG.warning("skipping %s: %s", path, exc)
    for name, count in video_frames.items():
        video = data / "video" / name
        if not video.is_file() or count < 1:
            continue
        capture = cv2.VideoCapture(str(video))
        try:
            total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            for index in np.linspace(0, max(total - 1, 0), count).astype(int):
                capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
                ok, frame = capture.read()
                if ok:
                    frames.append(frame)
        finally:
            capture.release()
    return frames


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def kept(reference: Sequence[Detection], found: Sequence[Detection], min_iou: float = MATCH_IOU) -> int:
    """How many reference detections `found` matches one to one (same class, IoU >= min_iou), greedily by score."""
    unused = list(found)
    matched = 0
    for ref in sorted(reference, key=lambda d: -d.score):
        candidates = [(box_iou(ref.box, f.box), i) for i, f in enumerate(unused) if f.class_id == ref.class_id]
        best = max(candidates, default=(0.0, -1))
        if best[0] >= min_iou:
            matched += 1
            unused.pop(best[1])
    return matched


def bench_detector(imgszs: Sequence[int], frame: np.ndarray, settings: BenchSettings,
                   cache_dir: str | Path | None = None, real_frames: Sequence[np.ndarray] | None = None,
                   int8_onnx: Path = DEFAULT_DETECTOR) -> dict[str, Row]:
    """Rows for the shipped int8 detector at 640 and the dynamic int8 and fp32 rebuilds at each of `imgszs`."""
    from dgdehaze_core.detection.rebuild import dynamic_detector_exports

    exports = dynamic_detector_exports(int8_onnx, cache_dir=cache_dir)
    frames = list(real_hazy_frames() if real_frames is None else real_frames)
    if not frames:
        LOG.warning("no real hazy frames (shared data absent): detections kept is not measured")
    variants: list[tuple[str, Path, int]] = [("detector-int8-shipped", int8_onnx, 640)]
    for name, path in (("detector-int8", exports["int8"]), ("detector-fp32", exports["fp32"])):
        variants.extend((name, path, imgsz) for imgsz in imgszs)
    reference: list[list[Detection]] | None = None
    rows: dict[str, Row] = {}
    beside = DcpBeside(settings)
    for name, path, imgsz in variants:
        detector = Detector(path, imgsz=imgsz, precision="file", threads=settings.threads)
        LOG.info("measuring %s at imgsz %d", name, imgsz)
        dcp_ms = beside.ms(frame)
        timed = settings.measure(lambda: detector(frame))
        row: Row = {**timed, **against_dcp(timed, dcp_ms), "imgsz": float(imgsz)}
        found = [detector(image) for image in frames]
        if reference is None:
            reference = found
        total = sum(len(r) for r in reference)
        row["detections_per_frame"] = sum(len(f) for f in found) / len(found) if found else float("nan")
        row["detections_kept_pct"] = (100.0 * sum(kept(r, f) for r, f in zip(reference, found)) / total
                                      if total else float("nan"))
        rows[f"{name}/onnxruntime@{imgsz}"] = row
    return rows
