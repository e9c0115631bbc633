"""Which of the node's stamped outputs answer a frame, read from its parameters, for the lockstep bag replay.

The replay sends the next frame once the node has answered the last one. Waiting for an output the node will not
publish for that frame (detections with detection off or between two detected frames, ~/visibility without a
mounting, depth with publish_depth off) would cost the whole timeout per frame; leaving out one it will publish
would record the frame without it. The node's parameters say which is which: `detection_interval` counts frames
from activation, so a node the replay started (whose first frame is the replay's warm-up) detects on the replay's
frames 0, N, 2N, ...; for a node already running that count is unknown, and its detections are taken when they
come with the rest.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rclpy.parameter import parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient

PLAN_PARAMETERS = ("publish_depth", "detection_enabled", "detection_interval", "camera_height", "base_frame")
"""The node's parameters that decide which outputs a frame gets."""


@dataclass(frozen=True)
class OutputPlan:
    """The outputs of the node's frame `n` (0: the first since activation): `required` are waited for (up to the
    timeout), `optional` a moment longer once the required have come. `available`: the outputs the replay
    subscribes to and the node offers."""

    available: frozenset[str]
    depth: bool = True
    detections: bool = True
    interval: int = 1
    counted_from_activation: bool = True
    mounting: bool = False
    camera_info: bool = False

    @classmethod
    def from_parameters(cls, values: dict[str, Any], available: Sequence[str], counted_from_activation: bool,
                        camera_info: bool) -> OutputPlan:
        """The plan for a node with these parameter `values` (a missing one keeps the node's default)."""
        return cls(frozenset(available), depth=bool(values.get("publish_depth", True)),
                   detections=bool(values.get("detection_enabled", True)),
                   interval=max(int(values.get("detection_interval", 1)), 1),
                   counted_from_activation=counted_from_activation,
                   mounting=float(values.get("camera_height", 0.0)) > 0 or bool(values.get("base_frame", "")),
                   camera_info=camera_info)

    def _detected(self, n: int) -> bool | None:
        """Whether frame `n` gets detections (None: cannot be told)."""
        if not self.detections:
            return False
        if self.interval == 1:
            return True
        return n % self.interval == 0 if self.counted_from_activation else None

    def required(self, n: int) -> list[str]:
        wanted = ["image_dehazed", *(["depth_relative"] if self.depth else []),
                  *(["detections"] if self._detected(n) else [])]
        return [name for name in wanted if name in self.available]

    def optional(self, n: int) -> list[str]:
        wanted = [*(["camera_info"] if self.camera_info else []), "haze_density",
                  *(["visibility"] if self.mounting else []), *(["detections"] if self._detected(n) is None else [])]
        return [name for name in wanted if name in self.available]

    def without_detections(self) -> OutputPlan:
        """The plan once the node has shown it publishes no detections (its detector did not load)."""
        return OutputPlan(self.available, self.depth, False, self.interval, self.counted_from_activation,
                          self.mounting, self.camera_info)


def read_parameters(node: Any, remote: str, spin: Callable[[float], None], timeout: float) -> dict[str, Any]:
    """PLAN_PARAMETERS of the node named `remote` through its parameter services; {} when it does not answer
    within `timeout` (the plan then assumes the node's defaults)."""
    client = AsyncParameterClient(node, remote)
    if not client.wait_for_services(timeout_sec=timeout):
        return {}
    future = client.get_parameters(list(PLAN_PARAMETERS))
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        spin(0.01)
    if not future.done() or future.result() is None:
        return {}
    values = {name: parameter_value_to_python(value) for name, value in zip(PLAN_PARAMETERS, future.result().values)}
    return {name: value for name, value in values.items() if value is not None}
