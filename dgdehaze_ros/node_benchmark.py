"""`dgdehaze bench node`: the node as a robot runs it, measured from outside.

The node runs in its own process (`python -m dgdehaze_ros.node`, DCP, detection off unless asked) on a private
DDS domain. This process plays the camera (publishes hazy frames stamped with the current time at a fixed rate)
and the consumer (subscribes to ~/image_dehazed). Reported per row:
- transport: frames published, frames the node received, frames lost in DDS between the two processes;
- end-to-end latency: consumer receive time minus the input stamp (camera -> node -> consumer, two DDS hops);
- the node's own figures from /diagnostics: stamp-to-publish latency, inference time, overhead beyond inference
  (conversion, message building, publishing), frames dropped by the latest-frame worker, longest queue wait;
- the node process's resident memory after warm-up and at the end (bounded memory under load).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dgdehaze_core.benchmark import hazy_test_frame
from dgdehaze_ros.conversions import bgr8_to_image
from dgdehaze_ros.parameters import RELIABILITIES

LOG = logging.getLogger(__name__)

NODE_NAME = "dgdehaze_bench"
STARTUP_TIMEOUT_S = 90.0


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


class _Camera(Node):
    """Publishes frames on /bench/image and records ~/image_dehazed arrivals and the node's diagnostics."""

    def __init__(self, context: Context, publisher_reliability: str) -> None:
        super().__init__(f"bench_camera_{os.getpid()}", context=context)
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE if publisher_reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        self.publisher = self.create_publisher(Image, "/bench/image", qos)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Image, f"/{NODE_NAME}/image_dehazed", self._on_output, reliable)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.outputs = 0
        self.diagnostics: dict[str, str] = {}

    def _on_output(self, msg: Image) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.outputs += 1
            self.latencies_ms.append((now - stamp) / 1e6)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if NODE_NAME in status.name:
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def send(self, msg: Image) -> None:
        msg.header.stamp = self.get_clock().now().to_msg()
        self.publisher.publish(msg)


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def measure_node(width: int, height: int, *, rate_hz: float = 30.0, seconds: float = 10.0,
                 reliability: str = "best_effort", publisher_reliability: str = "reliable", detection: bool = False,
                 extra_env: dict[str, str] | None = None, node_env: dict[str, str] | None = None) -> dict[str, float]:
    """One benchmark row: the node in a child process fed `rate_hz` frames of `width`x`height` for `seconds`.

    `extra_env` applies to both processes (e.g. Fast DDS transport settings), `node_env` to the node only."""
    if reliability not in RELIABILITIES:
        raise ValueError(f"reliability must be one of {', '.join(RELIABILITIES)}, got {reliability!r}")
    if publisher_reliability not in ("reliable", "best_effort"):
        raise ValueError(f"the camera publishes reliable or best_effort, got {publisher_reliability!r}")
    if reliability == "reliable" and publisher_reliability == "best_effort":
        raise ValueError("a reliable subscriber never matches a best_effort publisher")
    if rate_hz <= 0 or seconds <= 0:
        raise ValueError("rate and duration must be positive")
    domain = 1 + (os.getpid() + 101) % 200
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1", **(extra_env or {}),
           **(node_env or {})}
    command = [sys.executable, "-m", "dgdehaze_ros.node", "--ros-args", "-r", f"__node:={NODE_NAME}",
               "-r", "image:=/bench/image", "-p", f"image_reliability:={reliability}",
               "-p", f"detection_enabled:={'true' if detection else 'false'}", "-p", "diagnostics_period:=0.5"]
    node_process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    context = Context()
    saved_env = {k: os.environ.get(k) for k in (extra_env or {})}
    os.environ.update(extra_env or {})
    rclpy.init(context=context, domain_id=domain)
    camera = _Camera(context, publisher_reliability)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(camera)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        frame = bgr8_to_image(hazy_test_frame(width, height), "bgr8", Image().header)
        if not _wait(lambda: camera.publisher.get_subscription_count() > 0 or node_process.poll() is not None,
                     STARTUP_TIMEOUT_S) or node_process.poll() is not None:
            log = node_process.stderr.read()[-2000:] if node_process.stderr else ""
            raise RuntimeError(f"the node did not start: {log}")
        warmed = _wait(lambda: (camera.send(frame), time.sleep(0.1), camera.outputs > 0)[-1], 30.0)
        if not warmed:
            raise RuntimeError("the node published nothing during warm-up")
        time.sleep(1.0)
        with camera.lock:
            camera.latencies_ms.clear()
            camera.outputs = 0
            start_diag = dict(camera.diagnostics)
        rss_start = _rss_mb(node_process.pid)
        published, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            camera.send(frame)
            published += 1
            time.sleep(max(0.0, start + published / rate_hz - time.monotonic()))
        time.sleep(1.5)  # the last frame's processing and two diagnostics periods
        rss_end = _rss_mb(node_process.pid)
        with camera.lock:
            latencies, outputs, diag = np.asarray(camera.latencies_ms), camera.outputs, dict(camera.diagnostics)
    finally:
        executor.shutdown(timeout_sec=2.0)
        camera.destroy_node()
        rclpy.try_shutdown(context=context)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if node_process.poll() is None:
            node_process.send_signal(signal.SIGINT)
            try:
                node_process.wait(10)
            except subprocess.TimeoutExpired:
                node_process.kill()
                node_process.wait()

    def delta(key: str) -> float:
        return float(diag.get(key, "nan")) - float(start_diag.get(key, "0"))

    received = delta("frames_received")
    return {"published": float(published), "node_received": received,
            "transport_lost_pct": 100.0 * (published - received) / published,
            "worker_dropped": delta("frames_dropped"), "outputs": float(outputs),
            "e2e_latency_ms_median": float(np.median(latencies)) if latencies.size else float("nan"),
            "e2e_latency_ms_p95": float(np.percentile(latencies, 95)) if latencies.size else float("nan"),
            "node_latency_ms_median": float(diag.get("latency_ms_median", "nan")),
            "inference_ms_median": float(diag.get("inference_ms_median", "nan")),
            "overhead_ms_median": float(diag.get("overhead_ms_median", "nan")),
            "queue_wait_ms_max": float(diag.get("queue_wait_ms_max", "nan")),
            "rss_start_mb": rss_start, "rss_end_mb": rss_end}
