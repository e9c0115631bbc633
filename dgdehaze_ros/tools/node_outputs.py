"""Which of the node's stamped outputs answer a frame, read from its parameters, for the lockstep bag replay.

The replay sends the next frame once the node has answered the last one. Waiting for an output the node will not
publish for that frame (detections with detection off or between two detected frames, ~/visibility without a
mounting, depth with publish_depth off) would cost the whole timeout per frame; leaving out one it will publish
would record the frame without it. The node's parameters say which is which: `detection_interval` counts frames
from activation, so a node the replay started (whose first frame is the replay's warm-up) detects on the replay's
frames 0, N, 2N, ...; for a node already running that count is unknown until its first detections come (waited
for on every frame until then), and detections that come on another frame than counted set the count anew.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python

PLAN_PARAMETERS = ("publish_depth", "detection_enabled", "detection_interval", "camera_height", "base_frame")
"""The node's parameters that decide which outputs a frame gets."""
TRACKER_PARAMETER = ("tracker",)
"""The node's parameter of how its detections are followed, asked apart: rclpy answers a request that names one
parameter a node lacks (one from before it had a tracker) with no values at all."""


@dataclass(frozen=True)
class OutputPlan:
    """The outputs of the node's frame `n` (0: the first since activation): `required` are waited for (up to the
    timeout), `optional` a moment longer once the required have come. `available`: the outputs the replay
    subscribes to and the node offers."""

    available: frozenset[str]
    depth: bool = True
    detections: bool = True
    interval: int = 1
    detected_frame: int | None = 0
    """A frame the node detected on (0: the first since activation), None while unknown."""
    mounting: bool = False
    camera_info: bool = False
    tracker: str = ""
    """The node's tracker (empty: none), which the replay's hazy row is to follow its boxes with as well."""

    @classmethod
    def from_parameters(cls, values: dict[str, Any], available: Sequence[str], counted_from_activation: bool,
                        camera_info: bool) -> OutputPlan:
        """The plan for a node with these parameter `values` (a missing one keeps the node's default); with
        `counted_from_activation` the replay's frame 0 is the node's first."""
        return cls(frozenset(available), depth=bool(values.get("publish_depth", True)),
                   detections=bool(values.get("detection_enabled", True)),
                   interval=max(int(values.get("detection_interval", 1)), 1),
                   detected_frame=0 if counted_from_activation else None,
                   mounting=float(values.get("camera_height", 0.0)) > 0 or bool(values.get("base_frame", "")),
                   camera_info=camera_info, tracker=str(values.get("tracker") or ""))

    def _detected(self, n: int) -> bool:
        """Whether frame `n` gets detections (while the count is unknown: waited for, to learn it)."""
        if not self.detections:
            return False
        return self.detected_frame is None or (n - self.detected_frame) % self.interval == 0

    def required(self, n: int) -> list[str]:
        wanted = ["image_dehazed", *(["depth_relative"] if self.depth else []),
                  *(["detections"] if self._detected(n) else [])]
        return [name for name in wanted if name in self.available]

    def optional(self, n: int) -> list[str]:
        """Those the node publishes for some frames only: ~/visibility and ~/depth (metres) where its mounting
        measured the fog, camera_info once it has one."""
        wanted = [*(["camera_info"] if self.camera_info else []), "haze_density",
                  *(["visibility"] if self.mounting else []), *(["depth"] if self.mounting and self.depth else [])]
        return [name for name in wanted if name in self.available]

    def answered(self, n: int, outputs: Sequence[str]) -> OutputPlan:
        """The plan after frame `n` came back with `outputs`: detections on it fix the count of frames."""
        if "detections" in outputs and self.detections and self.detected_frame != n:
            return dataclasses.replace(self, detected_frame=n)
        return self

    def without_detections(self) -> OutputPlan:
        """The plan once the node has shown it publishes no detections (its detector did not load)."""
        return dataclasses.replace(self, detections=False)


def read_parameters(node: Any, remote: str, spin: Callable[[float], None], timeout: float,
                    names: Sequence[str] = PLAN_PARAMETERS) -> dict[str, Any]:
    """The parameters `names` of the node named `remote` through its get_parameters service; {} when it does not
    answer within `timeout` (the plan then assumes the node's defaults) or lacks one of them. A plain service client,
    as every supported rclpy has: rclpy's AsyncParameterClient is Iron and later."""
    client = node.create_client(GetParameters, f"{remote}/get_parameters")
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            return {}
        future = client.call_async(GetParameters.Request(names=list(names)))
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            spin(0.01)
    finally:
        node.destroy_client(client)
    if not future.done() or future.result() is None:
        return {}
    values = {name: parameter_value_to_python(value) for name, value in zip(names, future.result().values)}
    return {name: value for name, value in values.items() if value is not None}
