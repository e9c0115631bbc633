"""How the node loads its models while it runs: a parameter change that needs a new pipeline or detector is loaded
in a background thread (an ONNX export or a TensorRT build takes seconds to minutes) while frames flow through the
running models, then swapped in; a load that fails keeps the running model, puts the parameters that asked for it
back (they read back what runs) and reports why on /diagnostics. Configure and cleanup count configurations
(`_generation`): a load from an earlier one is dropped, never swapped in or reported.

`ModelReloads` is a part of `DehazeNode` (node.py), kept apart to be read on its own; it works on the node's
settings, models and lock, declared below.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Mapping, TypeVar

import numpy as np
from rclpy.parameter import Parameter

from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.detection.schedule import DetectionSchedule
from dgdehaze_core.detection.tracking import TrackIds
from dgdehaze_core.inference.frame_chain import detection_schedule
from dgdehaze_core.inference.pipeline import DehazePipeline, load_pipeline
from dgdehaze_ros.detection_messages import VISION_MSGS_AVAILABLE
from dgdehaze_ros.parameters import NodeSettings

Loaded = TypeVar("Loaded")
CONTEXT_POLL_S = 0.1
"""How often a configure waiting on its load checks that the node's context still runs."""


class ShutDownMeanwhile(Exception):
    """A stop (Ctrl-C, SIGTERM) shut the node's context down while the configure loaded its models."""


class ModelReloads:
    """The background loads of `DehazeNode`'s pipeline and detector, and what a failed one puts back and reports.
    Besides the attributes declared here it uses the node's `get_logger`, `set_parameters` and `context` (rclpy's),
    `_publish_labels`, `_describe` and `_thread_name`."""

    _settings: NodeSettings | None
    _pipeline: DehazePipeline | None
    _detector: Detector | None
    _schedule: DetectionSchedule | None
    _detector_note: str

    def _init_reloads(self) -> None:
        """The state of the loads; before any parameter callback can run."""
        self._track_ids = TrackIds()
        """The track identities ~/detections has carried in this process: each detector loaded numbers its tracks
        above them, so that no id goes to a second object across reloads, cleanups and activations."""
        self._lock = threading.Lock()
        """Taken by configure, cleanup, the parameter callback and the loader where they read or swap models."""
        self._loader_ended = threading.Condition(self._lock)
        """Notified when a loader thread is done with the node (gone from `_loaders`)."""
        self._loaded: dict[str, NodeSettings] = {}
        """The settings the running pipeline and detector were loaded with: what a failed reload reverts to."""
        self._reload_problems: dict[str, str] = {}
        """Per component, why its last reload failed (cleared when one succeeds): an ERROR on /diagnostics."""
        self._unsent_problems: dict[str, str] = {}
        """Reload failures no /diagnostics report has carried yet: sent once even when a reload of a change that came
        during the failed load succeeded before the report."""
        self._reverting = threading.local()
        """In the thread putting parameters back after a failed load (`_report_failure`): `generation`, the
        configuration the load was for (None: the configure under way), checked where the put-back is applied."""
        self._pending_reloads: set[str] = set()
        self._loader: threading.Thread | None = None
        """The thread loading what the current configuration's parameter changes need."""
        self._loaders: set[threading.Thread] = set()
        """Every loader thread still running: `_loader` and the loads a cleanup dropped, which end on their own."""
        self._generation = 0
        """Counts configure and cleanup: a background load started before one of them is dropped, not swapped in."""

    def _other_loaders(self) -> set[threading.Thread]:
        """The loader threads still running but the calling one."""
        return self._loaders - {threading.current_thread()}

    def _loader_gone(self, thread: threading.Thread) -> None:
        """The last step of a loader `thread`, under `_lock`: it leaves `_loaders`, and a stop waiting for the
        loaders to end (`_loader_ended`) is woken."""
        self._loaders.discard(thread)
        self._loader_ended.notify_all()

    def _detector_stale(self, settings: NodeSettings) -> bool:
        """No detector runs, or it was loaded with other detector settings (changed while detection was off)."""
        loaded = self._loaded.get("detector")
        return self._detector is None or loaded is None or bool(loaded.differing(settings, "detector"))

    def _load_watched(self, load: Callable[[NodeSettings], Loaded], settings: NodeSettings) -> Loaded:
        """`load(settings)` for the configure: run in a loader thread while the calling thread waits, so that a stop
        that shuts the context down meanwhile ends the wait at once (`ShutDownMeanwhile`) and the load ends on its
        own, its result dropped (destroy_node waits for it a bounded time). Loaded in the calling thread, an ONNX
        export or a TensorRT build ran to its end first whenever rclpy's signal handler took the stop without a
        KeyboardInterrupt reaching the configure. The load's exception is raised here."""
        result: Future[Loaded] = Future()

        def run() -> None:
            try:
                loaded, failure = load(settings), None
            except BaseException as exc:  # raised in the waiting thread
                loaded, failure = None, exc
            with self._lock:  # gone from `_loaders` before the configure goes on
                self._loader_gone(thread)
            if failure is None:
                result.set_result(loaded)
            else:
                result.set_exception(failure)

        thread = threading.Thread(target=run, name=self._thread_name("configure"), daemon=True)
        with self._lock:
            self._loaders.add(thread)
        thread.start()
        while True:
            try:
                return result.result(timeout=CONTEXT_POLL_S)
            except FutureTimeout:
                if not self.context.ok():
                    raise ShutDownMeanwhile("the node is shutting down") from None

    def _load_pipeline(self, settings: NodeSettings) -> DehazePipeline:
        """The pipeline of `settings`. It names its weights from the read that loaded them (`weights_summary`):
        /diagnostics names the weights that run, not a file put in their place since."""
        method, options = settings.pipeline_args()
        return load_pipeline(method, **options)

    def _load_detector(self, settings: NodeSettings) -> Detector | None:
        """The detector `settings` ask for, run once; None without vision_msgs. DetectorUnavailable or ValueError
        when it cannot load (a refused or missing file, a bad class name). Its tracker numbers its tracks above
        every identity the node's detectors have given (`_track_ids`)."""
        if not VISION_MSGS_AVAILABLE:
            return None
        detector = Detector(**settings.detector_args(), track_ids=self._track_ids)
        detector(np.zeros((settings["imgsz"], settings["imgsz"], 3), np.uint8))  # load lazily-built parts now
        detector.reset_tracks()  # that frame is no camera's: the first real frame is the tracker's first
        return detector

    @staticmethod
    def _detector_label(detector: Detector | None) -> str:
        """What /diagnostics says of a running detector."""
        if detector is None:
            return "off: vision_msgs missing"
        return detector.label + (f" + {detector.tracker}" if detector.tracker else "")

    def _detection_off(self, exc: Exception, generation: int | None = None) -> None:
        """No detector could load and none runs: the dehazer goes on without detection, `detection_enabled` is put
        back to false (it reads back what runs) and /diagnostics is an ERROR with the reason until a detector loads
        (set `detection_enabled` again after mending the detector's settings). A background load from before the
        last configure or cleanup (`generation`) changes nothing."""
        with self._lock:
            if self._stale(generation):
                self.get_logger().info(f"a detector load from an earlier configuration failed: {exc}")
                return
            self._detector_note = f"off: {exc}"
        self._report_failure("detector", f"detector failed to load, detection off: {exc}", {"detection_enabled": False},
                             generation)

    def _reload_failed(self, component: str, exc: Exception, requested: NodeSettings, generation: int) -> None:
        """Keep the running `component`, put the parameters that asked for the failed one back to the values it
        runs with (so that get_parameters tells what is running), and report why on /diagnostics. A parameter
        changed again since (its newer value waits for the next reload) is left alone, and a reload from before the
        last configure or cleanup (`generation`) changes nothing."""
        current = self._current_settings(generation, f"{component} reload", exc)
        if current is None:
            return
        running = self._loaded.get(component)
        self._report_failure(component, f"{component} reload failed, kept the previous one: {exc}",
                             {} if running is None else running.put_back(requested, current, component), generation)

    def _current_settings(self, generation: int | None, what: str, exc: Exception) -> NodeSettings | None:
        """The settings now, or None (logged, nothing else done) when `what` failed in a load from before the last
        configure or cleanup (`generation`; None: a load of the configure under way)."""
        with self._lock:
            if self._stale(generation):
                self.get_logger().info(f"a {what} from an earlier configuration failed: {exc}")
                return None
            return self._settings

    def _stale(self, generation: int | None) -> bool:
        """Whether a load for the configuration `generation` (None: the configure under way) was for one a configure
        or cleanup has ended since. Under the lock."""
        return generation is not None and (generation != self._generation or self._settings is None)

    def _report_failure(self, component: str, problem: str, put_back: Mapping[str, Any],
                        generation: int | None) -> None:
        """Put the `put_back` parameters back (get_parameters then tells what runs) and make `problem`, with what was
        put back, the ERROR /diagnostics shows for `component` until it loads, and in at least one report. Each is
        done under the lock that a configure and cleanup take, only while `generation` (the configuration the failed
        load was for; None: the configure under way) is the node's: a cleanup landing in between leaves the next
        configuration's parameters and /diagnostics alone."""
        if put_back:
            problem += "; put back " + ", ".join(f"{name}={value!r}" for name, value in put_back.items())
            self._reverting.generation = generation
            try:
                self.set_parameters([Parameter(name, value=value) for name, value in put_back.items()])
            finally:
                del self._reverting.generation
        with self._lock:
            stale = self._stale(generation)
            if not stale:
                self._reload_problems[component] = self._unsent_problems[component] = problem
        if stale:
            self.get_logger().info(f"a failure from an earlier configuration, neither put back nor reported: {problem}")
        else:
            self.get_logger().error(problem)

    @staticmethod
    def _schedule_for(detector: Detector | None, settings: NodeSettings) -> DetectionSchedule | None:
        if detector is None:
            return None
        return detection_schedule(detector, settings["detection_interval"], settings["detection_input"],
                                  settings["detection_contrast"])

    def _take_settings_changed_during_load(self, detector: Detector, current: NodeSettings) -> None:
        """Give a detector loaded with older settings the threshold, iou, max_det and classes set since (the
        interval and detection input go with the schedule built from `current`). Classes the new detector lacks
        leave it on the classes it loaded with, and say so."""
        try:
            class_ids = detector.class_ids(current["classes"])
        except ValueError as exc:
            class_ids = detector.classes
            self.get_logger().error(f"the reloaded detector keeps the classes it loaded with: {exc}")
        self._apply_detector_settings(detector, current, class_ids)

    @staticmethod
    def _apply_detector_settings(detector: Detector, settings: NodeSettings, class_ids: list[int] | None) -> None:
        """Settings a running detector takes without reloading (`class_ids`: `settings`' classes, checked)."""
        detector.conf, detector.iou, detector.max_det = settings["threshold"], settings["iou"], settings["max_det"]
        detector.classes = class_ids

    def _start_reloads(self) -> None:
        """Load what changed parameters need in a background thread. Frames keep flowing through the current
        models meanwhile (a first ONNX export or TensorRT build takes from seconds to minutes) and the new ones are
        swapped in when ready; on failure the previous ones stay and diagnostics say why."""
        with self._lock:
            if not self._pending_reloads or self._loader is not None:
                return
            self._loader = threading.Thread(target=self._run_reloads, name=self._thread_name("loader"), daemon=True)
            self._loaders.add(self._loader)
            self._loader.start()

    def _run_reloads(self) -> None:
        """The loader thread: load what is pending until nothing is. One a cleanup dropped (no longer `_loader`)
        ends after its load, leaving what the next configuration asks for to that configuration's loader."""
        loader = threading.current_thread()
        while True:
            with self._lock:
                current = self._loader is loader
                pending, settings, generation = set(self._pending_reloads), self._settings, self._generation
                if not current or not pending or settings is None:
                    if current:
                        self._loader = None
                        self._pending_reloads.clear()
                    self._loader_gone(loader)
                    return
                self._pending_reloads.clear()
            try:
                self._reload(pending, settings, generation)
            except Exception as exc:  # else the thread ends with `_loader` set, and no later change ever loads
                for component in sorted(pending):
                    self._report_failure(component, f"{component} reload failed unexpectedly, kept the previous "
                                                    f"one: {exc!r}", {}, generation)

    def _reload(self, pending: set[str], settings: NodeSettings, generation: int) -> None:
        if "pipeline" in pending:
            try:
                pipeline = self._load_pipeline(settings)
            except Exception as exc:  # any failure (a refused file, a full engine cache) keeps the running one
                self._reload_failed("pipeline", exc, settings, generation)
                with self._lock:  # a parameter of both models (device, half) was put back: the detector follows
                    if generation == self._generation and self._settings is not None:
                        settings = self._settings
            else:
                with self._lock:
                    swapped = generation == self._generation
                    if swapped:
                        self._pipeline, self._loaded["pipeline"] = pipeline, settings
                        self._reload_problems.pop("pipeline", None)
                if swapped:
                    self.get_logger().info(f"reloaded pipeline: {self._describe()}")
        if "detector" in pending and settings["detection_enabled"] and self._detector_stale(settings):
            try:
                detector = self._load_detector(settings)
            except Exception as exc:  # a refused file, a runtime's own error (onnxruntime raises RuntimeError)
                if self._detector is None:
                    self._detection_off(exc, generation)
                else:
                    self._reload_failed("detector", exc, settings, generation)
                    self._reload_pipeline_if_put_back(generation)
                return
            with self._lock:
                current = self._settings
                swapped = generation == self._generation and current is not None
                if swapped:
                    self._detector_note = self._detector_label(detector)
                    if detector is not None:
                        self._take_settings_changed_during_load(detector, current)
                        self._detector, self._schedule = detector, self._schedule_for(detector, current)
                        self._loaded["detector"] = settings
                        self._reload_problems.pop("detector", None)
            if swapped:
                self._publish_labels()

    def _reload_pipeline_if_put_back(self, generation: int) -> None:
        """After a failed detector load put back a parameter of both models (device, half), the pipeline, loaded
        with the refused value, loads again with the value put back."""
        with self._lock:
            loaded, current = self._loaded.get("pipeline"), self._settings
            if generation == self._generation and current is not None and loaded is not None \
                    and loaded.differing(current, "pipeline"):
                self._pending_reloads.add("pipeline")
