"""Benchmark rows for the dehazing networks and the node's per-frame chain, measured side by side in one run.

Rows are named `<what>/<runtime>@<width>x<height>` and carry the figures `dgdehaze bench` prints:
- every row: `latency_ms_median`, `latency_ms_p95`, `fps` (1000 / median) and `ratio_to_dcp` (this row's median
  over the dark channel prior's median at the same size, `dcp_ms_median`, timed again right before the row: a
  shared host's speed drifts over the minutes a run takes, so each ratio divides two times taken seconds apart;
  2.0 means twice as slow as DCP), and `cpu_ms_per_run` and `page_faults_per_run` (`timing.measure`: per frame,
  also in the chain's rows);
- network rows also `network_ms_median` (the runtime's `run` alone, without colour conversion, padding and
  cropping), `pipeline_ms_median` (the rest of each frame's time: input conversion, transmission refinement,
  inversion, output conversion; on a GPU runtime this is the CPU's share) and its `pipeline_ratio_to_dcp`,
  `gmacs` (MACs of one forward pass at the padded size, as the physics output path runs it: without the
  decoder's image branch), `gmac_per_s` (gmacs / network time) and
  `pct_of_peak` (gmac_per_s against `peak_gmac_per_s()`, a large matrix product measured in the same run on the
  row's own device before and after the network rows, the faster of the two: a shared host's slow phase lowers a
  single measurement of the peak, which would flatter every row; how much of what this CPU or GPU can do the
  network gets). CPU rows compare with the CPU's fp32 peak on the threads they run on (the row
  `cpu-peak/torch-matmul` with its `threads`; one row per count, `cpu-peak/torch-matmul-<N>threads`, where torch's
  default and ONNX Runtime's differ: `cpu_threads`; each CPU row's `threads` says its count), CUDA rows with the
  GPU's, fp32 or fp16 as they run
  (`cuda-peak/torch-matmul`, `cuda-peak/torch-matmul-fp16`). Rows of the torch
  backend also carry `dispatched_ops`: the tensor operations one frame sends to PyTorch, each a launch of its own
  on a GPU in eager mode.

`onnxruntime-int8` rows run the network as a statically quantised QDQ export (`dgdehaze export --format onnx
--int8`, calibrated on ../shared/data/hazy-real; skipped without it) on ONNX Runtime: its `gmacs` are the float
network's, so that `pct_of_peak` says how its time compares with the fp32 peak.

Network rows run the node's default image output (auto: the physics inversion; the decoder for the paper's
network, which has no other). A network runs with its shipped weights where the package has them, so that its
ONNX export is the one the node's pipeline caches, else freshly initialised with seed 0: latency does not depend
on the weights' values, and either export is cached across runs under the same key.
"""
from __future__ import annotations

import copy
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from dgdehaze_core.benchmarks.timing import count_dispatched, measure, smaller_than
from dgdehaze_core.cpu_threads import default_threads, threads_kept
from dgdehaze_core.datasets.paths import shared_data_dir
from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.inference.backends import INT8_RUNTIME, BackendUnavailable, InferenceBackend
from dgdehaze_core.inference.backends.selection import choose_backend
from dgdehaze_core.inference.frame_chain import FrameChain
from dgdehaze_core.inference.pipeline import NetworkPipeline, load_pipeline, pipeline_from_model
from dgdehaze_core.models import MODEL_CONFIGS, DGDehazeNet, build_model, load_model, shipped_weights_path
from dgdehaze_core.models.complexity import count_macs

LOG = logging.getLogger(__name__)

Row = dict[str, float]

PEAK_MATRIX = 2048
"""Side of the square matrices whose product measures the CPU's attainable MAC rate."""
PEAK_MATRIX_CUDA = 8192
"""The same on a GPU, which a smaller product leaves waiting on the launch."""
CPU_PEAK = "cpu-peak/torch-matmul"
CUDA_PEAK = "cuda-peak/torch-matmul"


@dataclass(frozen=True)
class RuntimeVariant:
    """One way to run a network: backend name, device and precision, and the row label it gets."""

    backend: str
    device: str
    half: bool
    int8: bool = False

    @property
    def label(self) -> str:
        """"torch", "onnxruntime", "torch-cuda-fp16", "tensorrt-fp16", "onnxruntime-int8", ...: runtime, GPU,
        precision."""
        cuda = "-cuda" if self.device.startswith("cuda") and self.backend != "tensorrt" else ""
        return f"{self.backend}{cuda}{'-fp16' if self.half else ''}{'-int8' if self.int8 else ''}"


@dataclass(frozen=True)
class BenchSettings:
    """What every measurement shares: timed runs per row, a time cap per row, and threads (None: default)."""

    repeats: int = 30
    max_seconds: float | None = 60.0
    threads: int | None = None

    def measure(self, step: Callable[[], object], warmup: int = 2) -> Row:
        return measure(step, warmup=warmup, repeats=self.repeats, max_seconds=self.max_seconds)


def available_variants(backends: Sequence[str], device: str = "auto") -> list[RuntimeVariant]:
    """The requested backends that can run here: each in fp32, and in fp16 where it runs on CUDA.

    A backend that cannot run (no TensorRT, no GPU provider) is skipped with a log line saying why; ValueError with
    the reasons when none of them can."""
    variants: list[RuntimeVariant] = []
    skipped: list[str] = []
    for name in dict.fromkeys(backends):  # a backend named twice is measured once
        runtime = "onnxruntime" if name == INT8_RUNTIME else name
        try:
            choice = choose_backend(runtime, device)
        except BackendUnavailable as exc:
            skipped.append(f"{name}: {exc}")
            LOG.info("bench skips %s", skipped[-1])
            continue
        if choice.name != runtime:
            skipped.append(f"{name}: it would run as {choice.name} here")
            LOG.info("bench skips %s", skipped[-1])
            continue
        if name == INT8_RUNTIME:
            variants.append(RuntimeVariant(runtime, choice.device, False, int8=True))
            continue
        variants.append(RuntimeVariant(name, choice.device, False))
        if choice.device.startswith("cuda"):
            variants.append(RuntimeVariant(name, choice.device, True))
        else:
            LOG.info("bench runs %s in fp32 only: fp16 is for CUDA devices", name)
    if not variants:
        raise ValueError(f"no requested backend runs on device {device!r} here ({'; '.join(skipped)})")
    return variants


def on_cpu(variant: RuntimeVariant | None) -> bool:
    """Whether `variant` (None: the CPU) runs on the CPU."""
    return variant is None or not variant.device.startswith("cuda")


def cpu_threads(variant: RuntimeVariant | None, settings: BenchSettings) -> int:
    """The CPU threads `variant`'s network runs on (None: torch's): --threads, else its runtime's default, torch's
    own thread count or ONNX Runtime's `default_threads()` (at most 4), which differ on more than 4 cores or under
    OMP_NUM_THREADS."""
    if settings.threads:
        return settings.threads
    return torch.get_num_threads() if variant is None or variant.backend == "torch" else default_threads()


def peak_names(variants: Sequence[RuntimeVariant], settings: BenchSettings) -> dict[str, str]:
    """The row of the peak that each variant's rows are compared with, by the variant's label: its GPU's in its
    precision, or the CPU's on the threads it runs on (`cpu_threads`), `cpu-peak/torch-matmul`, named
    `cpu-peak/torch-matmul-<N>threads` where the CPU rows run on different thread counts."""
    counts = {cpu_threads(v, settings) for v in variants if on_cpu(v)}

    def name(variant: RuntimeVariant) -> str:
        if not on_cpu(variant):
            return CUDA_PEAK + ("-fp16" if variant.half else "")
        return CPU_PEAK + (f"-{cpu_threads(variant, settings)}threads" if len(counts) > 1 else "")
    return {variant.label: name(variant) for variant in variants}


def peak_gmac_per_s(settings: BenchSettings, variant: RuntimeVariant | None = None,
                    threads: int | None = None) -> float:
    """GMAC/s of a large matrix product with torch on `variant`'s device (None: the CPU), in fp16 for a CUDA fp16
    variant, else fp32; on the CPU on `threads` threads (None: torch's current ones; they are put back after)."""
    device = "cpu" if on_cpu(variant) else variant.device
    dtype = torch.float16 if device != "cpu" and variant is not None and variant.half else torch.float32
    side = PEAK_MATRIX if device == "cpu" else PEAK_MATRIX_CUDA
    left = torch.rand(side, side, device=device, dtype=dtype)
    right = torch.rand(side, side, device=device, dtype=dtype)

    def product() -> None:
        torch.mm(left, right)
        if device != "cpu":
            torch.cuda.synchronize(device)
    with threads_kept():
        if device == "cpu" and threads is not None:
            torch.set_num_threads(threads)
        row = measure(product, warmup=2, repeats=10, max_seconds=settings.max_seconds)
    return side ** 3 / (row["latency_ms_median"] / 1000.0) / 1e9


def peaks_of(variants: Sequence[RuntimeVariant], settings: BenchSettings) -> dict[str, Row]:
    """The peak of every row of `peak_names`, and the CPU's always (on torch's threads where no variant runs on
    the CPU): its `gmac_per_s` and, on the CPU, the `threads` it was measured on."""
    names = peak_names(variants, settings)
    chosen: dict[str, RuntimeVariant | None] = {names[v.label]: v for v in variants}
    if not any(on_cpu(v) for v in chosen.values()):
        chosen[CPU_PEAK] = None
    peaks: dict[str, Row] = {}
    for name, variant in chosen.items():
        if on_cpu(variant):
            threads = cpu_threads(variant, settings)
            peaks[name] = {"gmac_per_s": peak_gmac_per_s(settings, variant, threads), "threads": float(threads)}
        else:
            peaks[name] = {"gmac_per_s": peak_gmac_per_s(settings, variant)}
    return peaks


class TimedRuntime:
    """An inference backend that records how long each `run` takes (the network alone, inside a pipeline) and the
    (height, width) of the input it ran on: the pipeline may run a frame smaller than asked (a thin frame within its
    padding budget, a frame beyond a TensorRT engine's profile), and a row's MACs are the network's at that size."""

    def __init__(self, runtime: InferenceBackend) -> None:
        self.runtime = runtime
        self.name = runtime.name
        self.stride = runtime.stride
        self.outputs = runtime.outputs
        self.fixed_size = runtime.fixed_size
        self.max_size = runtime.max_size
        self.max_batch = runtime.max_batch
        self.seconds: list[float] = []
        self.input_size = (0, 0)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        begin = time.perf_counter()
        outputs = self.runtime.run(batch)
        self.seconds.append(time.perf_counter() - begin)
        self.input_size = (int(batch.shape[2]), int(batch.shape[3]))
        return outputs


def hazy_frames(sizes: Sequence[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
    from dgdehaze_core.benchmarks.timing import hazy_test_frame

    return {size: hazy_test_frame(*size) for size in sizes}


def bench_dcp(frames: dict[tuple[int, int], np.ndarray], settings: BenchSettings) -> dict[str, Row]:
    """The dark channel prior at each size: the baseline of the ratios, as its own rows."""
    dcp = load_pipeline("dcp")
    rows: dict[str, Row] = {}
    for (width, height), frame in frames.items():
        rows[f"dcp@{width}x{height}"] = {**settings.measure(lambda: dcp(frame)), "ratio_to_dcp": 1.0}
    return rows


def against_dcp(row: Row, dcp_ms: float) -> Row:
    """`ratio_to_dcp` and `dcp_ms_median` for a row timed right after DCP took `dcp_ms` on the same frame."""
    return {"ratio_to_dcp": row["latency_ms_median"] / dcp_ms, "dcp_ms_median": dcp_ms}


class DcpBeside:
    """The dark channel prior's median time on a frame, measured when asked: right before the row it divides."""

    def __init__(self, settings: BenchSettings) -> None:
        self.settings, self.dcp = settings, load_pipeline("dcp")

    def ms(self, frame: np.ndarray) -> float:
        return self.settings.measure(lambda: self.dcp(frame))["latency_ms_median"]


def bench_network(config: str, variants: Sequence[RuntimeVariant], frames: dict[tuple[int, int], np.ndarray],
                  settings: BenchSettings, working_sizes: Sequence[tuple[int, int]] = ()) -> dict[str, Row]:
    """`config` on every variant at every frame size, each row with MACs, GMAC/s and the ratio to DCP (the share
    of the peak: `with_pct_of_peak`).

    working_sizes: also run each frame size with the network at these (width, height) working resolutions, smaller
    than the frame (the node's working_width/height: the physics inversion stays at the frame's size); rows
    `<config>/<runtime>@<frame>/work<w>x<h>`, MACs at the working size. MACs are counted at the padded input the
    runtime was given (`TimedRuntime.input_size`), smaller than the frame or working size where the pipeline shrank it.
    """
    model = timed_network(config)
    runs = [(size, None) for size in frames]
    runs += [(size, work) for size in frames for work in working_sizes if smaller_than(work, size)]
    macs: dict[tuple[int, int], float] = {}
    rows: dict[str, Row] = {}
    beside = DcpBeside(settings)
    for variant in variants:
        try:
            pipeline = _int8_pipeline(model, variant, settings) if variant.int8 else pipeline_from_model(
                copy.deepcopy(model), backend=variant.backend, device=variant.device, half=variant.half,
                threads=settings.threads, output="auto")  # a copy: torch fp16 and CUDA convert it in place
        except (BackendUnavailable, RuntimeError, ValueError) as exc:
            LOG.warning("bench skips %s on %s: %s", config, variant.label, exc)
            continue
        timed = TimedRuntime(pipeline.runtime)
        pipeline.runtime = timed
        for (width, height), work in runs:
            frame = frames[(width, height)]
            name = f"{config}/{variant.label}@{width}x{height}" + (f"/work{work[0]}x{work[1]}" if work else "")
            LOG.info("measuring %s", name)
            pipeline.working_size = work
            dcp_ms = beside.ms(frame)
            timed.seconds.clear()
            totals: list[float] = []
            row = settings.measure(lambda: _timed_call(pipeline, frame, totals))
            count = int(row["runs"])
            network_ms = float(np.median(timed.seconds[-count:])) * 1000.0
            pipeline_ms = float(np.median(np.subtract(totals[-count:], timed.seconds[-count:]))) * 1000.0
            size = timed.input_size  # of the row's last run: every run of a row is at one size
            if size not in macs:
                macs[size] = count_macs(model, *size, with_clear=False) / 1e9
            gmacs = macs[size]
            gmac_per_s = gmacs / (network_ms / 1000.0)
            rows[name] = {
                **row, **against_dcp(row, dcp_ms), "network_ms_median": network_ms,
                "pipeline_ms_median": pipeline_ms, "pipeline_ratio_to_dcp": pipeline_ms / dcp_ms,
                "gmacs": gmacs, "gmac_per_s": gmac_per_s}
            if on_cpu(variant):  # the threads its peak row was measured on: what the row ran on
                rows[name]["threads"] = float(cpu_threads(variant, settings))
            if variant.backend == "torch":  # eager: each operation is a launch of its own
                rows[name]["dispatched_ops"] = float(count_dispatched(lambda: pipeline(frame)))
    return rows


def _int8_pipeline(model: DGDehazeNet, variant: RuntimeVariant, settings: BenchSettings) -> NetworkPipeline:
    """The physics path of `model` as a QDQ int8 export on ONNX Runtime (module docstring)."""
    from dgdehaze_core.inference.backends import PHYSICS_OUTPUTS
    from dgdehaze_core.inference.backends.selection import cached_onnx
    from dgdehaze_core.inference.export.quantize import quantize_onnx

    data = shared_data_dir()
    if data is None or not (data / "hazy-real").is_dir():
        raise ValueError("its calibration images, ../shared/data/hazy-real, are absent")
    with tempfile.TemporaryDirectory(prefix="dgdehaze-bench-int8-") as folder:
        float_onnx = cached_onnx(model, outputs=PHYSICS_OUTPUTS)
        quantized = quantize_onnx(float_onnx, data / "hazy-real", Path(folder) / "int8.onnx")
        return load_pipeline(str(quantized), backend=variant.backend, device=variant.device,
                             threads=settings.threads, output="auto")


def _timed_call(pipeline: NetworkPipeline, frame: np.ndarray, totals: list[float]) -> None:
    begin = time.perf_counter()
    pipeline(frame)
    totals.append(time.perf_counter() - begin)


def with_pct_of_peak(rows: dict[str, Row], names: dict[str, str], before: dict[str, Row],
                     after: dict[str, Row] | None = None) -> dict[str, Row]:
    """The network rows with `pct_of_peak` against the faster of their peak's two measurements (`peaks_of`) in the
    same run, before and after them (`names`: the peak row of each variant label, `peak_names`), and each peak's own
    row: `gmac_per_s` (that faster one), `before`, `after` and, on the CPU, `threads`. `after` None (a run stopped
    before it was measured): against the peak before them, the peak rows without `after`."""
    peaks = {name: max(before[name]["gmac_per_s"], after[name]["gmac_per_s"] if after else 0.0) for name in before}
    table = {}
    for name, row in rows.items():
        label = name.split("/")[1].split("@")[0]
        table[name] = {**row, "pct_of_peak": 100.0 * row["gmac_per_s"] / peaks[names[label]]}
    for name, peak in peaks.items():
        table[name] = {"gmac_per_s": peak, "before": before[name]["gmac_per_s"]}
        if after:
            table[name]["after"] = after[name]["gmac_per_s"]
        if "threads" in before[name]:
            table[name]["threads"] = before[name]["threads"]
    return table


def timed_network(config: str) -> DGDehazeNet:
    """The `config` network a row times (module docstring), in eval mode."""
    if config in MODEL_CONFIGS and shipped_weights_path(config).is_file():
        return load_model(config).eval()
    torch.manual_seed(0)
    return build_model(config).eval()


def chain_device(backend: str, device: str) -> str:
    """The device the chain's network runs on with `backend` on `device` ("auto": the runtime's choice, a GPU where
    one runs it), which its detector takes too: the node runs both on its one `device` parameter."""
    return choose_backend(backend, device, log=False).device


def chain_detector(precision: str, imgsz: int, device: str, threads: int | None = None) -> Detector:
    """The shipped YOLOv8n for the chain at a `Detector` precision on `device` (the network's, `chain_device`):
    "auto" as the node runs it by default, "float" its float rebuild, "file" the int8 file as it is (at 640; the
    file is fixed at 640x640, so other sizes get its dynamic int8 rebuild, `detection.rebuild`); `Detector` refuses
    an unknown precision. `threads`: its ONNX Runtime session's (None: ONNX Runtime's choice), as the bench's
    --threads gives the dehazer."""
    if precision != "file" or imgsz == 640:
        return Detector(imgsz=imgsz, device=device, precision=precision, threads=threads)
    from dgdehaze_core.detection.rebuild import dynamic_detector_exports

    return Detector(dynamic_detector_exports()["int8"], imgsz=imgsz, device=device, precision="file",
                    threads=threads)


def bench_chain(config: str, backend: str, device: str, intervals: Sequence[int], frame: np.ndarray,
                settings: BenchSettings, imgszs: Sequence[int] = (640,),
                detectors: Sequence[str] = ("auto",), fused: bool = False,
                contrast: bool = False) -> dict[str, Row]:
    """Frames per second of the node's work at `frame`'s size: dehazing alone, then with detection (YOLOv8n at
    each precision in `detectors` and each of `imgszs`, see `chain_detector`) every frame and every Nth; with
    `fused`, also detection on the raw and the dehazed frame fused (`-fused` rows, the node's `detection_input:
    fused`); with `contrast`, also each of those with the detector's frames contrast-equalised (`-clahe` rows, the
    node's `detection_contrast`). With detection every N frames one timed step is N frames; latency figures are
    per frame averaged over the step, `fps` is frames per second of throughput. Where the "file" precision is
    measured too, each detection row gets `speedup_vs_file`: the file row's median latency at the same interval,
    size and input over its own."""
    pipeline = pipeline_from_model(timed_network(config), backend=backend, device=device,
                                   threads=settings.threads)
    height, width = frame.shape[:2]
    size = f"{width}x{height}"
    label = f"{config}/{pipeline.backend}"
    rows: dict[str, Row] = {}
    beside = DcpBeside(settings)
    dehaze_only = FrameChain(pipeline)
    dcp_ms = beside.ms(frame)
    dehaze = settings.measure(lambda: dehaze_only(frame))
    rows[f"chain/{label}/no-detection@{size}"] = {**dehaze, **against_dcp(dehaze, dcp_ms), "detect_every": 0.0,
                                                   "imgsz": 0.0}
    by_setting: dict[tuple[int, int, str, bool], dict[str, Row]] = {}
    for kind, imgsz in [(kind, imgsz) for kind in detectors for imgsz in imgszs]:
        detector = chain_detector(kind, imgsz, chain_device(backend, device), settings.threads)
        suffix = ("" if kind == "auto" else f"-{kind}") + ("" if imgsz == 640 else f"-imgsz{imgsz}")
        inputs = ("dehazed", "fused")[:1 + fused]
        for interval, detection_input, equalised in [(i, d, c) for i in intervals for d in inputs
                                                     for c in (False, True)[:1 + contrast]]:
            chain = FrameChain.build(pipeline, detector, interval, detection_input, contrast=equalised)
            dcp_ms = beside.ms(frame)
            step = settings.measure(lambda: [chain(frame) for _ in range(interval)], warmup=1)
            per_frame = {"latency_ms_median": step["latency_ms_median"] / interval,
                         "latency_ms_p95": step["latency_ms_p95"] / interval,
                         "fps": 1000.0 * interval / step["latency_ms_median"], "runs": step["runs"] * interval,
                         "cpu_ms_per_run": step["cpu_ms_per_run"] / interval,
                         "page_faults_per_run": step["page_faults_per_run"] / interval}
            fusion = ("-fused" if detection_input == "fused" else "") + ("-clahe" if equalised else "")
            row = {**per_frame, **against_dcp(per_frame, dcp_ms), "detect_every": float(interval),
                   "imgsz": float(imgsz)}
            rows[f"chain/{label}/detect-every-{interval}{suffix}{fusion}@{size}"] = row
            by_setting.setdefault((interval, imgsz, detection_input, equalised), {})[kind] = row
    for kinds in by_setting.values():
        if "file" in kinds:
            for kind, row in kinds.items():
                row["speedup_vs_file"] = kinds["file"]["latency_ms_median"] / row["latency_ms_median"]
    return rows
