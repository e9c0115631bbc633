"""`bag-eval --params-file FILE`: the node's parameters file (config/dgdehaze.yaml's layout, ros2 launch's
params_file) as the bag-eval options that mirror its parameters, so that a bag is evaluated with the settings a
user's node runs with. An option given on the command line wins over the file, as `-p` does over `--params-file`.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from dgdehaze_core.bags.evaluation import FRAME_SETTINGS
from dgdehaze_core.commands.argument_types import path_argument
from dgdehaze_core.commands.ros_modes import PARAMS_FILE, ros_mode

LOG = logging.getLogger(__name__)

DEFAULTED = ("imgsz", "detector_precision", "conf", "camera_height", "camera_pitch", "image_rectified", "input_bits")
"""The mirroring options that have a default of their own: unset (None) until `take_params_file`, so that one given
on the command line is told from one the file may set."""
NETWORK_PARAMETERS = ("backend", "device", "half", "radiance_floor", "max_detail_gain")
"""The node's network parameters with an option of the same name; a file's value is taken where it is not the
node's default (a default would read as an option given, which dcp refuses)."""
DETECTOR_EXTRAS = ("iou", "max_det", "classes")
"""The node's detector parameters without an option: a file's value reaches the detector (`Detector`'s keyword
arguments of the same names)."""
NOT_OFFLINE = ("base_frame",)
"""Node parameters that change the figures and that the offline evaluation does not take (TF is not read offline):
a file that sets one is evaluated without it, and the report says so (--node runs the node with it)."""
PASSED_AFTER = ("camera_height", "camera_pitch", "image_rectified", "working_width", "working_height",
                *NETWORK_PARAMETERS)
"""The parameters bag-eval gives a started node from the options after --node-param's (the detector's it leaves to
--node-param): the file's value, filled into an option, would win over the one --node-param gives."""


def add_params_file_option(parser: argparse.ArgumentParser) -> None:
    """--params-file, and the options of DEFAULTED left unset until `take_params_file` fills them; the file's
    detector settings without an option (`detector_extras`: `Detector`'s keyword arguments), its network `output`
    (`network_output`, None: the node's default), its frame-chain settings (`frame_settings`:
    `evaluation.FRAME_SETTINGS` not at the node's defaults) and, where the method is the file's, where it is from
    (`method_from`, for messages); none without a file."""
    parser.add_argument("--params-file", type=path_argument, default=None, metavar="FILE",
                        help="the node's parameters file (config/dgdehaze.yaml's layout; the file ros2 launch's "
                             "params_file takes), read and checked as the node reads it: offline, the method and "
                             "the network's, the detector's, the frame chain's and the camera's settings it gives "
                             "are evaluated (the report names them, and the one offline runs without: "
                             "base_frame); with --node the node is started with it. An option "
                             "given here wins over the file. Needs ROS 2's rclpy")
    parser.set_defaults(option_defaults={dest: parser.get_default(dest) for dest in DEFAULTED},
                        detector_extras={}, network_output=None, frame_settings={}, method_from=None,
                        **{dest: None for dest in DEFAULTED})


def take_params_file(args: argparse.Namespace) -> list[str]:
    """Fill the options that mirror a node parameter and are not given from --params-file's settings (read as
    the node of --node-name reads them: ValueError for a file the node would refuse), then from their own defaults.
    Returns the report's notes on the file: offline, the parameters it sets that the evaluation ran with (an option
    given instead is not among them) and those it runs without; none without a file."""
    notes: list[str] = []
    if args.params_file is not None:
        settings = ros_mode(PARAMS_FILE)(args.params_file, args.node_name)
        changed = settings.changed()
        _fill(args, settings, changed)
        if not args.node:  # a started node's note names the file
            taken = [f"{name} {changed[name]}" for name in changed if _ran_with(args, settings, name)]
            notes.append(f"evaluated with {args.params_file}'s {', '.join(taken)} (its parameters for "
                         f"/{args.node_name}; an option given wins over it)" if taken else
                         f"evaluated with none of {args.params_file}'s settings (the node's defaults, or options "
                         "given instead)")
        unreproduced = [f"{name} {changed[name]}" for name in NOT_OFFLINE if name in changed]
        if unreproduced and not args.node:
            notes.append(f"{args.params_file}'s {', '.join(unreproduced)} not reproduced offline (bag-eval --node "
                         "runs the node with them)")
            LOG.warning("%s", notes[-1])
    for dest, default in args.option_defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, default)
    return notes


def _fill(args: argparse.Namespace, settings: Any, changed: dict[str, Any]) -> None:
    """The options `args` does not give, from the node's `settings` (`dgdehaze_ros.parameters.NodeSettings`;
    `changed`: those not at the node's defaults). With --node, none of PASSED_AFTER that --node-param sets."""
    unset = {param.split(":=", 1)[0] for param in args.node_param} & set(PASSED_AFTER) if args.node else set()
    if args.method is None:
        args.method = settings.pipeline_args()[0]  # its weights (~ expanded) or model, as the node loads it
        args.method_from = f"--params-file {args.params_file}"
    if args.method != "dcp":
        on_cpu = str(args.device or settings["device"]) == "cpu"
        for name in NETWORK_PARAMETERS:
            if (name == "half" and on_cpu) or name in unset:  # the node runs fp32 on the CPU; --half is refused
                continue
            given = getattr(args, name)
            if name in changed and (given is None or given is False):  # unset; 0 (== False) is an option given
                setattr(args, name, changed[name])
        if args.working_size is None and (settings["working_width"] or settings["working_height"]) \
                and not unset & {"working_width", "working_height"}:
            args.working_size = (settings["working_width"], settings["working_height"])
        args.network_output = changed.get("output")
    mirrored = {"detector": settings["detector_weights"] or None, "imgsz": settings["imgsz"],
                "detector_precision": settings["detector_precision"], "conf": settings["threshold"],
                "camera_height": settings["camera_height"], "camera_pitch": settings["camera_pitch"],
                "image_rectified": str(settings["image_rectified"]).lower(), "input_bits": settings["input_bits"]}
    for dest, value in mirrored.items():
        if getattr(args, dest) is None and dest not in unset:
            setattr(args, dest, value)
    if not settings["detection_enabled"]:
        args.no_detection = True
    args.detector_extras = {name: changed[name] for name in DETECTOR_EXTRAS if name in changed}
    args.frame_settings = {name: changed[name] for name in FRAME_SETTINGS if name in changed}


def _ran_with(args: argparse.Namespace, settings: Any, name: str) -> bool:
    """Whether the filled `args` run the file's value of the parameter `name` (not an option given instead)."""
    value, method = settings[name], settings.pipeline_args()[0]
    size = (settings["working_width"], settings["working_height"])
    options = {"model": ("method", method), "weights": ("method", method), "threshold": ("conf", value),
               "detector_weights": ("detector", value), "image_rectified": ("image_rectified", str(value).lower()),
               "output": ("network_output", value), "working_width": ("working_size", size),
               "working_height": ("working_size", size), "detection_enabled": ("no_detection", not value)}
    if name in DETECTOR_EXTRAS:
        return name in args.detector_extras
    if name in FRAME_SETTINGS:
        return name in args.frame_settings
    dest, ran = options.get(name, (name, value))
    return name in (*options, *NETWORK_PARAMETERS, *DEFAULTED) and getattr(args, dest, None) == ran
