"""Detections as vision_msgs/Detection2DArray, each with the object's position in metres where it is known.

Encoding (the same as `dgdehaze bag-eval` writes): one Detection2D per object with the input's header; its
`bbox` is the box in pixels (center and size, theta 0); `results[0].hypothesis` holds the detector's numeric
class id as `class_id` (a decimal string, as vision_msgs intends) and the confidence as `score`, and a
vision_msgs/LabelInfo on a latched topic maps the ids to names (`label_info_msg`). `results[0].pose.pose.position`
is the object's position in the header's (optical) frame, in metres, as vision_msgs and REP-103 mean a pose: the
box centre's ray at the object's depth in metres (`FrameChain.detect`: the road's under the box, else the median of
~/depth in it); NaN (x, y and z) where it has none (a relative depth in a pose would read as metres). The orientation
is identity and the covariance zero (unknown). vision_msgs comes from the ROS
distribution, or from tools/build_vision_msgs.sh in the pip venv; where it is missing, `VISION_MSGS_AVAILABLE` is
False and the node publishes no detections and no haze density.

The haze density goes out as a whole-image vision_msgs/Classification (`haze_msg`): std_msgs has no stamped
number, and a stamped standard type lets a bag or a message filter align it with its frame.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header

from dgdehaze_core.bags.io import HAZE_CLASS
from dgdehaze_core.detection.detector import Detection

try:
    from vision_msgs.msg import (BoundingBox2D, Classification, Detection2D, Detection2DArray, LabelInfo,
                                 ObjectHypothesis, ObjectHypothesisWithPose, VisionClass)

    VISION_MSGS_AVAILABLE = True
except ImportError:
    VISION_MSGS_AVAILABLE = False

LABEL_INFO_QOS = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""~/label_info is latched: a subscriber that joins later still gets the class map (subscribe with this QoS)."""


def detections_to_msg(detections: Sequence[Detection], positions: Sequence[tuple[float, float, float]],
                      header: Header) -> "Detection2DArray":
    """One Detection2DArray for one frame; `positions[i]` is the (x, y, z) of `detections[i]` in metres in the
    optical frame, NaN where unknown (`FrameDetections.positions`)."""
    if len(detections) != len(positions):
        raise ValueError(f"{len(detections)} detections but {len(positions)} positions")
    out = Detection2DArray(header=header)
    for detection, position in zip(detections, positions):
        x1, y1, x2, y2 = detection.box
        item = Detection2D(header=header)
        item.bbox = BoundingBox2D(size_x=float(x2 - x1), size_y=float(y2 - y1))
        item.bbox.center.position.x = (x1 + x2) / 2.0
        item.bbox.center.position.y = (y1 + y2) / 2.0
        result = ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=str(detection.class_id), score=float(detection.score)))
        point = result.pose.pose.position
        point.x, point.y, point.z = (float(value) for value in position)
        result.pose.pose.orientation.w = 1.0
        item.results = [result]
        item.id = "" if detection.track_id is None else str(detection.track_id)
        out.detections.append(item)
    return out


def label_info_msg(names: Mapping[int, str], threshold: float, header: Header) -> "LabelInfo":
    """The detector's class map (id -> name) and its confidence threshold, for the latched label topic."""
    class_map = [VisionClass(class_id=int(i), class_name=str(name)) for i, name in sorted(names.items())]
    return LabelInfo(header=header, threshold=float(threshold), class_map=class_map)


def haze_msg(density: float, header: Header) -> "Classification":
    """~/haze_density: the frame's haze density (mean dark channel, 0 clear to 1 dense) as the score of the one
    hypothesis, class `haze_density`, of a whole-image vision_msgs/Classification with the frame's header."""
    return Classification(header=header, results=[ObjectHypothesis(class_id=HAZE_CLASS, score=float(density))])
