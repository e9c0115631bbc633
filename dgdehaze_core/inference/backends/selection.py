"""Which runtime runs the network here: `backend: auto` picks the fastest one available and says why.

Order of preference, fastest first (docs/DEPLOYMENT.md):
1. `tensorrt` on a CUDA device, when TensorRT 10 imports and CUDA works;
2. `onnxruntime` with its TensorRT or CUDA execution provider, when the installed onnxruntime has one;
3. `torch` on CUDA;
4. on CPU, `onnxruntime`: it fuses the convolutions, norms and attention the eager model runs op by op, and
   runs the networks faster than torch eager (docs/BENCHMARKS.md); `torch` when onnxruntime is not installed.

An explicit request ("tensorrt", "onnxruntime", "torch") is honoured or refused with `BackendUnavailable`, never
silently replaced. An exported .onnx file runs on TensorRT or ONNX Runtime only: with no torch to fall back to,
`auto` takes ONNX Runtime for it as an explicit request does (on the CPU where it has no GPU provider, refused
where the device asked for is a GPU), and refuses it where onnxruntime is not installed.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch

from dgdehaze_core.devices import DeviceUnavailable, parse_device, resolve_device
from dgdehaze_core.inference.backends import (BACKENDS, OUTPUT_NAMES, RUNTIMES, BackendUnavailable,
                                              InferenceBackend, NetworkSource, check_outputs)
from dgdehaze_core.inference.backends.engine_cache import (CacheKey, EngineCache, default_cache_dir,
                                                         default_keep_days, mark_folder_used,
                                                         remove_unused_folders)
from dgdehaze_core.io.onnx_files import checked_dgdehaze_export

if TYPE_CHECKING:
    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile
    from dgdehaze_core.models import DGDehazeNet

LOG = logging.getLogger(__name__)

ORT_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class BackendChoice:
    """A runtime, the device it runs on, ONNX Runtime providers in priority order, and why it was chosen."""

    name: str
    device: str
    providers: tuple[str, ...]
    reason: str


def tensorrt_unavailable_reason() -> str | None:
    """None when the TensorRT backend can run here, else why not."""
    from dgdehaze_core.inference.backends.tensorrt_backend import import_tensorrt

    try:
        import_tensorrt()
    except BackendUnavailable as exc:
        return str(exc)
    return None


def onnxruntime_providers() -> tuple[str, ...] | None:
    """The execution providers of the installed onnxruntime, or None when it does not import."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return tuple(onnxruntime.get_available_providers())


def _wants_cuda(device: str) -> bool:
    return resolve_device(device).type == "cuda"


def _cuda_device(device: str) -> str:
    """The CUDA device a runtime is handed for `device`: "cuda:0" for "auto", "cuda:N" for the short form "N" (which
    torch.device, and so the TensorRT backend, refuses), any other name as given."""
    return "cuda:0" if device == "auto" else str(parse_device(device))


def choose_backend(requested: str = "auto", device: str = "auto", log: bool = True,
                   runtimes: tuple[str, ...] = RUNTIMES) -> BackendChoice:
    """Resolve `requested` (one of BACKENDS) on `device` ("auto", "cpu", "cuda", "cuda:N") to a BackendChoice among
    `runtimes`, those the network runs on (an exported file's `NetworkSource.runtimes`: an .onnx file has no torch
    to fall back to, so `auto` takes ONNX Runtime as an explicit request would, or refuses); `log` says which and
    why (off for a mere check, e.g. of a parameter value)."""
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; known: {', '.join(BACKENDS)}")
    try:
        resolve_device(device)
    except DeviceUnavailable as exc:
        raise BackendUnavailable(str(exc)) from None
    choice = _choose(requested, device, runtimes)
    if log:
        LOG.info("backend %s on %s -> %s (%s): %s", requested, device, choice.name, choice.device, choice.reason)
    return choice


def choose_source_backend(source: NetworkSource, requested: str = "auto", device: str = "auto",
                          log: bool = True) -> BackendChoice:
    """The BackendChoice `source` opens with (`create_backend`): `requested` checked against the runtimes it runs on
    (`NetworkSource.check_backend`: ValueError), then a TensorRT engine on TensorRT whatever `requested` (`auto`
    too), anything else `choose_backend` among its runtimes; BackendUnavailable when that cannot run on `device`.
    A parameter check (the node's) calls it with `log` off, so that what it accepts is what a load opens."""
    source.check_backend(requested)
    if source.suffix == ".engine":
        return choose_backend("tensorrt", device, log=log)
    return choose_backend(requested, device, log=log, runtimes=source.runtimes)


def _choose(requested: str, device: str, runtimes: tuple[str, ...]) -> BackendChoice:
    cuda = _wants_cuda(device)
    providers = onnxruntime_providers()
    gpu_providers = tuple(p for p in ORT_GPU_PROVIDERS if providers and p in providers)
    skipped: list[str] = []

    if requested in ("auto", "tensorrt") and "tensorrt" in runtimes:
        reason = "the device is the CPU" if device == "cpu" else tensorrt_unavailable_reason()
        if reason is None:
            return BackendChoice("tensorrt", _cuda_device(device), (), "TensorRT engine on CUDA, the fastest runtime")
        if requested == "tensorrt":
            raise BackendUnavailable(f"tensorrt backend unavailable: {reason}")
        skipped.append(f"tensorrt skipped ({reason})")

    if requested in ("auto", "onnxruntime") and "onnxruntime" in runtimes:
        last = requested == "onnxruntime" or "torch" not in runtimes  # nothing to fall back to after it
        if providers is None:
            if last:
                raise BackendUnavailable(_refusal("onnxruntime backend unavailable: onnxruntime is not installed",
                                                  skipped))
            skipped.append("onnxruntime skipped (not installed)")
        elif cuda and gpu_providers:
            return BackendChoice("onnxruntime", _cuda_device(device), (*gpu_providers, "CPUExecutionProvider"),
                                 "; ".join([*skipped, f"ONNX Runtime with {', '.join(gpu_providers)}"]))
        elif cuda and last:
            if device != "auto":
                raise BackendUnavailable(_refusal(
                    f"onnxruntime on {device} needs the CUDA or TensorRT execution provider; this onnxruntime has "
                    f"{', '.join(providers)} (pip install onnxruntime-gpu)", skipped))
            return BackendChoice("onnxruntime", "cpu", ("CPUExecutionProvider",), "; ".join(
                [*skipped, f"no GPU execution provider in this onnxruntime ({', '.join(providers)}); on the CPU"]))
        elif cuda:
            skipped.append("onnxruntime skipped (no CUDA or TensorRT execution provider, and torch on CUDA beats "
                           "ONNX Runtime on the CPU)")
        else:
            return BackendChoice("onnxruntime", "cpu", ("CPUExecutionProvider",), "; ".join(
                [*skipped, "ONNX Runtime on the CPU runs the fused graph faster than torch eager "
                           "(docs/BENCHMARKS.md)"]))

    if cuda:
        return BackendChoice("torch", _cuda_device(device), (), "; ".join([*skipped, "torch eager on CUDA"]))
    return BackendChoice("torch", "cpu", (), "; ".join([*skipped, "torch eager on CPU"]))


def _refusal(reason: str, skipped: list[str]) -> str:
    """`reason` the onnxruntime backend, the last one left to try, cannot run, with what was `skipped` before it."""
    return reason + (f" ({'; '.join(skipped)})" if skipped else "")


def state_digest(module: torch.nn.Module, prefix: bytes = b"") -> str:
    """SHA-256 over `prefix` and a module's weights and buffers, by name."""
    digest = hashlib.sha256(prefix)
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def model_digest(model: "DGDehazeNet") -> str:
    """SHA-256 over a model's configuration and weights: the cache key of its exports."""
    return state_digest(model, f"{model.config_name}|{model.depth_guidance}".encode())


def cached_onnx(model: "DGDehazeNet", half: bool = False, cache_dir: str | os.PathLike[str] | None = None,
                outputs: tuple[str, ...] = OUTPUT_NAMES, weights: Mapping[str, Any] | None = None) -> Path:
    """The model exported to ONNX (dynamic batch, height and width) with `outputs`, from the cache when these
    exact weights were exported before by this torch version and this package's network and export code
    (`export_code_digest`).
    `weights`: the record of the checkpoint the model was read from (`models.load_model_and_record`), recorded in
    the export as `dgdehaze export` does and so in an engine built from it; an export of it is cached apart from
    one of the same weights without it (a model trained in memory)."""
    from dgdehaze_core.inference.export.graph_rewrites import GRAPH_REWRITES_VERSION
    from dgdehaze_core.inference.export import default_exporter
    from dgdehaze_core.inference.export.to_onnx import DEFAULT_OPSET, export_code_digest, export_onnx

    outputs = check_outputs(outputs)
    source = None if weights is None else dict(weights)
    exporter = default_exporter()
    runtime = (f"torch-{torch.__version__}-{exporter}-opset{DEFAULT_OPSET}-rewrites{GRAPH_REWRITES_VERSION}"
               f"-code{export_code_digest()}")
    extra = {"outputs": ",".join(outputs)}
    if source is not None:
        extra["exported_from"] = f"{source['path']} {source['sha256']}"
    key = CacheKey(model_sha256=model_digest(model), runtime=runtime, device="any", shapes="dynamic",
                   precision="fp16" if half else "fp32", extra=extra)
    cache: EngineCache[Path] = EngineCache(cache_dir or default_cache_dir())
    stem = f"dgdehaze-{model.config_name}-{key.model_sha256[:12]}" + ("" if "clear" in outputs else "-physics")
    if source is not None:  # its own file: runs of the bare weights, or of a copy named otherwise, rebuild none
        stem += "-from-" + hashlib.sha256(extra["exported_from"].encode()).hexdigest()[:12]
    path, _ = cache.get_or_build(
        key, stem, ".onnx", lambda tmp: export_onnx(model, tmp, half=half, outputs=outputs, source=source,
                                                         exporter=exporter),
        _check_onnx)
    return path


def _check_onnx(path: Path) -> Path:
    import onnx

    onnx.checker.check_model(str(path))
    return path


ORT_TENSORRT_CACHE = "onnxruntime-trt"
"""The engine cache's folder for the engines ONNX Runtime's TensorRT provider builds, one folder per ONNX file and
runtime (`ort_tensorrt_runtime`)."""


def ort_tensorrt_runtime() -> str:
    """The versions the engines of ONNX Runtime's TensorRT provider are built for: ONNX Runtime's, and TensorRT's
    where its Python package imports ("unknown" elsewhere). The provider names its engine files by the model's graph
    and the GPU's compute capability alone, and an engine of another TensorRT fails to load: the session then runs on
    the CUDA provider without TensorRT at every start (ONNX Runtime's documentation: clean the engine cache when
    ONNX Runtime or TensorRT changes)."""
    import onnxruntime

    try:
        import tensorrt
    except ImportError:
        return f"onnxruntime-{onnxruntime.__version__} tensorrt-unknown"
    return f"onnxruntime-{onnxruntime.__version__} tensorrt-{tensorrt.__version__}"


def camera_profile(onnx_file: Path, camera_size: tuple[int, int]) -> ShapeProfile:
    """The shape profile an engine of the dgdehaze export `onnx_file` is built with for a camera of `camera_size`
    (width, height): `ShapeProfile.for_camera`, held where the file fixes an axis."""
    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile, onnx_input_dims

    width, height = camera_size
    stride = checked_dgdehaze_export(onnx_file).stride
    return ShapeProfile.for_camera(height, width, stride).fitted(onnx_input_dims(onnx_file))


def ort_tensorrt_options(onnx_file: Path, half: bool, cache_dir: str | os.PathLike[str] | None,
                         profile: ShapeProfile | None = None, *, gpu: str) -> dict[str, object]:
    """ONNX Runtime's TensorRT provider options for `onnx_file`: fp16 with `half`, int8 when the file is quantised, the
    shape `profile` where given (without one the provider builds for the first frame's size and builds again,
    for minutes, whenever a larger frame comes), and its engines cached in a folder of that file's own, named by
    a hash of its sha256, of the runtime (`ort_tensorrt_runtime`) and of the `gpu` they run on
    (`tensorrt_backend.gpu_name`), below the engine cache (`cache_dir`). The provider names an engine by the
    model's path and graph, not its weights: in one folder for every file, an export written again with new weights
    under the same name would run the engine built from the old ones; in one folder for every version of ONNX
    Runtime and TensorRT, an upgrade would find the engines of the old one; and it tells GPUs apart by their
    compute capability alone, which GPUs of other models and memory sizes share (an engine of one may not load on
    the other, ONNX Runtime's TensorRT provider says in its source), as a cache folder shared by two machines does.
    The folder is marked used, and the other folders unused for $DGDEHAZE_ENGINE_CACHE_DAYS are removed
    (`engine_cache.remove_unused_folders`): every re-export and upgrade would otherwise leave its engines
    behind. ValueError for a bad $DGDEHAZE_ENGINE_CACHE_DAYS, as the engine cache itself."""
    from dgdehaze_core.inference.backends.tensorrt_backend import onnx_is_quantized
    from dgdehaze_core.io.file_digest import file_sha256

    keep_days = default_keep_days()
    folders = Path(cache_dir or default_cache_dir()).expanduser() / ORT_TENSORRT_CACHE
    built_for = f"{file_sha256(onnx_file)}\n{ort_tensorrt_runtime()}\n{gpu}"
    folder = folders / hashlib.sha256(built_for.encode()).hexdigest()[:16]
    mark_folder_used(folder)
    remove_unused_folders(folders, keep_days, keep=folder)
    options: dict[str, object] = {"trt_fp16_enable": half, "trt_int8_enable": onnx_is_quantized(onnx_file),
                                  "trt_engine_cache_enable": True, "trt_engine_cache_path": str(folder)}
    if profile is not None:
        options.update(zip(("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"),
                           profile.shapes()))
    return options


def ort_providers(names: tuple[str, ...], device: str, tensorrt: Mapping[str, object] | None = None
                  ) -> list[str | tuple[str, dict[str, object]]]:
    """ONNX Runtime's providers `names` (a BackendChoice's) as a session on `device` ("cpu", "cuda", "cuda:N") takes
    them: each GPU provider with the device_id of `device` ("cuda": 0), the TensorRT one with the options `tensorrt`
    as well, the CPU one by its name. Without device_id both ran on GPU 0 whatever the device: ONNX Runtime's
    TensorRT provider takes 0 for the options it is not given, its CUDA provider given no options the process's
    default device, 0."""
    device_id = parse_device(device).index or 0
    extra = {"TensorrtExecutionProvider": dict(tensorrt or {})}
    return [(name, {"device_id": device_id, **extra.get(name, {})}) if name in ORT_GPU_PROVIDERS else name
            for name in names]


def _warn_when_the_file_decides_precision(onnx_file: Path, file_half: bool, half: bool, choice: BackendChoice) -> None:
    """Warn where an exported file (fp16 input: `file_half`) runs at another precision than `half` asks: an fp16
    export runs in fp16 on every runtime (TensorRT builds it strongly typed), and ONNX Runtime without its TensorRT
    provider runs an fp32 export in fp32 (only TensorRT lowers an fp32 file's precision when it builds)."""
    lowered_by_tensorrt = choice.name == "tensorrt" or "TensorrtExecutionProvider" in choice.providers
    if file_half and not half:
        LOG.warning("%s is an fp16 export: it runs in fp16 whatever half says (%s); export it without --fp16 for "
                    "fp32", onnx_file, "fp32 was asked" if choice.device != "cpu" else "on the CPU fp16 is slower")
    elif half and not file_half and not lowered_by_tensorrt:
        LOG.warning("%s is an fp32 export: ONNX Runtime's %s runs it in fp32 whatever half says; export it with "
                    "`dgdehaze export --fp16` for fp16", onnx_file, ", ".join(choice.providers))


def create_backend(source: NetworkSource | DGDehazeNet | str | os.PathLike[str], backend: str = "auto",
                   device: str = "auto", half: bool = False, threads: int | None = None,
                   camera_size: tuple[int, int] = (640, 480), cache_dir: str | os.PathLike[str] | None = None,
                   outputs: tuple[str, ...] = OUTPUT_NAMES) -> InferenceBackend:
    """Open `source` (an in-memory network, an exported .onnx file or a prebuilt TensorRT .engine, see
    `NetworkSource`) on the chosen backend; ValueError when the source does not run on `backend`.

    half: fp16 (torch CUDA, TensorRT, ONNX Runtime GPU providers; ignored on the CPU, where it is slower).
    camera_size: (width, height) the TensorRT profile is optimised for. Exports and engines are cached in
    `cache_dir` (default: $DGDEHAZE_ENGINE_CACHE or ~/.cache/dgdehaze/engines).
    outputs: what an in-memory network is run or exported with (PHYSICS_OUTPUTS drops the decoder's image); an
    .onnx file keeps the outputs it was exported with.
    """
    source = NetworkSource.of(source)
    choice = choose_source_backend(source, backend, device)
    if source.suffix == ".engine":
        from dgdehaze_core.inference.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend.from_engine(source.file, device=choice.device)
    if half and choice.device == "cpu":
        LOG.info("half precision is ignored on the CPU (fp16 runs slower there than fp32)")
        half = False
    if choice.name == "torch":
        from dgdehaze_core.inference.backends.torch_backend import TorchBackend

        return TorchBackend(source.network, device=choice.device, half=half, outputs=outputs)
    onnx_file = source.file or cached_onnx(source.network, half=half and choice.name == "onnxruntime",
                                           cache_dir=cache_dir, outputs=outputs, weights=source.weights)
    if choice.name == "onnxruntime":
        from dgdehaze_core.inference.backends.onnxruntime_backend import OnnxRuntimeBackend

        trt_options = None
        if "TensorrtExecutionProvider" in choice.providers:  # only then is the file read for its int8 scales and hash
            from dgdehaze_core.inference.backends.tensorrt_backend import gpu_name

            trt_options = ort_tensorrt_options(onnx_file, half, cache_dir, camera_profile(onnx_file, camera_size),
                                               gpu=gpu_name(torch.device(choice.device)))
        runtime = OnnxRuntimeBackend(onnx_file, threads=threads,
                                     providers=ort_providers(choice.providers, choice.device, trt_options))
        if source.file is not None:
            _warn_when_the_file_decides_precision(onnx_file, runtime.input_dtype == np.float16, half, choice)
        return runtime
    from dgdehaze_core.inference.backends.tensorrt_backend import TensorRTBackend

    if source.file is not None:
        _warn_when_the_file_decides_precision(onnx_file, checked_dgdehaze_export(onnx_file).half, half, choice)
    return TensorRTBackend(onnx_file, camera_profile(onnx_file, camera_size), precision="fp16" if half else "fp32",
                           cache_dir=cache_dir, device=choice.device)
