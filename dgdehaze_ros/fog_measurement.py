"""The node's fog measurement: the visibility estimator for each frame's camera mounting (from the parameters or,
with a base_frame, from TF), the latest reading, and what cannot be measured, said once with the reason."""
from __future__ import annotations

import re
import threading
from typing import Mapping

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from dgdehaze_core.inference.frame_chain import DehazedFrame, FrameChain
from dgdehaze_core.physics.lens import distortion_note
from dgdehaze_core.physics.visibility import (Intrinsics, VisibilityEstimator, VisibilityReading,
                                              horizon_note, intrinsics_of, pitch_words, size_mismatch)
from dgdehaze_ros.mounting_tf import MountingUnavailable, TfMounting
from dgdehaze_ros.parameters import NodeSettings
from dgdehaze_ros.visibility_messages import estimator_for, fog_diagnostics

NUMBER = re.compile(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?")
"""A number in a message: what `FogMeasurement.say_once` leaves out of the reason it says once."""
SAID_REASONS = 64
"""The most reasons `say_once` keeps: camera_info whose text changes with every message (a distortion model of
its own each time) would grow the set and log a warning a frame; past it, new reasons are logged throttled."""


class FogMeasurement:
    """Per node: `restart` with the parameters (FOG_PARAMETERS changed, or configure/cleanup), then per frame
    `estimator_for_frame` and `measure`. The smoothed fog density lives in the estimator and survives a remount."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._settings: NodeSettings | None = None
        self.estimator: VisibilityEstimator | None = None
        self.tf: TfMounting | None = None
        """The camera's mounting from TF, with a base_frame (see mounting_tf.py)."""
        self.reading: VisibilityReading | None = None
        """The last frame's reading; None when it had none (then `_waiting` says why)."""
        self.intrinsics: Intrinsics | None = None
        """The intrinsics `reading` was measured with (a raw image's with its lens), which the frame's detection
        positions take too; None with `reading`. Written and read on the frame worker only."""
        self._waiting = ""
        self._said: set[str] = set()
        self._restarted = threading.Lock()
        """Taken where `restart` replaces the settings and the estimator, and where a frame stores the estimator it
        made for the settings it read: one made for settings a restart has replaced since is not stored."""

    def restart(self, settings: NodeSettings | None) -> None:
        """A fresh estimator for `settings` (none for None): from camera_height and camera_pitch, or, with a
        base_frame, from TF at the first frame TF places; the TF listener follows base_frame."""
        if self.tf is not None and (settings is None or settings["base_frame"] != self.tf.base_frame):
            self.tf.close()
            self.tf = None
        if settings is not None and settings["base_frame"] and self.tf is None:
            self.tf = TfMounting(self._node, settings["base_frame"])
        estimator = estimator_for(settings) if settings is not None else None
        with self._restarted:
            self._settings, self.estimator = settings, estimator
        self.reading = None
        self._waiting = f"off: no transform from base_frame {self.tf.base_frame} to the camera yet" if self.tf else ""

    def estimator_for_frame(self, frame_id: str) -> VisibilityEstimator | None:
        """The estimator for this frame: the parameters' mounting, or TF's for its frame (None, said once with
        TF's reason, while TF has no transform). Runs on the frame worker while a parameter change may `restart` on
        the executor: it reads each attribute once."""
        tf, settings, estimator = self.tf, self._settings, self.estimator
        if tf is None or settings is None:
            return estimator
        try:
            mounting = settings.mounting_at(*tf.height_and_pitch(frame_id))
        except (MountingUnavailable, ValueError) as exc:
            self.say_once(f"no ~/visibility, ~/depth or detection distances until TF gives the camera's mounting: "
                          f"{exc}")
            self._waiting = f"off: no transform from base_frame {tf.base_frame} to {frame_id!r}: {exc}"
            return None
        if estimator is None:
            estimator = estimator_for(settings, mounting)
            with self._restarted:
                if self._settings is settings and self.estimator is None:
                    self.estimator = estimator
            self._node.get_logger().info(
                f"TF places the camera ({frame_id!r} in base_frame {tf.base_frame!r}) {mounting.height:.2f} m above "
                f"the road, pitch {mounting.pitch:.3f} rad ({pitch_words(mounting.pitch, 1)}); /diagnostics follows "
                "it (camera_height_m, camera_pitch_rad)")
        else:
            estimator.remount(mounting)
        return estimator

    def measure(self, chain: FrameChain, dehazed: DehazedFrame, info: CameraInfo | None, header: Header,
                image_topic: str = "", rectified: bool | None = None, withheld: str = "") -> VisibilityReading | None:
        """This frame's fog reading, or None (said once, with the reason) without a mounting or intrinsics. The
        frames on `image_topic` are rectified, raw (False: their lens distortion is undone) or not known to be either
        (None: taken as rectified), as `lens.frames_rectified` tells; a distortion not undone is said once
        (`lens.distortion_note`). `withheld`: why `info` is None where camera_info has come (`CameraInfos`).

        Runs on the frame worker while /diagnostics reads `reading` and `_waiting` on the executor: `reading` changes
        once, when the frame is measured (the last frame's stands until then), and `_waiting` is set before a None."""
        if chain.fog is None:
            if self.tf is None:
                self.say_once("no camera_height is set: no ~/visibility and no ~/depth in metres; ~/depth_relative "
                              "(unitless) only, and detection positions are NaN")
            self.reading = self.intrinsics = None
            return None
        shape = dehazed.result.transmission.shape[:2]
        intrinsics = intrinsics_of(info, shape, raw=rectified is False) if info is not None else None
        if intrinsics is None:
            missing = (withheld or "no camera_info has arrived") if info is None else \
                size_mismatch(info, shape) or "camera_info has no intrinsics"
            self.say_once(f"{missing}: no ~/visibility, ~/depth or detection distances until one with intrinsics "
                          "does")
            self._waiting = f"waiting for a camera_info with intrinsics ({missing})"
            self.reading = self.intrinsics = None
            return None
        distortion = distortion_note(info, image_topic, rectified)
        if distortion:
            self.say_once(distortion)
        source = f" from TF ({self.tf.base_frame} to the image's frame)" if self.tf is not None else ""
        if horizon := horizon_note(shape, intrinsics, chain.fog.mounting, source):
            self.say_once(horizon)
        self.reading = chain.measure_fog(dehazed, intrinsics, header.stamp.sec + header.stamp.nanosec * 1e-9)
        self.intrinsics = intrinsics if self.reading is not None else None
        return self.reading

    def distance_map(self, chain: FrameChain, dehazed: DehazedFrame,
                     reading: VisibilityReading | None) -> np.ndarray:
        """The depth detections carry (`FrameChain.distance_map`), and NaN while TF has not placed the camera of a
        base_frame mounting: the relative depth would read as metres."""
        if chain.fog is None and self.tf is not None:
            return np.full(dehazed.result.depth.shape, np.nan, np.float32)
        return chain.distance_map(dehazed, reading)

    def diagnostics(self) -> Mapping[str, str]:
        """/diagnostics values of the fog (`visibility_messages.fog_diagnostics`)."""
        return fog_diagnostics(self.estimator, self.reading, self._waiting)

    def say_once(self, message: str) -> None:
        """A warning the first time a reason comes, whatever numbers it carries: a mounting TF refuses each frame
        (a height below the road, a roll) carries the height or roll of that frame, and /diagnostics has the
        latest. The node says its camera_info notes with it too. At most SAID_REASONS reasons are kept; later new
        ones are said throttled."""
        reason = NUMBER.sub("#", message)
        if reason in self._said:
            return
        if len(self._said) < SAID_REASONS:
            self._said.add(reason)
            self._node.get_logger().warning(message)
        else:
            self._node.get_logger().warning(f"{message} (over {SAID_REASONS} different notes: said at most every "
                                            "10 s)", throttle_duration_sec=10.0)
