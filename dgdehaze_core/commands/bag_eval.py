"""`dgdehaze bag-eval IN_BAG [IN_BAG ...] --out DIR`: replay recorded drives through the dehazing chain and report.

Offline (default): the node's frame chain runs in this process, no ROS install needed. `--node`: the frames go over
ROS topics through the real `dgdehaze_node` (started here, or a running one with `--attach`) and what it publishes
is recorded. One bag: DIR/bag (input topics + outputs at the original stamps), DIR/report.html and
DIR/summary.json, written atomically, and the figures table printed (also written with --json).

Several bags (a fleet): offline, each bag is a Ray task (`--ray ADDRESS` for a cluster; without it a local Ray with
`--workers` CPUs; without Ray installed, one after the other); with `--node`, one after the other through the node.
Each is written to DIR/<bag name>/ as above, and DIR/fleet.json and DIR/index.html summarise them; a bag that fails
is reported and the others go on.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
from pathlib import Path
from typing import Any

from dgdehaze_core.bags.evaluation import (DEFAULT_OUTPUT_PREFIX, check_output_folder, check_rate, evaluate_bag,
                                          node_default_method, node_method)
from dgdehaze_core.bags.fleet import BagJob, check_node_runner, fleet_table, output_folders, run_fleet
from dgdehaze_core.bags.io import STORAGES, check_time_window, pick_image_topic
from dgdehaze_core.bags.writer import IMAGE_TRANSPORTS
from dgdehaze_core.bags.records import BagEvaluation
from dgdehaze_core.commands.argument_types import path_argument
from dgdehaze_core.commands.detector_options import add_detector_options, detector_settings
from dgdehaze_core.commands.input_bits_option import add_input_bits_option
from dgdehaze_core.commands.network_options import (NO_FLOOR, add_network_options, given_network_options,
                                                    network_runtime)
from dgdehaze_core.commands.params_file_option import add_params_file_option, take_params_file
from dgdehaze_core.commands.ros_modes import BAG_REPLAY, ros_mode
from dgdehaze_core.detection.detector import Detector, DetectorUnavailable
from dgdehaze_core.inference.pipeline import method_weights, read_method
from dgdehaze_core.io.atomic_files import check_writable_place, refuse_inside, refusing_json
from dgdehaze_core.io.json_stdout import is_stdout
from dgdehaze_core.io.tables import emit
from dgdehaze_core.physics.lens import RECTIFIED_SETTINGS
from dgdehaze_core.physics.visibility import MAX_CAMERA_HEIGHT, MAX_CAMERA_PITCH, Mounting

LOG = logging.getLogger(__name__)

NODE_NAME = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*/)*[A-Za-z_][A-Za-z0-9_]*")
"""A ROS node's name after its namespace's, each by rcl's rule (front/dgdehaze): a started node's --node-name, which
rcl's remapping refuses otherwise."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bag-eval", help="evaluate dehazing and detection on a ROS 2 bag (sqlite3 or mcap) or a ROS 1 bag",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=path_argument, nargs="+", metavar="IN_BAG",
                        help="rosbag2 folder, a single .mcap/.db3 file, or a ROS 1 .bag (converted to ROS 2 "
                             "first); several for a fleet")
    parser.add_argument("--image-topic", default=None,
                        help="sensor_msgs/Image or CompressedImage topic (default: the bag's only one with messages)")
    parser.add_argument("--camera-info-topic", default=None, help="sensor_msgs/CameraInfo topic to pass along")
    parser.add_argument("--out", type=path_argument, required=True,
                        help="output folder (replaced atomically); with several bags, one folder per bag in it")
    parser.add_argument("--ray", default=None, metavar="ADDRESS",
                        help="several bags: run them on this Ray cluster (auto, or ray://HOST:10001)")
    parser.add_argument("--workers", type=int, default=None,
                        help="several bags without --ray: CPUs of the local Ray (default: all; 1: one after the other)")
    parser.add_argument("--resume", action="store_true",
                        help="several bags: go on with the fleet in --out that was stopped part way (killed, Ctrl-C): "
                             "the bags it finished are read back, the others evaluated; only with the same bags' "
                             "settings and weights")
    parser.add_argument("--method", default=None,
                        help="dcp, lite or a weights path (default: the node's configured method, "
                             "falling back to dcp when its weights are missing)")
    add_network_options(parser)
    add_detector_options(parser)
    parser.add_argument("--no-detection", action="store_true", help="skip object detection")
    parser.add_argument("--conf", type=float, default=0.25, help="detection confidence threshold (default 0.25)")
    parser.add_argument("--max-frames", type=int, default=None, help="evaluate at most this many frames")
    parser.add_argument("--camera-height", type=float, default=0.0,
                        help="camera height above the road (m), as the node's camera_height: the fog is measured "
                             "with the bag's camera_info (visibility, depth and detection distances in metres; its "
                             "only CameraInfo topic with messages unless --camera-info-topic names one)")
    parser.add_argument("--camera-pitch", type=float, default=0.0,
                        help="camera pitch (rad, positive nose down), as the node's camera_pitch")
    parser.add_argument("--image-rectified", choices=RECTIFIED_SETTINGS, default="auto",
                        help="as the node's image_rectified: whether the frames are rectified (true) or the camera's "
                             "raw image (false: the lens distortion its camera_info gives is undone for the fog and "
                             "the detections' positions); auto: from the image topic's name (image_rect* rectified, "
                             "image_raw, image_mono, image_color raw, another name taken as rectified with a note; "
                             "the default)")
    add_input_bits_option(parser, "16-bit frames (mono16, rgb16 and the like, bayer_*16, 16-bit PNG)",
                          "; with --node it sets the started node's, with --attach give the running node's")
    parser.add_argument("--storage", choices=STORAGES, default=None, help="output bag storage (default: as input)")
    parser.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                        help="evaluate from this many seconds into the bag's recording (as ros2 bag play's "
                             "--start-offset); the output bag holds that part")
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="evaluate this many seconds of the recording from --start (default: to its end)")
    parser.add_argument("--output-images", choices=IMAGE_TRANSPORTS, default="auto",
                        help="how the output bag holds the dehazed image and the depth: raw (sensor_msgs/Image), "
                             "compressed (image_transport's <topic>/compressed JPEG and <topic>/compressedDepth), "
                             "none (left out: the figures only, for a fleet), or auto: compressed where the camera "
                             "topic is (default)")
    parser.add_argument("--output-prefix", default=DEFAULT_OUTPUT_PREFIX,
                        help="namespace of the output topics in the bag (offline mode; default /dgdehaze)")
    parser.add_argument("--node", action="store_true",
                        help="replay through the real dgdehaze_node over ROS topics and record what it publishes")
    parser.add_argument("--attach", action="store_true",
                        help="with --node: use a node that is already running instead of starting one")
    parser.add_argument("--node-name", default="dgdehaze",
                        help="the node's name (default dgdehaze), after its namespace if any (front/dgdehaze): "
                             "with --node, the started or attached node's; with --params-file, the node whose "
                             "sections of the file are read (a robot's file with a section per camera)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="with --node: a parameter for the started node (repeatable), e.g. threshold:=0.3 (its "
                             "model or weights: --method; input_bits: --input-bits)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="with --node: seconds to wait for the node's outputs for one frame (default 10)")
    parser.add_argument("--rate", type=float, default=None, metavar="FACTOR",
                        help="with --node: send the frames at FACTOR times the recorded pace (1: as recorded, as "
                             "ros2 bag play --rate) and count the frames the node drops while busy, as on the "
                             "vehicle; default: lockstep, each frame once the node answered the one before, so "
                             "that every frame is evaluated")
    parser.add_argument("--json", type=path_argument, default=None,
                        help="also write the figures table to this JSON file (-: to stdout, the table "
                             "going to stderr)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_params_file_option(parser)
    parser.set_defaults(func=run)


def _check_paths(args: argparse.Namespace) -> None:
    """Before any work: no bag given twice (a fleet would count it twice), --out where a folder can be written,
    and --json not among the files --out receives (the report, the summary, a bag's folder)."""
    check_writable_place(args.out, "--out")
    resolved = [bag.expanduser().resolve() for bag in args.input]
    twice = sorted({str(bag) for bag, path in zip(args.input, resolved) if resolved.count(path) > 1})
    if twice:
        raise ValueError(f"a bag is given twice: {', '.join(twice)}")
    if args.json is not None and not is_stdout(args.json):
        with refusing_json():
            refuse_inside(args.json, args.out, "--json", "--out", ", which bag-eval writes whole")


def run(args: argparse.Namespace) -> int:
    _check_paths(args)
    if (args.attach or args.node_param or args.rate is not None) and not args.node:
        raise ValueError("--attach, --node-param and --rate need --node")
    check_rate(args.rate, "--rate")  # replay_bag's check, here before any work and once for a fleet
    if args.attach and (args.node_param or args.params_file):
        raise ValueError("--node-param and --params-file set parameters of a node started here; set an attached "
                         "node's with ros2 param")
    if args.node and not args.attach and not NODE_NAME.fullmatch(args.node_name):
        raise ValueError(f"--node-name {args.node_name!r}: the node bag-eval starts takes a name of letters, digits "
                         "and _ (not a digit first), after a namespace of such names if any (front/dgdehaze)")
    file_notes = take_params_file(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError("--max-frames must be at least 1")
    try:
        check_time_window(args.start, args.duration)
    except ValueError as exc:
        raise ValueError(f"--start / --duration: {exc}") from None
    given = {param.split(":=", 1)[0] for param in args.node_param}
    if "input_bits" in given:
        raise ValueError("give the node's input_bits as --input-bits, which the report's frames are read with too")
    if given & {"model", "weights"}:
        raise ValueError("give the started node's model or weights as --method (--method runs/my_camera/last.pt), "
                         "which the report names the method by")
    mounting = mounting_of(args)
    if mounting is not None and args.attach:
        raise ValueError("--camera-height sets a started node's mounting; set an attached node's with ros2 param")
    if mounting is not None and args.node:
        args.node_param += [f"camera_height:={mounting.height}", f"camera_pitch:={mounting.pitch}"]
    if args.image_rectified != "auto" and args.node:
        if args.attach:
            raise ValueError("--image-rectified sets a started node's image_rectified; set an attached node's with "
                             "ros2 param")
        args.node_param.append(f"image_rectified:={args.image_rectified}")
    pipeline_options = image_settings(args)
    if args.node and not args.attach:
        args.node_param += [*node_detector_params(args), f"input_bits:={args.input_bits}"]
    if len(args.input) > 1:
        return run_fleet_of(args, pipeline_options, file_notes)
    if args.ray or args.workers is not None or args.resume:
        raise ValueError("--ray, --workers and --resume are for several bags (one bag's evaluation is written whole "
                         "at its end)")
    bag = args.input[0]
    if not bag.exists():
        raise FileNotFoundError(f"no such bag: {bag}")
    # the output folder and what the bag's metadata tells before the detector loads (or builds its float rebuild):
    # a bad bag or topic is what the user hears of first, and without waiting for it
    check_output_folder(args.out, [bag])
    image_topic = pick_image_topic(bag, args.image_topic, args.camera_info_topic, args.start, args.duration,
                                   camera_info_needed=mounting is not None)
    replay_bag = ros_mode(BAG_REPLAY) if args.node else None
    read = None
    if args.method:  # a missing or unreadable weights file, named before the detector loads; read once, here
        read = read_method(args.method)
        node_method(args.method, read=read)
    detector = None if args.no_detection else _detector(detector_options(args))
    options = dict(camera_info_topic=args.camera_info_topic, method=args.method, detector=detector,
                   max_frames=args.max_frames, storage=args.storage, input_bits=args.input_bits,
                   image_transport=args.output_images, start=args.start, duration=args.duration,
                   progress=not args.no_progress, read=read)
    evaluation: BagEvaluation
    if replay_bag is not None:
        evaluation = replay_bag(bag, image_topic, args.out, **node_settings(args), **options)
    else:
        evaluation = evaluate_bag(bag, image_topic, args.out, output_prefix=args.output_prefix, mounting=mounting,
                                  image_rectified=args.image_rectified, pipeline_options=pipeline_options,
                                  frame_settings=args.frame_settings, notes=file_notes, **options)
    title = (f"dgdehaze bag-eval: {bag.name} ({evaluation.mode}, {evaluation.method}, "
             f"{len(evaluation.records)} frames)")
    emit(evaluation.table(), title=title, json_path=args.json)
    LOG.info("report: %s", args.out / "report.html")
    if evaluation.stopped:
        LOG.error("the evaluation of %s stopped early: %s; the report covers the frames before it", bag,
                  evaluation.stopped)
        return 1
    if evaluation.skipped:
        LOG.warning("%d frames of %s could not be decoded and are not in the figures (listed in the report and "
                    "summary.json)", len(evaluation.skipped), bag)
        return 1
    return 0


def _detector(settings: dict[str, Any]) -> Detector:
    """The detector of the options (`Detector`'s arguments); RuntimeError saying how to go without one when it cannot
    load."""
    try:
        return Detector(**settings)
    except DetectorUnavailable as exc:
        raise RuntimeError(f"{exc} (or pass --no-detection)") from None


def detector_options(args: argparse.Namespace) -> dict[str, Any]:
    """`Detector`'s keyword arguments from the options and --params-file's detector settings without one."""
    return {**detector_settings(args), "conf": args.conf, **args.detector_extras}


def mounting_of(args: argparse.Namespace) -> Mounting | None:
    """The camera mounting the options give (None without --camera-height); ValueError when out of range, or for
    a pitch without a height, which would go unused without a word."""
    if not 0 <= args.camera_height <= MAX_CAMERA_HEIGHT:  # as the node's camera_height: 165 for 1.65 m is refused
        raise ValueError(f"--camera-height must be a finite height (m above the road, at most {MAX_CAMERA_HEIGHT:g}; "
                         f"0: none), got {args.camera_height}")
    if not abs(args.camera_pitch) <= MAX_CAMERA_PITCH:
        raise ValueError(f"--camera-pitch must be a finite angle (rad, within +-{MAX_CAMERA_PITCH:g}), got "
                         f"{args.camera_pitch}")
    if args.camera_pitch and not args.camera_height:
        raise ValueError("--camera-pitch needs --camera-height: the mounting is both, and without it the fog is not "
                         "measured")
    return Mounting(args.camera_height, args.camera_pitch) if args.camera_height > 0 else None


def image_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options that set how the network makes its image (--working-size, --backend, --device, --half,
    --radiance-floor, --max-detail-gain; --params-file's `output` too), as `load_pipeline` takes them offline (only
    those given); with --node they are added to --node-param as the node's parameters, and {} is returned.
    ValueError for one the run cannot take: any of them for dcp (which has no network) or an attached node (whose
    parameters ros2 param sets), a radiance floor of `none` for a node (whose transmission is always raised to the
    constraint), and what `network_runtime` refuses offline (a device this machine lacks, fp16 off a GPU)."""
    given = given_network_options(args)
    if not given and args.network_output is None:
        return {}
    if args.method == "dcp":
        source = f" (the method of {args.method_from})" if args.method_from else ""
        raise ValueError(f"{', '.join(given)} set how a network makes its image, and dcp{source} has none")
    if args.attach:
        raise ValueError(f"{', '.join(given)} set a started node's parameters; set an attached node's with ros2 param")
    if not args.node:
        options = network_runtime(args, [args.method] if args.method else [])
        if args.working_size is not None:
            options["working_size"] = args.working_size
        if args.network_output is not None:
            options["output"] = args.network_output
        return options
    if args.radiance_floor == NO_FLOOR:
        raise ValueError(f"--radiance-floor {NO_FLOOR} is for offline runs: the node always raises its network's "
                         "transmission to the boundary constraint (radiance_floor 0..0.5)")
    params = {"backend": args.backend, "device": args.device, "half": "true" if args.half else None,
              "radiance_floor": args.radiance_floor, "max_detail_gain": args.max_detail_gain}
    if args.working_size is not None:
        params["working_width"], params["working_height"] = args.working_size
    args.node_param += [f"{name}:={value}" for name, value in params.items() if value is not None]
    return {}


def node_detector_params(args: argparse.Namespace) -> list[str]:
    """The node parameters that give a started node the detector of the `hazy` row (weights, size, precision,
    threshold), so that both rows detect alike; any of them given with --node-param is left to that."""
    given = {param.split(":=", 1)[0] for param in args.node_param}
    wanted = {"imgsz": args.imgsz, "detector_precision": args.detector_precision, "threshold": args.conf}
    if args.detector:
        wanted["detector_weights"] = args.detector
    return [f"{name}:={value}" for name, value in wanted.items() if name not in given]


def node_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """`replay_bag`'s own settings from the options (--node-param already holds the detector's and the mounting's
    parameters; `mounted` says there is a mounting); None without --node."""
    if not args.node:
        return None
    return {"node_name": args.node_name, "attach": args.attach, "timeout": args.timeout,
            "node_params": list(args.node_param), "rate": args.rate, "mounted": mounting_of(args) is not None,
            "params_file": str(args.params_file.expanduser().resolve()) if args.params_file else None}


def weights_sha256(method: str | None, default: str | None) -> str | None:
    """The sha256 (as the record `pipeline.method_weights` makes of them gives it) of the dehazing weights a fleet's
    bags run, for its record (`bags.fleet_resume`): `method`'s, checked as for one bag (`node_method`'s check, its
    errors raised), else the node's `default`'s; None for dcp, or for a default whose weights do not load (its bags
    fall back to dcp, saying so)."""
    try:
        record = method_weights(method or default)
    except (FileNotFoundError, ValueError, RuntimeError):
        if method:
            raise
        return None
    return None if record is None else record["sha256"]


def run_fleet_of(args: argparse.Namespace, pipeline_options: dict[str, Any], notes: list[str]) -> int:
    """Several bags: the fleet (bags.fleet), each offline bag's network with `pipeline_options` (`image_settings`)
    and each report with `notes` (`take_params_file`'s).
    Exit status 1 when any bag failed, skipped frames it could not decode or lost its node part way, 0 when every
    frame of every bag was evaluated."""
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    check_node_runner(bool(args.node), args.ray, args.workers)  # as run_fleet, before ROS and the detector load
    if args.node:
        ros_mode(BAG_REPLAY)  # without ROS, said once before any bag rather than as every bag's failure
    missing = [str(bag) for bag in args.input if not bag.exists()]
    if missing:
        raise FileNotFoundError(f"no such bag: {', '.join(missing)}")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; a fleet needs a folder")
    check_output_folder(args.out, args.input, marker="fleet.json", entries=None)  # as run_fleet, before the detector
    default = None if args.method else node_default_method()  # looked up once for every bag
    # every path absolute: a cluster's workers run in another folder than this command
    detector = None if args.no_detection else detector_options(args)
    if detector is not None and detector["weights"]:
        detector["weights"] = str(Path(detector["weights"]).expanduser().resolve())
    method = str(Path(args.method).resolve()) if args.method and Path(args.method).suffix else args.method
    # a bad option fails here, once, rather than in every bag (and a failed bag's earlier report is removed); the
    # method's weights first, as for one bag
    sha256 = weights_sha256(method, default)
    if detector is not None:
        _detector(detector)
    bags = [Path(os.path.abspath(bag)) for bag in args.input]  # a link keeps its name: its folder is named by it
    jobs = [BagJob(str(bag), str(folder), image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                   method=method, default_method=default, detector=detector, max_frames=args.max_frames,
                   storage=args.storage, output_prefix=args.output_prefix, camera_height=args.camera_height,
                   camera_pitch=args.camera_pitch, input_bits=args.input_bits, image_transport=args.output_images,
                   start=args.start, duration=args.duration, image_rectified=args.image_rectified,
                   node=node_settings(args), pipeline_options=pipeline_options,
                   frame_settings=dict(args.frame_settings), notes=tuple(notes))
            for bag, folder in zip(bags, output_folders(bags, args.out.resolve()))]
    summary = run_fleet(jobs, args.out, ray_address=args.ray, workers=args.workers, progress=not args.no_progress,
                        resume=args.resume, weights_sha256=sha256)
    emit(fleet_table(summary), title=f"dgdehaze bag-eval fleet: {len(jobs)} bags on {summary['runner']} "
                                     f"({summary['wall_seconds']:.0f} s)", json_path=args.json)
    LOG.info("fleet summary: %s", args.out / "index.html")
    for outcome in summary["per_bag"]:  # said again last: the warnings as each failed are far above by now
        if not outcome["ok"]:
            LOG.error("%s failed, no report: %s", outcome["input_bag"], outcome["error"])
    if summary["all"]["frames_skipped"]:
        LOG.warning("%d frames could not be decoded and are not in the figures (each bag's report lists its own)",
                    summary["all"]["frames_skipped"])
    stopped = [o["input_bag"] for o in summary["per_bag"] if o["stopped"]]
    if stopped:
        LOG.error("the evaluation stopped part way through %s (each report says where and why)", ", ".join(stopped))
    return 1 if summary["failed"] or summary["all"]["frames_skipped"] or stopped else 0
