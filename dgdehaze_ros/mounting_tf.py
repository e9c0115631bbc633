"""The camera's mounting read from TF: its height above the road and its pitch, from the transform between a frame
on the road plane (`base_frame`, REP-105 base_footprint: z up, on the ground) and the frame of each image
(its header's frame_id, REP-103 optical: z forward, y down).

TF comes from tf2_ros, which a ROS install has and the pip-installed ROS 2 lacks: without it the node refuses a
`base_frame` with that reason (parameters.py), and the mounting comes from camera_height and camera_pitch.
"""
from __future__ import annotations

import importlib.util
from typing import Any

from rclpy.node import Node
from rclpy.time import Time

from dgdehaze_core.physics.visibility import height_and_pitch

TF_AVAILABLE = importlib.util.find_spec("tf2_ros") is not None
MISSING_TF = ("base_frame needs the Python tf2_ros (ros-<distro>-tf2-ros-py, which the ros_core variant and the "
              "pip-installed ROS 2 lack): install it, or give camera_height and camera_pitch instead")


class MountingUnavailable(RuntimeError):
    """No transform between the road frame and the image's frame (yet), with TF's reason."""


class TfMounting:
    """Listens to /tf and /tf_static on `node` and gives the camera's (height, pitch) for an image's frame."""

    def __init__(self, node: Node, base_frame: str) -> None:
        if not TF_AVAILABLE:
            raise MountingUnavailable(MISSING_TF)
        from tf2_ros import Buffer, TransformListener

        self.base_frame = base_frame
        self.buffer = Buffer()
        self.listener = TransformListener(self.buffer, node)

    def height_and_pitch(self, frame_id: str) -> tuple[float, float]:
        """The latest transform base_frame <- frame_id as (height m, pitch rad); MountingUnavailable when TF has
        none."""
        from tf2_ros import TransformException

        if not frame_id:
            raise MountingUnavailable("the image has no frame_id: TF cannot place the camera")
        try:
            transform: Any = self.buffer.lookup_transform(self.base_frame, frame_id, Time())
        except TransformException as exc:
            raise MountingUnavailable(f"no transform from {frame_id!r} to base_frame {self.base_frame!r}: "
                                      f"{exc}") from None
        t, q = transform.transform.translation, transform.transform.rotation
        return height_and_pitch((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))

    def close(self) -> None:
        self.listener.unregister()
