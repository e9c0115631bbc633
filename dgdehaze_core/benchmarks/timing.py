"""Timing that reports what a robot engineer asks for: median and p95 latency and frames per second, and what a
run costs the machine beside its time: CPU time and page faults."""
from __future__ import annotations

import resource
import time
from typing import Any, Callable

import cv2
import numpy as np

from dgdehaze_core.datasets.paths import shared_data_dir
from dgdehaze_core.io.images import MAX_PIXELS, list_images, read_image
from dgdehaze_core.physics.scattering import synthesize_haze


def measure(step: Callable[[], object], *, warmup: int = 3, repeats: int = 30,
            min_seconds: float = 0.0, max_seconds: float | None = None) -> dict[str, float]:
    """Run `step` `warmup` times untimed, then at least `repeats` times (and `min_seconds`), timing each call.

    max_seconds: stop timing once this much time has passed, after at least 3 timed runs (slow rows on a small
    CPU); `runs` in the result says how many were timed. `cpu_ms_per_run`: the process's CPU time (user and system,
    every thread of it) per timed run, which a busy host moves far less than the latency; `page_faults_per_run`: its
    page faults per timed run (memory mapped or returned and touched again each run: docs/BENCHMARKS.md, "The C
    allocator")."""
    for _ in range(warmup):
        step()
    times: list[float] = []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_seconds:
        if max_seconds is not None and len(times) >= 3 and time.perf_counter() - start >= max_seconds:
            break
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    after = resource.getrusage(resource.RUSAGE_SELF)
    latencies = np.asarray(times) * 1000.0
    median = float(np.median(latencies))
    cpu_seconds = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
    faults = after.ru_minflt + after.ru_majflt - usage.ru_minflt - usage.ru_majflt
    return {"latency_ms_median": median, "latency_ms_p95": float(np.percentile(latencies, 95)),
            "fps": 1000.0 / median, "runs": len(times), "cpu_ms_per_run": cpu_seconds * 1000.0 / len(times),
            "page_faults_per_run": faults / len(times)}


def count_dispatched(step: Callable[[], object]) -> int:
    """How many tensor operations one call of `step` dispatches in this thread (views and in-place ones included):
    on a GPU in eager mode each is a launch from Python, a cost that arithmetic does not show. Imports torch only
    when called (the node benchmark's harness and the QoS probe use this module without it)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    count = 0

    class OperationCount(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
            nonlocal count
            count += 1
            return func(*args, **(kwargs or {}))

    with OperationCount():
        step()
    return count


def hazy_test_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A hazy uint8 BGR frame of the given size: a real clear image from the shared data with haze synthesized
    over a ground-plane depth, or a deterministic textured scene where the data is absent."""
    data = shared_data_dir()
    clear: np.ndarray | None = None
    if data is not None and (data / "clear" / "kitti").is_dir():
        images = list_images(data / "clear" / "kitti")
        if images:
            clear = read_image(images[seed % len(images)])
    if clear is None:
        rng = np.random.default_rng(seed)
        clear = cv2.resize(rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8),
                           (width, height), interpolation=cv2.INTER_CUBIC)
    clear = cv2.resize(clear, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    rows = np.linspace(1.0, 0.0, height, dtype=np.float32)[:, None, None]
    depth = 2.0 + 40.0 * rows ** 2
    hazy = synthesize_haze(clear, depth, 0.05, np.array([0.85, 0.85, 0.85], np.float32))
    return np.clip(hazy * 255.0 + 0.5, 0, 255).astype(np.uint8)


def parse_size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480): width x height; ValueError for a malformed, empty or too large size."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    if width * height > MAX_PIXELS:
        raise ValueError(f"size {text!r} exceeds the limit of {MAX_PIXELS} pixels")
    return width, height


def parse_sizes(text: str, option: str) -> list[tuple[int, int]]:
    """'640x480,1280x720' -> [(640, 480), (1280, 720)], empty items (a trailing or doubled comma) skipped as `eval`
    skips them in its lists; ValueError naming `option` and its whole value for a bad size, or for none at all."""
    try:
        return [parse_size(item) for item in comma_items(text)]
    except ValueError as exc:
        raise ValueError(f"{option} {text!r}: {exc}") from None


def comma_items(text: str) -> list[str]:
    """The items of a comma-separated option value, stripped, empty ones left out."""
    return [item.strip() for item in text.split(",") if item.strip()]


def smaller_than(work: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether a working size (w, h) is a reduced resolution of a frame size: within it on both axes, not it."""
    return work[0] <= size[0] and work[1] <= size[1] and work != size
