"""Replay a bag through the real `dgdehaze_node` over ROS topics and record what it publishes.

`replay_bag` either starts the node (`dgdehaze_node`, isolated on its own DDS domain, localhost only; with the
shipped Fast DDS profile unless the environment configures Fast DDS, so that the node's large images do not cross as
UDP fragments whose repair adds seconds to a frame's latency) or attaches to one that is already running
(`attach=True`, the user's environment and node). It publishes every frame of the bag's image topic with its
original header, in lockstep: the next frame goes out when the node's outputs for the previous one (matched by
header stamp; a frame that repeats an earlier one's stamp is sent with one of its own: `UniqueStamps`) have
arrived, so the node's keep-newest-frame policy drops nothing and the latency is the node's own (publish to last
output received). With a `rate`, frames go out at the recording's pace instead and the node drops what it cannot
keep up with (`paced_replay`). The recorded outputs, CDR as received but for a stamp given back, go into the output
bag at the input frames' original receive times, and the same report as the offline mode is written. A node that
stops part way (`NodeReplay.gone`) ends the replay at once, with the report of the frames before.

Output topics are the node's `~/` topics: /<node_name>/image_dehazed, depth_relative, detections, haze_density,
camera_info, and with a mounting visibility and depth (metres). The input topics are the bag's own names (as
`ros2 bag play` would publish them); a started node is remapped onto them, an attached node must already subscribe
to them.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import rclpy
from lifecycle_msgs.srv import GetState
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tqdm import tqdm

from dgdehaze_core.bags.disk_room import room_problem
from dgdehaze_core.bags.evaluation import (Read, check_output_folder, check_rate, copied_messages, frame_counts,
                                           node_method, time_window_notes, timed_detect)
from dgdehaze_core.bags.io import CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, BagSource
from dgdehaze_core.bags.writer import BagWriter, output_images
from dgdehaze_core.bags.records import BagEvaluation, sample_indices
from dgdehaze_core.bags.report import write_report
from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.detection.tracking import BoxTracker
from dgdehaze_core.io.atomic_files import atomic_path
from dgdehaze_core.io.file_paths import file_suffix
from dgdehaze_core.io.images import SAMPLE_BITS, ImageError
from dgdehaze_ros.detection_messages import LABEL_INFO_QOS
from dgdehaze_ros.parameters import WEIGHTS_SUFFIXES
from dgdehaze_ros.rclpy_compat import publisher_count
from dgdehaze_ros.tools.child_process import stop
from dgdehaze_ros.tools.environment import reserve_domain, scoped_environ
from dgdehaze_ros.tools.node_outputs import TRACKER_PARAMETER, OutputPlan, read_parameters
from dgdehaze_ros.tools.paced_replay import (OutputSpool, UniqueStamps, answers, copied_bytes, header_stamp_ns,
                                             node_counts_between, pace_shortfall, paced_note, send_paced, sent_rate,
                                             window_frames, with_header_stamp)
from dgdehaze_ros.tools.replay_records import OUTPUTS, LabelInfo, record_frame

LOG = logging.getLogger(__name__)

STARTUP_TIMEOUT = 120.0
"""Seconds a started node gets to load its models and become active."""
DIAGNOSTICS_WAIT_S = 3.0
"""How long a replay that heard no /diagnostics report of its node waits for one when it ends (a node reports every
`diagnostics_period`, 1 s by default; the replay itself lasts longer than that)."""
COUNTERS_WAIT_S = 5.0
"""How long a paced replay waits for the node's next /diagnostics report, before and after it sends, for its
counters (a node reports every `diagnostics_period`, 1 s by default; a busy machine delays it)."""
GONE_CHECK_S = 0.25
"""How often a frame waiting for its outputs checks that the node is still there (`NodeReplay.gone`)."""
SILENCE_S = 3.5
"""How long an attached node may leave a lifecycle state request unanswered, counted in time this replay spends
listening (`NodeReplay.spin`), before the replay takes it for gone. A node that crashed or was killed says no goodbye:
DDS drops its endpoints, and its subscription to the frames with them, only once its lease expires (20 s with Fast
DDS's defaults), so the subscriber count alone sent frames to nobody that long. Longer than Fast DDS's 3 s heartbeat
period, after which a request lost on a lossy link (a node attached over Wi-Fi) is sent again: a live node is not
taken for gone over one lost packet."""
LOCAL_DISCOVERY = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
"""A started node and this replay's context discover each other on this machine only (rcl reads it at init)."""


class NodeReplayError(RuntimeError):
    """The node could not be started, reached or kept answering."""


class NodeGone(NodeReplayError):
    """The node stopped part way: its process exited, or an attached node no longer takes the frames."""


def _node_command(node_name: str, image_topic: str, compressed: bool, camera_info_topic: str | None,
                  method: str, detection: bool, node_params: Sequence[str] = (),
                  params_file: str | None = None) -> list[str]:
    """The started node's command line: `params_file` first, so that the replay's own parameters and `node_params`
    win over it, as -p does over --params-file: the node activates itself (a file's `autostart: false` waits for a
    lifecycle manager the replay does not run), and runs `method`, not a file's `weights` beside a model name.
    `node_name` may name a namespace (front/dgdehaze), whose sections of a robot's file the node then reads."""
    namespace, _, name = node_name.rpartition("/")  # front/dgdehaze: the node dgdehaze in the namespace /front
    args = ["--ros-args", *(["--params-file", params_file] if params_file else []), "-r", f"__node:={name}",
            *(["-r", f"__ns:=/{namespace}"] if namespace else []),
            "-p", f"input_transport:={'compressed' if compressed else 'raw'}",
            "-p", "image_reliability:=reliable", "-p", "image_qos_depth:=1", "-p", "autostart:=true",
            "-p", f"detection_enabled:={'true' if detection else 'false'}"]
    if file_suffix(method) in WEIGHTS_SUFFIXES:  # a file, as offline takes it (.pth, .PT too)
        args += ["-p", f"weights:={method}"]
    else:
        args += ["-p", f"model:={method}", "-p", "weights:=''"]
    input_name = "image/compressed" if compressed else "image"
    args += ["-r", f"{input_name}:={image_topic}"]
    if camera_info_topic:
        args += ["-r", f"camera_info:={camera_info_topic}"]
    for param in node_params:
        if ":=" not in param:
            raise ValueError(f"node parameters look like name:=value, got {param!r}")
        args += ["-p", param]
    return [sys.executable, "-m", "dgdehaze_ros.executable", *args]


class _Recorder:
    """Subscriptions to the node's outputs; keeps each message as received (CDR bytes) with its receive time, until
    the next frame goes out (`forget`), or hands it to `sink` where one is set."""

    def __init__(self, node: Any, node_name: str) -> None:
        self.node = node
        self.received: dict[str, list[tuple[float, bytes]]] = {name: [] for name in OUTPUTS}
        self.sink: Callable[[str, bytes], None] | None = None
        """Where outputs go instead (name, CDR): the paced replay's spool."""
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.subscriptions = {}
        for name, (cls, _) in OUTPUTS.items():
            self.subscriptions[name] = node.create_subscription(
                cls, f"/{node_name}/{name}", lambda raw, name=name: self._store(name, raw), qos, raw=True)
        self.labels: bytes | None = None
        """The node's latched ~/label_info (CDR), which names the class ids of its detections."""
        if LabelInfo is not None:
            self.label_subscription = node.create_subscription(
                LabelInfo, f"/{node_name}/label_info", self._store_labels, LABEL_INFO_QOS, raw=True)

    def _store_labels(self, raw: bytes) -> None:
        self.labels = bytes(raw)

    def _store(self, name: str, raw: bytes) -> None:
        if self.sink is not None:
            self.sink(name, raw)
        else:
            self.received[name].append((time.perf_counter(), bytes(raw)))

    def forget(self) -> None:
        """Drop what was received so far (a replay of an hour-long bag would keep every output otherwise)."""
        for messages in self.received.values():
            messages.clear()

    def connected(self) -> list[str]:
        return [name for name, sub in self.subscriptions.items() if publisher_count(self.node, sub) > 0]


class NodeReplay:
    """One replay session: a ROS context, the publisher of the bag's frames and the recorder of the outputs."""

    def __init__(self, node_name: str, image_topic: str, compressed: bool, camera_info_topic: str | None,
                 domain_id: int | None) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("dgdehaze_bag_replay", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(CompressedImage if compressed else Image, image_topic, qos)
        self.info_pub = (self.node.create_publisher(CameraInfo, camera_info_topic, qos) if camera_info_topic
                         else None)
        self.recorder = _Recorder(self.node, node_name)
        self.state_client = self.node.create_client(GetState, f"/{node_name}/get_state")
        self.node_name = node_name
        self.weights: str | None = None
        """The weights the node says it runs (its /diagnostics `weights`), None before it said."""
        self.transport: str | None = None
        """How the node says its middleware sends large images (its /diagnostics `transport`), None before it said."""
        self.process: subprocess.Popen | None = None
        """The node's process where this replay started it, so that its exit is noticed; None when attached."""
        self.report: dict[str, str] = {}
        """The node's last /diagnostics report (key -> value), and how many came (`reports`)."""
        self.reports = 0
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._take_report, 10)
        self.listened = 0.0
        """Seconds spent in `spin` so far: the clock an unanswered state request is timed on, so that this replay's
        own work between frames (detecting on the hazy frame, writing the output bag) is not held against the
        node."""
        self._ping: Future | None = None
        """The last lifecycle state request `gone` sent an attached node, until it is answered."""
        self._ping_sent = -math.inf
        """`listened` when it was sent."""

    def _take_report(self, array: DiagnosticArray) -> None:
        for status in array.status:
            if status.name.startswith(f"/{self.node_name}:"):
                self.report = {kv.key: kv.value for kv in status.values}
                self.reports += 1
                self.weights = self.report.get("weights", self.weights)
                self.transport = self.report.get("transport", self.transport)

    def node_weights(self, timeout: float) -> str:
        """The weights the node runs, as its /diagnostics names them (waiting up to `timeout` for a report), or
        "unknown" when it sent none: a report names the weights that ran, not the file its parameter names now. A
        node that is gone (`gone`) is not waited for."""
        deadline = time.monotonic() + timeout
        while self.weights is None and time.monotonic() < deadline and not self.gone():
            self.spin(0.1)
        return self.weights or "unknown"

    def gone(self) -> str:
        """Why the node can no longer answer, "" while it can: its process exited, or an attached node no longer
        subscribes to the frames (stopped, or deactivated) or left a lifecycle state request unanswered for
        SILENCE_S (crashed or killed). Asks an attached node its state each GONE_CHECK_S once the last request
        was answered."""
        if self.process is not None:
            code = self.process.poll()
            return "" if code is None else f"dgdehaze_node exited with code {code}"
        if self.image_pub.get_subscription_count() == 0:
            return f"node /{self.node_name} no longer subscribes to the frames (stopped or deactivated)"
        if self._ping is not None and self._ping.done():
            self._ping = None
        silent = self.listened - self._ping_sent
        if self._ping is None and silent >= GONE_CHECK_S:
            self._ping, self._ping_sent = self.state_client.call_async(GetState.Request()), self.listened
        elif self._ping is not None and silent >= SILENCE_S:
            return (f"node /{self.node_name} stopped answering: its lifecycle state went unanswered for "
                    f"{silent:.1f} s (crashed, killed or hung; a node stopped cleanly leaves at once)")
        return ""

    def next_report(self, timeout: float) -> dict[str, str]:
        """The node's next /diagnostics report (its counters as of about now), waiting up to `timeout`, not at all
        for a node that is gone (`gone`); {} when none came."""
        seen = self.reports
        deadline = time.monotonic() + timeout
        while self.reports == seen and time.monotonic() < deadline and not self.gone():
            self.spin(0.05)
        return dict(self.report) if self.reports > seen else {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()

    def spin(self, seconds: float) -> None:
        began = time.monotonic()
        self.executor.spin_once(timeout_sec=seconds)
        self.listened += time.monotonic() - began

    def node_state(self, timeout: float) -> str | None:
        """The node's lifecycle state label, or None when it does not answer."""
        if not self.state_client.wait_for_service(timeout_sec=min(timeout, 1.0)):
            return None
        future = self.state_client.call_async(GetState.Request())
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            self.spin(0.05)
        return future.result().current_state.label if future.done() and future.result() else None

    def wait_ready(self, timeout: float, process: subprocess.Popen | None, log_path: Path | None) -> None:
        """Wait until the node is active and connected to our frame publisher and output subscriptions."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise NodeReplayError(f"dgdehaze_node exited with code {process.returncode} before it was ready"
                                      f"{_log_tail(log_path)}")
            state = self.node_state(1.0)
            if (state == "active" and self.image_pub.get_subscription_count() > 0
                    and (self.info_pub is None or self.info_pub.get_subscription_count() > 0)
                    and "image_dehazed" in self.recorder.connected()):
                return
            self.spin(0.1)
        raise NodeReplayError(
            f"node /{self.node_name} was not ready within {timeout:.0f} s (lifecycle state: {state or 'no answer'}, "
            f"subscribed to frames: {self.image_pub.get_subscription_count() > 0}, outputs connected: "
            f"{', '.join(self.recorder.connected()) or 'none'})"
            + ("" if process is not None else "; is it running and activated "
               f"(ros2 lifecycle set /{self.node_name} activate)?") + _log_tail(log_path))

    def output_plan(self, started_here: bool, timeout: float) -> OutputPlan:
        """Which outputs each frame gets, from the node's parameters (read once it is active)."""
        values = read_parameters(self.node, f"/{self.node_name}", self.spin, timeout)
        if not values:
            LOG.warning("node /%s did not answer its parameter services: waiting for its default outputs",
                        self.node_name)
        else:
            values.update(read_parameters(self.node, f"/{self.node_name}", self.spin, timeout, TRACKER_PARAMETER))
        return OutputPlan.from_parameters(values, self.recorder.connected(), started_here, self.info_pub is not None)


def _log_tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.is_file():
        return ""
    tail = path.read_text(errors="replace").strip().splitlines()[-lines:]
    return "\nnode log (last lines):\n" + "\n".join(tail) if tail else ""


def _to_rclpy(connection_type: str, raw: bytes) -> Any:
    """A stored CDR message as the rclpy message class (same wire format, so no field copying)."""
    cls = {IMAGE_TYPE: Image, COMPRESSED_IMAGE_TYPE: CompressedImage, CAMERA_INFO_TYPE: CameraInfo}[connection_type]
    return deserialize_message(raw, cls)


def replay_bag(input_bag: str | Path, image_topic: str, out_dir: str | Path, *,
               camera_info_topic: str | None = None, method: str | None = None, detector: Detector | None = None,
               max_frames: int | None = None, storage: str | None = None, node_name: str = "dgdehaze",
               attach: bool = False, timeout: float = 10.0, node_params: Sequence[str] = (),
               input_bits: int = SAMPLE_BITS, image_transport: str = "auto", start: float = 0.0,
               duration: float | None = None, rate: float | None = None, mounted: bool = False,
               progress: bool = True, read: Read | None = None, params_file: str | None = None) -> BagEvaluation:
    """Send the bag's frames through the node and write OUT (bag, report, summary) atomically; the node's images go
    into the output bag as it sends them, or compressed (`image_transport`, as `evaluation.evaluate_bag`'s). start,
    duration: the part of the bag sent and copied, as `evaluation.evaluate_bag`'s. rate: None sends in lockstep
    (every frame answered); R sends at R times the recorded pace (`paced_replay`), and the frames the node drops
    are counted, not evaluated. camera_info_topic: the CameraInfo topic sent to the node with the frames; without
    one, the bag's only CameraInfo topic with messages (`BagSource.camera_info_for_frames`), required where the
    node has a camera mounting (`mounted`: its camera_height in `node_params`), as offline. read: `method`'s
    checkpoint as the caller read it already (`pipeline.read_method`): checked from it, the file not read again here
    (the started node reads it itself). params_file: a parameters file the started node takes, under the replay's
    own parameters and `node_params`.

    `detector` runs here on the hazy input frames for the report's baseline; the node runs its own detector on
    the dehazed frames. Raises BagError for a bad bag before anything starts, OSError before the node starts where
    a paced replay's disk cannot hold the output bag's copy of the input (every topic of the window: `copied_bytes`)
    beside its reserve, NodeReplayError when the node cannot be started or stops answering; either way no output
    folder is left behind.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    check_rate(rate)
    out_dir = Path(out_dir)
    check_output_folder(out_dir, [input_bag])
    with BagSource(input_bag, input_bits) as source:
        source.check_output_namespace(f"/{node_name}", "give the node another name (--node-name)")
        source.check_copyable()
        window = time_window_notes(source, start, duration)
        if not camera_info_topic:
            camera_info_topic = source.camera_info_for_frames(required=mounted)
        total = source.verify(image_topic, camera_info_topic)
        count = min(total, max_frames) if max_frames else total
        copied = copied_bytes(source, image_topic, count) if rate is not None else []
        if copied and (problem := room_problem(out_dir, keep=copied[-1])):
            raise OSError(f"no room for the copy of the bag a paced replay writes: {problem}")
        frame_type = next(kind for topic, (kind, _) in source.topics().items() if topic == image_topic)
        compressed = frame_type == COMPRESSED_IMAGE_TYPE
        images = output_images(image_transport, frame_type)
        method_label = "as configured on the running node" if attach else node_method(method, read=read)
        with atomic_path(out_dir) as tmp:
            tmp.mkdir()
            log_path = None if attach else tmp / "node.log"
            domain = None if attach else reserve_domain()
            process = None
            if not attach:  # the node gives itself the large-image profile (fastdds_profile.node_environment)
                env = {**os.environ, **LOCAL_DISCOVERY, "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
                command = _node_command(node_name, image_topic, compressed, camera_info_topic, method_label,
                                        detector is not None, node_params, params_file)
                LOG.info("starting dgdehaze_node (%s) on DDS domain %d", method_label, domain)
                with open(log_path, "w") as log:
                    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                with scoped_environ({} if attach else LOCAL_DISCOVERY):
                    replay = NodeReplay(node_name, image_topic, compressed, camera_info_topic, domain)
            except BaseException:  # the node started above must not outlive a replay that could not begin
                if process is not None:
                    stop(process, signal.SIGTERM)
                raise
            replay.process = process
            try:
                replay.wait_ready(STARTUP_TIMEOUT if not attach else timeout, process, log_path)
                evaluation = BagEvaluation(
                    input_bag=str(input_bag), image_topic=image_topic, camera_info_topic=camera_info_topic,
                    mode="node", method=method_label, backend="dgdehaze_node",
                    detector=str(detector.weights.name) if detector is not None else None,
                    **frame_counts(source, image_topic, total),
                    output_bag="bag", output_images=images, input_bits=source.input_bits,
                    notes=[*window, *([f"the node started with {_started_with(params_file, node_params)}"]
                                      if (node_params or params_file) and not attach else [])])
                with BagWriter(tmp / "bag", storage or source.storage, images) as writer:
                    if rate is None:
                        _run(source, replay, writer, evaluation, detector, count, timeout, progress, not attach)
                    else:
                        _run_paced(source, replay, writer, evaluation, detector, count, timeout, progress,
                                   not attach, rate, tmp / "spool", copied)
                evaluation.weights = replay.node_weights(DIAGNOSTICS_WAIT_S)
                evaluation.notes.append(_transport_note(replay.transport))
            except NodeGone as exc:  # before its first frame was answered: nothing to report, its log goes too
                raise NodeReplayError(f"{exc}{_log_tail(log_path)}") from None
            finally:
                replay.close()
                if process is not None:
                    stop(process, signal.SIGTERM)
            if not evaluation.records:
                if evaluation.stopped:
                    raise NodeReplayError(f"no frame was evaluated: {evaluation.stopped}"
                                          f"{_log_tail(log_path)}")
                raise ImageError(f"the node answered none of the {count} frames of {image_topic!r}")
            write_report(evaluation, tmp)
    LOG.info("replayed %d frames of %s through /%s; report in %s", len(evaluation.records), input_bag, node_name,
             out_dir)
    return evaluation


def _started_with(params_file: str | None, node_params: Sequence[str]) -> str:
    return ", ".join([*([f"--params-file {params_file}"] if params_file else []), *node_params])


def _transport_note(transport: str | None) -> str:
    """The report's note on how the node's middleware sent its images to this replay, which the latencies include,
    as the node's /diagnostics says (`transport`); the sender's shared-memory segment is what counts."""
    return (f"the node's images reached this replay over its middleware as the node reports it: {transport}"
            if transport else "the node did not report its middleware (a node from before it did so)")


def _run(source: BagSource, replay: NodeReplay, writer: BagWriter, evaluation: BagEvaluation,
         detector: Detector | None, count: int, timeout: float, progress: bool, started_here: bool) -> None:
    plan = replay.output_plan(started_here, timeout)
    LOG.info("waiting per frame for: %s (%s as well when they come)", ", ".join(plan.required(0)),
             ", ".join(plan.optional(0)) or "nothing")
    tracks = _hazy_tracks(plan, detector)
    plan = _warm_up(source, replay, evaluation, detector, plan, timeout, tracks)
    sent = 1  # the node's frames since activation: the warm-up was its first
    keep = sample_indices(count)
    stamps = UniqueStamps()
    bar = tqdm(total=count, desc="bag-eval (node)", unit="frame", disable=not progress)
    index = 0
    try:
        for connection, log_time, raw in copied_messages(source, writer, evaluation, count):
            if connection.topic == evaluation.camera_info_topic and replay.info_pub is not None:
                try:
                    _publish(replay, connection, raw)
                except ValueError as exc:  # the node keeps the camera_info it has
                    evaluation.camera_info_damaged(log_time, str(exc))
                continue
            if connection.topic != evaluation.image_topic:
                continue
            frame = source.decode_frame(connection, log_time, raw, index, None)
            if isinstance(frame, ImageError):  # one damaged frame is skipped, not the bag
                evaluation.skipped.append(str(frame))
                index += 1
                bar.update()
                continue
            hazy, stamp = frame.image, frame.stamp_ns
            sent_stamp = stamps.stamp_for(stamp, log_time)
            try:
                outputs = _exchange(replay, _to_rclpy(connection.msgtype, with_header_stamp(raw, sent_stamp)),
                                    sent_stamp, plan.required(sent), plan.optional(sent), timeout)
            except NodeGone as exc:
                evaluation.stop(str(exc), index, count)
                break
            plan = plan.answered(sent, outputs or {})
            sent += 1
            if outputs is None:
                evaluation.skipped.append(f"frame {index} at {log_time} ns: no output from the node within "
                                          f"{timeout:.1f} s")
                LOG.warning("frame %d: the node did not answer within %.1f s", index, timeout)
            else:
                if sent_stamp != stamp:  # the bag's stamp again, as the node would have copied it
                    outputs = {name: value if name.startswith("_") else (value[0], with_header_stamp(value[1], stamp))
                               for name, value in outputs.items()}
                record_frame(evaluation, writer, replay.node_name, outputs, index, stamp, log_time, hazy, detector,
                             keep, plan.detections, tracks)
            index += 1
            bar.update()
    finally:
        bar.close()
        if note := stamps.note():
            LOG.warning("%s", note)
            evaluation.notes.append(note)
    if len(evaluation.skipped) == count:
        raise NodeReplayError(f"node /{replay.node_name} answered none of the {count} frames")


def _run_paced(source: BagSource, replay: NodeReplay, writer: BagWriter, evaluation: BagEvaluation,
               detector: Detector | None, count: int, timeout: float, progress: bool, started_here: bool,
               rate: float, spool_path: Path, copied: Sequence[int]) -> None:
    """The frames at `rate` times the recorded pace, the node's outputs spooled as they come (`paced_replay`); then
    each answered frame recorded as in lockstep, the others counted as dropped. The spool is removed at the end.
    copied: what the output bag copies from the input through each frame (`copied_bytes`)."""
    plan = replay.output_plan(started_here, timeout)
    tracks = _hazy_tracks(plan, detector)
    plan = _warm_up(source, replay, evaluation, detector, plan, timeout, tracks)
    evaluation.rate = rate
    before = replay.next_report(COUNTERS_WAIT_S)
    replay.recorder.forget()
    stamps = UniqueStamps()
    with OutputSpool(spool_path, {name: msgtype for name, (_, msgtype) in OUTPUTS.items()}, copied) as spool:
        replay.recorder.sink = spool.receive
        try:
            frames, stopped = send_paced(
                window_frames(source, evaluation, replay.info_pub is not None), evaluation.image_topic, count, rate,
                lambda connection, raw: _publish(replay, connection, raw), replay.spin,
                lambda: replay.gone() or spool.room_problem(), spool, timeout, progress,
                lambda connection, log_time, reason: evaluation.camera_info_damaged(log_time, reason), stamps)
        finally:
            replay.recorder.sink = None
    if note := stamps.note():
        LOG.warning("%s", note)
        evaluation.notes.append(note)
    if stopped:
        evaluation.stop(stopped, len(frames), count)
        count = len(frames)
    evaluation.node_counts = node_counts_between(before, replay.next_report(COUNTERS_WAIT_S))
    answered = [frame for frame in frames if frame.answered]
    if not answered:
        raise NodeGone(stopped) if stopped else NodeReplayError(
            f"node /{replay.node_name} answered none of the {len(frames)} frames sent")
    camera_hz = sent_rate(frames)
    if camera_hz is not None:
        evaluation.output_fps = camera_hz * len(answered) / sum(frame.stamp is not None for frame in frames)
    keep = {answered[i].index for i in sample_indices(len(answered))}
    replies = answers(spool, frames)
    reply = next(replies, None)
    index = 0
    bar = tqdm(total=len(frames), desc="bag-eval (recording the answers)", unit="frame", disable=not progress)
    for connection, log_time, raw in copied_messages(source, writer, evaluation, count):
        if connection.topic != evaluation.image_topic:
            continue
        frame = frames[index]
        decoded = source.decode_frame(connection, log_time, raw, index, None)
        index += 1
        bar.update()
        if isinstance(decoded, ImageError):
            evaluation.skipped.append(str(decoded))
            if reply is not None and reply[0] is frame:
                reply = next(replies, None)
            continue
        if reply is None or reply[0] is not frame:
            evaluation.frames_dropped += 1
            continue
        outputs = {**reply[1], "_sent": frame.sent, "_labels": replay.recorder.labels}
        record_frame(evaluation, writer, replay.node_name, outputs, frame.index, frame.stamp, log_time,
                     decoded.image, detector, keep, plan.detections, tracks)
        reply = next(replies, None)
    bar.close()
    replies.close()
    shutil.rmtree(spool_path)
    evaluation.notes.append(paced_note(rate, len(answered), len(frames), evaluation.node_counts))
    if shortfall := pace_shortfall(frames, rate):
        LOG.warning("%s", shortfall)
        evaluation.notes.append(shortfall)


def _publish(replay: NodeReplay, connection: Any, raw: bytes) -> None:
    """Publish a stored frame or camera_info to the node; ValueError for bytes that do not deserialize (a damaged
    recording), which are not sent."""
    publisher = replay.info_pub if connection.msgtype == CAMERA_INFO_TYPE else replay.image_pub
    try:
        message = _to_rclpy(connection.msgtype, raw)
    except RuntimeError as exc:  # rclpy's RMWError: the CDR is cut off or corrupt
        raise ValueError(f"not a {connection.msgtype}: {exc}") from None
    publisher.publish(message)


def _hazy_tracks(plan: OutputPlan, detector: Detector | None) -> BoxTracker | None:
    """The hazy row's tracker where the node tracks (its `tracker`): the node's dehazed row counts only the objects
    its tracker confirmed, and the hazy row's boxes untracked would count more."""
    return BoxTracker(plan.tracker) if plan.tracker and detector is not None else None


def _warm_up(source: BagSource, replay: NodeReplay, evaluation: BagEvaluation, detector: Detector | None,
             plan: OutputPlan, timeout: float, tracks: BoxTracker | None = None) -> OutputPlan:
    """Send the first decodable frame once, unrecorded, so that model warm-up in the node and in the local
    detector stays out of the latency figures (its boxes go to the hazy row's `tracks`, as the node's tracker
    takes the frame); the plan, without detections when the node sent none for it (its detector did not load).
    The bag's first camera_info goes ahead of it: without it the node's log said "no camera_info has arrived" in
    every replay with a mounting, and the frame waited for one."""
    infos = [c for c in source.connections if c.topic == evaluation.camera_info_topic]
    if replay.info_pub is not None and (first_info := next(source.raw_messages(infos), None) if infos else None):
        try:
            _publish(replay, first_info[0], first_info[2])
        except ValueError:  # damaged: the replay notes it where the bag holds it
            pass
    frames = [c for c in source.connections if c.topic == evaluation.image_topic]
    for connection, log_time, raw in source.raw_messages(frames):
        frame = source.decode_frame(connection, log_time, raw, 0, None)
        if isinstance(frame, ImageError):
            continue
        timed_detect(detector, frame.image, tracks)
        found = _exchange(replay, _to_rclpy(connection.msgtype, raw), frame.stamp_ns,
                          plan.required(0), plan.optional(0), max(timeout, 30.0))
        if found is None:
            raise NodeReplayError(f"node /{replay.node_name} did not answer the warm-up frame")
        counted = plan.detected_frame is not None or plan.interval == 1  # else this frame may be between two
        if "detections" in plan.required(0) and "detections" not in found and counted:
            LOG.warning("node /%s published no detections for the warm-up frame (is its detector loaded?): not "
                        "waiting for them", replay.node_name)
            return plan.without_detections()
        return plan.answered(0, found)
    return plan


def _exchange(replay: NodeReplay, frame_msg: Any, stamp: int, required: list[str],
              optional: list[str], timeout: float) -> dict[str, Any] | None:
    """Publish one frame and collect the node's outputs for it: {output: (receive time, raw)} plus "_sent" and
    "_labels" (the latched ~/label_info, or None).

    Waits up to `timeout` for the outputs in `required`, then a moment more for those in `optional` (camera_info
    is relayed only once the node has one); each is matched by its header stamp. None when not even the dehazed
    image came.
    """
    replay.recorder.forget()
    received = replay.recorder.received
    sent = time.perf_counter()
    replay.image_pub.publish(frame_msg)
    deadline = time.monotonic() + timeout
    found: dict[str, Any] = {"_sent": sent, "_labels": replay.recorder.labels}
    grace_until = None
    checked = time.monotonic()
    while time.monotonic() < (grace_until or deadline):
        replay.spin(0.005)
        if time.monotonic() - checked > GONE_CHECK_S:
            checked = time.monotonic()
            if reason := replay.gone():
                raise NodeGone(reason)
        for name in [*required, *optional]:
            if name in found:
                continue
            for arrival, raw in received[name]:
                if header_stamp_ns(raw) == stamp:
                    found[name] = (arrival, raw)
                    break
        if all(name in found for name in required):
            if all(name in found for name in optional):
                break
            grace_until = grace_until or time.monotonic() + 0.2
    return found if "image_dehazed" in found else None
