"""`dgdehaze export`: a dehazing model (or an Ultralytics detector) as an ONNX file or a TensorRT engine.

    dgdehaze export --config lite --format onnx                      # dynamic batch/height/width
    dgdehaze export --config lite --format onnx --height 480 --width 640
    dgdehaze export --config lite --format onnx --physics-only       # for output auto/physics: no decoder image
    dgdehaze export --config lite --format engine --fp16 --height 480 --width 640
    dgdehaze export --config lite --format engine --int8 --calib ../shared/data/hazy-real
    dgdehaze export --detector yolov8n.pt --format engine --imgsz 640 --fp16
    dgdehaze export --detector dgdehaze_core/weights/yolov8n_int8.onnx --format engine --fp16   # shipped detector
    dgdehaze export --detector dgdehaze_core/weights/yolov8n_int8.onnx --format onnx --int8      # any imgsz, CPU

A quantised Ultralytics ONNX (the shipped yolov8n_int8.onnx, fixed at 640x640) is first rebuilt as a float
YOLOv8n from its own weights (dgdehaze_core/detection/rebuild.py); `--int8 --format onnx` re-quantises it with
dynamic height and width.

Every file is written atomically; an engine gets the JSON sidecar of the engine cache (GPU, TensorRT version,
ONNX hash, profile, precision), so the node's cache recognises it or rebuilds it when it is stale.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from dgdehaze_core.commands.argument_types import path_argument, with_reason
from dgdehaze_core.commands.input_bits_option import IMAGE_FILES, add_input_bits_option
from dgdehaze_core.detection.input_size import imgsz_option
from dgdehaze_core.inference.export import EXPORTERS
from dgdehaze_core.io.atomic_files import check_writable_file, refuse_input_as_output
from dgdehaze_core.io.checkpoints import EXPORT_KINDS
from dgdehaze_core.io.file_paths import file_suffix
from dgdehaze_core.io.images import MAX_PIXELS, SAMPLE_BITS
from dgdehaze_core.io.json_stdout import STDOUT, json_on_stdout, json_stream

LOG = logging.getLogger(__name__)

DETECTOR_IMGSZ = 640
"""--imgsz's default: Ultralytics' default input size, the shipped detector's."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX or a TensorRT engine")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="model configuration (lite, base; paper: the released network, with "
                                          "--weights model_Roadmap.pth): its shipped weights, or --weights")
    source.add_argument("--detector", type=path_argument,
                        help="a detector to export instead: an Ultralytics .pt, or a dynamically quantised "
                             "Ultralytics .onnx (the shipped dgdehaze_core/weights/yolov8n_int8.onnx), rebuilt first")
    parser.add_argument("--weights", type=path_argument,
                        help="a dgdehaze checkpoint (.pt) of --config to export, or the paper's released .pth")
    parser.add_argument("--untrained", action="store_true",
                        help="export a freshly initialised --config model (for speed tests before training)")
    parser.add_argument("--format", choices=("onnx", "engine"), default="onnx",
                        help="ONNX file (the default) or TensorRT engine")
    parser.add_argument("--fp16", action="store_true", help="half precision (ONNX weights/IO, or engine layers)")
    parser.add_argument("--int8", action="store_true",
                        help="int8: a TensorRT engine calibrated on --calib images, or with --format onnx a "
                             "statically quantised QDQ model (ONNX Runtime, TensorRT)")
    parser.add_argument("--calib", type=path_argument,
                        help="int8 calibration: a folder of images, subfolders too (model), a dataset YAML "
                             "(detector)")
    add_input_bits_option(parser, f"--calib's {IMAGE_FILES}", "; a 12-bit camera's exports read with 16 would "
                          "calibrate int8 on nearly black images")
    parser.add_argument("--height", type=int, help="input height: fixes the ONNX size / the engine's optimum")
    parser.add_argument("--width", type=int, help="input width: fixes the ONNX size / the engine's optimum")
    parser.add_argument("--dynamic", action="store_true",
                        help="keep batch, height and width free even when --height/--width are given")
    parser.add_argument("--physics-only", action="store_true",
                        help="leave out the decoder's image (output 'clear'): what the node's default output (auto "
                             "= physics inversion) needs, and faster (docs/BENCHMARKS.md); output decoder then "
                             "refuses the file")
    parser.add_argument("--exporter", choices=EXPORTERS,
                        help="torch's exporter of a --config network (default $DGDEHAZE_ONNX_EXPORTER, else "
                             "torchscript: an order of magnitude faster; dynamo: for a torch without the TorchScript "
                             "exporter)")
    parser.add_argument("--imgsz", type=with_reason(imgsz_option), default=None,
                        help="--detector's input size (a multiple of 32 in [32, 4096]; default 640)")
    parser.add_argument("--out", type=path_argument, help="output file (default: exports/<name>.<format>)")
    parser.set_defaults(func=run)


def _model(args: argparse.Namespace) -> tuple[Any, dict[str, Any] | None]:  # (DGDehazeNet, record)
    """The model to export and the record of the weights file it was read from, taken from the read that loaded it
    (`models.load_model_and_record`): what an ONNX export or a TensorRT engine records of it (None for
    --untrained)."""
    from dgdehaze_core.models import MODEL_CONFIGS, PAPER, build_model, load_model_and_record, shipped_weights_path

    if args.config not in (*MODEL_CONFIGS, PAPER):
        raise ValueError(f"unknown model configuration {args.config!r}; known: {', '.join(MODEL_CONFIGS)}, {PAPER}")
    if args.weights is not None:
        model, record = load_model_and_record(args.weights)
        if model.config_name != args.config:
            raise ValueError(f"{args.weights} holds a {model.config_name!r} model, not {args.config!r}")
        return model, record
    if args.untrained:
        LOG.warning("exporting an UNTRAINED %s model (fresh weights, seed 0): for speed tests only", args.config)
        torch.manual_seed(0)
        return build_model(args.config).eval(), None
    if args.config == PAPER:
        raise FileNotFoundError("the paper's released weights are not shipped: give --weights model_Roadmap.pth, "
                                "the authors' file (docs/DEPLOYMENT.md), or --untrained for a speed test")
    if not shipped_weights_path(args.config).is_file():
        raise FileNotFoundError(f"no trained weights for {args.config!r} at {shipped_weights_path(args.config)}; "
                                f"give --weights PATH, or --untrained for a speed test")
    return load_model_and_record(args.config)


def _sources(args: argparse.Namespace) -> list[Path]:
    """What an export reads: the detector or the weights (the configuration's shipped file without --weights),
    and the calibration images or dataset YAML."""
    from dgdehaze_core.models import MODEL_CONFIGS, shipped_weights_path

    sources = [path for path in (args.detector, args.weights, args.calib) if path is not None]
    if args.config in MODEL_CONFIGS and args.weights is None and not args.untrained:
        sources.append(shipped_weights_path(args.config))
    return sources


def _check(args: argparse.Namespace) -> None:
    from_quantised_onnx = args.detector is not None and file_suffix(args.detector) == ".onnx"
    if args.detector is not None and args.exporter is not None:
        raise ValueError("--exporter is for a --config network: Ultralytics exports the detector")
    if args.int8 and args.format != "engine" and args.detector is not None and not from_quantised_onnx:
        raise ValueError("--int8 for an Ultralytics .pt detector builds a TensorRT engine: use --format engine")
    if args.int8 and args.fp16:
        raise ValueError("--int8 and --fp16 exclude each other (an int8 model keeps float16 nowhere)")
    if args.detector is not None and file_suffix(args.detector) not in (".pt", ".onnx"):
        raise ValueError(f"--detector takes an Ultralytics .pt or a quantised Ultralytics .onnx, got {args.detector}")
    if args.detector is not None and (args.height is not None or args.width is not None):
        raise ValueError("--height and --width size a --config export; a --detector's input size is --imgsz")
    if args.detector is None and args.imgsz is not None:
        raise ValueError("--imgsz is a --detector's input size; a --config export's is --height and --width")
    if args.weights is not None and args.untrained:
        raise ValueError("--weights and --untrained exclude each other (trained weights, or fresh ones)")
    if args.int8 and args.detector is None and args.calib is None:
        raise ValueError("--int8 needs --calib DIR (images to calibrate on)")
    if args.int8 and args.detector is not None and args.format == "engine" and args.calib is None:
        raise ValueError("--int8 for a detector engine needs --calib DATA.yaml, the Ultralytics dataset to calibrate "
                         "on: without one Ultralytics calibrates on its default coco8.yaml, 8 COCO images it "
                         "downloads")
    if args.calib is not None and not args.int8:
        raise ValueError("--calib gives the images an --int8 export calibrates on: without --int8 nothing reads it")
    if args.input_bits != SAMPLE_BITS and (args.detector is not None or args.calib is None):
        raise ValueError("--input-bits gives the significant bits of --calib's images, which a model's --int8 "
                         "export calibrates on: it goes with --config --int8 --calib DIR only")
    if args.calib is not None and args.detector is None:
        from dgdehaze_core.io.images import images_under

        _refuse_recording(args.calib)
        if not args.calib.is_dir():
            raise NotADirectoryError(f"--calib {args.calib} is not a folder")
        if not images_under(args.calib):
            raise ValueError(f"no images to calibrate int8 with in {args.calib}")
    if args.calib is not None and args.detector is not None and not args.calib.is_file():
        raise FileNotFoundError(f"--calib for a detector is an Ultralytics dataset YAML; {args.calib} is not a file")
    if (args.height is None) != (args.width is None):
        raise ValueError("give both --height and --width, or neither")
    if args.height is not None:
        _check_size(args.height, args.width, args.dynamic)
    if args.out is not None:
        refuse_input_as_output(args.out, _sources(args), "--out")
        suffix = f".{args.format}"
        check_writable_file(args.out, "--out", (suffix,), EXPORT_KINDS[suffix])
    if args.detector is not None and (args.weights or args.untrained or args.physics_only):
        raise ValueError("--weights, --untrained and --physics-only belong to --config, not --detector")


def _refuse_recording(calib: Path) -> None:
    """ValueError when a model's --calib is a bag or a video: it was refused as 'not a folder', or for a rosbag2
    folder as holding 'no images', which said nothing of what int8 calibration reads."""
    from dgdehaze_core.training.bag_frames import recording_kind

    kind = recording_kind(calib)
    if kind is not None:
        raise ValueError(f"--calib {calib} is {kind}: int8 calibrates on a folder of image files (its subfolders "
                         "too); write some of its frames, like the robot's, as images into a folder and give that")


def _check_size(height: int, width: int, dynamic: bool) -> None:
    from dgdehaze_core.inference.export.to_onnx import MAX_DYNAMIC_SIDE

    if height < 1 or width < 1:
        raise ValueError("--height and --width must be positive")
    if dynamic and max(height, width) > MAX_DYNAMIC_SIDE:
        raise ValueError(f"a dynamic export takes frames of up to {MAX_DYNAMIC_SIDE} pixels a side, got "
                         f"{width}x{height}: give a fixed size (no --dynamic) or a working size within it")
    if height * width > MAX_PIXELS:
        raise ValueError(f"--height {height} --width {width} exceeds the limit of {MAX_PIXELS} pixels")


def run(args: argparse.Namespace) -> int:
    """Check the arguments, export, and print the path written: the one line on standard output (what ONNX
    Runtime's calibration and Ultralytics' exporter print, temporary paths among it, goes to standard error), so
    that `ONNX=$(dgdehaze export ...)` holds the file."""
    _check(args)
    with json_on_stdout(STDOUT):
        out = _export_detector(args) if args.detector is not None else _export_network(args)
        print(out, file=json_stream())
    return 0


def _export_network(args: argparse.Namespace) -> Path:
    """Export the --config network as --format says; the path written."""
    from dgdehaze_core.inference.backends import DECODER_OUTPUTS, OUTPUT_NAMES, PHYSICS_OUTPUTS, round_up_to_stride
    from dgdehaze_core.inference.backends.engine_cache import EngineCache
    from dgdehaze_core.inference.export.to_onnx import export_onnx

    model, source = _model(args)
    stride = model.stride
    size = None
    dynamic = args.dynamic or args.height is None
    if args.height is not None:
        size = (round_up_to_stride(args.height, stride), round_up_to_stride(args.width, stride))
        if size != (args.height, args.width) and dynamic:  # the size traced, or an engine's optimum: frames are free
            LOG.info("%dx%d is not a multiple of the stride %d; %s %dx%d", args.height, args.width, stride,
                     "the engine is optimised for" if args.format == "engine" else "tracing at", size[0], size[1])
        elif size != (args.height, args.width):
            LOG.warning("%dx%d is not a multiple of the stride %d; using %dx%d (frames resized to %dx%d are "
                        "padded to it; give that working size, or frames are resized to %dx%d)", args.height,
                        args.width, stride, size[0], size[1], args.width, args.height, size[1], size[0])
    own_outputs = getattr(model, "outputs", OUTPUT_NAMES)
    if args.physics_only and own_outputs == DECODER_OUTPUTS:
        raise ValueError(f"--physics-only: the {model.config_name} network gives no transmission or airlight")
    outputs = PHYSICS_OUTPUTS if args.physics_only else own_outputs
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
    shape = "dynamic" if dynamic else f"{size[0]}x{size[1]}"  # type: ignore[index]
    variant = "_physics" if args.physics_only else ""
    fresh = "_untrained" if args.untrained else ""  # never the default name of a trained export (a speed test's)
    out = args.out or Path("exports") / f"dgdehaze_{args.config}{fresh}_{shape}_{precision}{variant}.{args.format}"
    _say_replaced(out)
    if args.format == "onnx" and args.int8:
        from dgdehaze_core.inference.export.quantize import quantize_onnx

        with tempfile.TemporaryDirectory(prefix="dgdehaze-export-") as folder:
            float_onnx = export_onnx(model, Path(folder) / "float.onnx", dynamic=dynamic, example_size=size,
                                     outputs=outputs, source=source, exporter=args.exporter)
            quantize_onnx(float_onnx, args.calib, out, bits=args.input_bits)
        return out
    if args.format == "onnx":
        export_onnx(model, out, dynamic=dynamic, half=args.fp16, example_size=size, outputs=outputs,
                    source=source, exporter=args.exporter)
        return out

    from dgdehaze_core.inference.backends.tensorrt_backend import (ShapeProfile, build_engine,
                                                                   calibration_table_of, engine_key, import_tensorrt)

    import_tensorrt()
    height, width = size or (480, 640)
    profile = ShapeProfile.for_camera(height, width, stride)
    if not dynamic:
        profile = ShapeProfile(profile.opt, profile.opt, profile.opt)
    with tempfile.TemporaryDirectory(prefix="dgdehaze-export-") as folder:
        onnx_path = export_onnx(model, Path(folder) / f"dgdehaze_{args.config}.onnx", dynamic=True, outputs=outputs,
                                source=source, exporter=args.exporter)
        key = engine_key(onnx_path, stride, profile, precision, torch.device("cuda:0"), args.calib, args.input_bits)
        table = calibration_table_of(out)
        EngineCache(out.parent, keep_days=0).build(
            key, out, lambda tmp: build_engine(onnx_path, tmp, profile, precision, args.calib, table, args.input_bits),
            source)
    return out


def _export_detector(args: argparse.Namespace) -> Path:
    from dgdehaze_core.detection.export import export_detector
    from dgdehaze_core.detection.rebuild import dynamic_detector_exports, float_detector_pt

    weights = args.detector
    if file_suffix(weights) == ".onnx":  # a quantised Ultralytics ONNX such as the shipped yolov8n_int8.onnx
        if args.int8 and args.format == "onnx":
            built = dynamic_detector_exports(weights)["int8"]
            return _copy_out(built, args.out or Path("exports") / f"{weights.stem}_dynamic.onnx")
        weights = float_detector_pt(weights)  # in the engine cache, as what is built from it
    built = export_detector(weights, args.format, imgsz=args.imgsz or DETECTOR_IMGSZ, half=args.fp16,
                            int8=args.int8, dynamic=args.dynamic, data=str(args.calib) if args.calib else None)
    return _copy_out(built, args.out or Path("exports") / built.name)


def _say_replaced(out: Path) -> None:
    """A warning when `out` exists, naming the weights it holds where it is a dgdehaze export: an export replaced
    the file there without a word, though the default name is the same for every weights file of one
    configuration, size and precision (a training run's last.pt replaced the shipped weights' export)."""
    from dgdehaze_core.inference.provenance import weights_line, weights_record

    if not out.is_file():
        return
    held = ""
    with contextlib.suppress(ValueError, OSError):  # another kind of file, or an engine without its sidecar
        record = weights_record(out)
        if record.get("onnx_config") != "unknown":  # a foreign ONNX file (a detector) records no network
            held = f", which holds {weights_line(record)}"
    LOG.warning("replacing %s%s", out, held)


def _copy_out(built: Path, out: Path) -> Path:
    from dgdehaze_core.io.atomic_files import atomic_path

    _say_replaced(out)
    with atomic_path(out) as tmp:
        tmp.write_bytes(built.read_bytes())
    return out
