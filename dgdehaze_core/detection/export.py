"""The detector on the same runtimes as the dehazer: Ultralytics exports of a `.pt`, cached like engines.

`export_detector(weights, "onnx" | "engine", imgsz=...)` runs Ultralytics' exporter on a checked copy of the
weights (`detection.checkpoint`) in a scratch folder and moves the result into the `EngineCache`, keyed by the
weights' hash, Ultralytics (and TensorRT) version, GPU, input size, precision and, for int8, the contents of the
calibration set (`calibration_set_key`), so a node restart reuses it and a changed `.pt`, TensorRT upgrade, new
`imgsz` or other calibration images rebuild it. `dgdehaze export --detector` calls it; the node
loads whatever file `detector_weights` names (Ultralytics picks the runtime by suffix).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

from dgdehaze_core.detection.checkpoint import UnsafeCheckpoint, named_as_given, verified_copy
from dgdehaze_core.detection.input_size import check_imgsz
from dgdehaze_core.detection.offline import offline_ultralytics
from dgdehaze_core.devices import parse_device
from dgdehaze_core.inference.backends.engine_cache import CacheKey, EngineCache, default_cache_dir
from dgdehaze_core.inference.export import TORCH_EXPORT_LOCK
from dgdehaze_core.io.file_digest import file_sha256, files_sha256
from dgdehaze_core.io.file_paths import existing_file, file_suffix

LOG = logging.getLogger(__name__)

DETECTOR_FORMATS = ("onnx", "engine")


def _export_into(weights: Path, fmt: str, target: Path, imgsz: int, half: bool, int8: bool, dynamic: bool,
                 data: str | None, device: str) -> None:
    YOLO = offline_ultralytics().YOLO
    with tempfile.TemporaryDirectory(prefix="dgdehaze-yolo-export-") as folder:
        try:
            copy = verified_copy(weights, Path(folder))
        except UnsafeCheckpoint as exc:
            raise RuntimeError(str(exc)) from None
        # `quantize` (8: int8, 16: fp16, None: fp32) replaced Ultralytics' half= and int8=, which it still maps
        # onto it but with a deprecation warning
        options: dict[str, object] = {"format": fmt, "imgsz": imgsz, "quantize": 8 if int8 else 16 if half else None,
                                      "dynamic": dynamic, "device": device, "verbose": False}
        if fmt == "onnx":
            options["simplify"] = False  # onnxslim would be installed at run time; ORT optimises the graph itself
        if int8 and data:
            options["data"] = data
        try:
            with TORCH_EXPORT_LOCK:
                produced = YOLO(str(copy), task="detect").export(**options)
        except Exception as exc:  # Ultralytics raises many types, naming the file it read: the private copy
            raise RuntimeError(f"Ultralytics could not export {weights} to {fmt}: "
                               f"{named_as_given(exc, copy, weights)}") from exc
        if not produced or not Path(produced).is_file():
            raise RuntimeError(f"Ultralytics produced no {fmt} file from {weights}")
        shutil.move(str(produced), target)


def calibration_set_key(data: str | os.PathLike[str]) -> str:
    """What an int8 detector engine is calibrated on: the contents of the dataset YAML `data` and of the images of
    its `val` split, found by Ultralytics' own code as its exporter finds them (`check_det_dataset` resolves `path`,
    else the YAML's folder, then `val` under it: a folder searched recursively, a text file listing images, or a
    list of these; `BaseDataset.get_img_files` lists them), so that editing the YAML or replacing an image behind
    the same path rebuilds the engine instead of returning one calibrated on the old images. ValueError naming
    `data` when it is no dataset YAML or its images are missing (nothing is downloaded)."""
    offline_ultralytics()
    from ultralytics.data.base import BaseDataset
    from ultralytics.data.utils import check_det_dataset

    try:
        dataset = check_det_dataset(str(data), autodownload=False, split="val")
        # get_img_files reads only these two attributes of its dataset; the exporter gives it all images (fraction 1)
        images = BaseDataset.get_img_files(SimpleNamespace(prefix="", fraction=1.0), dataset["val"])
    except Exception as exc:  # Ultralytics raises many types; the message is what the user needs
        raise ValueError(f"cannot calibrate int8 on {data}, an Ultralytics dataset YAML whose val images are read: "
                         f"{exc}") from None
    return files_sha256([dataset["yaml_file"], *images])


def ultralytics_device(device: str, fmt: str) -> str:
    """The device Ultralytics exports `fmt` on for `device` ("cpu", "cuda", "cuda:N" or the short form "N"), read
    by `parse_device` as everywhere else ("N" is "cuda:N"): as given, except that an engine, built on a GPU, is
    built on cuda:0 for "cpu". ValueError for another name."""
    parsed = parse_device(device)
    return "cuda:0" if fmt == "engine" and parsed.type == "cpu" else str(parsed)


def export_detector(weights: str | os.PathLike[str], fmt: str = "onnx", imgsz: int = 640, half: bool = False,
                    int8: bool = False, dynamic: bool = False, data: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None, device: str = "cpu") -> Path:
    """An Ultralytics `.pt` exported to `fmt` ("onnx" or "engine"), from the cache when it is up to date.

    int8 for "engine" calibrates on `data` (an Ultralytics dataset YAML); for "onnx" Ultralytics has no int8 path
    (use onnxruntime.quantization.quantize_dynamic on the exported file). `device` is where Ultralytics exports
    (`ultralytics_device`): "cpu", "cuda", "cuda:N" or "N"; an engine is built on cuda:0 for "cpu".
    """
    weights = Path(weights)
    if file_suffix(weights) != ".pt":
        raise ValueError(f"only a .pt detector can be exported, got {weights}")
    target = ultralytics_device(device, fmt)
    if half and fmt == "onnx" and not target.startswith("cuda"):
        raise ValueError("Ultralytics exports an fp16 ONNX detector only on a GPU: on the CPU it writes fp32 (an "
                         "fp16 detector: --format engine --fp16 on the GPU that runs it)")
    existing_file(weights, "detector weights")
    if fmt not in DETECTOR_FORMATS:
        raise ValueError(f"detector format must be one of {', '.join(DETECTOR_FORMATS)}, got {fmt!r}")
    check_imgsz(imgsz)
    if int8 and fmt == "onnx":
        raise ValueError("Ultralytics exports int8 only as a TensorRT engine; quantise an ONNX file with "
                         "onnxruntime.quantization.quantize_dynamic")
    runtime, gpu = f"ultralytics-{offline_ultralytics().__version__}", "any"
    if fmt == "engine":
        from dgdehaze_core.inference.backends.tensorrt_backend import gpu_name, import_tensorrt

        trt = import_tensorrt()
        runtime += f"-tensorrt-{trt.__version__}"
        gpu = gpu_name(torch.device(target))
    precision = "int8" if int8 else "fp16" if half else "fp32"
    # Ultralytics' dynamic engine takes sizes up to twice imgsz: another imgsz is another engine
    shapes = f"images:dynamic-imgsz{imgsz}" if dynamic else f"images:1x3x{imgsz}x{imgsz}"
    key = CacheKey(model_sha256=file_sha256(weights), runtime=runtime, device=gpu, shapes=shapes,
                   precision=precision, extra={"calibration": calibration_set_key(data)} if int8 and data else {})
    cache: EngineCache[Path] = EngineCache(cache_dir or default_cache_dir())
    path, _ = cache.get_or_build(
        key, f"{weights.stem}-{key.model_sha256[:12]}", f".{fmt}",  # two files of one name: an entry each
        lambda tmp: _export_into(weights, fmt, tmp, imgsz, half, int8, dynamic, data, target),
        lambda p: p)
    return path

