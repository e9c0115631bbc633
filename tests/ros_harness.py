"""Real rclpy pub/sub for the ROS tests: a private DDS domain per test session, a spinning executor, a probe node
that publishes camera frames and records everything the dgdehaze node publishes, and a dgdehaze node whose
background model loads the test holds for as long as it needs them to overlap something else (GatedLoads).

Imported by tests/test_ros_*.py (kept out of the shared conftest). Each test process (each pytest-xdist worker:
`make test` runs two) holds a domain of its own on this machine for as long as it runs, so that neither another
worker, nor another test session beside it, nor a bag replay or node benchmark sees its topics; the conftest keeps
every test's discovery on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST).
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
import traceback
from collections import defaultdict
from typing import Any, Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, Range
from std_msgs.msg import Header

from dgdehaze_ros.detection_messages import VISION_MSGS_AVAILABLE
from dgdehaze_ros.node import DehazeNode
from dgdehaze_ros.parameters import NodeSettings
from dgdehaze_ros.tools.environment import reserve_domain

if VISION_MSGS_AVAILABLE:
    from vision_msgs.msg import Classification, Detection2DArray

TEST_DOMAINS = range(1, 100)
"""The ROS_DOMAIN_IDs of test processes: 0 is everyone's default, the tools reserve theirs above
(`environment.PRIVATE_DOMAINS`)."""
DOMAIN_ID = reserve_domain(TEST_DOMAINS)
"""ROS_DOMAIN_ID of this test process, held (a lock on this machine) until it ends."""

PRIMER_SEC = 1_600_000_000
"""Stamp (seconds) of `Probe.connect`'s frames, apart from every `stamped_header`."""

SPIN_FAILURES: list[str] = []
"""The tracebacks that ended a session's spinning (`RosSession._spin`): a wait that times out names them."""

MAX_INVALID_HANDLES = 10_000
"""The most InvalidHandle exceptions a session spins on (`RosSession._spin`): a race raises one per wait set, so a
destroyed entity that stays among a node's would raise one on every wait set, and the session would spin on in a
busy loop."""

RELIABLE = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)


class RosSession:
    """One rclpy context on DOMAIN_ID with the SingleThreadedExecutor the node's own executable uses spinning in the
    background. Not rclpy's multi-threaded executor: it sometimes never delivers to a subscription re-created while
    it spins, as a deactivate and activate do, and every node of the session then went silent for the rest of its
    test module (24 tests of one CI run)."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=DOMAIN_ID)
        self.executor = SingleThreadedExecutor(context=self.context)
        self._closing = threading.Event()
        self.invalid_handles = 0
        """How many times rclpy's executor raised InvalidHandle and spun on (`_spin`)."""
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        """Spin until `close`. A test that destroys a subscription from its own thread (a trigger_deactivate, a
        `remove`) while the executor builds its wait set makes rclpy's executor raise InvalidHandle for the
        subscription's event handler, which it collected and then could not enter (ros2/rclpy#1284); the next wait
        set no longer holds it, so the executor spins on (ending there, every later test of the module would wait
        out its timeouts for outputs nobody delivers). Any other exception (a callback's) ends the spinning, said on
        stderr and kept in SPIN_FAILURES."""
        while not self._closing.is_set():
            try:
                self.executor.spin()
            except InvalidHandle:
                self.invalid_handles += 1
                if self.invalid_handles <= MAX_INVALID_HANDLES:
                    continue
                SPIN_FAILURES.append(f"{traceback.format_exc()}(past {MAX_INVALID_HANDLES}: an entity left "
                                     "destroyed among a node's, not a race)")
                print(f"the ROS test session stopped spinning:\n{SPIN_FAILURES[-1]}", file=sys.stderr)
            except Exception:
                if not self._closing.is_set() and self.context.ok():
                    SPIN_FAILURES.append(traceback.format_exc())
                    print(f"the ROS test session stopped spinning:\n{SPIN_FAILURES[-1]}", file=sys.stderr)
            return

    def add(self, node: Node) -> Node:
        self.executor.add_node(node)
        return node

    def listener(self, name: str, msg_type: type, topic: str, callback: Callable[[Any], None],
                 qos: QoSProfile | int) -> Node:
        """A node of this session (named `name` and the pid) that hands every message on `topic` to `callback`."""
        node = rclpy.create_node(f"{name}_{os.getpid()}", context=self.context)
        node.create_subscription(msg_type, topic, callback, qos)
        return self.add(node)

    def remove(self, node: Node) -> None:
        self.executor.remove_node(node)
        node.destroy_node()

    def close(self) -> None:
        """Stop spinning, wait for the spinning thread (Executor.shutdown does not: a context shut down while that
        thread still holds its nodes' handles can deadlock Fast DDS, as in `bench node`), then end the context."""
        self._closing.set()
        self.executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        rclpy.try_shutdown(context=self.context)


class Probe(Node):
    """Publishes frames to `image`/`camera_info` and records every output of the node under `node_path`."""

    def __init__(self, context: Context, node_path: str = "/dgdehaze", image_topic: str = "/camera/image",
                 info_topic: str = "/camera/camera_info", image_qos: QoSProfile = RELIABLE,
                 name: str = "probe") -> None:
        super().__init__(f"{name}_{os.getpid()}", context=context)
        self._node_path = node_path
        self.lock = threading.Lock()
        self.received: dict[str, list[Any]] = defaultdict(list)
        self.image_pub = self.create_publisher(Image, image_topic, image_qos)
        self.info_pub = self.create_publisher(CameraInfo, info_topic, RELIABLE)
        outputs: list[tuple[type, str]] = [(Image, "image_dehazed"), (Image, "depth"), (Image, "depth_relative"),
                                           (Range, "visibility"), (CameraInfo, "camera_info")]
        if VISION_MSGS_AVAILABLE:
            outputs += [(Detection2DArray, "detections"), (Classification, "haze_density")]
        for msg_type, name in outputs:
            self.create_subscription(msg_type, f"{node_path}/{name}", self._recorder(name), RELIABLE)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), RELIABLE)

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self.lock:
                self.received[name].append(msg)
        return record

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    def count(self, name: str) -> int:
        with self.lock:
            return len(self.received[name])

    def messages(self, name: str) -> list[Any]:
        with self.lock:
            return list(self.received[name])

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        return wait_until(condition, timeout)

    def wait_for_subscribers(self, timeout: float = 10.0) -> bool:
        """Until the node subscribes to the image and to camera_info: a camera_info sent before its subscription
        matched is lost, and the frame after it would have no intrinsics."""
        return self.wait_for(lambda: self.image_pub.get_subscription_count() > 0
                             and self.info_pub.get_subscription_count() > 0, timeout)

    def connect(self, timeout: float = 20.0) -> None:
        """`wait_for_subscribers`, then small frames with camera_info until the node relays one: the node has
        intrinsics before a test's first frame. Matching is not symmetric (the publisher can see the node's
        subscription before the node accepts its samples), and the node's executor may take a frame before the
        camera_info sent just ahead of it, so a test's first frame alone could find no camera_info. An AssertionError
        names the step that did not happen within `timeout`, what the probe received and the newest /diagnostics:
        it is the set-up error of every test of a module, and a CI log may keep only its first line."""
        if not self.wait_for_subscribers(timeout):
            raise AssertionError(f"nothing subscribed to {self.image_pub.topic_name} and {self.info_pub.topic_name} "
                                 f"within {timeout:g} s; {self._heard()}")
        deadline = time.monotonic() + timeout
        attempt = 0
        while time.monotonic() < deadline:
            header = Header(frame_id="camera_optical_frame")
            header.stamp.sec = PRIMER_SEC + attempt
            grey = Image(header=header, encoding="mono8", width=64, height=48, step=64, data=bytes([128]) * 3072)
            self.publish(grey, camera_info(64, 48))
            if self.wait_for(lambda: stamped_outputs(self, "camera_info", header), 1.0):
                return
            attempt += 1
        raise AssertionError(f"{self._node_path}/camera_info relayed none of {attempt} frames with camera_info "
                             f"within {timeout:g} s; {self._heard()}")

    def _heard(self) -> str:
        """What this probe has received: the count per output, and the newest /diagnostics status."""
        with self.lock:
            counts = {name: len(messages) for name, messages in self.received.items() if messages}
        level, message, _ = newest_diagnostics(self)
        return f"received {counts or 'nothing'}, the newest /diagnostics: " + \
            (f"level {level}, {message!r}" if level >= 0 else "none") + spinning_ended()

    def publish(self, msg: Image, info: CameraInfo | None = None) -> None:
        if info is not None:
            info.header = msg.header
            self.info_pub.publish(info)
        self.image_pub.publish(msg)


class GatedLoads(DehazeNode):
    """A background load of a network (lite, or `weights`: a slow export or engine build) that ends only when the
    test opens `gate`, then fails when `fail` is set (a truncated file); a configure loads them at once. With
    `hold_put_back` set, the loader's put-back of the parameters a failed load asked for (set_parameters) waits,
    `putting_back` set, until the test opens `put_back_gate`."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.loading, self.gate, self.fail = threading.Event(), threading.Event(), False
        self.hold_put_back, self.putting_back, self.put_back_gate = False, threading.Event(), threading.Event()
        super().__init__(name, **kwargs)

    def set_parameters(self, parameter_list: list[Parameter]) -> Any:
        if self.hold_put_back and threading.current_thread() in loader_threads(self.get_logger().name):
            self.putting_back.set()
            self.put_back_gate.wait(60.0)
        return super().set_parameters(parameter_list)

    def _load_pipeline(self, settings: NodeSettings) -> Any:
        network = settings["model"] == "lite" or bool(settings["weights"])
        if network and threading.current_thread() in loader_threads(self.get_logger().name):
            self.loading.set()
            self.gate.wait(60.0)
            if self.fail:
                raise ValueError("truncated weights")
        return super()._load_pipeline(settings)


def camera_node(session: RosSession, **parameters: Any) -> DehazeNode:
    """A dcp node of `session` on /camera/image and /camera/camera_info (reliable input, /diagnostics every 0.2 s)
    with `parameters` besides, configured and active."""
    from dgdehaze_ros.node import create_node

    node = create_node({"model": "dcp", "image_reliability": "reliable", "diagnostics_period": 0.2, **parameters},
                       remappings={"image": "/camera/image", "camera_info": "/camera/camera_info"},
                       context=session.context)
    session.add(node)
    return node


def gated_node(session: RosSession, name: str, change: dict[str, Any] | None = None, **parameters: Any) -> GatedLoads:
    """A configured and active dcp node of `session` (with `parameters`) whose `change` (default: to lite) is loading
    in the background."""
    node = GatedLoads(name, context=session.context, parameter_overrides=[
        Parameter(key, value=value) for key, value in
        {"model": "dcp", "backend": "torch", "detection_enabled": False, **parameters}.items()])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    session.add(node)
    changes = [Parameter(key, value=value) for key, value in (change or {"model": "lite"}).items()]
    assert all(result.successful for result in node.set_parameters(changes))
    assert node.loading.wait(30.0), f"the change {change} started no background load"
    return node


def loader_threads(name: str) -> list[threading.Thread]:
    """The live loader threads of the node whose logger is `name` (its name, `front.dgdehaze` in a namespace)."""
    return [t for t in threading.enumerate() if t.name == f"{name}-loader" and t.is_alive()]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether `condition` held within `timeout` seconds (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def spinning_ended() -> str:
    """The tail of a timed-out wait's message once a ROS test session stopped spinning (SPIN_FAILURES), which then
    delivers nothing: the exception that ended it; "" before."""
    if not SPIN_FAILURES:
        return ""
    return f"; a ROS test session stopped spinning: {SPIN_FAILURES[-1].strip().splitlines()[-1]}"


def stamped_header(index: int, frame_id: str = "camera_optical_frame") -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 1_700_000_000 + index, 1000 * index + 7
    return header


def camera_info(width: int, height: int) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [500.0, 0.0, width / 2, 0.0, 500.0, height / 2, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    return info


def stamped_outputs(probe: "Probe", topic: str, header: Header) -> list[Any]:
    """What the probe received on `topic` carrying `header`'s stamp."""
    stamp = (header.stamp.sec, header.stamp.nanosec)
    return [m for m in probe.messages(topic) if (m.header.stamp.sec, m.header.stamp.nanosec) == stamp]


def send_and_wait(probe: "Probe", msg: Image, topics: tuple[str, ...], timeout: float = 20.0) -> dict[str, Any]:
    """Publish one frame (with its camera_info) and return, per topic, the output carrying its stamp."""
    probe.publish(msg, camera_info(msg.width, msg.height))
    return wait_for_outputs(probe, msg.header, topics, timeout)


def wait_for_outputs(probe: "Probe", header: Header, topics: tuple[str, ...], timeout: float = 20.0) -> dict[str, Any]:
    """Per topic, the first output carrying `header`'s stamp, once every topic has one (asserted within `timeout`)."""
    assert probe.wait_for(lambda: all(stamped_outputs(probe, t, header) for t in topics), timeout), \
        f"missing outputs for stamp {header.stamp.sec}.{header.stamp.nanosec}: " \
        f"{[t for t in topics if not stamped_outputs(probe, t, header)]}{spinning_ended()}"
    return {t: stamped_outputs(probe, t, header)[0] for t in topics}


def set_ok(node: DehazeNode, **values: object) -> None:
    """Set `values` as one change. A list handed to `set_parameters` is applied one parameter at a time, so a reload
    could start (and fail, putting its parameter back) between two of them: `model=lite, backend=torch` could run
    lite on the old backend first."""
    result = node.set_parameters_atomically([Parameter(k, value=v) for k, v in values.items()])
    assert result.successful, result.reason


def reported_backend(probe: "Probe") -> str | None:
    """The backend named by the node's newest diagnostics message."""
    return newest_diagnostics(probe)[2].get("backend")


def any_room(text: str) -> str:
    """`text` with the room free in /dev/shm that a transport summary names where the Fast DDS profile does not fit
    (`has 62 MiB free`) made `has N MiB free`: a figure of the moment, which a node and its test read at different
    times while other tests' processes come and go."""
    return re.sub(r"has \d+ MiB free", "has N MiB free", text)


def newest_diagnostics(probe: "Probe") -> tuple[int, str, dict[str, str]]:
    """(level, message, values) of the node's newest diagnostics message; (-1, "", {}) before the first."""
    messages = probe.messages("diagnostics")
    if not messages:
        return -1, "", {}
    status = messages[-1].status[0]
    return int.from_bytes(status.level, "little") if isinstance(status.level, bytes) else int(status.level), \
        status.message, {kv.key: kv.value for kv in status.values}
