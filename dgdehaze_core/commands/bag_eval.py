"""`dgdehaze bag-eval IN_BAG --out DIR`: replay a recorded drive through the dehazing pipeline and report on it.

Offline (default): the node's pipeline runs in this process, no ROS install needed. `--node`: the frames go over
ROS topics through the real `dgdehaze_node` (started here, or a running one with `--attach`) and what it publishes
is recorded. Both write DIR/bag (input topics + outputs at the original stamps), DIR/report.html and
DIR/summary.json atomically, and print the figures table (also written with --json).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dgdehaze_core.bags.evaluation import DEFAULT_OUTPUT_PREFIX, evaluate_bag, node_default_method
from dgdehaze_core.bags.io import STORAGES, pick_image_topic
from dgdehaze_core.bags.records import BagEvaluation
from dgdehaze_core.commands.ros_modes import BAG_REPLAY, ros_mode
from dgdehaze_core.detection.detector import Detector, DetectorUnavailable
from dgdehaze_core.io.tables import emit

LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bag-eval", help="evaluate dehazing and detection on a ROS 2 bag (sqlite3 or mcap)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, metavar="IN_BAG", help="rosbag2 folder, or a single .mcap/.db3 file")
    parser.add_argument("--image-topic", default=None,
                        help="sensor_msgs/Image or CompressedImage topic (default: the bag's only image topic)")
    parser.add_argument("--camera-info-topic", default=None, help="sensor_msgs/CameraInfo topic to pass along")
    parser.add_argument("--out", type=Path, required=True, help="output folder (replaced atomically)")
    parser.add_argument("--method", default=None,
                        help="dcp, lite, base or a weights path (default: the node's configured method, "
                             "falling back to dcp when its weights are missing)")
    parser.add_argument("--detector", default=None, help="detector weights .pt/.onnx/.engine (default: shipped)")
    parser.add_argument("--no-detection", action="store_true", help="skip object detection")
    parser.add_argument("--conf", type=float, default=0.25, help="detection confidence threshold")
    parser.add_argument("--imgsz", type=int, default=640, help="detector input size")
    parser.add_argument("--max-frames", type=int, default=None, help="evaluate at most this many frames")
    parser.add_argument("--storage", choices=STORAGES, default=None, help="output bag storage (default: as input)")
    parser.add_argument("--output-prefix", default=DEFAULT_OUTPUT_PREFIX,
                        help="namespace of the output topics in the bag (offline mode)")
    parser.add_argument("--node", action="store_true",
                        help="replay through the real dgdehaze_node over ROS topics and record what it publishes")
    parser.add_argument("--attach", action="store_true",
                        help="with --node: use a node that is already running instead of starting one")
    parser.add_argument("--node-name", default="dgdehaze", help="with --node: the node's name")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="with --node: a parameter for the started node (repeatable), e.g. threshold:=0.3")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="with --node: seconds to wait for the node's outputs for one frame")
    parser.add_argument("--json", type=str, default=None, help="also write the figures table to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.attach or args.node_param) and not args.node:
        raise ValueError("--attach and --node-param need --node")
    if args.attach and args.node_param:
        raise ValueError("--node-param sets parameters of a node started here; set an attached node's with ros2 param")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError("--max-frames must be at least 1")
    if not args.input.exists():
        raise FileNotFoundError(f"no such bag: {args.input}")
    image_topic = args.image_topic or pick_image_topic(args.input)
    detector = None
    if not args.no_detection:
        try:
            detector = Detector(args.detector, conf=args.conf, imgsz=args.imgsz)
        except DetectorUnavailable as exc:
            raise RuntimeError(f"{exc} (or pass --no-detection)") from None
    options = dict(camera_info_topic=args.camera_info_topic, method=args.method, detector=detector,
                   max_frames=args.max_frames, storage=args.storage, progress=not args.no_progress)
    evaluation: BagEvaluation
    if args.node:
        replay_bag = ros_mode(BAG_REPLAY)
        evaluation = replay_bag(args.input, image_topic, args.out, node_name=args.node_name, attach=args.attach,
                                timeout=args.timeout, node_params=args.node_param, **options)
    else:
        evaluation = evaluate_bag(args.input, image_topic, args.out, default_method=node_default_method(),
                                  output_prefix=args.output_prefix, **options)
    title = (f"dgdehaze bag-eval: {args.input.name} ({evaluation.mode}, {evaluation.method}, "
             f"{len(evaluation.records)} frames)")
    emit(evaluation.table(), title=title, json_path=args.json)
    LOG.info("report: %s", args.out / "report.html")
    return 0
