"""A frame the node answered, as node replay records it: its outputs (CDR as received) into the output bag at the
frame's recording time, and its figures into the evaluation.

Shared by the lockstep replay (`bag_replay._run`) and the replay at the recorded rate (`bag_replay._run_paced`, which
spools the outputs with `paced_replay`): they collect a frame's outputs differently and record them alike.
"""
from __future__ import annotations

import logging
import math
from typing import Any, Mapping

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, Range

from dgdehaze_core.bags.io import (CAMERA_INFO_TYPE, DETECTIONS_TYPE, HAZE_TYPE, IMAGE_TYPE, LABEL_INFO_TYPE,
                                   RANGE_TYPE, decode_image)
from dgdehaze_core.bags.evaluation import timed_detect
from dgdehaze_core.bags.records import BagEvaluation, FrameRecord, Sample
from dgdehaze_core.bags.writer import BagWriter
from dgdehaze_core.detection.detector import Detection, Detector, median_depth
from dgdehaze_core.detection.tracking import BoxTracker
from dgdehaze_core.io.camera_frames import raw_pixels
from dgdehaze_core.physics.dark_channel import haze_density

__all__ = ["OUTPUTS", "LabelInfo", "detections_from", "image_from", "record_frame"]

LOG = logging.getLogger(__name__)

OUTPUTS: dict[str, tuple[type, str]] = {
    "image_dehazed": (Image, IMAGE_TYPE), "depth_relative": (Image, IMAGE_TYPE), "depth": (Image, IMAGE_TYPE),
    "camera_info": (CameraInfo, CAMERA_INFO_TYPE), "visibility": (Range, RANGE_TYPE)}
"""The node's `~/` outputs: name -> (rclpy class, type name)."""
LabelInfo: type | None = None
try:
    from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

    OUTPUTS["detections"] = (Detection2DArray, DETECTIONS_TYPE)
    OUTPUTS["haze_density"] = (Classification, HAZE_TYPE)
except ImportError:  # the node publishes no detections without vision_msgs either (detection_messages.py)
    LOG.warning("vision_msgs is not importable: node replay records no detections (see tools/build_vision_msgs.sh)")


def detections_from(msg: Any, names: Mapping[int, str]) -> list[Detection]:
    """The node's detections; `class_id` is a numeric id named by its ~/label_info (the id itself if unnamed)."""
    out = []
    for detection in msg.detections:
        hypothesis = max(detection.results, key=lambda r: r.hypothesis.score).hypothesis if detection.results \
            else None
        cx, cy = detection.bbox.center.position.x, detection.bbox.center.position.y
        w, h = detection.bbox.size_x, detection.bbox.size_y
        class_id = int(hypothesis.class_id) if hypothesis and hypothesis.class_id.isdigit() else -1
        name = names.get(class_id, hypothesis.class_id) if hypothesis else ""
        out.append(Detection(class_id, name, float(hypothesis.score) if hypothesis else 0.0,
                             (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    return out


def position_depths(msg: Any) -> list[float]:
    """Each detection's depth in metres as the node placed it: its position's z (NaN without a result)."""
    return [float(d.results[0].pose.pose.position.z) if d.results else math.nan for d in msg.detections]


def image_from(msg: Any, bits: int) -> np.ndarray:
    """A node output as an array: 32FC1 as float, a frame as uint8 BGR (16-bit samples of `bits` bits)."""
    if msg.encoding == "32FC1":
        return raw_pixels(msg, camera=False).astype(np.float32)
    return decode_image(msg, IMAGE_TYPE, bits)


def record_frame(evaluation: BagEvaluation, writer: BagWriter, node_name: str, outputs: dict[str, Any], index: int,
                 stamp: int, log_time: int, hazy: np.ndarray, detector: Detector | None, keep: set[int],
                 detecting: bool = True, tracks: BoxTracker | None = None) -> None:
    """Write the node's outputs for one frame at the frame's receive time and add its figures. `detecting`: the
    node publishes detections (on its `detection_interval`'s frames): the hazy row is then detected on the frames
    it published them for alone, as the dehazed row is, so that the two count the same frames. `tracks`: the hazy
    row's tracker where the node tracks, so that both rows count the objects a tracker confirmed."""
    store = writer.store
    prefix = f"/{node_name}"
    rewritten = {"image_dehazed", "depth_relative", "depth"} if writer.images != "raw" else set()
    for name, (_, msgtype) in OUTPUTS.items():
        if outputs.get(name) and name not in rewritten:  # as received; the images compressed (or left out) below
            writer.write_raw(f"{prefix}/{name}", msgtype, log_time, outputs[name][1])
    labels = store.deserialize_cdr(outputs["_labels"], LABEL_INFO_TYPE) if outputs.get("_labels") else None
    if labels is not None and not evaluation.records:
        writer.write_raw(f"{prefix}/label_info", LABEL_INFO_TYPE, log_time, outputs["_labels"])
    names = {int(c.class_id): str(c.class_name) for c in labels.class_map} if labels is not None else {}
    dehazed_msg = store.deserialize_cdr(outputs["image_dehazed"][1], IMAGE_TYPE)
    dehazed = image_from(dehazed_msg, evaluation.input_bits)
    detections_msg = (store.deserialize_cdr(outputs["detections"][1], DETECTIONS_TYPE) if outputs.get("detections")
                      else None)
    detections = detections_from(detections_msg, names) if detections_msg is not None else []
    depth_msg = (store.deserialize_cdr(outputs["depth_relative"][1], IMAGE_TYPE) if outputs.get("depth_relative")
                 else None)
    depth = (image_from(depth_msg, evaluation.input_bits) if depth_msg is not None
             else np.full(dehazed.shape[:2], np.nan, np.float32))
    density = (float(store.deserialize_cdr(outputs["haze_density"][1], HAZE_TYPE).results[0].score)
               if outputs.get("haze_density") else haze_density(hazy))
    visibility = (float(store.deserialize_cdr(outputs["visibility"][1], RANGE_TYPE).range)
                  if outputs.get("visibility") else math.nan)
    metres_msg = store.deserialize_cdr(outputs["depth"][1], IMAGE_TYPE) if outputs.get("depth") else None
    metres = image_from(metres_msg, evaluation.input_bits) if metres_msg is not None else None
    if rewritten:
        writer.write_image(f"{prefix}/image_dehazed", log_time, dehazed_msg.header, dehazed,
                           raw_pixels(dehazed_msg), dehazed_msg.encoding)
        if depth_msg is not None:
            writer.write_image(f"{prefix}/depth_relative", log_time, depth_msg.header, depth)
        if metres_msg is not None:
            writer.write_image(f"{prefix}/depth", log_time, metres_msg.header, metres)
    arrivals = {name: value[0] for name, value in outputs.items() if not name.startswith("_") and value}
    last = max(arrivals.values())
    detected = outputs.get("detections") is not None or not detecting
    hazy_detections, hazy_ms = timed_detect(detector, hazy, tracks) if detected else ([], math.nan)
    if metres is not None:  # the node's own depth of each object in metres: its position's z, as offline
        depths = position_depths(detections_msg) if detections_msg is not None else []
    else:
        depths = [median_depth(d, depth) for d in detections] if depth_msg is not None else []
    evaluation.records.append(FrameRecord(
        index=index, stamp_ns=stamp, log_time_ns=log_time, haze_density_hazy=density,
        haze_density_dehazed=haze_density(dehazed),
        latency_ms=(last - outputs["_sent"]) * 1000.0, detect_hazy_ms=hazy_ms, hazy_detections=hazy_detections,
        dehazed_detections=detections, detection_depths=depths, visibility_m=visibility,
        output_latency_ms={name: (arrival - outputs["_sent"]) * 1000.0 for name, arrival in arrivals.items()},
        detected=detected))
    if index in keep:
        evaluation.samples.append(Sample(index, stamp, hazy, dehazed, depth, hazy_detections, detections, detected))
