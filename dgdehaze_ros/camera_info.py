"""The node's camera_info: the one it re-publishes with each frame's outputs.

`~/camera_info` pairs with `~/image_dehazed`, `~/depth` and `~/depth_relative` (image_transport's CameraSubscriber
finds it beside them) for image_proc and depth_image_proc, so it describes those images as the node read the
input's: the input's camera_info with the frame's header where it describes the frame (or gives no size), scaled to
the frame where the frame is a resized copy of the image it describes (`resized_calibration`), as received where it
fits no resized copy (another aspect ratio: the node takes no intrinsics from it, `size_mismatch`).
"""
from __future__ import annotations

import copy

from sensor_msgs.msg import CameraInfo, RegionOfInterest
from std_msgs.msg import Header

from dgdehaze_core.physics.visibility import described_size, resized_camera_info


def relayed_camera_info(info: CameraInfo, header: Header, shape: tuple[int, int]) -> tuple[CameraInfo, str]:
    """`info` for the outputs of a frame of `shape` (height, width), with `header`, and a note for the log when it
    was scaled to the frame ("" otherwise). Scaled: the fields `resized_camera_info` gives (the frame's width and
    height, no region of interest or binning, K and P as `resized_calibration` gives them), D and R as received
    (they hold for any pixel scale)."""
    relay = copy.copy(info)
    relay.header = header
    scaled = resized_camera_info(info, shape)
    if scaled is None:
        return relay, ""
    relay.roi = RegionOfInterest(**scaled.pop("roi"))
    for name, value in scaled.items():
        setattr(relay, name, value)
    width, height = described_size(info)
    note = (f"camera_info describes a {width}x{height} image but the frames are {shape[1]}x{shape[0]}: its "
            "intrinsics are scaled to the frames (a resized image, or a camera_info of another mode?), and "
            "~/camera_info carries them scaled")
    return relay, note
