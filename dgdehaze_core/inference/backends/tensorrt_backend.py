"""TensorRT backend: an exported dgdehaze ONNX file built into a TensorRT 10 engine and run on CUDA.

The engine is built with TensorRT's own Python API (no trtexec, no polygraphy): the ONNX parser fills a network,
one optimisation profile covers the input sizes a camera may deliver, and fp16 (or int8 with entropy calibration
on a folder of images) is enabled in the builder configuration. Engines are cached by `EngineCache`, keyed by GPU,
TensorRT version, ONNX hash, shape profile and precision, and rebuilt when any of them changes.

A prebuilt engine (`dgdehaze export --format engine`, or one copied from a cache) is loaded as it is by
`TensorRTBackend.from_engine`: its sidecar says the profile, precision and stride it was built with, and an engine
built by another TensorRT version or on another GPU is refused with the command that rebuilds it.

Inference binds torch CUDA tensors as the engine's buffers (`set_tensor_address`) and runs `execute_async_v3` on
torch's current stream, so no pycuda or cuda-python is needed.

`tensorrt` is imported inside the functions: this module imports everywhere and raises `BackendUnavailable` with
the reason where TensorRT or CUDA is missing. Not run on the development machine (no GPU): see docs/DEPLOYMENT.md.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from dgdehaze_core.inference.backends import BackendUnavailable, outputs_of, round_up_to_stride
from dgdehaze_core.inference.backends.engine_cache import (CacheKey, EngineCache, default_cache_dir, mark_used,
                                                           read_trusted, read_trusted_for)
from dgdehaze_core.inference.provenance import exported_from
from dgdehaze_core.io.atomic_files import atomic_write_bytes, atomic_write_text
from dgdehaze_core.io.file_digest import file_sha256, files_sha256
from dgdehaze_core.io.file_paths import existing_file
from dgdehaze_core.io.images import SAMPLE_BITS, ImageReader, ReadImage, bgr_to_rgb_float, images_under
from dgdehaze_core.io.onnx_files import check_weights_digest, checked_dgdehaze_export, input_is_half, read_onnx

LOG = logging.getLogger(__name__)

INPUT_NAME = "hazy"
PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_BYTES = 2 << 30
"""Builder scratch memory limit (2 GiB): enough for these networks, small enough for an 8 GB Jetson."""


@dataclass(frozen=True)
class ShapeProfile:
    """The TensorRT optimisation profile of the input: smallest, typical and largest (B, 3, H, W)."""

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def __post_init__(self) -> None:
        for low, mid, high in zip(self.min, self.opt, self.max):
            if not 1 <= low <= mid <= high:
                raise ValueError(f"shape profile must satisfy 1 <= min <= opt <= max per axis, got {self}")

    @classmethod
    def for_camera(cls, height: int, width: int, stride: int, max_batch: int = 1) -> ShapeProfile:
        """Optimised for (height, width) rounded up to the stride; any size from one stride (what the pipeline
        pads the smallest frame to) up to 1.5x (at least 1920x1088) is accepted, so a resized stream or a
        working-size change keeps the engine."""
        opt_h, opt_w = round_up_to_stride(height, stride), round_up_to_stride(width, stride)
        max_h = round_up_to_stride(max(int(opt_h * 1.5), 1088), stride)
        max_w = round_up_to_stride(max(int(opt_w * 1.5), 1920), stride)
        return cls((1, 3, stride, stride), (1, 3, opt_h, opt_w), (max_batch, 3, max_h, max_w))

    def _dims(self) -> tuple[str, str, str]:
        """The min, opt and max shapes as "1x3x32x32"."""
        return tuple("x".join(str(v) for v in shape)  # type: ignore[return-value]
                     for shape in (self.min, self.opt, self.max))

    def shapes(self) -> tuple[str, str, str]:
        """The min, opt and max shapes as "hazy:1x3x32x32" (the form of ONNX Runtime's trt_profile_*_shapes)."""
        return tuple(f"{INPUT_NAME}:{dims}" for dims in self._dims())  # type: ignore[return-value]

    def describe(self) -> str:
        return f"{INPUT_NAME}:{'/'.join(self._dims())}"

    @classmethod
    def parse(cls, text: str) -> ShapeProfile:
        """The inverse of `describe`: "hazy:1x3x32x32/1x3x480x640/1x3x1088x1920" -> ShapeProfile."""
        name, _, shapes = text.partition(":")
        parts = shapes.split("/")
        try:
            dims = [tuple(int(v) for v in part.split("x")) for part in parts]
        except ValueError:
            dims = []
        if name != INPUT_NAME or len(dims) != 3 or any(len(d) != 4 for d in dims):
            raise ValueError(f"not a shape profile: {text!r} (expected {INPUT_NAME}:BxCxHxW/BxCxHxW/BxCxHxW)")
        return cls(*dims)  # type: ignore[arg-type]

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(lo <= v <= hi for lo, v, hi in zip(self.min, shape, self.max))

    def fitted(self, dims: Sequence[int | None]) -> ShapeProfile:
        """This profile with the axes that the network fixes (`dims`: an int where fixed, None where free) held at
        their size: TensorRT lets a profile range only over a network's free axes, so an ONNX file exported at a
        fixed size builds for that size alone."""
        def fit(shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
            return tuple(d if d else v for v, d in zip(shape, dims))  # type: ignore[return-value]
        return ShapeProfile(fit(self.min), fit(self.opt), fit(self.max))


JETSON_TENSORRT = "with JetPack 6.1 or later on a Jetson (TensorRT 10.3; JetPack 5 and 6.0 have 8.x)"
"""Where a Jetson gets TensorRT 10: from JetPack, not pip (NVIDIA's wheels for JetPack need Ubuntu 24.04; JetPack 5
and 6 are Ubuntu 20.04 and 22.04)."""


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module, or BackendUnavailable saying why it cannot be used here: not installed, not version
    10 (the version says how to get 10, on a Jetson and on x86), or no CUDA."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"TensorRT is not installed ({exc}); it comes {JETSON_TENSORRT}, on x86 "
                                 f"`pip install 'tensorrt>=10,<11'`") from None
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailable(f"TensorRT {trt.__version__} found; dgdehaze's engine builder is written for "
                                 "TensorRT 10 (strongly typed networks, explicit batch without a flag): it comes "
                                 f"{JETSON_TENSORRT}, on x86 `pip install 'tensorrt>=10,<11'`; or use the "
                                 "onnxruntime backend")
    if major > 10:
        raise BackendUnavailable(f"TensorRT {trt.__version__} found; dgdehaze's engine builder is written for "
                                 "TensorRT 10 (11 removed the FP16/INT8 builder flags and the int8 calibrator it "
                                 "uses): install TensorRT 10 (pip install 'tensorrt>=10,<11'), or use the "
                                 "onnxruntime backend")
    if not torch.cuda.is_available():
        raise BackendUnavailable("TensorRT is installed but CUDA is not available to torch")
    return trt


def gpu_name(device: torch.device) -> str:
    """GPU model and compute capability: engines are specific to both."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return f"{torch.cuda.get_device_name(index)} sm{major}{minor}"


def _calibration_images(calib_dir: Path) -> list[Path]:
    images = images_under(calib_dir)
    if not images:
        raise ValueError(f"no images to calibrate int8 with in {calib_dir}")
    return images


@dataclass(frozen=True)
class CalibrationTable:
    """An int8 calibration table kept for reuse (`path`, as TensorRT writes it) with what it was measured on
    (`key`, from `calibration_key`) in a sidecar: a table of another network, other images or another input size
    is never read back, though an engine of the same name may be rebuilt from them."""

    path: Path
    key: str

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".key")

    def read(self) -> bytes | None:
        """The table, when one was written for this key; else None (TensorRT calibrates)."""
        if not (self.path.is_file() and self.sidecar.is_file()) or self.sidecar.read_text() != self.key:
            return None
        return self.path.read_bytes()

    def write(self, table: bytes) -> None:
        """Keep `table` for this key (the sidecar last: a table without its sidecar is never read)."""
        self.sidecar.unlink(missing_ok=True)
        atomic_write_bytes(self.path, table)
        atomic_write_text(self.sidecar, self.key)


def calibration_key(onnx_path: Path, images: list[Path], height: int, width: int, bits: int = SAMPLE_BITS) -> str:
    """What a calibration table depends on: the contents of the ONNX file and of the calibration images, the size
    they are fed at and the significant `bits` their 16-bit samples are read with (a table measured on a 12-bit
    camera's exports read with 16 bits saw nearly black images). The full 16 bits add nothing, so the keys of the
    tables made before bits were given stay valid."""
    header = f"{file_sha256(onnx_path)}\n{height}x{width}\n"
    if bits != SAMPLE_BITS:
        header += f"{bits} significant bits\n"
    return files_sha256(images, header)


def _make_calibrator(trt: ModuleType, images: list[Path], height: int, width: int, table: CalibrationTable,
                     read: ReadImage) -> Any:
    """An IInt8EntropyCalibrator2 that feeds `images`, read by `read` (an `ImageReader` of the calibration's
    bits) and resized to the profile's opt size, one at a time."""

    class FolderCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.pending = list(images)
            self.buffer = torch.empty((1, 3, height, width), dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            while self.pending:
                path = self.pending.pop(0)
                try:
                    frame = cv2.resize(read(path), (width, height), interpolation=cv2.INTER_AREA)
                except ValueError as exc:
                    LOG.warning("calibration skips %s: %s", path, exc)
                    continue
                rgb = bgr_to_rgb_float(frame).transpose(2, 0, 1)[None]
                self.buffer.copy_(torch.from_numpy(np.ascontiguousarray(rgb)))
                torch.cuda.synchronize()
                return [int(self.buffer.data_ptr())]
            return None

        def read_calibration_cache(self) -> bytes | None:
            return table.read()

        def write_calibration_cache(self, cache: Any) -> None:
            table.write(bytes(cache))

    return FolderCalibrator()


def onnx_is_quantized(onnx_path: str | os.PathLike[str]) -> bool:
    """Whether an ONNX file is explicitly quantised (`is_quantized`)."""
    return is_quantized(read_onnx(onnx_path))


def is_quantized(model: Any) -> bool:
    """Whether an `onnx.ModelProto` is explicitly quantised (QuantizeLinear nodes: a QDQ int8 export)."""
    return any(node.op_type == "QuantizeLinear" for node in model.graph.node)


def build_engine(onnx_path: str | os.PathLike[str], engine_path: str | os.PathLike[str], profile: ShapeProfile,
                 precision: str = "fp16", calib_dir: str | os.PathLike[str] | None = None,
                 calibration_table: str | os.PathLike[str] | None = None, calib_bits: int = SAMPLE_BITS) -> Path:
    """Parse `onnx_path`, build a serialized engine for `profile` at `precision`, write it to `engine_path`; a
    dgdehaze export damaged since it was written is refused first (`check_weights_digest`).

    An int8 build calibrated on `calib_dir` (16-bit images read with `calib_bits` significant bits, by an
    `ImageReader` that warns once when they look like a 12-bit camera's read with 16) keeps its calibration table
    in `calibration_table` (default: `engine_path` + ".calib"; give the final engine's when `engine_path` is a
    temporary name) and reuses it for the same network, images, size and bits (`CalibrationTable`).

    An fp16 ONNX file (exported with half=True) is built as a strongly typed network: its own types decide the
    precision and the FP16 builder flag is not allowed. An fp32 file is built weakly typed with the FP16 (and
    for int8 the INT8) flag, with normalisation layers held in fp32 where fp16 would overflow. A QDQ file
    (`dgdehaze export --format onnx --int8`) carries its own int8 scales: it gets the INT8 flag at any precision
    and no calibrator, and `precision` decides the float layers between its quantised ones.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    model = read_onnx(onnx_path)
    check_weights_digest(model, onnx_path)
    explicit = is_quantized(model)
    if precision == "int8" and calib_dir is None and not explicit:
        raise ValueError("int8 engines need calibration images (--calib DIR), or a QDQ ONNX file")
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = input_is_half(model)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(network.get_input(0).name, profile.min, profile.opt, profile.max)
    config.add_optimization_profile(optimisation)
    if not strongly_typed and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        for index in range(network.num_layers):
            layer = network.get_layer(index)
            if layer.type == trt.LayerType.NORMALIZATION:
                layer.precision = trt.float32
                layer.set_output_type(0, trt.float32)
    if not strongly_typed and (explicit or precision == "int8"):
        config.set_flag(trt.BuilderFlag.INT8)
    if not strongly_typed and precision == "int8" and not explicit:
        images = _calibration_images(Path(calib_dir))  # type: ignore[arg-type]
        height, width = profile.opt[2], profile.opt[3]
        table = CalibrationTable(Path(calibration_table) if calibration_table else calibration_table_of(engine_path),
                                 calibration_key(onnx_path, images, height, width, calib_bits))
        config.int8_calibrator = _make_calibrator(trt, images, height, width, table, ImageReader(calib_bits))
        config.set_calibration_profile(optimisation)
    LOG.info("building TensorRT %s engine from %s for %s (%s typed); this takes a while", precision,
             onnx_path.name, profile.describe(), "strongly" if strongly_typed else "weakly")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    engine_path.write_bytes(bytes(serialized))
    return engine_path


def calibration_table_of(engine_path: Path) -> Path:
    """Where an int8 engine's calibration table is kept: beside the engine, named after it."""
    return engine_path.with_name(engine_path.name + ".calib")


def engine_key(onnx_path: Path, stride: int, profile: ShapeProfile, precision: str, device: torch.device,
               calib_dir: Path | None = None, calib_bits: int = SAMPLE_BITS) -> CacheKey:
    """The cache key of an engine: GPU, TensorRT version, ONNX hash, profile, precision (and calibration set, with
    the bits its images are read with); the network's `stride` rides along so that the engine alone, with its
    sidecar, can be loaded later."""
    trt = import_tensorrt()
    extra = {"stride": str(stride)}
    if precision == "int8" and calib_dir is not None:  # the images' contents, as the calibration table's key
        extra["calibration"] = calibration_key(onnx_path, _calibration_images(calib_dir), *profile.opt[2:],
                                               calib_bits)
    return CacheKey(model_sha256=file_sha256(onnx_path), runtime=f"tensorrt-{trt.__version__}",
                    device=gpu_name(device), shapes=profile.describe(), precision=precision, extra=extra)


@dataclass(frozen=True)
class PrebuiltEngine:
    """What a prebuilt engine's sidecar says about it, and the engine's bytes that matched it."""

    profile: ShapeProfile
    precision: str
    stride: int
    record: dict[str, object]
    """The sidecar's record (`engine_cache.trusted_record`)."""
    data: bytes
    """The serialized engine, read once with its hash checked: what TensorRT deserializes."""


def prebuilt_engine(engine_path: Path, runtime: str, device_name: str) -> PrebuiltEngine:
    """Read and check the sidecar of a prebuilt dgdehaze engine for this TensorRT `runtime` ("tensorrt-10.3.0")
    and GPU `device_name`; ValueError saying what is wrong (no sidecar, bytes changed, another TensorRT or GPU)."""
    existing_file(engine_path, "engine file")
    record, data = read_trusted(engine_path)
    key: dict[str, object] = record["key"]  # type: ignore[assignment]
    rebuild = "rebuild it here with `dgdehaze export --format engine`, or give the .pt / .onnx weights"
    for field_name, here in (("runtime", runtime), ("device", device_name)):
        if key.get(field_name) != here:
            raise ValueError(f"{engine_path} was built for {field_name} {key.get(field_name)!r}, this machine has "
                             f"{here!r}: an engine runs only where it was built; {rebuild}")
    extra = key.get("extra")
    stride = extra.get("stride") if isinstance(extra, dict) else None
    if stride is None or not str(stride).isdigit():
        raise ValueError(f"{engine_path}: its sidecar records no network stride (not a dgdehaze engine, or one "
                         f"built before strides were recorded); {rebuild}")
    return PrebuiltEngine(ShapeProfile.parse(str(key.get("shapes"))), str(key.get("precision")), int(stride),
                          record, data)


class TensorRTBackend:
    """A dgdehaze network as a TensorRT engine, built from its ONNX file into the cache or loaded prebuilt
    (`from_engine`); `run` takes and returns host arrays like every backend."""

    name = "tensorrt"

    def __init__(self, onnx_path: str | os.PathLike[str], profile: ShapeProfile, precision: str = "fp16",
                 cache_dir: str | os.PathLike[str] | None = None, calib_dir: str | os.PathLike[str] | None = None,
                 device: str = "cuda:0", calib_bits: int = SAMPLE_BITS) -> None:
        trt = import_tensorrt()
        onnx_path = existing_file(onnx_path, "ONNX file")
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"the TensorRT backend runs on a CUDA device, got {device!r}")
        self.profile = profile
        self.engine_record: dict[str, object] | None = None
        """A prebuilt engine's sidecar record (`from_engine`); None for one built from an ONNX file."""
        export = checked_dgdehaze_export(onnx_path)
        self.stride = export.stride
        self.runtime = runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        calib = Path(calib_dir) if calib_dir is not None else None
        key = engine_key(onnx_path, self.stride, profile, precision, self.device, calib, calib_bits)
        cache: EngineCache[Any] = EngineCache(cache_dir or default_cache_dir())

        def load(path: Path) -> Any:
            engine = runtime.deserialize_cuda_engine(read_trusted_for(path, key))  # bytes whose key and hash match
            if engine is None:
                raise RuntimeError("deserialize_cuda_engine returned None")
            return engine

        name = f"{onnx_path.stem}-{key.model_sha256[:12]}"  # two exports of one name (two cameras' folders): two
        with torch.cuda.device(self.device):  # engines, not each rebuilding the other's at every start
            table = calibration_table_of(cache.path_for(key, name, ".engine"))
            engine, engine_path = cache.get_or_build(
                key, name, ".engine",
                lambda tmp: build_engine(onnx_path, tmp, profile, precision, calib, table, calib_bits), load,
                exported_from(export.metadata))
        self._bind(trt, engine, engine_path, precision)

    @classmethod
    def from_engine(cls, engine_path: str | os.PathLike[str], device: str = "cuda:0") -> TensorRTBackend:
        """A prebuilt engine with its sidecar, loaded as it is (no ONNX file, no build); refused with the reason
        when it was built by another TensorRT version or on another GPU."""
        trt = import_tensorrt()
        engine_path = Path(engine_path)
        self = cls.__new__(cls)
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise ValueError(f"the TensorRT backend runs on a CUDA device, got {device!r}")
        built = prebuilt_engine(engine_path, f"tensorrt-{trt.__version__}", gpu_name(self.device))
        self.profile, self.stride, self.engine_record = built.profile, built.stride, built.record
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with torch.cuda.device(self.device):
            engine = self.runtime.deserialize_cuda_engine(built.data)
        if engine is None:
            raise ValueError(f"TensorRT could not load {engine_path} (deserialize_cuda_engine returned None)")
        self._bind(trt, engine, engine_path, built.precision)
        mark_used(engine_path)  # a prebuilt engine in the cache folder stays while it is run
        return self

    def _bind(self, trt: ModuleType, engine: Any, engine_path: Path, precision: str) -> None:
        self.engine, self.engine_path = engine, engine_path
        fixed = self.profile.min[2:] == self.profile.max[2:]
        self.fixed_size = (self.profile.min[2], self.profile.min[3]) if fixed else None
        self.max_size = (self.profile.max[2], self.profile.max[3])
        self.max_batch = self.profile.max[0]
        with torch.cuda.device(self.device):
            self.context = self.engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)  # enqueueV3 on the legacy default stream syncs extra
        if self.context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {engine_path} (GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outputs = outputs_of(names, f"engine {self.engine_path}")
        self.dtypes = {n: _torch_dtype(trt, self.engine.get_tensor_dtype(n)) for n in names}
        LOG.info("tensorrt backend: %s (%s, %s) on %s", self.engine_path.name, precision, self.profile.describe(),
                 gpu_name(self.device))

    def __del__(self) -> None:
        """Release the context, then the engine, then the runtime: TensorRT 10 calls destroying a runtime before
        the engines it deserialized undefined behaviour, and plain attribute teardown would release the runtime
        (set first) first."""
        for name in ("context", "engine", "runtime", "stream"):
            self.__dict__.pop(name, None)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not self.profile.contains(batch.shape):
            raise ValueError(f"input {batch.shape} is outside the engine's profile {self.profile.describe()}; "
                             f"set a working size inside it (node: working_width/working_height)")
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            stream = self.stream
            hazy = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, self.dtypes[self.input_name])
            self.context.set_input_shape(self.input_name, tuple(hazy.shape))
            self.context.set_tensor_address(self.input_name, hazy.data_ptr())
            outputs: dict[str, torch.Tensor] = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
                self.context.set_tensor_address(name, outputs[name].data_ptr())
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            stream.synchronize()
            return {name: value.float().cpu().numpy() for name, value in outputs.items()}


def _torch_dtype(trt: ModuleType, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.int8: torch.int8, trt.bool: torch.bool}
    if dtype not in table:
        raise ValueError(f"unsupported engine tensor type {dtype}")
    return table[dtype]


def onnx_input_dims(onnx_path: str | os.PathLike[str]) -> tuple[int | None, ...]:
    """The ONNX file's input shape: each axis's size where the file fixes it, None where it is free."""
    dims = read_onnx(onnx_path).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims)
