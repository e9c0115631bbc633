"""Whether a compiler gets a network nearer the CPU's peak than ONNX Runtime does (#23), measured side by side.

One run times the network alone (the physics path's outputs, as the node runs it) on a padded hazy test frame:
ONNX Runtime on the node's cached export, torch eager, and torch.compile (Inductor, weights frozen into the graph)
in fp32 and, where the CPU has AVX-512 BF16, in bf16 (weights and activations), in rounds that time every row in
turn (a shared host's slow phase then falls on all of them). Each row has `network_ms_median` (over the rounds),
`gmac_per_s` and `pct_of_peak` (against the faster of two fp32 matrix-product peaks measured before and after the
rows, as `dgdehaze bench` does), compile seconds, and the largest difference of its transmission from torch eager
fp32 (`max_abs_transmission`). With `--int8-calibration DIR` (and torchao installed) a statically quantised int8
row too (PT2E, int8 convolutions and linears, calibrated on DIR's images). Not a runtime the node offers: a
measurement that says whether one would pay.

    .venv/bin/python tools/compiled_network_timing.py [--config lite] [--size 640x480] [--json FILE]
        [--int8-calibration ../shared/data/hazy-real]
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch._inductor.config as inductor_config
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.benchmarks.networks import BenchSettings, peak_gmac_per_s, timed_network  # noqa: E402
from dgdehaze_core.benchmarks.timing import hazy_test_frame, parse_size  # noqa: E402
from dgdehaze_core.inference.backends import round_up_to_stride  # noqa: E402
from dgdehaze_core.inference.pipeline import network_batch, pipeline_from_model  # noqa: E402
from dgdehaze_core.io.atomic_files import check_json_output  # noqa: E402
from dgdehaze_core.io.tables import emit  # noqa: E402
from dgdehaze_core.models.complexity import count_macs  # noqa: E402
from tools.tool_cli import one_line_errors  # noqa: E402

Network = Callable[[torch.Tensor], torch.Tensor]


class TransmissionOnly(torch.nn.Module):
    """The model's transmission for an fp32 batch, run in `dtype`, as one fp32 tensor (for torch.compile and
    torch.export)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.dtype), with_clear=False)["transmission"].float()


def first_call(network: Network, batch: torch.Tensor) -> tuple[Network, float]:
    """`network` and the seconds its first call (the compile) took."""
    begin = time.perf_counter()
    with torch.inference_mode():
        network(batch)
    return network, time.perf_counter() - begin


def compiled(model: torch.nn.Module, dtype: torch.dtype, batch: torch.Tensor) -> tuple[Network, float]:
    """torch.compile of a copy of `model` in `dtype` (weights frozen into the graph: `main` sets Inductor's
    freezing), and the seconds its first call took."""
    return first_call(torch.compile(TransmissionOnly(copy.deepcopy(model).to(dtype), dtype), dynamic=False), batch)


def compiled_int8(model: torch.nn.Module, batch: torch.Tensor, calibration: Path) -> tuple[Network, float]:
    """PT2E static int8 (torchao's X86InductorQuantizer: int8 convolutions and linears) calibrated on the images
    under `calibration` as `dgdehaze export --int8` calibrates, then torch.compile with frozen weights."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    from dgdehaze_core.inference.export.quantize import calibration_batches
    from dgdehaze_core.io.images import images_under

    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    with torch.no_grad():
        exported = torch.export.export(TransmissionOnly(copy.deepcopy(model)), (batch,)).module()
        prepared = prepare_pt2e(exported, quantizer)
        for frames in calibration_batches(images_under(calibration), tuple(batch.shape[2:]), model.stride):
            prepared(torch.from_numpy(frames))
        converted = convert_pt2e(prepared)
    return first_call(torch.compile(converted), batch)


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="lite")
    parser.add_argument("--size", type=parse_size, default=(640, 480))
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per row and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each timing every row in turn")
    parser.add_argument("--int8-calibration", type=Path, default=None, metavar="DIR",
                        help="also a PT2E int8 row calibrated on the images under DIR (needs torchao, which the "
                             "package does not depend on)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.int8_calibration is not None:  # before minutes of compiling the other rows
        if importlib.util.find_spec("torchao") is None:
            parser.error("--int8-calibration needs torchao, which the package does not depend on: install it or "
                         "put it on PYTHONPATH (docs/BENCHMARKS.md)")
        if not args.int8_calibration.is_dir():
            parser.error(f"--int8-calibration {args.int8_calibration}: no such folder")
    if args.json is not None:
        check_json_output(args.json)  # before minutes of compiling; "-" is refused: the table goes to stdout
    settings = BenchSettings(repeats=args.repeats, max_seconds=20.0)
    inductor_config.freezing = True
    model = timed_network(args.config)
    height, width = (round_up_to_stride(v, model.stride) for v in args.size[::-1])
    batch = torch.from_numpy(network_batch([hazy_test_frame(width, height)], (width, height), model.stride))
    gmacs = count_macs(model, height, width, with_clear=False) / 1e9
    runtime = pipeline_from_model(model, backend="onnxruntime", output="auto",
                                  threads=torch.get_num_threads()).runtime  # the peak's and the title's threads
    networks: dict[str, tuple[Network, float]] = {
        "onnxruntime": (lambda b: torch.from_numpy(runtime.run(b.numpy())["transmission"]), 0.0),
        "torch": (TransmissionOnly(model), 0.0),
        "torch-compile": compiled(model, torch.float32, batch)}
    if torch.cpu._is_avx512_bf16_supported():
        networks["torch-compile-bf16"] = compiled(model, torch.bfloat16, batch)
    if args.int8_calibration is not None:
        networks["torch-compile-int8"] = compiled_int8(model, batch, args.int8_calibration)
    with torch.inference_mode():
        reference = networks["torch"][0](batch)
    peak_before = peak_gmac_per_s(settings)
    medians: dict[str, list[float]] = {name: [] for name in networks}
    with torch.inference_mode():
        for _ in tqdm(range(args.rounds), desc="rounds", unit="round"):
            for name, (network, _) in networks.items():
                medians[name].append(settings.measure(lambda: network(batch))["latency_ms_median"])
    rows = {}
    for name, (network, compile_seconds) in networks.items():
        with torch.inference_mode():
            difference = float((network(batch) - reference).abs().max())
        network_ms = float(np.median(medians[name]))
        rows[f"{args.config}/{name}@{width}x{height}"] = {
            "network_ms_median": network_ms, "network_ms_rounds": " ".join(f"{v:.1f}" for v in medians[name]),
            "gmacs": gmacs, "gmac_per_s": gmacs / (network_ms / 1000.0), "compile_s": compile_seconds,
            "max_abs_transmission": difference}
    peak = max(peak_before, peak_gmac_per_s(settings))
    for row in rows.values():
        row["pct_of_peak"] = 100.0 * row["gmac_per_s"] / peak
    rows["cpu-peak/torch-matmul"] = {"gmac_per_s": peak}
    emit(rows, f"{args.config}'s network at {width}x{height}: ONNX Runtime, torch eager, torch.compile "
               f"({torch.get_num_threads()} threads)", args.json)


if __name__ == "__main__":
    sys.exit(main())
