"""Where and how the dehazing networks run, as command-line options shared by the commands that dehaze (`eval`,
`dehaze`, `bag-eval`): the node's working_width and working_height, backend, device, half, radiance_floor and
max_detail_gain parameters."""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from dgdehaze_core.commands.argument_types import with_reason
from dgdehaze_core.devices import DeviceUnavailable, resolve_device
from dgdehaze_core.inference.backends import RUNTIMES
from dgdehaze_core.inference.pipeline import (DETAIL_GAIN_RANGE, MAX_DETAIL_GAIN, check_max_detail_gain,
                                              check_working_size)
from dgdehaze_core.io.file_paths import file_suffix
from dgdehaze_core.physics.boundary_constraint import RADIANCE_FLOOR, check_radiance_floor

IMPLIED_DEVICE = {"tensorrt": "cuda", "auto": "auto"}
"""The device a --backend implies when --device is not given: TensorRT runs on CUDA only, auto picks a GPU where
there is one."""
NO_FLOOR = "none"
"""--radiance-floor's word for the network's transmission alone (the pipeline's radiance_floor None)."""
EXACT_INVERSION = 0.0
"""--max-detail-gain's value for the exact inversion J = (I - A)/t + A (the pipeline's max_detail_gain None), as the
node's max_detail_gain 0."""


def radiance_floor_argument(text: str) -> float | str:
    """--radiance-floor: a number in [0, 0.5], or NO_FLOOR; ValueError otherwise."""
    if text.strip().lower() == NO_FLOOR:
        return NO_FLOOR
    try:
        floor = float(text)
    except ValueError:
        raise ValueError(f"a number in [0, 0.5] or {NO_FLOOR}, got {text!r}") from None
    return check_radiance_floor(floor)


def max_detail_gain_argument(text: str) -> float:
    """--max-detail-gain: 0 (EXACT_INVERSION) or a number in DETAIL_GAIN_RANGE (`check_max_detail_gain`);
    ValueError otherwise."""
    try:
        gain = float(text)
    except ValueError:
        raise ValueError(f"a number: 0 (the exact inversion) or one in [{DETAIL_GAIN_RANGE[0]:g}, "
                         f"{DETAIL_GAIN_RANGE[1]:g}], got {text!r}") from None
    return check_max_detail_gain(gain)


def working_size_argument(text: str) -> tuple[int, int]:
    """--working-size: WxH, or one side 0 (Wx0, 0xH: from each input's aspect ratio), as the node's working_width
    and working_height (`pipeline.check_working_size`); ValueError otherwise."""
    try:
        width, height = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"a size WxH such as 320x240, or 320x0 (the height from each input's aspect ratio), got "
                         f"{text!r}") from None
    return check_working_size((width, height))


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """--working-size, --backend, --device, --half, --radiance-floor and --max-detail-gain."""
    parser.add_argument("--working-size", type=with_reason(working_size_argument), default=None, metavar="WxH",
                        help="size the networks run at, as the node's working_width and working_height: WxH, or Wx0 "
                             "or 0xH (the other side from each input's aspect ratio); the physics image is made at "
                             "the input's size (default: each input's size)")
    parser.add_argument("--backend", choices=("auto", *RUNTIMES), default=None,
                        help="runtime of the networks (default: torch for a model, onnxruntime for an .onnx file, "
                             "tensorrt for an .engine; auto: the fastest here, as the node's)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or cuda:N: where the networks run (default: the CPU; CUDA for an .engine "
                             "and --backend tensorrt, a GPU where there is one for --backend auto)")
    parser.add_argument("--half", action="store_true",
                        help="run the networks in fp16 on a GPU (--device cuda, implied when the networks are all "
                             ".engine files, which keep the precision they were built with)")
    parser.add_argument("--radiance-floor", type=with_reason(radiance_floor_argument), default=None, metavar="FLOOR",
                        help="a network's transmission is raised to the boundary constraint, so that no channel of "
                             f"its physics image falls below FLOOR (0..0.5) nor blows out, as the node's "
                             f"radiance_floor (default {RADIANCE_FLOOR:g}); {NO_FLOOR}: the network's transmission "
                             "alone")
    parser.add_argument("--max-detail-gain", type=with_reason(max_detail_gain_argument), default=None,
                        metavar="GAIN",
                        help="the most a network's physics image amplifies fine detail and noise where fog is dense "
                             f"({DETAIL_GAIN_RANGE[0]:g}..{DETAIL_GAIN_RANGE[1]:g}), as the node's max_detail_gain "
                             f"(default {MAX_DETAIL_GAIN:g}); "
                             "0: the exact inversion J = (I - A)/t + A")


def given_network_options(args: argparse.Namespace) -> list[str]:
    """The options above that `args` gives: each sets how a network runs, so a command whose methods hold no network
    refuses them."""
    values = (("--working-size", args.working_size), ("--backend", args.backend),
              ("--device", args.device), ("--half", args.half or None), ("--radiance-floor", args.radiance_floor),
              ("--max-detail-gain", args.max_detail_gain))
    return [option for option, value in values if value is not None]


def network_runtime(args: argparse.Namespace, methods: Sequence[str] = ()) -> dict[str, Any]:
    """The options above as `load_pipeline` takes them (only those given; --radiance-floor none as None) for the
    dehazing `methods` (names or weights files); ValueError (DeviceUnavailable) for a device this machine lacks, and
    for fp16 off a GPU, where the networks run fp32 only. Networks that are all TensorRT engines imply CUDA, as
    --backend tensorrt does. ValueError too for --radiance-floor or --max-detail-gain with `args.output` decoder,
    whose image neither changes."""
    if getattr(args, "output", None) == "decoder" and (args.radiance_floor is not None
                                                        or args.max_detail_gain is not None):
        raise ValueError("--radiance-floor and --max-detail-gain set how the physics image is made, and --output "
                         "decoder writes the decoder's image, which neither changes")
    engines = args.backend is None and _engines_only(methods)
    name = args.device or IMPLIED_DEVICE.get(args.backend or ("tensorrt" if engines else ""))
    try:
        device = None if name is None else resolve_device(name)
    except DeviceUnavailable:
        if args.device is not None or name != "cuda":
            raise
        what, instead = (("TensorRT engines run", "give the .pt or .onnx weights") if engines else
                         ("--backend tensorrt runs", "give --backend auto or onnxruntime"))
        raise DeviceUnavailable(f"{what} on CUDA only, and this machine has no CUDA device: an engine is built and "
                                "run on the GPU it is for (docs/DEPLOYMENT.md, 'Jetson / TensorRT steps'); here "
                                f"{instead}") from None
    if args.half and (device is None or device.type != "cuda"):
        raise ValueError("--half runs the networks in fp16 on a GPU: add --device cuda (on the CPU they run in fp32)")
    options: dict[str, Any] = {"half": True} if args.half else {}
    if device is not None:
        options["device"] = str(device)
    if args.backend is not None:
        options["backend"] = args.backend
    if args.radiance_floor is not None:
        options["radiance_floor"] = requested_radiance_floor(args)
    if args.max_detail_gain is not None:
        options["max_detail_gain"] = requested_max_detail_gain(args)
    return options


def requested_radiance_floor(args: argparse.Namespace) -> float | None:
    """The floor a network runs with under `args`' --radiance-floor: the pipeline's RADIANCE_FLOOR where it is not
    given, None for NO_FLOOR."""
    if args.radiance_floor is None:
        return RADIANCE_FLOOR
    return None if args.radiance_floor == NO_FLOOR else args.radiance_floor


def requested_max_detail_gain(args: argparse.Namespace) -> float | None:
    """The detail gain a network's physics image is made with under `args`' --max-detail-gain: the pipeline's
    MAX_DETAIL_GAIN where it is not given, None (the exact inversion) for EXACT_INVERSION."""
    if args.max_detail_gain is None:
        return MAX_DETAIL_GAIN
    return None if args.max_detail_gain == EXACT_INVERSION else args.max_detail_gain


def _engines_only(methods: Sequence[str]) -> bool:
    """Whether the networks among `methods` are all TensorRT engines (and there is one)."""
    from dgdehaze_core.models import CHECKPOINT_SUFFIXES, MODEL_CONFIGS, PAPER

    suffixes = [file_suffix(method) for method in methods]
    networks = [suffix for method, suffix in zip(methods, suffixes)
                if suffix in (*CHECKPOINT_SUFFIXES, ".onnx", ".engine") or method in (*MODEL_CONFIGS, PAPER)]
    return bool(networks) and all(suffix == ".engine" for suffix in networks)
