"""`dgdehaze bench [TARGET ...]`: latency and FPS side by side in one run, with ratios to DCP.

    dgdehaze bench                                  # dcp, lite, base at 640x480 and 1280x720; detector, chain
                                                    # at the first size
    dgdehaze bench model --config lite              # one network on every backend available here (issue #3)
    dgdehaze bench lite --backends onnxruntime --sizes 640x480 --json lite.json
    dgdehaze bench lite --sizes 640x480 --working-sizes 320x240       # network at 320x240, inversion at 640x480
    dgdehaze bench detector --imgsz 640,480,320     # shipped int8 vs dynamic int8 vs float, detections kept
    dgdehaze bench chain --detect-every 1,3 --chain-imgsz 640,320 --chain-detector auto,file   # as the node
    dgdehaze bench chain --detect-every 1 --chain-fused             # what detection on raw + dehazed, fused, costs
    dgdehaze bench chain --detect-every 1 --chain-contrast          # what the detector's contrast equaliser costs
    dgdehaze bench outputs --sizes 640x480          # the node's compressed image and compressedDepth: ms and size
    dgdehaze bench fog --sizes 640x480,1280x720     # what measuring the fog (~/visibility, ~/depth) costs a frame
    dgdehaze bench node --node-model lite           # the ROS node in its own process, fed over DDS
    dgdehaze bench node --sizes 1280x720 --soak 600 # a 10-minute soak: memory, loss accounted on /diagnostics
    dgdehaze bench train --train-batch 8,32 --device cuda   # a training step of training/lite.yaml

Rows and figures are described in dgdehaze_core/benchmarks/networks.py, detectors.py, fog.py, outputs.py and
training.py. Ctrl-C (or SIGTERM) prints the rows of the targets measured whole until then and writes no --json.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import math
import os
from typing import Callable, Iterator, Sequence

import cv2

from dgdehaze_core.benchmarks.node_load import MAX_NODE_SECONDS, check_node_load
from dgdehaze_core.benchmarks.timing import comma_items, parse_sizes, smaller_than
from dgdehaze_core.commands.argument_types import path_argument
from dgdehaze_core.commands.ros_modes import NODE_BENCHMARK, NODE_MODELS, RELIABILITIES, ros_mode
from dgdehaze_core.cpu_threads import available_cpus, threads_kept
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.detection.input_size import check_imgsz
from dgdehaze_core.detection.precision import PRECISIONS
from dgdehaze_core.devices import resolve_device
from dgdehaze_core.inference.backends import INT8_RUNTIME, RUNTIMES
from dgdehaze_core.inference.backends.engine_cache import default_keep_days
from dgdehaze_core.inference.backends.selection import choose_backend
from dgdehaze_core.io.checkpoints import EXPORT_KINDS
from dgdehaze_core.io.file_paths import file_suffix
from dgdehaze_core.io.tables import emit

LOG = logging.getLogger(__name__)

NETWORK_TARGETS = ("lite", "base", "paper")
DEFAULT_NETWORKS = ("lite", "base")
"""The paper's 45 M-parameter network is measured only when asked for: a GPU's network, seconds a frame on a CPU
(docs/BENCHMARKS.md, "The paper's released network")."""
TARGETS = ("dcp", *NETWORK_TARGETS, "model", "detector", "chain", "fog", "outputs", "node", "train")
DEFAULT_TARGETS = ("dcp", *DEFAULT_NETWORKS, "detector", "chain")
MAX_TRAIN_BATCH = 512
"""The largest batch `bench train` times (its random crops are made in memory)."""


def _int_list(text: str) -> list[int]:
    try:
        values = list(dict.fromkeys(int(v) for v in comma_items(text)))  # a value given twice is measured once
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:  # an empty list would run none of the option's rows and say nothing
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure latency and FPS on this machine",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"what to measure, of {', '.join(TARGETS)} (default: {' '.join(DEFAULT_TARGETS)}; "
                             f"`model` means the networks named by --config)")
    parser.add_argument("--config", action="append", choices=NETWORK_TARGETS,
                        help="network(s) for the `model` target (repeatable; default: lite and base; paper: the "
                             "released network, fresh weights)")
    parser.add_argument("--sizes", default="640x480,1280x720",
                        help="comma-separated WIDTHxHEIGHT list (default 640x480,1280x720)")
    parser.add_argument("--working-sizes", default="",
                        help="networks: also run each frame size with the network at these smaller WIDTHxHEIGHT "
                             "working resolutions (comma-separated; the node's working_width/height)")
    parser.add_argument("--backends", default=",".join(RUNTIMES),
                        help=f"network runtimes to try ({', '.join(RUNTIMES)}, or {INT8_RUNTIME}: a QDQ int8 "
                             "export on ONNX Runtime; default: the first three); those unavailable here are skipped "
                             "with a log line")
    parser.add_argument("--device", default="auto",
                        help="auto (the default), cpu, cuda or cuda:N: the networks', chain's, fog's and train's "
                             "(the detector target's rows run on ONNX Runtime's CPU provider whatever it says)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per row (default 30)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="stop timing a row after this long (at least 3 runs; default 60 s); 0: no cap")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for OpenCV, torch and ONNX Runtime, and the node target's cpu_threads "
                             "parameter (0: each library's default)")
    parser.add_argument("--imgsz", type=_int_list, default=[640, 480, 320],
                        help="detector input sizes (default 640,480,320)")
    parser.add_argument("--detect-every", type=_int_list, default=[1, 3],
                        help="chain: detection intervals to measure (frames; default 1,3)")
    parser.add_argument("--chain-model", default="lite", choices=NETWORK_TARGETS,
                        help="chain, fog and outputs: the network (default lite)")
    parser.add_argument("--chain-backend", default="auto",
                        help="chain and fog: the network's backend (default auto: it picks)")
    parser.add_argument("--chain-imgsz", type=_int_list, default=[640],
                        help="chain: detector input sizes (default 640; file at sizes other than 640: the shipped "
                             "model's dynamic int8 rebuild)")
    parser.add_argument("--chain-detector", default="auto,file",
                        help="chain: the shipped detector's precisions, comma-separated: auto (the node's default), "
                             "file (the int8 file as it is), float (its float rebuild)")
    parser.add_argument("--chain-fused", action="store_true",
                        help="chain: also detect on the raw and the dehazed frame and fuse the boxes (the node's "
                             "detection_input: fused), rows ending -fused")
    parser.add_argument("--chain-contrast", action="store_true",
                        help="chain: also each detection row with the detector's frames contrast-equalised (the "
                             "node's detection_contrast), rows ending -clahe")
    parser.add_argument("--node-model", default="lite", choices=NODE_MODELS,
                        help="node: the node's `model` parameter (default lite)")
    parser.add_argument("--node-rate", type=float, default=30.0, help="node: camera frames per second (default 30)")
    parser.add_argument("--node-seconds", type=float, default=10.0, help="node: seconds of frames per row (default 10)")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                        help="node: a soak run of this many seconds per row instead of --node-seconds (memory is "
                             "sampled every second: rss_start_mb, rss_max_mb, rss_end_mb)")
    parser.add_argument("--node-reliability", default="reliable", choices=RELIABILITIES,
                        help="node: image_reliability (default reliable)")
    parser.add_argument("--node-detection", action="store_true", help="node: run the detector too")
    parser.add_argument("--node-fastdds", default="auto",
                        help="node: the node process's Fast DDS profile as the launch file's fastdds_large_images "
                             "sets it, comma-separated: auto (the default: the shipped profile unless the environment "
                             "configures Fast DDS), off (the environment's; rows end in fastdds:off)")
    parser.add_argument("--train-config", type=path_argument, default=REPO_DIR / "training" / "lite.yaml",
                        help="train: the recipe whose step is timed (default: training/lite.yaml)")
    parser.add_argument("--train-batch", type=_int_list, default=[8],
                        help="train: comma-separated batch sizes (default 8)")
    parser.add_argument("--json", type=path_argument, default=None,
                        help="also write the table to this JSON file (-: to stdout, the table going to stderr)")
    parser.set_defaults(func=run)


def _targets(args: argparse.Namespace) -> list[str]:
    from dgdehaze_core.models import CHECKPOINT_SUFFIXES

    unknown = sorted(set(args.targets) - set(TARGETS))
    files = [target for target in unknown if file_suffix(target) in (*EXPORT_KINDS, *CHECKPOINT_SUFFIXES)]
    if files:
        raise ValueError(f"bench measures a network by its configuration ({', '.join(NETWORK_TARGETS)}), not a file "
                         f"such as {files[0]}: its time does not depend on the weights, so `dgdehaze bench lite` "
                         "times an export of lite (--backends for fp16 and int8 rows); `dgdehaze bag-eval DRIVE "
                         "--method FILE` reports the latency of the file itself")
    if unknown:
        raise ValueError(f"unknown bench targets {unknown}; known: {', '.join(TARGETS)}")
    targets = list(dict.fromkeys(args.targets or DEFAULT_TARGETS))  # a target named twice is measured once
    if "model" in targets:
        targets.remove("model")
        targets.extend(c for c in (args.config or DEFAULT_NETWORKS) if c not in targets)
    elif args.config:
        raise ValueError("--config belongs to the `model` target: `dgdehaze bench model --config lite`")
    return targets


def _check_names(option: str, text: str, known: Sequence[str]) -> None:
    """ValueError naming `option` when its comma-separated `text` names none of `known`, or an unknown one."""
    given = comma_items(text)
    unknown = sorted(set(given) - set(known))
    if unknown or not given:
        raise ValueError(f"{option} {text!r} names {f'unknown {unknown}' if unknown else 'none'}; known: "
                         f"{', '.join(known)}")


def _check_shipped_weights(target: str, option: str, model: str) -> None:
    """ValueError naming `option` when the network `model` that `target` runs has no shipped weights: the outputs
    target encodes a trained network's images (`load_pipeline`), and the node refuses to start without them: found
    late, either would lose the rows of the targets measured before."""
    from dgdehaze_core.models import shipped_weights_path

    weights = shipped_weights_path(model)
    if model != "dcp" and not weights.is_file():
        raise ValueError(f"the {target} target runs {option} {model} with its shipped weights, and there are none "
                         f"({weights}): give a {option} that has them")


def _check(args: argparse.Namespace, targets: list[str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Refuse bad options of every target before any is measured (a late error would lose the rows measured); the
    frame sizes and working sizes."""
    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    if args.threads < 0 or not (math.isfinite(args.max_seconds) and args.max_seconds >= 0):
        raise ValueError("--threads and --max-seconds must be >= 0 (--max-seconds a number of seconds; 0: no cap)")
    if args.threads > available_cpus():
        raise ValueError(f"--threads {args.threads} exceeds the {available_cpus()} CPUs this process may use (its "
                         "affinity): a benchmark on more threads than cores measures the oversubscription")
    default_keep_days()  # a bad $DGDEHAZE_ENGINE_CACHE_DAYS would skip every cached network row, not fail
    sizes = parse_sizes(args.sizes, "--sizes")
    if not sizes:
        raise ValueError(f"--sizes names no WIDTHxHEIGHT: {args.sizes!r}")
    working_sizes = list(dict.fromkeys(parse_sizes(args.working_sizes, "--working-sizes")))
    for work in working_sizes:
        if not any(smaller_than(work, size) for size in sizes):
            raise ValueError(f"--working-sizes {work[0]}x{work[1]} is not smaller than any of --sizes "
                             f"{args.sizes}: it would run no row")
    _check_names("--backends", args.backends, (*RUNTIMES, INT8_RUNTIME))
    for option, sizes_given in (("--imgsz", args.imgsz), ("--chain-imgsz", args.chain_imgsz)):
        for imgsz in sizes_given:
            try:
                check_imgsz(imgsz)
            except ValueError as exc:
                raise ValueError(f"{option}: {exc}") from None
    _check_names("--chain-detector", args.chain_detector, PRECISIONS)
    if any(v < 1 for v in args.detect_every):
        raise ValueError(f"--detect-every values must be at least 1, got {args.detect_every}")
    resolve_device(args.device)
    if {"chain", "fog"} & set(targets):
        choose_backend(args.chain_backend, args.device, log=False)
    if "node" in targets:
        if not 0 <= args.soak <= MAX_NODE_SECONDS:
            raise ValueError(f"--soak must be 0 (none) to {MAX_NODE_SECONDS:g} s, got {args.soak:g}")
        check_node_load(args.node_rate, args.soak or args.node_seconds, "--node-rate",
                        "--soak" if args.soak else "--node-seconds")
        _check_names("--node-fastdds", args.node_fastdds, ("auto", "off"))
    for target, option, model in (("outputs", "--chain-model", args.chain_model),
                                  ("node", "--node-model", args.node_model)):
        if target in targets:
            _check_shipped_weights(target, option, model)
    if "train" in targets:
        if any(not 1 <= v <= MAX_TRAIN_BATCH for v in args.train_batch):
            raise ValueError(f"--train-batch values must be 1 to {MAX_TRAIN_BATCH}, got {args.train_batch}")
        from dgdehaze_core.training.recipe import load_recipe

        load_recipe(args.train_config)  # a missing or bad recipe fails here, before any row is measured
    return sizes, working_sizes


@contextlib.contextmanager
def _library_threads(threads: int) -> Iterator[None]:
    """OpenCV's and torch's CPU threads set to `threads` (0: left as they are) while the bench runs, then put back:
    a caller that runs the command in its own process (the tests, `cli.run_parsed`) keeps its own settings."""
    with threads_kept():
        if threads:
            import torch

            cv2.setNumThreads(threads)
            torch.set_num_threads(threads)
        yield


def run(args: argparse.Namespace) -> int:
    """Measure, print the table and write --json. Stopped by Ctrl-C or SIGTERM, it prints the rows measured until
    then (each target's, and each network's, once whole) and writes no --json: a file holds a whole run or none."""
    targets = _targets(args)
    sizes, working_sizes = _check(args, targets)
    run_node_benchmark = ros_mode(NODE_BENCHMARK) if "node" in targets else None
    table: dict[str, dict[str, float]] = {}
    try:
        with _library_threads(args.threads):
            _measure(args, targets, sizes, working_sizes, run_node_benchmark, table)
    except KeyboardInterrupt:
        if table:
            emit(table, title=f"{_title(args)}; stopped: the rows measured before the stop, written to no --json")
        raise
    emit(table, title=_title(args), json_path=args.json)
    return 0


def _title(args: argparse.Namespace) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"dgdehaze bench ({available_cpus()} CPUs, load average {load}; threads: {args.threads or 'default'})"


def _measure(args: argparse.Namespace, targets: list[str], sizes: list[tuple[int, int]],
             working_sizes: list[tuple[int, int]],
             run_node_benchmark: Callable[..., dict[str, dict[str, float]]] | None,
             table: dict[str, dict[str, float]]) -> None:
    """The rows of every target in `targets`, measured in order into `table`, each target's as it ends (a network's
    rows, when stopped before the CPU's or GPU's peak was measured after them, against the peak before them)."""
    from dgdehaze_core.benchmarks import networks as nb

    settings = nb.BenchSettings(repeats=args.repeats, max_seconds=args.max_seconds or None,
                                threads=args.threads or None)
    frames = nb.hazy_frames(sizes)
    networks = [t for t in targets if t in NETWORK_TARGETS]
    variants = nb.available_variants(comma_items(args.backends), args.device) if networks else []  # none: before DCP
    if {"dcp", "chain", "fog", "outputs", *networks} & set(targets):  # the baseline as rows; each ratio times it again
        table.update(nb.bench_dcp(frames, settings))
    if networks:
        names, peaks_before = nb.peak_names(variants, settings), nb.peaks_of(variants, settings)
        rows: dict[str, dict[str, float]] = {}
        try:
            for config in networks:
                rows.update(nb.bench_network(config, variants, frames, settings, working_sizes))
            peaks_after = nb.peaks_of(variants, settings)
        except KeyboardInterrupt:
            table.update(nb.with_pct_of_peak(rows, names, peaks_before))
            raise
        table.update(nb.with_pct_of_peak(rows, names, peaks_before, peaks_after))
    if "detector" in targets:
        from dgdehaze_core.benchmarks.detectors import bench_detector

        table.update(bench_detector(args.imgsz, frames[sizes[0]], settings))
    if "chain" in targets:
        size = sizes[0]
        table.update(nb.bench_chain(args.chain_model, args.chain_backend, args.device, args.detect_every,
                                    frames[size], settings, args.chain_imgsz,
                                    list(dict.fromkeys(comma_items(args.chain_detector))), args.chain_fused,
                                    args.chain_contrast))
    if "fog" in targets:
        from dgdehaze_core.benchmarks.fog import bench_fog

        for size in sizes:
            table.update(bench_fog(args.chain_model, args.chain_backend, args.device, size, settings))
    if "outputs" in targets:
        from dgdehaze_core.benchmarks.outputs import bench_outputs

        table.update(bench_outputs(args.chain_model, frames, settings))
    if run_node_benchmark is not None:
        for (width, height), fastdds in itertools.product(sizes, comma_items(args.node_fastdds)):
            table.update(run_node_benchmark(args.node_model, width, height, args.node_rate,
                                            args.soak or args.node_seconds, args.node_reliability,
                                            args.node_detection, fastdds, cpu_threads=args.threads))
    if "train" in targets:
        from dgdehaze_core.benchmarks.training import bench_training

        table.update(bench_training(args.train_config, args.train_batch, args.device, settings))
