"""The one place the core reaches ROS: the `--node` modes and `--params-file` of `bag-eval`, and the `node` target
of `bench`.

Each runs code that needs rclpy (`dgdehaze_ros`). dgdehaze_core imports nothing from dgdehaze_ros: the ROS
package registers these modes as entry points of the group `dgdehaze.ros_modes` (setup.py), and the commands look
them up here by name. Without ROS (or without the package installed) a mode is missing and the command says why.
"""
from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Callable

GROUP = "dgdehaze.ros_modes"
BAG_REPLAY = "bag_replay"
"""`dgdehaze bag-eval --node`: the bag's frames through a running dgdehaze node (`replay_bag`)."""
NODE_BENCHMARK = "node_benchmark"
"""`dgdehaze bench node`: the node's frame rate and latency over DDS (`run_node_benchmark`)."""
PARAMS_FILE = "params_file"
"""`dgdehaze bag-eval --params-file`: a node parameters file read and checked as the node reads it
(`read_params_file`)."""
NODE_MODELS = ("dcp", "lite", "base")
"""The node's `model` parameter's values."""
RELIABILITIES = ("reliable", "best_effort", "system_default")
"""The node's `image_reliability` parameter's values: its input QoS."""


class RosModeUnavailable(RuntimeError):
    """A ROS mode was asked for where ROS 2 or the dgdehaze ROS package is not installed."""


def ros_mode(name: str) -> Callable[..., Any]:
    """The function registered as `name` in the `dgdehaze.ros_modes` group; RosModeUnavailable saying why when it
    is not registered or its module does not import (no rclpy)."""
    found = entry_points(group=GROUP, name=name)
    if not found:
        raise RosModeUnavailable(f"the ROS mode {name!r} is not installed: install dgdehaze with its ROS package "
                                 f"(dgdehaze_ros; `pip install -e .` or colcon) to register {GROUP}")
    entry = next(iter(found))
    try:
        return entry.load()
    except ImportError as exc:
        raise RosModeUnavailable(f"the ROS mode {name!r} needs ROS 2 (rclpy and the message packages): {exc}. "
                                 "Source a ROS 2 install or install the ros-* wheels (docs/ROS.md)") from None
