"""The camera's mounting read from TF: its height above the road and its pitch, from the transform between a frame
on the road plane (`base_frame`, REP-105 base_footprint: z up, on the ground) and the frame of each image
(its header's frame_id, REP-103 optical: z forward, y down).

TF comes from tf2_ros, which a ROS install has and the pip-installed ROS 2 lacks: without it the node refuses a
`base_frame` with that reason (parameters.py), and the mounting comes from camera_height and camera_pitch.

The buffer is cleared when the node's clock jumps back (`on_jump_back`), as tf2_ros's C++ Buffer does: rclpy's
Buffer does not (Humble), or watches the system clock instead of /clock (a Buffer made without a node, Jazzy on).
Kept across a bag played with --loop, its caches hold the old loop's newest transforms, which stay the latest: a
mounting on /tf stayed the old loop's last one, and tf2 refused each transform of the new loop older than those
less its 10 s cache with a TF_OLD_DATA warning (odometry at 50 Hz: 50 warnings a second).
"""
from __future__ import annotations

import importlib.util
from typing import Any, Callable

from rclpy.clock import JumpHandle, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time

from dgdehaze_core.physics.visibility import height_and_pitch

TF_AVAILABLE = importlib.util.find_spec("tf2_ros") is not None
MISSING_TF = ("base_frame needs the Python tf2_ros (ros-<distro>-tf2-ros-py, which the ros_core variant and the "
              "pip-installed ROS 2 lack): install it, or give camera_height and camera_pitch instead")


BACKWARD_JUMP = JumpThreshold(min_forward=None, min_backward=Duration(seconds=-1), on_clock_change=True)
"""What clears TF, as tf2_ros's C++ Buffer has it: the clock set back a second or more, or its source changed."""


def on_jump_back(node: Node, act: Callable[[], None]) -> JumpHandle:
    """Call `act` (on the executor) whenever `node`'s clock jumps back (BACKWARD_JUMP): with use_sim_time, a bag
    played with --loop starting again, or /clock set back; until the handle is unregistered."""
    def jumped(jump: TimeJump) -> None:
        act()
    return node.get_clock().create_jump_callback(BACKWARD_JUMP, post_callback=jumped)


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
        self._jumps = on_jump_back(node, self.buffer.clear)

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
        self._jumps.unregister()
        self.listener.unregister()
