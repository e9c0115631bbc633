"""The detector's command-line options, shared by the commands that detect (`eval`, `bag-eval`)."""
from __future__ import annotations

import argparse

from dgdehaze_core.commands.argument_types import path_argument, with_reason
from dgdehaze_core.detection.input_size import imgsz_option
from dgdehaze_core.detection.precision import PRECISIONS


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    """--detector, --imgsz and --detector-precision, as the node's detector_weights, imgsz and detector_precision."""
    parser.add_argument("--detector", type=path_argument, default=None,
                        help="detector weights (.pt/.onnx/.engine; default: the shipped YOLOv8n int8 ONNX)")
    parser.add_argument("--imgsz", type=with_reason(imgsz_option), default=640,
                        help="detector input size (a multiple of 32 in [32, 4096]; default 640)")
    parser.add_argument("--detector-precision", choices=PRECISIONS, default="auto",
                        help="auto (default, as the node): a dynamically quantised ONNX detector runs as its float "
                             "rebuild on x86 CPUs and GPUs; file: the weights as given; float: always the rebuild")


def detector_settings(args: argparse.Namespace) -> dict[str, object]:
    """`Detector` keyword arguments from the options above."""
    return {"weights": args.detector, "imgsz": args.imgsz, "precision": args.detector_precision}
