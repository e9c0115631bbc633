"""The node's fog outputs: the estimator its parameters describe, `~/visibility` as sensor_msgs/Range, and the
fog's figures on /diagnostics.

`~/visibility` is a `sensor_msgs/Range` with the frame's header: `range` is the visibility in metres (NaN when
there is no fog to measure or no road to measure it on, REP-117's "invalid"; an upper bound when fog hides the road
in view, which /diagnostics and the debug image mark `at most`), `min_range` 0 and `max_range` the
`max_visibility` parameter (the thinnest fog measured), `field_of_view` the camera's horizontal field of view,
`variance` 0 (unknown). Range is the stamped distance-in-metres reading that ROS tools already understand (rviz
draws it as a cone, rosbag2 and message filters align it by stamp); its radiation_type has no value for visible
light, so it says INFRARED, the nearer of the two, and readers should ignore it.
"""
from __future__ import annotations

import math
from typing import Mapping

from sensor_msgs.msg import CameraInfo, Range
from std_msgs.msg import Header

from dgdehaze_core.physics.visibility import Mounting, VisibilityEstimator, VisibilityReading, field_of_view
from dgdehaze_ros.parameters import NodeSettings

FOG_PARAMETERS = frozenset({"camera_height", "camera_pitch", "base_frame", "road_region", "road_max_distance",
                            "max_visibility", "visibility_smoothing"})
"""Parameters whose change starts a new estimator (and forgets the smoothed fog density)."""


def estimator_for(settings: NodeSettings, mounting: Mounting | None = None) -> VisibilityEstimator | None:
    """The estimator for `mounting` (default: the parameters' camera_height and camera_pitch), or None without
    one."""
    mounting = mounting or settings.mounting()
    if mounting is None:
        return None
    return VisibilityEstimator(mounting, time_constant=settings["visibility_smoothing"],
                               max_visibility=settings["max_visibility"])


def visibility_msg(reading: VisibilityReading, header: Header, estimator: VisibilityEstimator,
                   info: CameraInfo, shape: tuple[int, int]) -> Range:
    """The reading of a frame of `shape` (height, width) as a Range with the frame's header (module docstring)."""
    return Range(header=header, radiation_type=Range.INFRARED, field_of_view=field_of_view(info, shape),
                 min_range=0.0, max_range=float(estimator.max_visibility), range=float(reading.visibility),
                 variance=0.0)


def fog_banner(reading: VisibilityReading | None, haze_density: float) -> str:
    """One line for the debug image: the haze density and the visibility (or why there is none)."""
    text = f"haze {haze_density:.2f}"
    if reading is None:
        return text
    if math.isfinite(reading.visibility):
        return f"{text}  visibility {'at most ' if reading.at_most else ''}{reading.visibility:.0f} m"
    return f"{text}  visibility: {reading.reason or 'unknown'}"


def fog_diagnostics(estimator: VisibilityEstimator | None, reading: VisibilityReading | None,
                    waiting: str = "") -> Mapping[str, str]:
    """/diagnostics values: the visibility (m), the smoothed and the frame's fog density (1/m), what the frame's
    was measured on (`fog_measured_on`: road or objects) and how many road pixels or road users, and why there is
    no visibility (`waiting`: what the last frame lacked, when it had no reading); with an estimator, the mounting it
    measures with (`camera_height_m`, `camera_pitch_rad`: the parameters', or the latest TF gave)."""
    held = None if estimator is None else estimator.mounting  # read once: the frame worker may remount meanwhile
    mounting = {} if held is None else {"camera_height_m": f"{held.height:.3f}",
                                        "camera_pitch_rad": f"{held.pitch:.4f}"}
    if reading is None:
        return {**mounting, "visibility": waiting or ("off: no camera_height" if estimator is None
                                                      else "waiting for a frame with camera_info")}
    return {**mounting, "visibility_m": f"{reading.visibility:.1f}", "fog_beta_per_m": f"{reading.beta:.5f}",
            "fog_beta_frame_per_m": f"{reading.measurement.beta:.5f}",
            "fog_measured_on": reading.measurement.source,
            "fog_road_pixels" if reading.measurement.source == "road" else "fog_objects":
                str(reading.measurement.pixels),
            "visibility": reading.reason or ("at most visibility_m: fog hides the road in view" if reading.at_most
                                             else "measured")}
