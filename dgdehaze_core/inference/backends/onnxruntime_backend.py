"""ONNX Runtime backend: an exported network (`inference.export.to_onnx`) on the execution providers it is given.

`providers` are ONNX Runtime's: names, or (name, options) pairs, in priority order; the CPU provider alone when
none are given. `backends.selection` gives the TensorRT (with its engine cache options) and CUDA providers, the CPU
one last, when the device is a GPU and this onnxruntime has them; the CPU provider alone otherwise. GPU providers
none of which starts are refused (`BackendUnavailable`), never replaced by the CPU."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from dgdehaze_core.cpu_threads import default_threads
from dgdehaze_core.inference.backends import BackendUnavailable, outputs_of
from dgdehaze_core.io.file_paths import existing_file
from dgdehaze_core.io.onnx_files import checked_dgdehaze_export

LOG = logging.getLogger(__name__)

ARENA_KEEP_PIXELS = 1920 * 1088
"""Inputs up to this size reuse ONNX Runtime's memory arena from run to run (the fast path of a camera's steady
stream); after a larger one (a 4K frame) the arena gives back what that run grew, so a few huge frames do not
leave the process gigabytes larger."""

FP16_ON_CPU_CHECKED = "1.32"
"""The oldest ONNX Runtime whose CPU provider was seen to run an fp16 export right frame after frame: 1.18.1's ran it
right on its first frame only, then off by 0.2-0.5 (docs/DEPLOYMENT.md, "Versions on a ROS install"); the versions
between were not tried."""


def session_options(threads: int) -> ort.SessionOptions:
    """Every optimisation, `threads` intra-op threads (0: ONNX Runtime's own choice), one inter-op thread, and
    threads that sleep between runs: ORT's spin after each run by default, and on a robot the cores are shared (the
    detector's session, ROS, the rest of the stack), so spinning threads steal them (docs/BENCHMARKS.md)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _check_providers(path: Path, requested: list[str], active: list[str]) -> None:
    """BackendUnavailable when none of the GPU providers `requested` is `active` in the session: ONNX Runtime lists
    the providers it was built with as available even where their CUDA, cuDNN or TensorRT libraries do not load,
    logs the failure and runs on the CPU alone (microsoft/onnxruntime#23372), an fp16 export there too, while the
    backend was chosen for the GPU. A warning when some of them did not start (TensorRT's, CUDA's running)."""
    wanted = [name for name in requested if name != "CPUExecutionProvider"]
    missing = [name for name in wanted if name not in active]
    if wanted and missing == wanted:
        raise BackendUnavailable(f"ONNX Runtime could not start {', '.join(missing)} for {path} (see its error "
                                 f"above: a CUDA, cuDNN or TensorRT library that did not load?) and would run it on "
                                 f"{', '.join(active)} alone; install the onnxruntime-gpu that matches this CUDA, or "
                                 f"choose another backend or device")
    if missing:
        LOG.warning("ONNX Runtime could not start %s for %s; it runs on %s", ", ".join(missing), path,
                    ", ".join(active))


def _tensorrt_max_shape(requested: Sequence[str | tuple[str, Mapping[str, object]]],
                        active: list[str]) -> tuple[int, ...] | None:
    """The largest (B, C, H, W) input the TensorRT provider's engine takes, where it runs with an explicit profile
    (its `trt_profile_max_shapes` option, "NAME:BxCxHxW", the one input of a dgdehaze export); None otherwise. A larger
    input is outside the profile the engine was built for, and the provider widens only the profiles it derived from
    earlier inputs, never an explicit one (its ComputeFunc), so the run fails: the pipeline shrinks such frames, as
    it does for the TensorRT backend's engine."""
    options = next((dict(p[1]) for p in requested if not isinstance(p, str) and p[0] == "TensorrtExecutionProvider"),
                   {})
    if "TensorrtExecutionProvider" not in active or "trt_profile_max_shapes" not in options:
        return None
    return tuple(int(v) for v in str(options["trt_profile_max_shapes"]).rpartition(":")[2].split("x"))


def _warn_of_an_unchecked_fp16_cpu_provider(path: Path) -> None:
    """A warning where an fp16 export runs on the CPU provider of an ONNX Runtime older than FP16_ON_CPU_CHECKED,
    which requirements-ros.txt admits from 1.18: the frames after the first came out wrong there without a word."""
    from packaging.version import Version

    if Version(ort.__version__) < Version(FP16_ON_CPU_CHECKED):
        LOG.warning("%s is an fp16 export on the CPU provider of ONNX Runtime %s: ONNX Runtime 1.18.1's ran such a "
                    "file right on its first frame only, then off by 0.2-0.5, and versions before %s were not "
                    "checked; run the fp32 export here, or ONNX Runtime %s or later", path, ort.__version__,
                    FP16_ON_CPU_CHECKED, FP16_ON_CPU_CHECKED)


class OnnxRuntimeBackend:
    """Runs a dgdehaze ONNX file; the stride is read from the file's metadata, the outputs from its graph (all of
    OUTPUT_NAMES, or PHYSICS_OUTPUTS for a physics-only export)."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None,
                 providers: list[str | tuple[str, dict[str, object]]] | None = None) -> None:
        path = existing_file(path, "ONNX file")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options = session_options(threads or default_threads())
        # the path, not bytes read once for the session and the checks (they would spare a read, not a parse): ORT's
        # TensorRT provider names its engine cache by the file's name (a cached export's holds its weights' hash),
        # never by the weights, and an export's external data lies beside the file
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own exception types for corrupt or foreign files
            raise ValueError(f"{path} is not a loadable ONNX model: {exc}") from None
        _check_providers(path, [p if isinstance(p, str) else p[0] for p in providers or ()],
                         self.session.get_providers())
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.stride = checked_dgdehaze_export(path).stride
        self.config_name = metadata.get("dgdehaze_config", "unknown")
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_dtype = np.float16 if "float16" in graph_input.type else np.float32
        batch, _, height, width = graph_input.shape
        self.fixed_size = (height, width) if isinstance(height, int) and isinstance(width, int) else None
        self.max_size = self.fixed_size
        self.max_batch = batch if isinstance(batch, int) else None
        largest = _tensorrt_max_shape(providers or (), self.session.get_providers())
        if largest is not None:
            self.max_batch, self.max_size = largest[0], (largest[2], largest[3])
        self.outputs = outputs_of((output.name for output in self.session.get_outputs()), path)
        self.threads = options.intra_op_num_threads
        if self.input_dtype == np.float16 and self.session.get_providers()[0] == "CPUExecutionProvider":
            _warn_of_an_unchecked_fp16_cpu_provider(path)
        LOG.info("onnxruntime backend: %s (%s model, %d threads, %s)", path, self.config_name, self.threads,
                 self.session.get_providers()[0])

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        options = None
        if batch.shape[-2] * batch.shape[-1] > ARENA_KEEP_PIXELS:
            options = ort.RunOptions()
            options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        outputs = self.session.run(list(self.outputs), {self.input_name: batch.astype(self.input_dtype, copy=False)},
                                   options)
        return {name: np.asarray(value, dtype=np.float32) for name, value in zip(self.outputs, outputs)}
