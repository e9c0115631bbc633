"""`dgdehaze_node`: the ROS 2 lifecycle node. Camera in; dehazed image, depth, detections and haze density out.

Topics (inputs are remappable names, outputs are private `~/` names, so under the node's name):
- in  `image` (sensor_msgs/Image) or `image/compressed` (CompressedImage, `input_transport: compressed`);
  `camera_info` (sensor_msgs/CameraInfo). QoS: `image_reliability`, history depth `image_qos_depth`.
- out `~/image_dehazed` (Image, the input's encoding; bgr8 for compressed input), `~/depth_relative` (32FC1,
  REP-117, NaN invalid, unitless), with a `camera_height` (or a `base_frame` in TF, mounting_tf.py): `~/depth`
  (32FC1 metres, REP-118, NaN where untrustworthy) and `~/visibility` (sensor_msgs/Range, visibility_messages.py),
  `~/camera_info` (the frame's camera_info with the frame's header, scaled to the frame where the frame is a
  resized copy of the image it describes; none while only another mode's has come: camera_info.py),
  `~/detections` (vision_msgs/Detection2DArray, see detection_messages.py; only for the frames the detector ran
  on, every `detection_interval`-th, so each carries the header of the frame it describes; `class_id` is the
  numeric class id), `~/label_info` (vision_msgs/LabelInfo, latched: the running detector's id -> name map and
  threshold, published on activation and when either changes while active), `~/debug_image` (bgr8 Image, only
  while subscribed: the dehazed frame with the detections, their distances and the fog drawn),
  `~/image_dehazed/compressed` and `~/debug_image/compressed` (CompressedImage as image_transport's compressed
  transport writes it, each only while subscribed; `<name>.compressed.format` and its quality),
  `~/depth/compressedDepth` and `~/depth_relative/compressedDepth` (image_transport's compressedDepth, each only
  while subscribed), `~/haze_density`
  (vision_msgs/Classification: one hypothesis `haze_density` whose score is the frame's haze density, 0 clear to
  1 dense), and `/diagnostics` (diagnostic_msgs/DiagnosticArray: fps, latency, overhead, frame counters, backend).
Every output carries the input's header (stamp and frame_id).

Lifecycle: configure reads and validates the parameters and loads the pipeline and the detector; activate
enables the publishers, then subscribes (it fails, the node inactive, while a frame a deactivate gave up
waiting for still runs); deactivate unsubscribes and waits for the frame in progress (FRAME_WAIT_S); cleanup
releases the models. The subscription callback only hands the message to a `LatestFrameWorker`: conversion,
inference and publishing run in its thread on the newest frame only, so the executor never blocks. The image,
depth, camera_info and haze density are published as soon as the frame is dehazed; detections follow when the
detector has run, so detection never delays the image.
"""
from __future__ import annotations

if __name__ == "__main__":  # `python -m dgdehaze_ros.node` is the executable, which exits: the imports below then
    # load inside its Ctrl-C and SIGTERM handling, not in this script's (a traceback)
    import runpy
    runpy.run_module("dgdehaze_ros.executable", run_name="__main__")

import contextlib
import functools
import gc
import logging
import os
import posixpath
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NoReturn, Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.context import Context
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Range
from std_msgs.msg import Header

from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.detection.schedule import DetectionSchedule
from dgdehaze_core.detection.stream_stamps import StreamStamps
from dgdehaze_core.inference.backends.onnxruntime_backend import ARENA_KEEP_PIXELS
from dgdehaze_core.inference.dehaze_result import DehazeResult
from dgdehaze_core.inference.frame_chain import FrameChain
from dgdehaze_core.inference.latest_frame_worker import LatestFrameWorker, StillStopping
from dgdehaze_core.inference.pipeline import DehazePipeline
from dgdehaze_core.io.images import NARROW_SAMPLE, NarrowSamples
from dgdehaze_core.physics.lens import frames_rectified
from dgdehaze_core.physics.visibility import VisibilityEstimator, VisibilityReading
from dgdehaze_core.process_memory import keep_frame_memory, return_freed_memory
from dgdehaze_core.visualize import draw_detections
from dgdehaze_ros.camera_info import CameraInfos, relayed_camera_info
from dgdehaze_ros.conversions import (ImageConversionError, array_to_image, bgr8_to_image, bgr8_to_pixels,
                                      camera_frame, compressed_depth_image, compressed_image, depth_to_image)
from dgdehaze_ros.detection_messages import (LABEL_INFO_QOS, VISION_MSGS_AVAILABLE, detections_to_msg, haze_msg,
                                             label_info_msg)
from dgdehaze_ros.fastdds_profile import CHOICE_VARIABLE, node_environment, transport_summary
from dgdehaze_ros.fog_measurement import FogMeasurement
from dgdehaze_ros.model_reloads import ModelReloads, ShutDownMeanwhile
from dgdehaze_ros.node_diagnostics import FrameStats, diagnostic_array
from dgdehaze_ros.node_logging import attribute_threads, not_on_a_node_logger, transition_of
from dgdehaze_ros.parameters import (COMPRESSED_OUTPUTS, SPEC_BY_NAME, NodeSettings, declare_parameters,
                                     integers_as_doubles, parameters_help, read_settings, unknown_overrides)
from dgdehaze_ros.rclpy_compat import MESSAGE_INFO_CALLBACKS, PRE_SET_PARAMETERS_CALLBACKS, SubscriptionEventCallbacks
from dgdehaze_ros.visibility_messages import FOG_PARAMETERS, fog_banner, visibility_msg

if VISION_MSGS_AVAILABLE:
    from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT,
               "system_default": ReliabilityPolicy.SYSTEM_DEFAULT}
OVERRIDABLE = QoSOverridingOptions.with_default_policies()
"""Every subscription and output publisher takes `qos_overrides./TOPIC.{subscription,publisher}.POLICY` parameters
(read-only: give them in the params file), as rclpy's QoSOverridingOptions define them."""
FIRST_CAMERA_INFO_WAIT_S = 0.5
"""How long an activation's first frame of each size waits for a camera_info that follows it, where none it has
fits (`_frame_camera_info`)."""
NARROW_TEST_EVERY = 30
"""The node tests every NARROW_TEST_EVERY-th 16-bit frame read with 16 bits (the activation's first included) for
samples that look like a 12-bit camera's (`images.NarrowSamples`): one max over a frame's samples per second at
30 Hz, nothing on the other frames, and /diagnostics follows a change within that many frames. A strided max on
every frame would cost more and could miss the few bright pixels of a night scene, and testing only the first
frames would leave the WARN on after input_bits is set right."""
NARROW_REMEDY = "set the parameter input_bits: 12 (said once per activation; a WARN on /diagnostics while it holds)"
FRAME_WAIT_S = 5.0
"""How long a deactivate, a cleanup or a shutdown waits for the frame in progress to end, and an activate for one a
deactivate left running (an activate that finds it still running fails, the node inactive: it never hangs on a
stuck frame)."""
LOADER_STOP_WAIT_S = 3.0
"""How long `destroy_node` waits for a background model load to end. One that takes longer (an ONNX export, a
TensorRT build) is abandoned, its result dropped: stopping the node never waits minutes, and ends before
`ros2 launch` follows its SIGINT with a SIGTERM (5 s)."""
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class IncomingFrame:
    """A message as received, with the monotonic time it arrived."""

    msg: Image | CompressedImage
    received_ns: int


Transition = Callable[[Any, LifecycleState], TransitionCallbackReturn]


def _logs_its_exception(transition: Transition) -> Transition:
    """A lifecycle transition callback that logs its exception with the traceback, then raises it on: rclpy turns it
    into ERROR (`on_error`) without a word of what it was. An exception once a stop shut the node's context down is
    the stop's (a publish on the dead context): said in a line, the transition failed. The Python log lines of the
    transition (the core's: the backend chosen, the models loaded) name the node (`node_logging`)."""
    @functools.wraps(transition)
    def logged(node: Any, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            with transition_of(node.get_logger().name):
                return transition(node, state)
        except Exception:
            if not node.context.ok():  # a stop shut the context down under it (a publish failed): nothing to mend
                node.get_logger().info(f"{transition.__name__} (from {state.label}) stopped: the node is shutting "
                                       "down")
                return TransitionCallbackReturn.FAILURE
            node.get_logger().error(f"{transition.__name__} (from {state.label}) raised:\n{traceback.format_exc()}")
            raise
    return logged


class DehazeNode(ModelReloads, LifecycleNode):
    """The dgdehaze lifecycle node; see the module docstring for topics and behaviour."""

    def __init__(self, node_name: str = "dgdehaze", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._settings: NodeSettings | None = None
        self._pipeline: DehazePipeline | None = None
        self._detector: Detector | None = None
        self._schedule: DetectionSchedule | None = None
        self._detector_note = "not loaded"
        self._stamps = StreamStamps()
        """The newest frame processed since the stream began, and whether a frame's stamp starts a new stream of
        tracks."""
        self._detecting = False
        """Whether the last frame processed in this activation was one the detector was on for."""
        self.transport = transport_summary()
        """How this process's middleware sends large images to others on the machine (logged at start, on
        /diagnostics as `transport`)."""
        self._init_reloads()
        self._camera_infos = CameraInfos()
        self._image_topic = ""
        """The image topic of this activation, as subscribed."""
        self._fog = FogMeasurement(self)
        """The fog estimator for the camera's mounting (parameters or TF), its latest reading, what it cannot do."""
        self.stats = FrameStats()
        self._failed_reported = 0
        """The worker's failed frames as of the last /diagnostics report: those since make it an ERROR."""
        self.worker: LatestFrameWorker[IncomingFrame] = LatestFrameWorker(self._process_while_up,
                                                                          self._thread_name("worker"))
        attribute_threads(self.get_logger().name,
                          *(self._thread_name(role) for role in ("worker", "loader", "configure")))
        self._outputs: dict[str, Any] = {}
        self._inputs: list[Any] = []
        self._samples = NarrowSamples(NARROW_REMEDY)
        """This activation's test of 16-bit frames that look like a 12-bit camera's read with 16 bits."""
        self._diagnostics_pub = None
        self._diagnostics_timer = None
        self._label_pub = None
        try:  # after the attributes, so that destroy_node works here
            declare_parameters(self)
        except Exception:  # a refused value: the node leaves the graph at once, not when the garbage collector
            self.destroy_node()  # finds it (a process holding other nodes showed it, and a corrected one beside it)
            raise
        unknown = unknown_overrides(self)
        if unknown:
            self.get_logger().warning(f"{', '.join(unknown)}: given at start but no parameter of this node, and "
                                      "ignored (misspelt? `dgdehaze_node --help` lists every parameter)")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if PRE_SET_PARAMETERS_CALLBACKS:  # Humble refuses the integer (docs/ROS.md)
            self.add_pre_set_parameters_callback(integers_as_doubles)

    def _thread_name(self, role: str) -> str:
        """`<logger name>-<role>` (`front.dgdehaze-worker`), as the node's log lines name it: the threads of the
        nodes of one process, and the core's log lines that name them (`<thread>: processing failed`), tell the
        nodes apart, two cameras' nodes of one name in two namespaces among them."""
        return f"{self.get_logger().name}-{role}"

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @_logs_its_exception
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._settings = settings = read_settings(self)
            self._pipeline = self._load_watched(self._load_pipeline, settings)
        except ShutDownMeanwhile as exc:
            return self._configure_stopped(exc)
        except Exception as exc:  # any failure to load leaves the node unconfigured, with the reason logged ...
            self.get_logger().error(f"configure failed: {exc}")
            self._release()  # ... and drops a load that a change made meanwhile started (`_generation`)
            return TransitionCallbackReturn.FAILURE
        self._loaded, self._reload_problems, self._unsent_problems = {"pipeline": settings}, {}, {}
        self._detector = None
        if settings["detection_enabled"]:
            try:
                self._detector = self._load_watched(self._load_detector, settings)
                self._detector_note = self._detector_label(self._detector)
            except ShutDownMeanwhile as exc:
                return self._configure_stopped(exc)
            except Exception as exc:  # a refused file, a runtime's own error (onnxruntime raises RuntimeError)
                self._detection_off(exc)
        if self._detector is not None:
            self._loaded["detector"] = settings
        with self._lock:
            self._generation += 1  # a reload a change started while this configure loaded is dropped, and ...
            self._pending_reloads.clear()
            changed = self._settings  # (the parameter callback stores a change that arrived meanwhile here)
            self._pending_reloads.update(component for component in ("pipeline", "detector")
                                         if settings.differing(changed, component))  # ... done again now
            if changed["detection_enabled"] and self._detector_stale(changed):
                self._pending_reloads.add("detector")
        if self._detector is not None and changed is not settings:
            try:
                self._apply_detector_settings(self._detector, changed, self._detector.class_ids(changed["classes"]))
            except ValueError as exc:  # classes the loaded detector lacks: its own, checked at load, stay
                self.get_logger().warning(f"classes {changed['classes']} not applied: {exc}")
        self._schedule = self._schedule_for(self._detector, changed)
        self._fog.restart(changed)
        try:
            self._create_outputs()
        except Exception as exc:  # e.g. a qos_overrides value rclpy refuses: released whole, with the reason
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"configured: {self._describe()}")
        self._start_reloads()
        return TransitionCallbackReturn.SUCCESS

    def _configure_stopped(self, stop: ShutDownMeanwhile) -> TransitionCallbackReturn:
        """A configure a stop cut short: unconfigured, nothing to mend (the process is ending)."""
        self.get_logger().info(f"configure stopped: {stop}")
        self._release()
        return TransitionCallbackReturn.FAILURE

    def _create_outputs(self) -> None:
        """The publishers and the diagnostics timer, each stored as it is made, so that `_release` frees a part."""
        outputs = {"image": (Image, "~/image_dehazed"), "depth": (Image, "~/depth"),
                   "depth_relative": (Image, "~/depth_relative"), "visibility": (Range, "~/visibility"),
                   "camera_info": (CameraInfo, "~/camera_info"), "debug_image": (Image, "~/debug_image")}
        outputs.update({f"{name}/compressed": (CompressedImage, f"~/{name}/compressed")
                        for name in COMPRESSED_OUTPUTS})
        outputs.update({f"{name}/compressedDepth": (CompressedImage, f"~/{name}/compressedDepth")
                        for name in ("depth", "depth_relative")})
        if VISION_MSGS_AVAILABLE:
            outputs["detections"] = (Detection2DArray, "~/detections")
            outputs["haze_density"] = (Classification, "~/haze_density")
        for key, (msg_type, topic) in outputs.items():
            self._outputs[key] = self.create_lifecycle_publisher(msg_type, topic, self._output_qos(),
                                                                 qos_overriding_options=OVERRIDABLE)
        if VISION_MSGS_AVAILABLE:  # a lifecycle publisher: the class map goes out on activation (on_activate)
            self._label_pub = self.create_lifecycle_publisher(LabelInfo, "~/label_info", LABEL_INFO_QOS)
        else:
            self.get_logger().warning("vision_msgs is not installed: no ~/detections and no ~/haze_density "
                                      "(install ros-<distro>-vision-msgs, or run tools/build_vision_msgs.sh)")
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10,
                                                      qos_overriding_options=OVERRIDABLE)
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # reports go on while a replayed /clock pauses
        self._diagnostics_timer = self.create_timer(self._settings["diagnostics_period"], self._publish_diagnostics,
                                                    clock=steady)

    @_logs_its_exception
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self._settings is not None
        try:  # first: before the subscriptions, so a frame the moment they exist is processed, not dropped
            self.worker.start(FRAME_WAIT_S)
        except StillStopping as exc:  # a frame from before the deactivate still runs: inactive, nothing enabled
            self.get_logger().error(f"activate failed: {exc}; activate again once it has ended")
            return TransitionCallbackReturn.FAILURE
        self._detecting = False  # frames sent while inactive are missing: new tracks
        self._stamps.restart()
        self.stats.restart_sequences()
        result = super().on_activate(state)  # enables the publishers before a frame can arrive and be processed
        self._publish_labels()  # latched: with what changed while inactive, for subscribers now and later
        self._image_topic = topic = self._compressed_topic() if self._settings["input_transport"] == "compressed" \
            else self.resolve_topic_name("image")
        self._samples = NarrowSamples(NARROW_REMEDY, f"frames on {topic}", NARROW_TEST_EVERY, self.get_logger().warning)
        try:
            image_sub = self._subscribe_inputs()
        except Exception as exc:  # e.g. a qos_overrides value rclpy refuses: back to inactive, with the reason
            self.get_logger().error(f"activate failed: {exc}")
            self.on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(f"active: listening on {image_sub.topic_name} "
                               f"({self._settings['image_reliability']}, depth {self._settings['image_qos_depth']})")
        return result

    def _new_stream(self) -> None:
        """The next frame is detected, and the tracker's first: its objects are confirmed at once, with identities
        above every one given before (`_track_ids`)."""
        if self._schedule is not None:
            self._schedule.reset()
        if self._detector is not None:
            self._detector.reset_tracks()

    def _subscribe_inputs(self) -> Any:
        """The camera_info and image subscriptions, each kept in `_inputs` as it is made; returns the image's."""
        assert self._settings is not None
        events = SubscriptionEventCallbacks(incompatible_qos=self._on_incompatible_qos,
                                            message_lost=self._on_message_lost)
        # camera_info first: rclpy's executor takes ready subscriptions in creation order, so a camera_info that
        # arrives with its frame is stored before the frame is queued
        self._inputs.append(self.create_subscription(CameraInfo, self._camera_info_topic(), self._on_camera_info,
                                                     self._input_qos(), qos_overriding_options=OVERRIDABLE))
        self._camera_infos.restart_waits()
        if self._settings["input_transport"] == "compressed":
            image_sub = self.create_subscription(CompressedImage, self._compressed_topic(), self._image_callback(),
                                                 self._input_qos(), event_callbacks=events,
                                                 qos_overriding_options=OVERRIDABLE)
        else:
            image_sub = self.create_subscription(Image, "image", self._image_callback(), self._input_qos(),
                                                 event_callbacks=events, qos_overriding_options=OVERRIDABLE)
        self._inputs.append(image_sub)
        return image_sub

    def _output_qos(self) -> QoSProfile:
        """A fresh profile per publisher (rclpy applies qos_overrides to the profile it is given): reliable, so
        outputs reach both reliable (rviz, rosbag2) and best-effort subscribers."""
        return QoSProfile(depth=self._settings["output_qos_depth"], history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE)

    def _input_qos(self) -> QoSProfile:
        """A fresh profile per subscription, from `image_reliability` and `image_qos_depth`."""
        return QoSProfile(depth=self._settings["image_qos_depth"], history=HistoryPolicy.KEEP_LAST,
                          reliability=RELIABILITY[self._settings["image_reliability"]])

    def _compressed_topic(self) -> str:
        """image_transport's naming: `<image as remapped>/compressed`, unless `image/compressed` is remapped itself."""
        return self._beside_image("image/compressed", f"{self.resolve_topic_name('image')}/compressed")

    def _camera_info_topic(self) -> str:
        """image_transport's CameraSubscriber naming: `camera_info` in the namespace of the image as remapped
        (`-r image:=/front/image_raw` reads /front/camera_info), unless `camera_info` is remapped itself."""
        return self._beside_image("camera_info", posixpath.join(posixpath.dirname(self.resolve_topic_name("image")),
                                                                 "camera_info"))

    def _beside_image(self, name: str, derived: str) -> str:
        """The topic `name` as remapped when a remapping names it, else `derived` from the image topic."""
        explicit = self.resolve_topic_name(name)
        return explicit if explicit != self.resolve_topic_name(name, only_expand=True) else derived

    @_logs_its_exception
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        self.worker.stop(FRAME_WAIT_S)
        return super().on_deactivate(state)

    @_logs_its_exception
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition callback raised (logged with its traceback, `_logs_its_exception`): rclpy calls this, and
        on SUCCESS puts the node in unconfigured. Release what configure made (models, publishers, timer,
        subscriptions, the worker), so that the unconfigured node holds none of it and the next configure does not
        make a second set beside it."""
        self.get_logger().error(f"a transition from {state.label} raised an exception: released the models, "
                                "publishers and subscriptions; the node is unconfigured (configure again)")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    @_logs_its_exception
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop the frame worker and the background model loads (one a cleanup dropped too), then destroy the node,
        which leaves the ROS graph at once (the other nodes of its process stay). A load still running after
        LOADER_STOP_WAIT_S is abandoned (said in the log): it finds its result dropped and leaves the destroyed node
        alone; `threads_running` tells whether one outlived its wait. A KeyboardInterrupt (a second Ctrl-C) ends the
        waits early and propagates once the node is destroyed."""
        with self._lock:  # a reload still loading finds it dropped and leaves the destroyed node alone
            self._generation += 1
            self._pending_reloads.clear()
            self._settings = None
        waited = False
        try:
            self.worker.stop()
            with self._lock:  # not Thread.join: one a KeyboardInterrupt cuts short marks the thread ended (3.11)
                waited = bool(self._other_loaders())
                if waited:
                    self._loader_ended.wait_for(lambda: not self._other_loaders(), LOADER_STOP_WAIT_S)
        finally:
            with self._lock:
                abandoned = waited and bool(self._other_loaders())
            if abandoned:  # Python logging: after Ctrl-C, /rosout's context is shut down
                LOG.warning("%s: abandoned a model load still running (waited up to %g s); its result is dropped",
                            self.get_fully_qualified_name(), LOADER_STOP_WAIT_S)
            super().destroy_node()
            # rclpy's LifecycleNode leaves its state machine, which holds the node's handle: the node stayed in the
            # graph until the garbage collector found it, beside the other nodes of its process
            self._state_machine.destroy_when_not_in_use()

    def threads_running(self) -> bool:
        """Whether a frame or a model load of this node still runs in its thread (after `destroy_node`: one that
        outlived its bounded wait)."""
        return self.worker.running or bool(self._loaders)

    def _release(self) -> None:
        """Unconfigure: stop the worker (a frame in progress waited for up to FRAME_WAIT_S), free the models,
        subscriptions, publishers and timer. A background load still running is dropped, not waited for (a TensorRT
        build takes minutes): it ends on its own, its result unused, and the next configure's reloads run in a
        loader of their own."""
        self.worker.stop(FRAME_WAIT_S)
        with self._lock:
            self._settings = None  # unconfigured: a parameter change loads nothing until the next configure
            self._pending_reloads.clear()
            self._generation += 1
            dropped, self._loader = self._loader, None
        if dropped is not None:
            self.get_logger().info("dropped the model load still running: it ends on its own, its result unused")
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        if self._label_pub is not None:
            self.destroy_lifecycle_publisher(self._label_pub)
        self._outputs = {}
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
        if self._diagnostics_pub is not None:
            self.destroy_publisher(self._diagnostics_pub)
        self._diagnostics_timer = self._diagnostics_pub = self._label_pub = None
        self._pipeline = self._detector = self._schedule = None
        self._camera_infos.clear()
        self._fog.restart(None)
        gc.collect()
        return_freed_memory()

    # ---- parameters ------------------------------------------------------------------------------------------
    def _on_set_parameters(self, parameters: Sequence[Parameter]) -> SetParametersResult:
        """Check a change and apply it (the models it needs load in the background). A refusal leaves every
        parameter as it was; no value, whatever it is, raises out of here, where it would end the node."""
        deleted = [p.name for p in parameters if p.name in SPEC_BY_NAME and p.type_ == Parameter.Type.NOT_SET]
        if deleted:  # rclpy would undeclare them, and every later read of the settings would fail
            return SetParametersResult(successful=False, reason=f"{', '.join(deleted)} cannot be deleted: set a value "
                                                                "instead (classes: [] for every class)")
        changes = {p.name: p.value for p in parameters if p.name in SPEC_BY_NAME}
        if not changes:  # rclpy's own (use_sim_time), and the qos_overrides each publisher and subscription declares:
            # nothing of the node's to check (the running set checked again failed an activate on a file gone since)
            return SetParametersResult(successful=True)
        reverting = hasattr(self._reverting, "generation")
        with self._lock:
            if reverting and self._stale(self._reverting.generation):  # checked and applied under the one lock
                return SetParametersResult(successful=False, reason="a put-back for an earlier configuration")
            try:  # on the settings as the last change left them: rclpy stores a change after this returns, so a
                # change from another thread (a put-back) would not yet read back from the node
                settings = read_settings(self, changes, self._settings)
            except ValueError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            except Exception as exc:  # a check that failed in a way it does not expect refuses the change, in full
                self.get_logger().error(f"refused {sorted(changes)}: checking them failed: {exc!r}")
                return SetParametersResult(successful=False, reason=f"checking the value failed: {exc!r}")
            try:
                class_ids = None if self._detector is None else self._detector.class_ids(settings["classes"])
            except ValueError as exc:  # refused before anything changes: the values read back are the running ones
                return SetParametersResult(successful=False, reason=str(exc))
            configured = self._settings is not None
            self._settings = settings if configured else None
            if configured and not reverting:
                self._pending_reloads.update(component for name in changes
                                             for component in SPEC_BY_NAME[name].reloads)
            if configured:
                if "detection_enabled" in changes and settings["detection_enabled"] and self._detector_stale(settings):
                    self._pending_reloads.add("detector")
                if self._detector is not None:
                    self._apply_detector_settings(self._detector, settings, class_ids)
                if self._schedule is not None:
                    self._schedule.interval = settings["detection_interval"]
                    self._schedule.detector.detection_input = settings["detection_input"]
                    self._schedule.detector.contrast = settings["detection_contrast"]
                if FOG_PARAMETERS & set(changes):
                    self._fog.restart(settings)
        if "threshold" in changes:
            self._publish_labels()
        if "diagnostics_period" in changes and self._diagnostics_timer is not None:
            self._diagnostics_timer.timer_period_ns = int(settings["diagnostics_period"] * 1e9)
            self._diagnostics_timer.reset()  # the next report one new period from now, not at the old period's end
        self._start_reloads()
        return SetParametersResult(successful=True)

    def _publish_labels(self) -> None:
        """The running detector's class map and threshold on the latched ~/label_info. Under the lock: a cleanup
        (`_release`) clears the settings under it before it destroys the publisher, so a detector swapped in by the
        loader thread never publishes on a destroyed publisher."""
        with self._lock:
            detector, settings, publisher = self._detector, self._settings, self._label_pub
            if detector is None or settings is None or publisher is None:
                return
            header = Header(stamp=self.get_clock().now().to_msg())
            publisher.publish(label_info_msg(detector.names, settings["threshold"], header))

    def _describe(self) -> str:
        pipeline = self._pipeline
        weights = pipeline.weights_summary if pipeline is not None else ""
        return (f"method {getattr(pipeline, 'method', '-')}, backend {getattr(pipeline, 'backend', '-')}, "
                + (f"weights {weights}, " if weights else "") + f"detector {self._detector_note}")

    # ---- data path -------------------------------------------------------------------------------------------
    def _image_callback(self) -> Callable[..., None]:
        """The frame callback as this rclpy calls it: with each message's info where it gives one (the sequence
        numbers that count frames lost in transport), else (Humble) with the message alone."""
        if MESSAGE_INFO_CALLBACKS:
            return self._on_image
        return lambda msg: self._on_image(msg, {})

    def _on_image(self, msg: Image | CompressedImage, info: Mapping[str, Any]) -> None:
        self.stats.count_received()
        gid = info.get("publisher_gid") or {}
        self.stats.count_sequence(bytes(gid.get("data", b"")), info.get("publication_sequence_number"))
        self.worker.submit(IncomingFrame(msg, time.monotonic_ns()))

    def _on_message_lost(self, info: Any) -> None:
        self.stats.count_lost(info.total_count_change)
        self.get_logger().warning(
            f"{info.total_count} input frames lost before reaching the node: large images over best_effort lose "
            "fragments with Fast DDS defaults; use image_reliability: reliable with a reliable camera, or give "
            "the camera's process config/fastdds_large_images.xml (docs/ROS.md)", throttle_duration_sec=10.0)

    def _on_incompatible_qos(self, info: Any) -> None:
        reliability = self._settings["image_reliability"] if self._settings is not None else "?"
        self.get_logger().warning(
            f"a publisher of the input offers QoS incompatible with this node's (image_reliability: {reliability}); "
            "no frames come from it. A best_effort camera needs image_reliability: best_effort",
            throttle_duration_sec=10.0)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_infos.add(msg)

    def _frame_camera_info(self, header: Header, shape: tuple[int, int]) -> tuple[CameraInfo | None, str]:
        """The camera_info of a frame with `header` and `shape` (height, width), and why there is none
        (`CameraInfos.for_frame`). Where none fits, the activation's first frame of each size waits for one up to
        FIRST_CAMERA_INFO_WAIT_S while the topic has a publisher: image_transport's CameraPublisher sends each frame
        before its camera_info. Later frames never wait, nor any after UNANSWERED_WAITS waits went unanswered (a
        publisher that sends none costs that many waits an activation)."""
        return self._camera_infos.for_frame(header, shape, FIRST_CAMERA_INFO_WAIT_S,
                                            lambda: self.count_publishers(self._camera_info_topic()) > 0)

    def _process_while_up(self, frame: IncomingFrame) -> bool:
        """`_process`; a frame that fails because ROS shut the node's context down under it, or a cleanup or shutdown
        released its outputs under it, is skipped quietly. Ctrl-C and SIGTERM (`ros2 launch`'s stop) have rclpy's
        signal handler end the context at once, while a frame may be in progress: its outputs can no longer be
        published, and its ERROR and traceback were all the stop printed. A frame stuck past the waits of a
        deactivate and a cleanup (a GPU hang) went on into the outputs the cleanup had destroyed (a KeyError)."""
        generation = self._generation
        try:
            return self._process(frame)
        except Exception:
            if self.context.ok() and generation == self._generation:
                raise
            return False

    def _process(self, frame: IncomingFrame) -> bool:
        """Dehaze, measure and detect one frame and publish its outputs; False when it was skipped (bad input, or
        the node unconfigured meanwhile): the worker then counts it skipped, not processed."""
        started = time.perf_counter()
        waited_ms = (time.monotonic_ns() - frame.received_ns) / 1e6
        settings, pipeline, schedule = self._settings, self._pipeline, self._schedule
        if settings is None or pipeline is None:
            return False
        msg = frame.msg
        try:
            bgr, encoding, original = camera_frame(msg, bits=settings["input_bits"], samples=self._samples)
        except ImageConversionError as exc:
            self.stats.count_skipped(str(exc))
            self.get_logger().warning(f"skipped a frame: {exc}", throttle_duration_sec=5.0)
            return False
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        detecting = settings["detection_enabled"]
        back = self._stamps.starts_stream(stamp_ns)  # a bag played with --loop
        if back or (detecting and not self._detecting):  # or the first frame detected after frames the tracker missed
            self._new_stream()
        self._detecting = detecting
        chain = FrameChain(pipeline, schedule if settings["detection_enabled"] else None,
                           self._fog.estimator_for_frame(msg.header.frame_id))
        dehazed = chain.dehaze(bgr)
        result = dehazed.result
        pixels = bgr8_to_pixels(result.image, encoding, original, settings["input_bits"])
        self._outputs["image"].publish(array_to_image(pixels, encoding, msg.header))
        latency_ms = self._latency_ms(msg.header)  # what a subscriber of the image sees, not the outputs after it
        self._publish_compressed("image_dehazed", result.image, pixels, encoding, msg.header, settings)
        before_info = time.perf_counter()  # the image needs no camera_info: it goes out before any wait for one
        info, withheld = self._frame_camera_info(msg.header, bgr.shape[:2])  # for the rest of the frame
        info_wait_s = time.perf_counter() - before_info  # a wait, not the node's work: out of node_ms
        before_fog = time.perf_counter()
        rectified = frames_rectified(self._image_topic, settings["image_rectified"])
        reading = self._fog.measure(chain, dehazed, info, msg.header, self._image_topic, rectified, withheld)
        fog_ms = (time.perf_counter() - before_fog) * 1000.0
        relay = None
        if withheld:
            self._fog.say_once(f"{withheld}: no ~/camera_info for such frames until one comes")
        if info is not None:
            relay, note = relayed_camera_info(info, msg.header, bgr.shape[:2])
            if note:
                self._fog.say_once(note)
        self._publish_frame(msg.header, result, reading, chain.fog, info, relay, settings)  # the detector next
        detected = chain.detect(dehazed, self._fog.distance_map(chain, dehazed, reading), self._fog.intrinsics)
        if detected.fresh and "detections" in self._outputs:
            self._outputs["detections"].publish(detections_to_msg(detected.detections, detected.positions,
                                                                  msg.header))
        if self._subscribed("debug_image") or self._subscribed("debug_image/compressed"):
            drawn = draw_detections(result.image, detected.detections, detected.depths,
                                    "m" if reading is not None else "", fog_banner(reading, result.haze_density))
            if self._subscribed("debug_image"):
                self._outputs["debug_image"].publish(bgr8_to_image(drawn, "bgr8", msg.header))
            self._publish_compressed("debug_image", drawn, drawn, "bgr8", msg.header, settings)
        node_ms = (time.perf_counter() - started - info_wait_s) * 1000.0
        self.stats.record(latency_ms, node_ms, dehazed.dehaze_ms + detected.detect_ms, fog_ms, waited_ms)
        if bgr.shape[0] * bgr.shape[1] > ARENA_KEEP_PIXELS:  # a huge frame's buffers go back, not to the heap
            return_freed_memory()
        return True

    def _subscribed(self, output: str) -> bool:
        publisher = self._outputs.get(output)
        return publisher is not None and publisher.get_subscription_count() > 0

    def _publish_compressed(self, output: str, bgr: np.ndarray, pixels: np.ndarray, encoding: str, header: Header,
                            settings: NodeSettings) -> None:
        """`output`'s frame, published raw as `pixels` in `encoding`, on `~/<output>/compressed` while someone
        subscribes there; a frame that does not encode is left out there with a throttled warning."""
        if not self._subscribed(f"{output}/compressed"):
            return
        prefix = f"{output}.compressed."
        try:
            message = compressed_image(bgr, pixels, encoding, header, settings[prefix + "format"],
                                       settings[prefix + "jpeg_quality"], settings[prefix + "png_level"])
        except ImageConversionError as exc:
            self.get_logger().warning(f"~/{output}/compressed: {exc}", throttle_duration_sec=5.0)
            return
        self._outputs[f"{output}/compressed"].publish(message)

    def _publish_depth(self, output: str, depth: np.ndarray, header: Header) -> None:
        """A depth image on `~/<output>`, and on `~/<output>/compressedDepth` while someone subscribes there; one that
        does not encode (a PNG more than a million pixels wide or high) is left out there with a throttled warning."""
        self._outputs[output].publish(depth_to_image(depth, header))
        if not self._subscribed(f"{output}/compressedDepth"):
            return
        try:
            message = compressed_depth_image(depth, header)
        except ImageConversionError as exc:
            self.get_logger().warning(f"~/{output}/compressedDepth: {exc}", throttle_duration_sec=5.0)
            return
        self._outputs[f"{output}/compressedDepth"].publish(message)

    def _latency_ms(self, header: Header) -> float:
        """Milliseconds from `header`'s stamp to now on the node's clock (/clock with use_sim_time); NaN for an
        unstamped frame, and while the clock has not started (`_clock_waiting`), when now - stamp is minus the
        stamp."""
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        now_ns = self.get_clock().now().nanoseconds
        return (now_ns - stamp_ns) / 1e6 if stamp_ns and now_ns else float("nan")

    def _clock_waiting(self) -> bool:
        """Whether the node's clock has not started (reads 0, as rclcpp's Clock::started has it): use_sim_time before
        the first /clock, which a bag played without --clock never sends."""
        return self.get_clock().now().nanoseconds == 0

    def _publish_frame(self, header: Header, result: DehazeResult, reading: VisibilityReading | None,
                       fog: VisibilityEstimator | None, info: CameraInfo | None, relay: CameraInfo | None,
                       settings: NodeSettings) -> None:
        """Publish the frame's depths, visibility, camera_info (`relay`, `relayed_camera_info`) and haze density
        (the image went out first)."""
        pubs = self._outputs
        if reading is not None:
            pubs["visibility"].publish(visibility_msg(reading, header, fog, info, result.depth.shape[:2]))
        if settings["publish_depth"]:
            self._publish_depth("depth_relative", result.depth, header)
            if reading is not None:
                self._publish_depth("depth", reading.depth, header)
        if relay is not None:
            pubs["camera_info"].publish(relay)
        if "haze_density" in pubs:
            pubs["haze_density"].publish(haze_msg(result.haze_density, header))

    # ---- diagnostics -----------------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        if self._diagnostics_pub is None:
            return
        summary = self.stats.summary(restart_period=True)
        counts = self.worker.counts()
        active = bool(self._inputs)
        level, message = DiagnosticStatus.OK, "running" if active else "inactive"
        if active and self._samples.narrow:
            level, message = DiagnosticStatus.WARN, (f"16-bit frames hold no sample above {NARROW_SAMPLE}, as a "
                                                     "12-bit camera's, and are read with input_bits: 16 as nearly "
                                                     "black images: set input_bits: 12 if the camera is 12-bit")
        if active and self._clock_waiting():
            level, message = DiagnosticStatus.WARN, ("use_sim_time is true and no /clock has come: latencies are "
                                                     "unknown (play the bag with ros2 bag play --clock)")
        if active and summary["fps"] == 0.0:
            level, message = DiagnosticStatus.WARN, "no frames processed in the last period"
        missing = max(summary["frames_lost_in_period"], summary["frames_missing_in_period"])
        if missing > 0:
            level, message = DiagnosticStatus.WARN, (f"{missing:.0f} input frames sent but never received (see "
                                                     "image_reliability in docs/ROS.md)")
        if self.stats.last_skip_reason:
            level, message = DiagnosticStatus.WARN, f"skipped bad input: {self.stats.last_skip_reason}"
            self.stats.last_skip_reason = ""
        failed, self._failed_reported = counts.failed - self._failed_reported, counts.failed
        if failed > 0:
            level, message = DiagnosticStatus.ERROR, (f"{failed} frames failed in processing, their outputs not all "
                                                      "published: a fault in the node (the log has its traceback)")
        with self._lock:
            problems, self._unsent_problems = {**self._unsent_problems, **self._reload_problems}, {}
        if problems:
            level, message = DiagnosticStatus.ERROR, "; ".join(problems.values())
        pipeline = self._pipeline
        info = {"method": str(getattr(pipeline, "method", "-")), "backend": str(getattr(pipeline, "backend", "-")),
                "weights": (pipeline.weights_summary if pipeline is not None else "") or "none",
                "detector": self._detector_note if self._detector is not None else "off",
                "transport": self.transport, **self._fog.diagnostics()}
        self._diagnostics_pub.publish(diagnostic_array(
            f"{self.get_fully_qualified_name()}: dehazing", info["backend"], self.get_clock().now().to_msg(),
            summary, counts, info, level, message))


def create_node(parameters: Mapping[str, Any] | None = None, *, name: str = "dgdehaze", namespace: str = "",
                remappings: Mapping[str, str] | None = None, context: Context | None = None,
                activate: bool = True) -> DehazeNode:
    """A DehazeNode in this process, configured and activated unless `activate` is False (for bag replay tools,
    tests and composition). `remappings` maps input names (`image`, `camera_info`) to topics."""
    overrides = [Parameter(k, value=v) for k, v in (parameters or {}).items()]
    cli_args = ["--ros-args"] + [arg for src, dst in (remappings or {}).items() for arg in ("-r", f"{src}:={dst}")]
    node = DehazeNode(name, namespace=namespace, context=context, parameter_overrides=overrides,
                      cli_args=cli_args if remappings else None)
    if activate:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.destroy_node()
            raise RuntimeError(f"{name}: configure failed (see the log for the reason)")
        if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            node.destroy_node()
            raise RuntimeError(f"{name}: activate failed (see the log for the reason)")
    return node


USAGE = """usage: dgdehaze_node [-h] [--ros-args -p NAME:=VALUE ... --params-file FILE -r FROM:=TO ...]

The dgdehaze lifecycle node: camera frames in (`image`, `camera_info`), dehazed frames, depth, visibility and
detections out under the node's name; docs/ROS.md lists the topics and QoS. It configures and activates itself
unless autostart is false. Parameters (config/dgdehaze.yaml holds them all):
"""


def _asks_for_help(args: list[str] | None) -> bool:
    """Whether the command line, before any `--ros-args`, holds -h or --help."""
    given = sys.argv[1:] if args is None else list(args)
    ours = given[:given.index("--ros-args")] if "--ros-args" in given else given
    return "-h" in ours or "--help" in ours


def main(args: list[str] | None = None) -> int:
    """Entry point of `dgdehaze_node --ros-args -p name:=value ...`. Ctrl-C (or `ros2 launch`'s SIGINT) ends it with
    code 0 whenever it comes, during autostart's configure too. `-h`/`--help` prints the usage and the parameters
    and starts nothing. A ROS argument rcl cannot parse or a parameter out of its range ends it with code 2 and
    the reason, no traceback."""
    keep_frame_memory()
    if _asks_for_help(args):
        print(USAGE + parameters_help())
        return 0
    console = logging.StreamHandler()
    console.addFilter(not_on_a_node_logger)  # the node's rclpy logger prints those itself
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", handlers=[console])
    try:
        os.environ.update(node_environment())
    except ValueError as exc:
        logging.getLogger("dgdehaze_node").error("%s: %s", CHOICE_VARIABLE, exc)
        return 2
    try:
        rclpy.init(args=args)
    except rclpy_implementation.RCLError as exc:  # a malformed rule: `-p name`, `-r image:=`, `--log-level verbose`
        logging.getLogger("dgdehaze_node").error("invalid ROS arguments: %s", exc)
        return 2
    try:
        node = DehazeNode()
    except ParameterException as exc:
        logging.getLogger("dgdehaze_node").error("invalid parameter: %s", exc)
        rclpy.try_shutdown()
        return 2
    node.get_logger().info(f"transport: {node.transport}")
    try:
        if node.get_parameter("autostart").value:
            _autostart(node)
        if node.context.ok():  # not where a Ctrl-C or SIGTERM rclpy took during autostart shut the context down
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C ends destroy_node's waits early
            node.destroy_node()
        rclpy.try_shutdown()
    if node.threads_running():
        _exit_leaving_threads()
    return 0


def _autostart(node: DehazeNode) -> None:
    """Configure and activate `node`; a transition that fails leaves it up in the state before, saying how to go on
    (nothing where it failed since a stop shut the context down meanwhile)."""
    configured = node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    if not node.context.ok():
        return
    if configured:
        if node.trigger_activate() != TransitionCallbackReturn.SUCCESS and node.context.ok():
            node.get_logger().error(f"the node stays inactive: mend what the error says, then `ros2 lifecycle "
                                    f"set {node.get_fully_qualified_name()} activate` (or cleanup first)")
    else:  # a lifecycle node stays up unconfigured: mend the parameters, then configure again
        node.get_logger().error(f"the node stays unconfigured: set the parameters right, then `ros2 lifecycle "
                                f"set {node.get_fully_qualified_name()} configure` and `activate`")


def _exit_leaving_threads() -> NoReturn:
    """End the process with code 0 at once, the node destroyed and rclpy shut down. Python's own exit would stop a
    thread still running (an abandoned model load) inside torch's or ONNX Runtime's native code, which aborts the
    process ("terminate called without an active exception", code -6): only the log is flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
