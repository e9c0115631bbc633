"""`dgdehaze bench node`: the node as a robot runs it, measured from outside.

The interface `dgdehaze bench node` calls (keep it stable):

    run_node_benchmark(model: str, width: int, height: int, rate_hz: float, duration_s: float, reliability: str,
                       detection: bool, fastdds: str = "auto", cpu_threads: int = 0) -> dict[str, dict[str, float]]

returns one row for dgdehaze_core.io.tables (row name -> figures below); `measure_node` is one row with
more knobs (publisher reliability, detection interval, Fast DDS environment).

The node runs in its own process (`python -m dgdehaze_ros.executable` with the given `model`, detection off unless
asked) on a private DDS domain. This process plays the camera (publishes hazy frames stamped with the current
time at a fixed rate) and the consumer (subscribes to ~/image_dehazed). Reported per row:
- transport: frames published, frames the node's callback received, and the rest as `transport_lost_pct`:
  lost between the processes (`transport_lost_reported` of them reported by the node's message_lost event, which
  can also count a warm-up frame whose loss shows only in the window: `warm_up_published` frames went before it), or
  replaced in the node's depth-1 reader history while its executor thread was busy (with a reliable input);
  `missing_in_sequence` of them the node counted from gaps in the camera's sequence numbers, and `unaccounted`
  what neither count saw (frames lost after the last one the node received);
- outputs: frames the node published, and those that reached the consumer (`outputs`; fewer when the consumer's
  process is too busy to take them before the node's depth-2 output history moves on);
- end-to-end latency: consumer receive time minus the input stamp (camera -> node -> consumer, two DDS hops);
- the node's own figures from /diagnostics: stamp-to-publish latency, inference time, overhead beyond inference
  (conversion, message building, publishing), frames dropped by the latest-frame worker, median and longest
  wait for the worker beside the median and longest time the worker took on a frame (`node_ms`: a typical wait
  longer than a typical frame's time would mean frames queued);
- the node process's resident memory after warm-up, at the end and the highest sampled (bounded memory), and its
  CPU time (every thread, idle moments of the window too) and page faults over the window per frame it published
  (`node_cpu_ms_per_frame`, `node_page_faults_per_frame`: what a frame costs the robot's cores);
- whether the newest frame was processed (the last frame published came out of the node).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
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

from dgdehaze_core.benchmarks.node_load import check_node_load
from dgdehaze_core.benchmarks.timing import hazy_test_frame
from dgdehaze_core.commands.ros_modes import RELIABILITIES
from dgdehaze_ros.conversions import bgr8_to_image
from dgdehaze_ros.fastdds_profile import launch_environment, transport_summary
from dgdehaze_ros.tools.child_process import log_tail, stop
from dgdehaze_ros.tools.environment import reserve_domain, scoped_environ

LOG = logging.getLogger(__name__)

NODE_NAME = "dgdehaze_bench"
STARTUP_TIMEOUT_S = 90.0
"""Seconds the node gets to load its models and subscribe to the camera's frames."""
SPINNER_JOIN_S = 5.0
"""How long the camera's spinning thread gets to return once its executor is shut down."""
QUIET_S = 2.0
"""After the last frame: how long without output (at least) means the node has nothing left to process."""
CAMERA_QOS_DEPTH = 5
"""History depth of the camera's publisher, as rclpy's sensor-data profile (a depth-1 reliable writer replaces a
frame not yet acknowledged, which counts as transport loss)."""


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _cpu_and_faults(pid: int) -> tuple[float, float]:
    """The CPU seconds (user and system, every thread) and page faults (minor and major) of process `pid` so far,
    from /proc/PID/stat; NaN where it cannot be read (not Linux, the process gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    except (OSError, IndexError):
        return float("nan"), float("nan")
    minor, major, user, system = (int(fields[i]) for i in (7, 9, 11, 12))  # stat(5): fields 10, 12, 14, 15
    return (user + system) / os.sysconf("SC_CLK_TCK"), float(minor + major)


def per_frame(amount: float, frames: float) -> float:
    """`amount` (CPU ms or page faults over the window) per published frame; NaN where the node's counters do not
    say how many it published (no /diagnostics report came: NaN) or it published none: no per-frame cost was
    measured, and the whole window's amount is no frame's."""
    return amount / frames if frames >= 1 else float("nan")


class _Camera(Node):
    """Publishes frames on /bench/image and records ~/image_dehazed arrivals and the node's diagnostics."""

    def __init__(self, context: Context, publisher_reliability: str) -> None:
        super().__init__(f"bench_camera_{os.getpid()}", context=context)
        qos = QoSProfile(depth=CAMERA_QOS_DEPTH, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.RELIABLE if publisher_reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        self.publisher = self.create_publisher(Image, "/bench/image", qos)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Image, f"/{NODE_NAME}/image_dehazed", self._on_output, reliable)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.output_stamps: set[int] = set()
        self.last_output = time.monotonic()
        self.outputs = 0
        self.diagnostics: dict[str, str] = {}

    def _on_output(self, msg: Image) -> None:
        now = self.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.outputs += 1
            self.last_output = time.monotonic()
            self.output_stamps.add(stamp)
            self.latencies_ms.append((now - stamp) / 1e6)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if NODE_NAME in status.name:
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def send(self, msg: Image) -> int:
        """Publish `msg` stamped now; returns the stamp in nanoseconds."""
        msg.header.stamp = self.get_clock().now().to_msg()
        self.publisher.publish(msg)
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _wait(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def measure_node(width: int, height: int, *, model: str = "dcp", rate_hz: float = 30.0, seconds: float = 10.0,
                 reliability: str = "reliable", publisher_reliability: str = "reliable", detection: bool = False,
                 detection_interval: int = 1, extra_env: dict[str, str] | None = None,
                 node_env: dict[str, str] | None = None, cpu_threads: int = 0,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S) -> dict[str, float]:
    """One benchmark row: the node (`model`) in a child process fed `rate_hz` frames of `width`x`height` for
    `seconds`. `extra_env` applies to both processes (e.g. Fast DDS transport settings; here only while the
    camera's ROS context starts, never left in the caller's environment), `node_env` to the node only;
    `cpu_threads`: the node's parameter of that name (0: its default, one thread per core, at most 4). A node that
    has not subscribed to the frames within `startup_timeout_s` is stopped, and RuntimeError ("the node did not
    start") carries the end of its log; the node process has ended whenever this returns."""
    if reliability not in RELIABILITIES:
        raise ValueError(f"reliability must be one of {', '.join(RELIABILITIES)}, got {reliability!r}")
    if publisher_reliability not in ("reliable", "best_effort"):
        raise ValueError(f"the camera publishes reliable or best_effort, got {publisher_reliability!r}")
    if reliability == "reliable" and publisher_reliability == "best_effort":
        raise ValueError("a reliable subscriber never matches a best_effort publisher")
    if width < 1 or height < 1:
        raise ValueError(f"the frame size must be positive, got {width}x{height}")
    check_node_load(rate_hz, seconds)
    domain = reserve_domain()
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1", **(extra_env or {}),
           **(node_env or {})}
    command = [sys.executable, "-m", "dgdehaze_ros.executable", "--ros-args", "-r", f"__node:={NODE_NAME}",
               "-r", "image:=/bench/image", "-p", f"model:={model}", "-p", f"image_reliability:={reliability}",
               "-p", f"detection_enabled:={'true' if detection else 'false'}",
               "-p", f"detection_interval:={detection_interval}", "-p", "diagnostics_period:=0.5",
               "-p", f"cpu_threads:={cpu_threads}"]
    context = Context()
    with scoped_environ(extra_env or {}):  # read by rclpy.init and by the camera's middleware participant only
        rclpy.init(context=context, domain_id=domain)
        camera = _Camera(context, publisher_reliability)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(camera)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    node_log = tempfile.TemporaryFile()  # the node starts last: a failure above leaves no process behind
    node_process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=node_log)
    try:
        frame = bgr8_to_image(hazy_test_frame(width, height), "bgr8", Image().header)
        if not _wait(lambda: camera.publisher.get_subscription_count() > 0 or node_process.poll() is not None,
                     startup_timeout_s) or node_process.poll() is not None:
            exit_code = node_process.poll()
            stop(node_process)
            why = (f"it exited with code {exit_code}" if exit_code is not None
                   else f"it did not subscribe within {startup_timeout_s:g} s")
            raise RuntimeError(f"the node did not start ({why}): {log_tail(node_log)}")
        # the node subscribes once active, its models loaded: a reliable frame comes out within seconds, while a
        # best_effort transport may lose every large frame (that loss is the measurement), so it waits less
        warm_up_s = 30.0 if publisher_reliability == "reliable" else 10.0
        warm_up_sent = 0

        def warm_up() -> bool:
            nonlocal warm_up_sent
            camera.send(frame)
            warm_up_sent += 1
            time.sleep(0.1)
            return camera.outputs > 0

        warmed = _wait(warm_up, warm_up_s)
        if not warmed:
            if publisher_reliability == "reliable":
                raise RuntimeError("the node published nothing during warm-up")
            LOG.warning("no best_effort warm-up frame reached the node in %.0f s; measuring the loss anyway",
                        warm_up_s)
        time.sleep(1.0)
        with camera.lock:
            camera.latencies_ms.clear()
            camera.outputs = 0
            start_diag = dict(camera.diagnostics)
        rss_start = _rss_mb(node_process.pid)
        usage_start = _cpu_and_faults(node_process.pid)
        rss_max, last_stamp = rss_start, 0
        published, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            last_stamp = camera.send(frame)
            published += 1
            if published % max(1, int(rate_hz)) == 0:
                rss_max = max(rss_max, _rss_mb(node_process.pid))
            time.sleep(max(0.0, min(start + published / rate_hz, start + seconds) - time.monotonic()))
        # the newest frame comes out, or (lost in transport) the node stays quiet for three output intervals
        quiet_s = max(QUIET_S, 3.0 * seconds / max(1, camera.outputs))
        _wait(lambda: last_stamp in camera.output_stamps or time.monotonic() - camera.last_output > quiet_s, 60.0)
        time.sleep(1.2)  # two diagnostics periods after the last frame
        rss_end = _rss_mb(node_process.pid)
        usage_end = _cpu_and_faults(node_process.pid)
        with camera.lock:
            latencies, outputs, diag = np.asarray(camera.latencies_ms), camera.outputs, dict(camera.diagnostics)
            newest_processed = last_stamp in camera.output_stamps
    finally:
        executor.shutdown(timeout_sec=2.0)
        # rclpy's shutdown does not wait for the spinning thread, which holds the camera's handles while it waits:
        # destroyed under it, the participant went down later in that thread, while the node process below exited,
        # and Fast DDS deadlocked there holding the GIL (a CI run hung in this test)
        spinner.join(SPINNER_JOIN_S)
        camera.destroy_node()
        rclpy.try_shutdown(context=context)
        stop(node_process)
        node_log.close()

    def delta(key: str) -> float:
        return float(diag.get(key, "nan")) - float(start_diag.get(key, "0"))

    received = delta("frames_received")
    missing = delta("frames_missing_in_sequence")
    frames = delta("frames_published")
    return {"published": float(published), "warm_up_published": float(warm_up_sent), "node_received": received,
            "transport_lost_pct": 100.0 * (published - received) / published,
            "transport_lost_reported": delta("frames_lost_in_transport"),
            "missing_in_sequence": missing, "unaccounted": float(published) - received - missing,
            "worker_dropped": delta("frames_dropped"), "node_published": delta("frames_published"),
            "outputs": float(outputs),
            "e2e_latency_ms_median": float(np.median(latencies)) if latencies.size else float("nan"),
            "e2e_latency_ms_p95": float(np.percentile(latencies, 95)) if latencies.size else float("nan"),
            "node_latency_ms_median": float(diag.get("latency_ms_median", "nan")),
            "inference_ms_median": float(diag.get("inference_ms_median", "nan")),
            "overhead_ms_median": float(diag.get("overhead_ms_median", "nan")),
            "queue_wait_ms_median": float(diag.get("queue_wait_ms_median", "nan")),
            "queue_wait_ms_max": float(diag.get("queue_wait_ms_max", "nan")),
            "node_ms_median": float(diag.get("node_ms_median", "nan")),
            "node_ms_max": float(diag.get("node_ms_max", "nan")),
            "node_cpu_ms_per_frame": per_frame(1000.0 * (usage_end[0] - usage_start[0]), frames),
            "node_page_faults_per_frame": per_frame(usage_end[1] - usage_start[1], frames),
            "rss_start_mb": rss_start, "rss_end_mb": rss_end, "rss_max_mb": max(rss_max, rss_end),
            "newest_frame_processed": float(newest_processed)}


def run_node_benchmark(model: str, width: int, height: int, rate_hz: float, duration_s: float, reliability: str,
                       detection: bool, fastdds: str = "auto", cpu_threads: int = 0) -> dict[str, dict[str, float]]:
    """The row `node <model>[+detection] <reliability> @WxH` for `dgdehaze bench node` (see the module docstring).
    `fastdds`: the node's process as the launch file's `fastdds_large_images` starts it (`auto`: the shipped profile
    where the environment configures no Fast DDS); `off` rows end in ` fastdds:off`. The camera and consumer
    process keeps the environment's settings. `cpu_threads`: the node's parameter (bench's --threads)."""
    name = f"node {model}{'+detection' if detection else ''} {reliability} @{width}x{height}"
    name += " fastdds:off" if fastdds.strip().lower() == "off" else ""
    node_env = launch_environment(fastdds)
    LOG.info("benchmarking %s: %g Hz for %g s (node: %s)", name, rate_hz, duration_s,
             transport_summary({**os.environ, **node_env}))
    return {name: measure_node(width, height, model=model, rate_hz=rate_hz, seconds=duration_s,
                               reliability=reliability, detection=detection, node_env=node_env,
                               cpu_threads=cpu_threads)}
