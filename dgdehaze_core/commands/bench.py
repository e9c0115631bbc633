"""`dgdehaze bench [TARGET ...]`: latency and FPS of each method side by side in one run, with ratios to DCP."""
from __future__ import annotations

import argparse
import logging

import cv2

from dgdehaze_core.benchmark import hazy_test_frame, measure, parse_size
from dgdehaze_core.figures_table import emit
from dgdehaze_core.pipeline import load_pipeline

LOG = logging.getLogger(__name__)

TARGETS = ("dcp",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure latency and FPS on this machine")
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"what to measure, of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--sizes", default="640x480,1280x720", help="comma-separated WIDTHxHEIGHT list")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per row")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for OpenCV (0: library default)")
    parser.add_argument("--json", type=str, default=None, help="also write the table to this JSON file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    if args.threads < 0:
        raise ValueError("--threads must be >= 0")
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        raise ValueError(f"unknown bench targets {unknown}; known: {', '.join(TARGETS)}")
    args.targets = args.targets or list(TARGETS)
    if args.threads:
        cv2.setNumThreads(args.threads)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    table: dict[str, dict[str, float]] = {}
    for width, height in sizes:
        frame = hazy_test_frame(width, height)
        baseline = None
        if "dcp" in args.targets:
            dcp = load_pipeline("dcp")
            row = measure(lambda: dcp(frame), repeats=args.repeats)
            baseline = row["latency_ms_median"]
            table[f"dcp@{width}x{height}"] = {**row, "ratio_to_dcp": 1.0}
        LOG.debug("measured %dx%d against baseline %s", width, height, baseline)
    emit(table, title=f"dgdehaze bench (threads: {args.threads or 'default'})", json_path=args.json)
    return 0
