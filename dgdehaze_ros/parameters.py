"""The node's parameters: one table of names, defaults, descriptors and ranges, and one validator.

Every parameter is declared with a `ParameterDescriptor` (description, range, read_only where a change needs new
subscriptions or thread pools). rclpy enforces types, ranges and read_only; `check_values` adds what a descriptor
cannot say (choices, existing files, device names, pairs) and runs both at configure time and in the node's single
`add_on_set_parameters_callback`. Detection names follow yolo_ros (`threshold`, `iou`, `imgsz`, `half`,
`max_det`, `device`, `image_reliability`) so users find them where they expect.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterUninitializedException)
from rclpy.node import Node
from rclpy.parameter import Parameter

from dgdehaze_core.commands.ros_modes import NODE_MODELS, RELIABILITIES
from dgdehaze_core.detection.tracking import TRACKERS
from dgdehaze_core.detection.fusion import DETECTION_INPUTS
from dgdehaze_core.detection.input_size import IMGSZ_RANGE
from dgdehaze_core.detection.precision import PRECISIONS
from dgdehaze_core.devices import DeviceUnavailable, resolve_device
from dgdehaze_core.inference.backends import BACKENDS, FILE_RUNTIMES, BackendUnavailable, NetworkSource
from dgdehaze_core.inference.backends.selection import choose_backend, choose_source_backend
from dgdehaze_core.inference.pipeline import DETAIL_GAIN_RANGE, MAX_DETAIL_GAIN, OUTPUT_MODES, check_max_detail_gain
from dgdehaze_core.io.camera_frames import COMPRESSION_FORMATS
from dgdehaze_core.io.file_paths import file_suffix
from dgdehaze_core.io.images import SAMPLE_BITS
from dgdehaze_core.models import CHECKPOINT_SUFFIXES, shipped_weights_path
from dgdehaze_core.physics.boundary_constraint import RADIANCE_FLOOR
from dgdehaze_core.physics.lens import RECTIFIED_SETTINGS
from dgdehaze_core.physics.visibility import MAX_CAMERA_HEIGHT, MAX_CAMERA_PITCH, Mounting
from dgdehaze_ros.mounting_tf import MISSING_TF, TF_AVAILABLE

TRANSPORTS = ("raw", "compressed")
DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?|\d+)$")
WEIGHTS_SUFFIXES = (*CHECKPOINT_SUFFIXES, *FILE_RUNTIMES)
"""What the `weights` parameter takes, the case of the suffix aside: a checkpoint, an .onnx export, an .engine."""
PIPELINE, DETECTOR = ("pipeline",), ("detector",)
BOTH_MODELS = (*PIPELINE, *DETECTOR)


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter: its default (a value; None: unset, for a parameter of `dynamic_typing`) and what it means;
    `dynamic_typing`: any type is taken and `check_values` decides (`classes`: names or ids)."""

    name: str
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    int_range: tuple[int, int, int] | None = None
    float_range: tuple[float, float] | None = None
    read_only: bool = False
    reloads: tuple[str, ...] = ()
    """What a change rebuilds while configured: "pipeline" and/or "detector"; none: applied at once."""
    dynamic_typing: bool = False

    def descriptor(self) -> ParameterDescriptor:
        constraints = f"one of: {', '.join(self.choices)}" if self.choices else ""
        if self.reloads:
            constraints = ((constraints + "; " if constraints else "")
                           + f"a change reloads the {' and the '.join(self.reloads)}")
        descriptor = ParameterDescriptor(name=self.name, description=self.description,
                                         additional_constraints=constraints, read_only=self.read_only,
                                         dynamic_typing=self.dynamic_typing)
        if self.int_range is not None:
            low, high, step = self.int_range
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=step)]
        if self.float_range is not None:
            descriptor.floating_point_range = [FloatingPointRange(from_value=self.float_range[0],
                                                                  to_value=self.float_range[1], step=0.0)]
        return descriptor


COMPRESSED_OUTPUTS = ("image_dehazed", "debug_image")
"""Image outputs also published on `~/<name>/compressed` (sensor_msgs/CompressedImage, while someone subscribes),
with image_transport's compressed transport's parameters under `<name>.compressed.`."""


def _compressed_specs(output: str) -> tuple[ParameterSpec, ...]:
    where = f"~/{output}/compressed (published only while subscribed)"
    return (ParameterSpec(f"{output}.compressed.format", "jpeg", f"{where}: jpeg, or png (lossless; a 16-bit frame "
                          "keeps its samples)", COMPRESSION_FORMATS),
            ParameterSpec(f"{output}.compressed.jpeg_quality", 95, f"{where}: JPEG quality, higher is better",
                          int_range=(1, 100, 1)),
            ParameterSpec(f"{output}.compressed.png_level", 3, f"{where}: PNG compression level, higher is smaller "
                          "and slower", int_range=(0, 9, 1)))


SPECS: tuple[ParameterSpec, ...] = (
    ParameterSpec("model", "lite", "dehazing method: a network configuration (lite: the shipped weights; base "
                  "ships none and needs `weights`) or dcp (dark channel prior, no weights; ignores the network "
                  "settings); a non-empty `weights` runs that file whatever `model` says",
                  NODE_MODELS, reloads=PIPELINE),
    ParameterSpec("weights", "", "network weights file (.pt checkpoint, .onnx export (backend onnxruntime, tensorrt "
                  "or auto), or a TensorRT .engine from "
                  "`dgdehaze export --format engine` with its .json sidecar: backend tensorrt or auto, device cuda); "
                  "empty: the shipped weights of `model`", reloads=PIPELINE),
    ParameterSpec("backend", "auto", "inference backend of the network (auto: the fastest available, logged at "
                  "configure; docs/DEPLOYMENT.md)", BACKENDS, reloads=PIPELINE),
    ParameterSpec("device", "cpu", "device for the network and the detector: cpu, cuda, cuda:N or N",
                  reloads=BOTH_MODELS),
    ParameterSpec("half", False, "fp16 inference on a CUDA device for the network and a .pt detector; an ONNX or "
                  "TensorRT detector runs at the precision its file was made with whatever it says (fp16 for an "
                  "export made with --fp16; the shipped int8 detector as int8 or its fp32 rebuild, by "
                  "detector_precision); on the CPU they run fp32 whatever it says (fp16 is slower there)",
                  reloads=BOTH_MODELS),
    ParameterSpec("working_width", 0, "width the network runs at (0: from working_height and the input's aspect "
                  "ratio; both 0: the input's size)", int_range=(0, 7680, 1), reloads=PIPELINE),
    ParameterSpec("working_height", 0, "height the network runs at (0: from working_width and the input's aspect "
                  "ratio; both 0: the input's size)", int_range=(0, 4320, 1), reloads=PIPELINE),
    ParameterSpec("cpu_threads", 0, "CPU threads of the dehazer (its ONNX Runtime session and the physics "
                  "inversion's bands) and of the detector's ONNX Runtime session, each; 0: the dehazer one per core "
                  "this process may use, at most 4, the detector ONNX Runtime's choice", int_range=(0, 256, 1),
                  read_only=True),
    ParameterSpec("max_detail_gain", MAX_DETAIL_GAIN, "physics output: most the inversion amplifies fine detail "
                  "and noise where fog is dense (1/t elsewhere): "
                  f"{DETAIL_GAIN_RANGE[0]:g}..{DETAIL_GAIN_RANGE[1]:g}; 0: the exact inversion J = (I - A)/t + A",
                  float_range=(0.0, DETAIL_GAIN_RANGE[1]), reloads=PIPELINE),
    ParameterSpec("radiance_floor", RADIANCE_FLOOR, "network transmission raised to the boundary constraint: the "
                  "least of 1 a channel of the physics output's image may fall to, so that dark pixels are not "
                  "crushed to black nor bright ones blown out; the transmission the fog measurement reads is raised "
                  "in either output: 0..0.5", float_range=(0.0, 0.5), reloads=PIPELINE),
    ParameterSpec("output", "auto", "network image output: decoder, physics inversion, or auto (= physics)",
                  OUTPUT_MODES, reloads=PIPELINE),
    ParameterSpec("publish_depth", True, "publish ~/depth (32FC1 metres, REP-118, NaN where untrustworthy; with a "
                  "camera_height) and ~/depth_relative (the network's unitless depth)"),
    ParameterSpec("camera_height", 0.0, "camera height above the road (m): with camera_pitch and camera_info it gives "
                  "the fog's density on the road, hence ~/visibility, ~/depth in metres and detection distances; "
                  "0: unknown (relative depth only)", float_range=(0.0, MAX_CAMERA_HEIGHT)),
    ParameterSpec("camera_pitch", 0.0, "camera pitch (rad, REP-103: positive nose down) relative to the road",
                  float_range=(-MAX_CAMERA_PITCH, MAX_CAMERA_PITCH)),
    ParameterSpec("base_frame", "", "a frame on the road plane, z up (REP-105 base_footprint): when set, the "
                  "camera's height and pitch come from TF (base_frame to each image's frame_id) instead of "
                  "camera_height and camera_pitch; needs tf2_ros"),
    ParameterSpec("image_rectified", "auto", "whether the frames are rectified (true) or the camera's raw image "
                  "(false: the lens distortion camera_info gives, plumb_bob, rational_polynomial or equidistant, is "
                  "undone for the road's distances, ~/depth and detection positions, as image_geometry's rectifyPoint "
                  "does); auto: from the image topic's name, image_rect* rectified, image_raw, image_mono and "
                  "image_color raw, any other name taken as rectified with a warning where camera_info's D is not "
                  "zero. One of auto, true, false (a string or a boolean)", dynamic_typing=True),
    ParameterSpec("road_region", [0.3, 0.5, 0.7, 1.0], "image rectangle [left, top, right, bottom] (fractions of "
                  "width and height) where the road is seen; its pixels below the horizon measure the fog"),
    ParameterSpec("road_max_distance", 30.0, "farthest road (m) measured: nearer road is sharper in the "
                  "transmission map; also the farthest a box may stand on the road for the fog to be measured on "
                  "its road user and for its detection to take the road's depth", float_range=(2.0, 500.0)),
    ParameterSpec("max_visibility", 200.0, "fog thinner than this visibility (m) is not measured: ~/visibility is "
                  "NaN (no fog to measure); the shipped methods read a clear road as fog of about 200 m or more "
                  "(220 m or more on the drive this default was chosen on; lite reads 6 of kitti-tiny's 7 clear "
                  "frames as 160-190 m): where clear days read as fog, lower it",
                  float_range=(10.0, 100000.0)),
    ParameterSpec("visibility_smoothing", 2.0, "time constant (s of the frames' stamps) of the exponential "
                  "smoothing of the fog density; 0: none", float_range=(0.0, 600.0)),
    ParameterSpec("detection_enabled", True, "run the detector and publish ~/detections"),
    ParameterSpec("detection_input", "dehazed", "what the detector runs on: the dehazed frame, the raw frame, or "
                  "fused: both, their boxes merged by weighted box fusion (about twice the detector's time; never "
                  "misses what the raw frame shows)", choices=DETECTION_INPUTS),
    ParameterSpec("detection_contrast", False, "equalise the local contrast (CLAHE on the lightness) of each frame "
                  "the detector reads: in fog the detector finds more of the objects people see (docs/RESULTS.md); "
                  "a few ms per detected frame"),
    ParameterSpec("tracker", "", "multi-object tracker that gives each detection an identity across frames in "
                  "Detection2D.id: bytetrack or botsort (Ultralytics'), also over fused detections; empty: off",
                  ("", *TRACKERS), reloads=DETECTOR),
    ParameterSpec("detection_interval", 1, "run the detector on every Nth frame and publish ~/detections for those "
                  "frames only (dehazing and depth stay at the input rate)", int_range=(1, 100, 1)),
    ParameterSpec("detector_weights", "", "YOLO weights (.pt, .onnx or .engine); empty: the shipped offline "
                  "yolov8n_int8.onnx", reloads=DETECTOR),
    ParameterSpec("detector_precision", "auto", "auto: a dynamically quantised ONNX detector (the shipped int8 "
                  "file) runs as its float rebuild on x86 CPUs and GPUs, where that is faster and takes imgsz; "
                  "file: the weights as given; float: always the float rebuild", PRECISIONS, reloads=DETECTOR),
    ParameterSpec("threshold", 0.25, "detection confidence threshold", float_range=(0.0, 1.0)),
    ParameterSpec("iou", 0.45, "detection non-maximum suppression IoU threshold", float_range=(0.0, 1.0)),
    ParameterSpec("imgsz", 640, "detector input size in pixels (multiple of 32)", int_range=IMGSZ_RANGE,
                  reloads=DETECTOR),
    ParameterSpec("max_det", 100, "most detections per frame", int_range=(1, 1000, 1)),
    ParameterSpec("classes", None, "detect only these classes: a list of names or ids (strings or integers, "
                  "[\"car\", \"person\"] or [2, 0]); unset or empty: all", dynamic_typing=True),
    ParameterSpec("image_reliability", "reliable", "input QoS reliability; reliable receives every frame of a "
                  "reliable camera, best_effort also matches best_effort cameras but loses most large frames with "
                  "Fast DDS defaults (docs/ROS.md)", RELIABILITIES, read_only=True),
    ParameterSpec("image_qos_depth", 1, "input QoS history depth", int_range=(1, 100, 1), read_only=True),
    ParameterSpec("output_qos_depth", 5, "history depth of the reliable outputs: how many messages a slow "
                  "subscriber may fall behind before it loses one", int_range=(1, 100, 1), read_only=True),
    ParameterSpec("input_bits", SAMPLE_BITS, "significant bits of 16-bit camera frames (mono16, 16UC1, bgr16, "
                  "rgb16, bgra16, rgba16, bayer_*16, a 16-bit compressed PNG): 12 for a 12-bit sensor whose samples "
                  "run 0..4095; 16: the full range. The dehazed frame is published on the same range",
                  int_range=(8, 16, 1)),
    ParameterSpec("input_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: "
                  "sensor_msgs/CompressedImage on `image/compressed`", TRANSPORTS, read_only=True),
    *_compressed_specs("image_dehazed"),
    *_compressed_specs("debug_image"),
    ParameterSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages", float_range=(0.1, 60.0)),
    ParameterSpec("autostart", True, "configure and activate at start (false: wait for a lifecycle manager)",
                  read_only=True),
)
SPEC_BY_NAME = {spec.name: spec for spec in SPECS}
DOUBLE_NAMES = frozenset(spec.name for spec in SPECS if isinstance(spec.default, float))
"""The parameters of type double: an integer given for one (`camera_height: 2`, `:=2`) is taken as that double."""


def parameters_help(width: int = 100) -> str:
    """Every parameter as `dgdehaze_node --help` lists it: name, default, range or choices, whether it is read-only,
    and its description."""
    lines = []
    for spec in SPECS:
        bounds = (f"one of {', '.join(spec.choices)}" if spec.choices
                  else f"{spec.int_range[0]}..{spec.int_range[1]}" if spec.int_range
                  else f"{spec.float_range[0]:g}..{spec.float_range[1]:g}" if spec.float_range else "")
        notes = [f"default {spec.default!r}" if spec.default is not None else "unset", *([bounds] if bounds else []),
                 *(["read-only"] if spec.read_only else [])]
        lines.append(f"  {spec.name} ({'; '.join(notes)})")
        lines.extend(textwrap.wrap(spec.description, width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(lines)


def declare_parameters(node: Node) -> None:
    """Declare every parameter of SPECS on `node` with its descriptor. An integer a double parameter is given at
    start (`-p camera_height:=2`, `camera_height: 2` in a params file) is declared as that double, in its range.

    InvalidParameterTypeException for a value of another type; InvalidParameterValueException for one outside its
    range, or a read-only parameter outside its choices: no later call could mend it, so the node must not start
    unconfigurable."""
    for spec in SPECS:
        try:
            value = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        except InvalidParameterTypeException:
            given = _given_at_start(node, spec.name) if spec.name in DOUBLE_NAMES else None
            if given is None or given.type_ != Parameter.Type.INTEGER:
                raise
            value = node.declare_parameter(spec.name, float(given.value), spec.descriptor(),
                                           ignore_override=True).value
        if spec.read_only and spec.choices and value not in spec.choices:
            raise InvalidParameterValueException(spec.name, value, f"must be one of {', '.join(spec.choices)} "
                                                                   f"(read-only: set it at start)")


def unknown_overrides(node: Node) -> list[str]:
    """The names `node` was given a value for at start (its parameters file, -p) that it has not declared: ROS 2
    ignores them without a word, so a misspelt name in a file (`thresold`) leaves its parameter at the default.
    rclpy has no public reading of a node's overrides: its `_parameter_overrides`, which rclpy keeps since Foxy. The
    QoS overrides (`qos_overrides.*`) are left out: the node declares them with its subscriptions, at configure."""
    overrides = getattr(node, "_parameter_overrides", {})
    return sorted(name for name in overrides
                  if not name.startswith("qos_overrides.") and not node.has_parameter(name))


def _given_at_start(node: Node, name: str) -> Parameter:
    """The value `node` was given for `name` at start, of whatever type. rclpy has no public reading of a node's
    overrides: `name` is declared taking any type, read and undeclared (/parameter_events shows both declarations)."""
    given = node.declare_parameter(name, None, ParameterDescriptor(dynamic_typing=True))
    node.undeclare_parameter(name)
    return given


def integers_as_doubles(parameters: list[Parameter]) -> list[Parameter]:
    """`parameters` with each integer set on a double parameter as that double (`ros2 param set ... camera_height
    2`), for the node's pre-set callback (Iron and later): rclpy refuses an integer's type before any check of the
    node, which then checks the double as any other."""
    return [Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
            if p.name in DOUBLE_NAMES and p.type_ == Parameter.Type.INTEGER else p for p in parameters]


def _check_file(name: str, value: str, suffixes: tuple[str, ...], read: bool) -> str | None:
    """Why the file parameter `name` cannot take `value`: a suffix not in `suffixes`, or, where it is `read`, no
    such file (a relative one: in the working folder, which it names)."""
    if not value:
        return None
    try:
        path = Path(value).expanduser()
    except RuntimeError as exc:  # ~name of a user this machine does not have
        return f"{name}: {value!r} cannot be found ({exc})"
    if file_suffix(path) not in suffixes:
        return f"{name} must be a {' / '.join(suffixes)} file, got {value!r}"
    if not read:
        return None
    try:
        found = path.is_file()
    except OSError as exc:  # a name too long for the file system, a folder this process may not enter
        return f"{name}: {value!r} cannot be read ({exc.strerror or exc})"
    if not found and not path.is_absolute():  # docs/TRAINING.md: written relative to the parameters file, say
        return (f"{name}: no such file {value!r} in the working folder {Path.cwd()} (a relative path is taken from "
                "there: give an absolute one)")
    if not found:
        return f"{name}: no such file {value!r} (nothing is downloaded; give a local file)"
    return None


def files_read(changes: Mapping[str, Any] | None) -> frozenset[str]:
    """The file parameters whose files a change to `changes` loads (None: both, as a configure does): `weights` (or
    `model`'s shipped weights) where it reloads the pipeline, `detector_weights` where it reloads the detector or
    turns detection on."""
    if changes is None:
        return frozenset(("weights", "detector_weights"))
    loads = {component for name in changes for component in SPEC_BY_NAME[name].reloads}
    if changes.get("detection_enabled"):
        loads.update(DETECTOR)
    return frozenset(name for name, component in (("weights", "pipeline"), ("detector_weights", "detector"))
                     if component in loads)


def check_values(values: Mapping[str, Any], read: Collection[str] = files_read(None)) -> str | None:
    """Why this full set of parameter values is invalid, or None when it is valid. The files of the file
    parameters in `read` must exist (`files_read`): a file removed after its model loaded (an update, a drive
    unmounted) refuses no change but one that would load it again, the model running from memory."""
    for name, value in values.items():
        spec = SPEC_BY_NAME.get(name)
        if spec is not None and spec.choices and value not in spec.choices:
            return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if not DEVICE_PATTERN.match(str(values["device"])):
        return f"device must be cpu, cuda, cuda:N or N, got {values['device']!r}"
    problem = (_check_file("weights", values["weights"], WEIGHTS_SUFFIXES, "weights" in read)
               or _check_file("detector_weights", values["detector_weights"], (".pt", ".onnx", ".engine"),
                              "detector_weights" in read))
    if problem:
        return problem
    problem = _check_runtime(values, "weights" in read)
    if problem:
        return problem
    rectified = values["image_rectified"]
    if not isinstance(rectified, bool) and rectified not in RECTIFIED_SETTINGS:
        return f"image_rectified must be one of {', '.join(RECTIFIED_SETTINGS)} (or a boolean), got {rectified!r}"
    try:
        check_max_detail_gain(values["max_detail_gain"])
    except ValueError as exc:
        return str(exc)
    classes = values["classes"]
    if not isinstance(classes, list) or any(isinstance(c, bool) or not isinstance(c, (str, int)) for c in classes):
        return f"classes must be a list of class names or ids (strings or integers), got {classes!r}"
    if any(not str(c).strip() for c in classes):
        return "classes must not contain empty names"
    return _check_mounting(values)


def _check_runtime(values: Mapping[str, Any], read_weights: bool) -> str | None:
    """What can be told before loading: a CUDA device exists (the network and the detector run on it), the
    network's backend runs here (checked for dcp too, so the value read back is one that would run), and, where
    the weights are read (`read_weights`), a `model` without `weights` has shipped weights. What only loading can
    tell is reverted by the node when it fails."""
    device, backend = str(values["device"]), values["backend"]
    weights = Path(values["weights"])
    source = NetworkSource(file=weights) if file_suffix(weights) in FILE_RUNTIMES else None  # an export: no torch
    if source is not None:
        try:  # first: the file's kind decides its runtimes, whatever the device
            source.check_backend(backend)
        except ValueError as exc:
            return str(exc)
    try:
        resolve_device(device)
    except DeviceUnavailable:
        return f"device {device!r}: CUDA is not available on this machine (the network and the detector run on it)"
    try:  # as the load will choose: an export's runtimes only, an engine on TensorRT
        if source is not None:
            choose_source_backend(source, backend, device, log=False)
        else:
            choose_backend(backend, device, log=False)
    except (ValueError, BackendUnavailable) as exc:
        return f"backend {backend!r} on device {device!r}: {exc}"
    if read_weights and values["model"] != "dcp" and not values["weights"] \
            and not shipped_weights_path(values["model"]).is_file():
        return (f"model {values['model']!r} has no shipped weights ({shipped_weights_path(values['model']).name}); "
                "give its weights file in `weights`")
    return None


def _check_mounting(values: Mapping[str, Any]) -> str | None:
    base_frame = str(values["base_frame"])
    if base_frame.startswith("/") or base_frame != base_frame.strip():
        return f"base_frame {base_frame!r}: a TF frame id has no leading slash and no spaces"
    if base_frame and not TF_AVAILABLE:
        return MISSING_TF
    region = list(values["road_region"])
    if len(region) != 4:
        return f"road_region must be [left, top, right, bottom], 4 fractions of the image, got {region}"
    try:
        Mounting(max(values["camera_height"], 1.0), values["camera_pitch"], tuple(region),
                 values["road_max_distance"])
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class NodeSettings:
    """The node's parameter values, typed, read at once."""

    values: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def differing(self, other: NodeSettings, component: str) -> dict[str, Any]:
        """{name: this value} of the parameters whose change reloads `component` ("pipeline", "detector") and
        that differ in `other`."""
        return {name: self[name] for name, spec in SPEC_BY_NAME.items()
                if component in spec.reloads and self[name] != other[name]}

    def put_back(self, requested: NodeSettings, current: NodeSettings, component: str) -> dict[str, Any]:
        """{name: this value} for the parameters to put back when `requested`'s load of `component` failed and this
        is what runs: those `requested` changed that still hold the requested value in `current` (one changed
        again since keeps its newer value, which the next reload loads)."""
        return {name: value for name, value in self.differing(requested, component).items()
                if current[name] == requested[name]}

    def changed(self) -> dict[str, Any]:
        """{name: value} of the parameters not at their defaults (an unset one, `classes`, at its default when
        empty)."""
        return {spec.name: self[spec.name] for spec in SPECS
                if self[spec.name] != spec.default and (spec.default is not None or self[spec.name])}

    def pipeline_args(self) -> tuple[str, dict[str, Any]]:
        """(method, options) for `dgdehaze_core.inference.pipeline.load_pipeline`; `weights` with ~ expanded, as
        `check_values` reads it."""
        if self["model"] == "dcp" and not self["weights"]:
            return "dcp", {}
        options: dict[str, Any] = {"device": self["device"], "half": self["half"], "output": self["output"],
                                   "backend": self["backend"], "max_detail_gain": self["max_detail_gain"] or None,
                                   "radiance_floor": self["radiance_floor"]}
        if self["working_width"] or self["working_height"]:
            options["working_size"] = (self["working_width"], self["working_height"])
        if self["cpu_threads"]:
            options["threads"] = self["cpu_threads"]
        return str(Path(self["weights"]).expanduser()) if self["weights"] else self["model"], options

    def mounting(self) -> Mounting | None:
        """The camera's mounting and road region from camera_height and camera_pitch, or None when camera_height
        is 0 (unknown) or the mounting comes from TF (base_frame)."""
        if self["camera_height"] <= 0 or self["base_frame"]:
            return None
        return self.mounting_at(self["camera_height"], self["camera_pitch"])

    def mounting_at(self, height: float, pitch: float) -> Mounting:
        """A mounting of this height and pitch with the parameters' road region (ValueError when out of range)."""
        return Mounting(height, pitch, tuple(self["road_region"]), self["road_max_distance"])

    def detector_args(self) -> dict[str, Any]:
        """Keyword arguments for `dgdehaze_core.detection.detector.Detector`."""
        return {"weights": self["detector_weights"] or None, "imgsz": self["imgsz"], "conf": self["threshold"],
                "iou": self["iou"], "classes": list(self["classes"] or []) or None, "max_det": self["max_det"],
                "device": self["device"], "half": self["half"], "tracker": self["tracker"] or None,
                "precision": self["detector_precision"], "threads": self["cpu_threads"] or None}


def _current(node: Node, name: str) -> Any:
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:  # an array declared by type only: unset
        return None


def read_settings(node: Node, changes: Mapping[str, Any] | None = None,
                  base: NodeSettings | None = None) -> NodeSettings:
    """The node's current parameters, or `base` when given (the set running), with `changes` applied on top;
    ValueError says what is invalid. Over `base`, the files checked are those the changes load (`files_read`)."""
    values = dict(base.values) if base is not None else {spec.name: _current(node, spec.name) for spec in SPECS}
    values.update(changes or {})
    classes = values["classes"]
    if classes is None:
        values["classes"] = []
    elif not isinstance(classes, (str, bytes, int, float)):
        values["classes"] = list(classes)  # rclpy gives an integer list as an array; check_values refuses a scalar
    problem = check_values(values, files_read(None if base is None else changes or {}))
    if problem:
        raise ValueError(problem)
    values["classes"] = [str(c) for c in values["classes"]]
    return NodeSettings(values)
