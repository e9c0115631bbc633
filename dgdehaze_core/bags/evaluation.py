"""Evaluate dehazing on a recorded drive: a ROS 2 bag in; an output bag, per-frame records and a report out.

The offline mode (`evaluate_bag`) runs the node's frame chain (`inference.frame_chain`) in this process, with no
ROS install. The node-replay mode (`dgdehaze_ros.tools.bag_replay`) sends the frames through a running node instead
and fills the same `BagEvaluation` from what the node publishes. Both write one output folder atomically:

    OUT/bag/          the input bag's topics unchanged, plus the node's outputs at the original stamps
    OUT/report.html   before/after frames, depth, detections, haze density, latency, detection figures
    OUT/summary.json  the figures of the report (`BagEvaluation.summary`)
    OUT/figures/      the report's PNG files

Detection is run on both the hazy input and the dehazed frame, so the report compares them.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence, TypeVar

import numpy as np
import yaml
from rosbags.interfaces import Connection
from tqdm import tqdm

from dgdehaze_core.bags.disk_room import room_problem
from dgdehaze_core.bags.io import (CAMERA_INFO_TYPE, DETECTIONS_TYPE, HAZE_TYPE, LABEL_INFO_TYPE, RANGE_TYPE, BagError,
                                   BagFrame, BagSource)
from dgdehaze_core.bags.writer import BagWriter, output_images
from dgdehaze_core.bags.records import BagEvaluation, FrameRecord, Sample, sample_indices
from dgdehaze_core.bags.report import write_report
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.detection.detector import Detection, Detector
from dgdehaze_core.detection.stream_stamps import StreamStamps
from dgdehaze_core.detection.tracking import BoxTracker
from dgdehaze_core.inference.frame_chain import FrameChain, FrameOutput
from dgdehaze_core.inference.pipeline import DehazePipeline, load_pipeline, method_weights
from dgdehaze_core.io.atomic_files import atomic_path
from dgdehaze_core.io.images import SAMPLE_BITS, ImageError
from dgdehaze_core.physics.dark_channel import haze_density
from dgdehaze_core.physics.lens import distortion_note, frames_rectified
from dgdehaze_core.physics.visibility import (Intrinsics, Mounting, VisibilityEstimator, field_of_view, horizon_note,
                                              intrinsics_of, resized_camera_info, size_mismatch)

LOG = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_OUTPUT_PREFIX = "/dgdehaze"
"""Output topics in the bag are the node's `~/` topics under its default name: /dgdehaze/image_dehazed, ..."""
NAMESPACE = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)+$")
"""An absolute ROS namespace: /name or /name/name..., each name a letter or underscore then letters, digits or
underscores."""
COPY_CHECK_BYTES = 8 << 20
"""Besides before each frame, the disk's room is asked each time this many bytes more of the bag were copied
(`copied_messages`: a lidar between two frames, a recording that goes on long after its camera stopped), well
within disk_room.RESERVE_BYTES."""
FALLBACK_METHOD = "dcp"
"""What runs when the default method's weights are missing or do not load (needs none)."""
NODE_DEFAULT_MODEL = "lite"
"""The node's own `model` default (dgdehaze_ros/parameters.py), used when no configuration file sets one."""


def config_folders() -> list[Path]:
    """Where the node's shipped configuration lives: the source tree's config/, the installed package's share
    folder found through the ament index (a colcon workspace), and the Python prefix's share folder (pip)."""
    folders = [REPO_DIR / "config"]
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:  # no ROS install: the pip layout only
        pass
    else:
        try:
            folders.append(Path(get_package_share_directory("dgdehaze")) / "config")
        except (PackageNotFoundError, OSError):  # not installed, or no AMENT_PREFIX_PATH at all
            pass
    folders.append(Path(sys.prefix) / "share" / "dgdehaze" / "config")
    return folders


def node_default_method() -> str:
    """The dehazing method the node runs by default: its `weights` or `model` parameter in the shipped node
    configuration (the first of `config_folders` that sets one); the node's own default when none does."""
    for folder in config_folders():
        for path in sorted(folder.glob("*.yaml")):
            try:
                document = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                LOG.debug("skipping %s: %s", path, exc)
                continue
            for node in document.values() if isinstance(document, dict) else ():
                parameters = node.get("ros__parameters") if isinstance(node, dict) else None
                if not isinstance(parameters, dict):
                    continue
                for key in ("weights", "model"):
                    if isinstance(parameters.get(key), str) and parameters[key]:
                        LOG.info("default method %r: the node's %s parameter in %s", parameters[key], key, path)
                        return parameters[key]
    return NODE_DEFAULT_MODEL


Read = tuple[Any, str]
"""A checkpoint file's contents and sha256 as read (`pipeline.read_method`), handed on so that it is not read
again."""


def _load_as_the_node_does(method: str, read: Read | None,
                           options: Mapping[str, Any] | None = None) -> DehazePipeline:
    """A network on `backend: auto`, the node's default, and the node's other defaults but for `options`
    (`load_pipeline`'s), so offline figures are the node's; DCP takes no options."""
    if method == FALLBACK_METHOD:
        return load_pipeline(method)
    return load_pipeline(method, read=read, **{"backend": "auto", **(options or {})})


def open_pipeline(method: str | None, default: str | None = None, read: Read | None = None,
                  options: Mapping[str, Any] | None = None) -> DehazePipeline:
    """The pipeline for `method` with `options` (`load_pipeline`'s: the node's settings that differ from its
    defaults); without one, `default` (None: the node's, `node_default_method`), and when its weights are missing
    or do not load, DCP, saying so (an explicit method that fails is an error). `read`: the explicit method's
    checkpoint as read already (`pipeline.read_method`): not read again."""
    return _or_fallback(method, default, lambda name, checked: _load_as_the_node_does(name, checked, options), read)


def node_method(method: str | None, default: str | None = None, read: Read | None = None) -> str:
    """The method to start a node with, chosen as `open_pipeline` chooses it, its weights read and checked here
    (`pipeline.method_weights`; `read`, as open_pipeline's: checked from what was read) but no runtime built: the
    node exports or builds its own engine."""
    return _or_fallback(method, default, _with_weights_checked, read)


def _with_weights_checked(method: str, read: Read | None) -> str:
    method_weights(method, read)
    return method


def _or_fallback(method: str | None, default: str | None, load: Callable[[str, Read | None], T],
                 read: Read | None) -> T:
    """`load(method, read)`; without a method, `load(default, None)` (None: the node's default), and when that
    fails for weights that are missing or do not load, `load(FALLBACK_METHOD, None)`, saying so (an explicit method
    that fails is an error)."""
    if method:
        return load(method, read)
    default = default or node_default_method()
    try:
        return load(default, None)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        if default == FALLBACK_METHOD:
            raise
        LOG.warning("default method %r is unavailable (%s); falling back to %s. Train or install the %r weights, "
                    "or pass --method.", default, exc, FALLBACK_METHOD, default)
        return load(FALLBACK_METHOD, None)


def timed_detect(detector: Detector | None, image: np.ndarray,
                 tracks: BoxTracker | None = None) -> tuple[list[Detection], float]:
    """`detector`'s detections on `image` (followed by `tracks`, where given) and the milliseconds they took;
    without a detector none, and NaN ms: no time was measured (the hazy row's latency reads n/a, not 0)."""
    if detector is None:
        return [], float("nan")
    start = time.perf_counter()
    detections = detector(image)
    if tracks is not None:
        detections = tracks(detections, image)
    return detections, (time.perf_counter() - start) * 1000.0


DETECTION_SETTINGS = {"detection_input": "detection_input", "detection_contrast": "contrast",
                      "detection_interval": "interval"}
"""The node's parameters of what its detector reads, by `FrameChain.build`'s keyword for each."""
FOG_SETTINGS = {"visibility_smoothing": "time_constant", "max_visibility": "max_visibility"}
"""The node's parameters of its fog measurement, by `VisibilityEstimator`'s keyword for each."""
ROAD_SETTINGS = ("road_region", "road_max_distance")
"""The node's parameters of the road its fog is measured on: `Mounting`'s fields of the same names."""
LOGGED_SKIPS = 3
"""How many frames that do not decode the log names one by one: a bag of thousands in an encoding nothing reads
would fill the terminal (the report and summary.json list them all, and the end says how many)."""
FRAME_SETTINGS = (*DETECTION_SETTINGS, *FOG_SETTINGS, *ROAD_SETTINGS, "tracker")
"""The node's parameters of its frame chain, beside the pipeline's, the detector's and the mounting's, that an
offline evaluation takes (`FrameProcessor`'s `settings`, by the node's names)."""


class FrameProcessor:
    """The node's frame chain in process (every frame detected, on the dehazed image, unless `settings` say
    otherwise: with a `detection_interval` of N the drive's frames 0, N, 2N, ... alone, and the hazy baseline on
    the same frames, counted anew from a frame stamped back in time as the node counts (`StreamStamps`); with a
    `tracker`, each row's detections followed by a tracker of its own, which such a frame restarts; with a camera
    mounting, the fog measured as the node measures it, on the road users of the previous frame's detection or else
    on the road, with the bag's camera_info), plus the detector on the hazy frame as the baseline the report
    compares against. `rectified`: whether the frames are rectified, raw (False: their lens
    distortion is undone) or not known (None: taken as rectified), as `lens.frames_rectified` tells. `settings`: the
    node's parameters of FRAME_SETTINGS that differ from its defaults, by name (ValueError for another)."""

    def __init__(self, pipeline: DehazePipeline, detector: Detector | None, mounting: Mounting | None = None,
                 rectified: bool | None = True, settings: Mapping[str, Any] | None = None) -> None:
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(FRAME_SETTINGS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a frame-chain setting ({', '.join(FRAME_SETTINGS)})")
        self.detector = detector
        self.rectified = rectified
        fog = None
        if mounting is not None:
            road = {name: tuple(value) if name == "road_region" else value for name, value in settings.items()
                    if name in ROAD_SETTINGS}
            smoothing = {FOG_SETTINGS[name]: value for name, value in settings.items() if name in FOG_SETTINGS}
            fog = VisibilityEstimator(dataclasses.replace(mounting, **road), **smoothing)
        detecting = {DETECTION_SETTINGS[name]: value for name, value in settings.items() if name in DETECTION_SETTINGS}
        tracker = settings.get("tracker") if detector is not None else None
        self._tracks = (BoxTracker(tracker), BoxTracker(tracker)) if tracker else None
        """The dehazed row's tracker and the hazy row's: each row is a stream of its own."""
        self._stamps = StreamStamps()
        self.chain = FrameChain.build(pipeline, detector, fog=fog, tracks=self._tracks[0] if self._tracks else None,
                                      **detecting)
        self._warm = False
        self.intrinsics: Intrinsics | None = None
        """The intrinsics the last frame was measured with (None without a camera_info that gives them)."""

    def horizon_note(self, frame: BagFrame) -> str:
        """Where the mounting puts the horizon outside `frame`, the last frame processed (`visibility.horizon_note`);
        "" where it is in view, or without a mounting or intrinsics."""
        if self.chain.fog is None or self.intrinsics is None:
            return ""
        return horizon_note(frame.image.shape[:2], self.intrinsics, self.chain.fog.mounting)

    def __call__(self, frame: BagFrame) -> tuple[FrameRecord, FrameOutput]:
        if not self._warm:  # first calls allocate and compile: keep them out of the latency figures
            FrameChain.build(self.chain.pipeline, self.detector)(frame.image)
            self._warm = True
        info = frame.camera_info
        intrinsics = intrinsics_of(info, frame.image.shape[:2], raw=self.rectified is False) \
            if info is not None else None
        if self._stamps.starts_stream(frame.stamp_ns) and self.chain.schedule is not None:  # the node's new stream
            self.chain.schedule.reset()
            for tracks in self._tracks or ():
                tracks.reset()
        output = self.chain(frame.image, intrinsics, frame.stamp_ns * 1e-9)
        self.intrinsics = intrinsics
        result, detected = output.result, output.detected
        ran = detected.fresh or self.chain.schedule is None
        hazy_detections, hazy_ms = timed_detect(self.detector, frame.image, self._tracks and self._tracks[1]) \
            if ran else ([], math.nan)
        record = FrameRecord(
            index=frame.index, stamp_ns=frame.stamp_ns, log_time_ns=frame.log_time_ns,
            haze_density_hazy=float(result.haze_density),
            haze_density_dehazed=haze_density(result.image), latency_ms=output.compute_ms, detect_hazy_ms=hazy_ms,
            hazy_detections=hazy_detections, dehazed_detections=detected.detections if ran else [],
            detection_depths=detected.depths if ran else [], detected=ran,
            visibility_m=output.fog.visibility if output.fog is not None else math.nan,
            visibility_at_most=output.fog.at_most if output.fog is not None else None)
        return record, output


def unmeasured_fog(frame: BagFrame) -> str:
    """Why the fog of `frame` cannot be measured with a camera mounting, in the node's words (its ~/visibility waits
    for a camera_info with intrinsics): no camera_info before it, or one that does not describe it; "" when it can
    be."""
    info, shape = frame.camera_info, frame.image.shape[:2]
    if info is None:
        return "no camera_info has arrived"
    if intrinsics_of(info, shape) is not None:
        return ""
    return size_mismatch(info, shape) or "camera_info has no intrinsics"


def detections_msg(writer: BagWriter, header: Any, detections: Sequence[Detection],
                   positions: Sequence[tuple[float, float, float]]) -> Any:
    """vision_msgs/Detection2DArray as the node publishes it (`dgdehaze_ros.detection_messages`): one Detection2D
    per object, the numeric class id as class_id (names in `label_info_msg`), the box in pixels and the object's
    position in metres in the optical frame as the hypothesis pose (NaN where unknown)."""
    types = writer.types
    out = []
    for detection, (x, y, z) in zip(detections, positions):
        x1, y1, x2, y2 = detection.box
        pose = types["geometry_msgs/msg/PoseWithCovariance"](
            pose=types["geometry_msgs/msg/Pose"](
                position=types["geometry_msgs/msg/Point"](x=float(x), y=float(y), z=float(z)),
                orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
            covariance=np.zeros(36, np.float64))
        hypothesis = types["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=types["vision_msgs/msg/ObjectHypothesis"](class_id=str(detection.class_id),
                                                                 score=float(detection.score)),
            pose=pose)
        bbox = types["vision_msgs/msg/BoundingBox2D"](
            center=types["vision_msgs/msg/Pose2D"](
                position=types["vision_msgs/msg/Point2D"](x=(x1 + x2) / 2.0, y=(y1 + y2) / 2.0), theta=0.0),
            size_x=float(x2 - x1), size_y=float(y2 - y1))
        out.append(types["vision_msgs/msg/Detection2D"](
            header=header, results=[hypothesis], bbox=bbox,
            id="" if detection.track_id is None else str(detection.track_id)))
    return types[DETECTIONS_TYPE](header=header, detections=out)


def label_info_msg(writer: BagWriter, header: Any, names: Mapping[int, str], threshold: float) -> Any:
    """vision_msgs/LabelInfo: the detector's class ids and names, as the node latches on ~/label_info."""
    vision_class = writer.types["vision_msgs/msg/VisionClass"]
    return writer.types[LABEL_INFO_TYPE](header=header, threshold=float(threshold), class_map=[
        vision_class(class_id=int(i), class_name=str(name)) for i, name in sorted(names.items())])


def write_frame_outputs(writer: BagWriter, prefix: str, frame: BagFrame, record: FrameRecord,
                        output: FrameOutput, fog: VisibilityEstimator | None = None, detecting: bool = True) -> None:
    """The node's outputs for one frame, on its `~/` topics, at the input frame's receive time and header; with a
    fog reading also ~/depth (metres) and ~/visibility; ~/detections only when `detecting` and on the frames the
    detector ran on, as the node publishes none with detection off and none between its detection_interval's."""
    result = output.result
    header = writer.copy_header(frame.header)
    writer.write_image(f"{prefix}/image_dehazed", frame.log_time_ns, header, result.image)
    writer.write_image(f"{prefix}/depth_relative", frame.log_time_ns, header, result.depth.astype(np.float32))
    if output.fog is not None and fog is not None:
        writer.write_image(f"{prefix}/depth", frame.log_time_ns, header, output.fog.depth.astype(np.float32))
        writer.write(f"{prefix}/visibility", RANGE_TYPE, frame.log_time_ns,
                     writer.range_msg(header, output.fog.visibility, fog.max_visibility,
                                      field_of_view(frame.camera_info, result.image.shape[:2])))
    if detecting and record.detected:
        writer.write(f"{prefix}/detections", DETECTIONS_TYPE, frame.log_time_ns,
                     detections_msg(writer, header, record.dehazed_detections, output.detected.positions))
    writer.write(f"{prefix}/haze_density", HAZE_TYPE, frame.log_time_ns,
                 writer.haze_msg(header, record.haze_density_hazy))
    if frame.camera_info is not None:
        writer.write(f"{prefix}/camera_info", CAMERA_INFO_TYPE, frame.log_time_ns,
                     relayed_camera_info_msg(frame.camera_info, header, result.image.shape[:2]))


def relayed_camera_info_msg(info: Any, header: Any, shape: tuple[int, int]) -> Any:
    """The bag's CameraInfo `info` for the outputs of a frame of `shape` (height, width), with `header`, as the node
    relays it on ~/camera_info (dgdehaze_ros.camera_info): scaled to the frame where the frame is a resized copy of
    the image it describes, K and P as the fog read them (`visibility.resized_camera_info`), else as recorded."""
    info = dataclasses.replace(info, header=header)
    scaled = resized_camera_info(info, shape)
    if scaled is None:
        return info
    roi = dataclasses.replace(info.roi, **scaled.pop("roi"))
    return dataclasses.replace(info, **scaled, roi=roi)


EVALUATION_ENTRIES = frozenset({"bag", "figures", "report.html", "summary.json", "node.log"})
"""What an evaluation writes into its folder (`evaluate_bag`, `report.write_report`; a node replay its node's log
too), which replaces it whole."""
OUTPUT_MARKERS = {"summary.json": "one bag's", "fleet.json": "a fleet's"}
"""The file that marks a folder as bag-eval's output (`check_output_folder`'s marker), and whose output it is."""


def check_rate(rate: float | None, name: str = "the rate") -> None:
    """ValueError, naming the argument or option (`name`), unless node replay's `rate` is None (lockstep) or a
    positive finite factor of the recorded pace; `replay_bag` asks it, and bag-eval before any bag is opened."""
    if rate is not None and not 0 < rate < math.inf:
        raise ValueError(f"{name} must be a positive factor of the recorded pace (1: as recorded), got {rate}")


def check_output_folder(out_dir: Path, inputs: Sequence[str | Path], marker: str = "summary.json",
                        entries: Collection[str] | None = EVALUATION_ENTRIES) -> None:
    """ValueError unless `out_dir` can be replaced by an evaluation's output without losing anything: not a file,
    not a link to nothing, not an input bag, not inside one and not holding one, not holding the current folder
    (but a fleet's, which is not replaced whole), and, when it exists and is not empty, an earlier output (it holds
    `marker`, one of OUTPUT_MARKERS; the other kind's output is refused as such) that holds nothing but `entries`
    (None: an output that keeps what else it holds, a fleet's). OSError where its disk is already short of room
    (`disk_room`)."""
    out = out_dir.resolve()
    for bag in map(Path, inputs):
        bag = bag.resolve()
        if out == bag or bag.is_relative_to(out) or out.is_relative_to(bag):
            raise ValueError(f"output folder {out_dir} would replace the input bag {bag}: give a folder outside it")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out_dir} is a file")
    if out_dir.is_symlink() and not out.exists():  # the finished output would not rename over it
        raise ValueError(f"output folder {out_dir} is a link to {out}, which does not exist: give a folder")
    if entries is not None and Path.cwd().resolve().is_relative_to(out):  # replaced whole, the current folder too
        raise ValueError(f"output folder {out_dir} holds the current folder, which replacing it would delete: run "
                         "from outside it, or give another folder")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        for other, kind in OUTPUT_MARKERS.items():
            if other != marker and (out / other).is_file():
                raise ValueError(f"output folder {out_dir} is {kind} output ({other}), not {OUTPUT_MARKERS[marker]}"
                                 ": give a new folder")
        raise ValueError(f"output folder {out_dir} holds files that are not an earlier evaluation's (no {marker}); "
                         "give a new folder")
    others = sorted(path.name for path in out.iterdir() if path.name not in entries) \
        if entries is not None and out.is_dir() else []
    if others:
        raise ValueError(f"output folder {out_dir}, an earlier evaluation, also holds {', '.join(others[:5])}"
                         f"{' ...' if len(others) > 5 else ''}, which replacing it would delete: move them out, or "
                         "give a new folder")
    if problem := room_problem(out):
        raise OSError(f"no room for an evaluation's output: {problem}")


def evaluate_bag(input_bag: str | Path, image_topic: str, out_dir: str | Path, *,
                 camera_info_topic: str | None = None, method: str | None = None,
                 default_method: str | None = None, detector: Detector | None = None,
                 max_frames: int | None = None, storage: str | None = None,
                 output_prefix: str = DEFAULT_OUTPUT_PREFIX, mounting: Mounting | None = None,
                 input_bits: int = SAMPLE_BITS, image_transport: str = "auto", start: float = 0.0,
                 duration: float | None = None, progress: bool = True,
                 read: Read | None = None, image_rectified: str = "auto",
                 pipeline_options: Mapping[str, Any] | None = None, frame_settings: Mapping[str, Any] | None = None,
                 notes: Sequence[str] = ()) -> BagEvaluation:
    """Run the node's frame chain over every frame of `image_topic` and write OUT (bag, report, summary) atomically.

    method: the dehazing method; without one, `default_method` (default: the node's, `node_default_method`), or DCP
    when that one's weights are missing or do not load. read: `method`'s checkpoint as the caller read it already
    to check it (`pipeline.read_method`): the pipeline is built from it, the file not read again. mounting: the
    camera's height and pitch over the road, as the node's camera_height and camera_pitch: the fog is measured with
    the bag's camera_info (visibility, depth in metres, detection distances in metres), as the node does; without
    `camera_info_topic`, the bag's only CameraInfo topic. input_bits: significant bits of 16-bit frames (mono16,
    rgb16 and the like, bayer_*16), as the node's input_bits. image_transport: how the output bag holds the images
    (`writer.IMAGE_TRANSPORTS`; auto: compressed where the camera topic is). start, duration: the part of the bag
    evaluated and copied, in seconds of its recording (`BagSource.select_window`; default: all of it).
    image_rectified: whether the frames are rectified, as the node's image_rectified (`lens.RECTIFIED_SETTINGS`;
    auto: told from the topic's name): the lens distortion of raw frames is undone for the fog and the detections'
    positions. pipeline_options: how the network makes its image where it is not the node's default
    (`load_pipeline`'s working_size, backend, device, half, output, radiance_floor, max_detail_gain); the report's
    notes name them, and `notes` beside them. frame_settings: the node's frame-chain parameters (`FrameProcessor`'s
    settings: where the detector looks, the fog's smoothing and road) where they differ from its defaults; the
    report's notes name them too.

    Raises BagError (a ValueError) for a missing, corrupt, truncated or empty bag or a missing topic, before any
    output exists; an error part-way leaves no output folder behind.
    """
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, got {max_frames}")
    if not NAMESPACE.match(output_prefix):
        raise ValueError(f"output prefix {output_prefix!r} is not a ROS namespace such as /dgdehaze or /eval/run_2")
    out_dir = Path(out_dir)
    check_output_folder(out_dir, [input_bag])
    with BagSource(input_bag, input_bits) as source:
        source.check_output_namespace(output_prefix, "give --output-prefix another namespace")
        source.check_copyable()
        window = time_window_notes(source, start, duration)
        if camera_info_topic is None:  # relayed as the node relays it; the fog is measured with its intrinsics
            camera_info_topic = source.camera_info_for_frames(required=mounting is not None)
        total = source.verify(image_topic, camera_info_topic)
        images = output_images(image_transport, source.topics()[image_topic][0])
        count = min(total, max_frames) if max_frames else total
        pipeline = open_pipeline(method, default_method, read, pipeline_options)
        if pipeline_options and pipeline.method != FALLBACK_METHOD:
            window = [*window, settings_note(pipeline_options)]
        applied = {name: value for name, value in (frame_settings or {}).items()
                   if (detector is not None if name in DETECTION_SETTINGS else mounting is not None)}
        if applied:  # a fog setting without a mounting, or a detector's without one, changes nothing: not named
            window.append("the frame chain ran with " + ", ".join(f"{name} {value}" for name, value in applied.items()))
        window = [*window, *notes]
        evaluation = BagEvaluation(
            input_bag=str(input_bag), image_topic=image_topic, camera_info_topic=camera_info_topic,
            mode="offline", method=pipeline.method, backend=pipeline.backend,
            detector=detector.label if detector is not None else None, **frame_counts(source, image_topic, total),
            output_bag="bag", output_images=images, input_bits=source.input_bits,
            weights=pipeline.weights_summary or "none", notes=window)
        processor = FrameProcessor(pipeline, detector, mounting, frames_rectified(image_topic, image_rectified),
                                   frame_settings)
        keep = sample_indices(count)
        with atomic_path(out_dir) as tmp:
            tmp.mkdir()
            with BagWriter(tmp / "bag", storage or source.storage, images) as writer:
                _run_offline(source, writer, processor, evaluation, count, keep, output_prefix, progress)
            if not evaluation.records:
                raise OSError(evaluation.stopped) if evaluation.stopped else ImageError(
                    f"no frame of {image_topic!r} in {input_bag} could be decoded: "
                    f"{'; '.join(evaluation.skipped[:3])}")
            write_report(evaluation, tmp)
    LOG.info("evaluated %d frames of %s; report in %s", len(evaluation.records), input_bag, out_dir)
    return evaluation


def settings_note(options: Mapping[str, Any]) -> str:
    """The report's note on the network's settings that are not the node's defaults (`load_pipeline`'s options)."""
    said = {"working_size": _working_size_note,
            "max_detail_gain": lambda gain: "the exact inversion (max_detail_gain 0)" if gain is None
            else f"max_detail_gain {gain:g}",
            "radiance_floor": lambda floor: "no boundary constraint (radiance_floor none)" if floor is None
            else f"radiance_floor {floor:g}",
            "half": lambda _: "fp16"}  # given only as True (`network_options.network_runtime`)
    return "the network ran with " + ", ".join(said.get(name, lambda value: f"{name} {value}")(value)
                                               for name, value in sorted(options.items()))


def _working_size_note(size: tuple[int, int]) -> str:
    """A working size as the node's working_width and working_height give it (0: from the frame's aspect ratio)."""
    width, height = size
    if width and height:
        return f"working size {width}x{height}"
    return f"working {'width' if width else 'height'} {width or height} (the other side by the frame's aspect ratio)"


def time_window_notes(source: BagSource, start: float, duration: float | None) -> list[str]:
    """Select the part of `source` an evaluation reads (`BagSource.select_window`); the report's note on it, none for
    the whole bag."""
    if start == 0.0 and duration is None:
        return []
    return [f"evaluated {source.select_window(start, duration)} (recording time; the last CameraInfo and "
            "/tf_static from before it carried over)"]


def frame_counts(source: BagSource, image_topic: str, in_window: int) -> dict[str, int | None]:
    """`BagEvaluation`'s frames_in_bag (the image topic's frames in the whole bag, as the index that
    `BagSource.verify` checked lists them) and frames_in_window (`in_window`, verify's count; None without a
    window)."""
    return {"frames_in_bag": source.topics()[image_topic][1],
            "frames_in_window": None if source.window is None else in_window}


def copied_messages(source: BagSource, writer: BagWriter, evaluation: BagEvaluation,
                    count: int) -> Iterator[tuple[Connection, int, bytes]]:
    """The bag's messages up to its `count`-th frame on the evaluation's image topic, each copied to `writer`
    before it is handed on. After that frame the rest of the bag is copied unread (what it recorded after the
    camera's last frame), unless `count` cuts the bag short (--max-frames): the output bag then ends with the last
    frame evaluated. The writer's disk is asked for room (`disk_room`) before each frame and each time
    COPY_CHECK_BYTES more of the bag, every topic counted, were copied (a lidar may record gigabytes between two
    frames where the camera dropped out). Where it runs short before the last frame, the evaluation stops there (the
    frames from the next on not evaluated) and the output bag ends there; after the last frame, the copy of the rest
    stops (a note says so)."""
    frames = 0
    unchecked = 0
    for connection, log_time, raw in source.raw_messages():
        tail = frames >= count
        if tail and count < evaluation.frames_selected:
            return
        is_frame = connection.topic == evaluation.image_topic
        unchecked += len(raw)
        if (is_frame and not tail) or unchecked >= COPY_CHECK_BYTES:
            unchecked = 0
            if problem := room_problem(writer.path, images=writer.images):
                if tail:
                    LOG.warning("stopped copying what the bag recorded after its last frame: %s", problem)
                    evaluation.notes.append(f"the output bag holds what the bag recorded after its last frame only "
                                            f"up to {log_time} ns: {problem}")
                else:
                    LOG.error("stopped at frame %d: %s", frames, problem)
                    evaluation.stop(problem, frames, count)
                return
        writer.copy(connection, log_time, raw)
        if not tail:
            frames += is_frame
            yield connection, log_time, raw


def _run_offline(source: BagSource, writer: BagWriter, processor: FrameProcessor, evaluation: BagEvaluation,
                 count: int, keep: set[int], prefix: str, progress: bool) -> None:
    camera_info = None
    index = 0
    bar = tqdm(total=count, desc="bag-eval", unit="frame", disable=not progress)
    try:
        for connection, log_time, raw in copied_messages(source, writer, evaluation, count):
            if connection.topic == evaluation.camera_info_topic:
                try:
                    camera_info = source.deserialize(connection, raw)
                except BagError as exc:  # one damaged message loses no frame, as a damaged frame loses itself
                    evaluation.camera_info_damaged(log_time, str(exc))
            elif connection.topic == evaluation.image_topic:
                frame = source.decode_frame(connection, log_time, raw, index, camera_info)
                index += 1
                bar.update()
                if isinstance(frame, ImageError):
                    evaluation.skipped.append(str(frame))
                    if len(evaluation.skipped) <= LOGGED_SKIPS:
                        LOG.warning("skipped: %s%s", frame, "; further frames that do not decode are listed in the "
                                    "report, not here" if len(evaluation.skipped) == LOGGED_SKIPS else "")
                    continue
                record, output = processor(frame)
                evaluation.records.append(record)
                if processor.chain.fog is not None and output.fog is None:
                    evaluation.fog_unmeasured(frame.index, unmeasured_fog(frame))
                elif output.fog is not None:
                    for note in (distortion_note(frame.camera_info, evaluation.image_topic, processor.rectified),
                                 processor.horizon_note(frame)):
                        if note:
                            evaluation.note_once(frame.index, note)
                if len(evaluation.records) == 1 and processor.detector is not None:
                    header = writer.copy_header(frame.header)
                    writer.write(f"{prefix}/label_info", LABEL_INFO_TYPE, frame.log_time_ns,
                                 label_info_msg(writer, header, processor.detector.names, processor.detector.conf))
                write_frame_outputs(writer, prefix, frame, record, output, processor.chain.fog,
                                    processor.detector is not None)
                if frame.index in keep:
                    evaluation.samples.append(Sample(frame.index, frame.stamp_ns, frame.image, output.result.image,
                                                     output.result.depth, record.hazy_detections,
                                                     record.dehazed_detections, record.detected))
    finally:
        bar.close()
