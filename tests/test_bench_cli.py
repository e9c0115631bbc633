"""`dgdehaze bench`: every target's rows carry the figures the docs name, as positive numbers (no timing limits)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.cpu_threads import default_threads
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.inference.backends.selection import tensorrt_unavailable_reason
from dgdehaze_core.models import build_model, shipped_weights_path
from dgdehaze_core.models.complexity import count_macs

TIMING = ("latency_ms_median", "latency_ms_p95", "fps", "ratio_to_dcp", "dcp_ms_median", "cpu_ms_per_run")
NETWORK = (*TIMING, "network_ms_median", "pipeline_ms_median", "pipeline_ratio_to_dcp", "gmacs", "gmac_per_s",
           "pct_of_peak")


@pytest.fixture(autouse=True)
def quick_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU peak rows measured on 1024x1024 products, not the shipped 2048: twelve of those took several seconds
    of every network bench here, before and after its rows, and the figures checked (the peak's GMAC/s, the rows'
    shares of it) are the same arithmetic at any size."""
    from dgdehaze_core.benchmarks import networks

    monkeypatch.setattr(networks, "PEAK_MATRIX", 1024)


def run_bench(tmp_path: Path, *args: str) -> dict[str, dict[str, float]]:
    out = tmp_path / "bench.json"
    assert main(["bench", *args, "--repeats", "2", "--json", str(out)]) == 0
    return json.loads(out.read_text())


def positive(row: dict[str, float], keys: tuple[str, ...]) -> None:
    for key in keys:
        assert isinstance(row.get(key), float) and row[key] > 0, f"{key}: {row.get(key)!r}"


@pytest.mark.slow  # the shipped lite's ONNX export (cached, as the node's pipeline caches it), the detector's float
# rebuild, a few frames
def test_networks_and_chain_rows(tmp_path: Path) -> None:
    # --threads: torch's and ONNX Runtime's rows on one count, one CPU peak row, whatever another test left torch on
    table = run_bench(tmp_path, "dcp", "lite", "chain", "outputs", "--sizes", "96x64", "--backends",
                      "torch,onnxruntime", "--detect-every", "1,2", "--threads", "1")
    outputs = {f"outputs/{name}@96x64" for name in ("jpeg", "png", "compressedDepth")}
    assert set(table) == {*outputs, "dcp@96x64", "lite/torch@96x64", "lite/onnxruntime@96x64", "cpu-peak/torch-matmul",
                          "chain/lite/onnxruntime/no-detection@96x64", "chain/lite/onnxruntime/detect-every-1@96x64",
                          "chain/lite/onnxruntime/detect-every-2@96x64",
                          "chain/lite/onnxruntime/detect-every-1-file@96x64",
                          "chain/lite/onnxruntime/detect-every-2-file@96x64"}
    assert table["dcp@96x64"]["ratio_to_dcp"] == 1.0
    for name, row in table.items():
        if not name.startswith("cpu-peak"):
            assert row["page_faults_per_run"] >= 0 and row["cpu_ms_per_run"] > 0, name
    peak = table["cpu-peak/torch-matmul"]
    positive(peak, ("gmac_per_s", "before", "after"))
    assert peak["gmac_per_s"] == max(peak["before"], peak["after"]), "the share is of the faster measurement"
    expected_gmacs = count_macs(build_model("lite").eval(), 64, 96, with_clear=False) / 1e9  # the physics path
    for backend in ("torch", "onnxruntime"):
        row = table[f"lite/{backend}@96x64"]
        positive(row, NETWORK)
        assert row["gmacs"] == pytest.approx(expected_gmacs)
        assert row["network_ms_median"] <= row["latency_ms_median"], "the network is part of the pipeline's time"
        assert row["pct_of_peak"] == pytest.approx(100.0 * row["gmac_per_s"] / peak["gmac_per_s"])
        assert row["pipeline_ms_median"] < row["latency_ms_median"], "a frame's time less the network's"
        dcp_ms = row["dcp_ms_median"]  # DCP timed again right before the row: the ratio's two times side by side
        assert row["pipeline_ratio_to_dcp"] == pytest.approx(row["pipeline_ms_median"] / dcp_ms)
        assert row["gmac_per_s"] == pytest.approx(row["gmacs"] / row["network_ms_median"] * 1000.0)
        assert row["ratio_to_dcp"] == pytest.approx(row["latency_ms_median"] / dcp_ms)
    assert table["lite/torch@96x64"]["dispatched_ops"] > 100, "the eager network's operations, counted"
    assert "dispatched_ops" not in table["lite/onnxruntime@96x64"], "a runtime of its own: nothing to count"
    for interval in (1, 2):
        row = table[f"chain/lite/onnxruntime/detect-every-{interval}@96x64"]
        positive(row, TIMING)
        assert row["detect_every"] == interval
        assert row["fps"] == pytest.approx(1000.0 / row["latency_ms_median"])
        assert row["ratio_to_dcp"] == pytest.approx(row["latency_ms_median"] / row["dcp_ms_median"])
        as_file = table[f"chain/lite/onnxruntime/detect-every-{interval}-file@96x64"]
        assert as_file["speedup_vs_file"] == 1.0
        assert row["speedup_vs_file"] == pytest.approx(as_file["latency_ms_median"] / row["latency_ms_median"])
    for name in outputs:  # each encoding of lite's output: its time beside DCP's, its size against the raw Image's
        positive(table[name], (*TIMING, "kbytes", "size_ratio"))
        assert table[name]["ratio_to_dcp"] == pytest.approx(table[name]["latency_ms_median"]
                                                            / table[name]["dcp_ms_median"])
    jpeg, depth = table["outputs/jpeg@96x64"], table["outputs/compressedDepth@96x64"]
    assert jpeg["kbytes"] == pytest.approx(jpeg["size_ratio"] * 96 * 64 * 3 / 1000)
    assert jpeg["kbytes"] < table["outputs/png@96x64"]["kbytes"] and depth["size_ratio"] < 0.6  # 16 of 32 bits


@pytest.mark.slow  # lite's cached export, the detector, a few KITTI frames detected until one shows a road user
def test_the_fog_rows_time_the_road_and_the_road_users_the_detector_found_on_a_kitti_photo(tmp_path: Path) -> None:
    """The node's fog measurement as the bench times it: on the road alone, and on the road users the detector found
    (the node's previous frame's boxes) in a hazy KITTI photo, which measure it."""
    table = run_bench(tmp_path, "fog", "--sizes", "640x480", "--chain-backend", "onnxruntime", "--threads", "1")
    road, users = table["fog/lite/onnxruntime/road@640x480"], table["fog/lite/onnxruntime/road-users@640x480"]
    assert set(table) == {"dcp@640x480", "fog/lite/onnxruntime/road@640x480",
                          "fog/lite/onnxruntime/road-users@640x480"}
    for row in (road, users):
        positive(row, (*TIMING, "pct_of_frame"))
    assert road["objects"] == 0 and users["objects"] >= 1
    assert road["frame_seed"] == users["frame_seed"]


@pytest.mark.parametrize("precision", ["auto", "file"])
def test_the_chain_s_detector_runs_on_the_bench_s_threads(precision: str) -> None:
    """--threads holds for every library the bench times: the detector's ONNX Runtime session takes it too."""
    from dgdehaze_core.benchmarks.networks import chain_detector

    detector = chain_detector(precision, 640, "cpu", threads=1)
    session = detector._quiet_session  # the session the detector's runs go through (opened by its warm-up)
    assert session is not None and session.get_session_options().intra_op_num_threads == 1


def test_the_chain_s_detector_runs_on_the_device_its_network_runs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench chain` (--device auto, the default) on a GPU machine ran the network on the GPU and the detector on the
    CPU, the file as it is on an ARM CPU (a Jetson): a chain the node, one `device` for both, never runs. The GPU is
    the one thing not here: torch is told it sees one."""
    import torch

    from dgdehaze_core.benchmarks.networks import chain_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert chain_device("auto", "auto") == chain_device("torch", "auto") == "cuda:0"
    assert chain_device("torch", "cpu") == "cpu"


def test_model_alias_runs_the_configured_network_only_and_working_sizes_add_rows(tmp_path: Path) -> None:
    table = run_bench(tmp_path, "model", "--config", "lite", "--backends", "torch", "--sizes", "128x64",
                      "--working-sizes", "64x32,128x32")
    assert set(table) == {"dcp@128x64", "lite/torch@128x64", "lite/torch@128x64/work64x32",
                          "lite/torch@128x64/work128x32", "cpu-peak/torch-matmul"}
    full, reduced = table["lite/torch@128x64"], table["lite/torch@128x64/work64x32"]
    positive(full, (*NETWORK, "dispatched_ops"))
    positive(reduced, (*NETWORK, "dispatched_ops"))
    model = build_model("lite").eval()
    assert reduced["gmacs"] == pytest.approx(count_macs(model, 32, 64, with_clear=False) / 1e9)
    assert reduced["gmacs"] < full["gmacs"] / 3, "the network runs on a quarter of the pixels"


@pytest.mark.parametrize("args", [["nope"], ["lite", "--config", "lite"], ["dcp", "--sizes", "64"],
                                  ["lite", "--backends", "tensorflow"], ["detector", "--imgsz", "300"],
                                  ["chain", "--detect-every", "0"], ["dcp", "--repeats", "0"],
                                  ["chain", "--chain-detector", "int8"]])
def test_bad_arguments_exit_2_with_a_message(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *args]) == 2
    assert "dgdehaze bench: error:" in capsys.readouterr().err


def test_a_network_file_as_a_target_is_pointed_at_its_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    """`bench exports/lite.onnx` was refused as an unknown target, naming the targets but not how to time it."""
    assert main(["bench", "exports/lite.onnx"]) == 2
    assert "bench measures a network by its configuration (lite, base, paper), not a file such as " \
           "exports/lite.onnx: its time does not depend on the weights" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--detect-every", ""], ["--detect-every", ","], ["--chain-imgsz", ""]])
def test_an_empty_list_of_intervals_or_sizes_is_refused_not_run_as_no_rows(
        args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:  # argparse's own usage error
        main(["bench", "chain", *args])
    assert refused.value.code == 2 and "expected at least one integer" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["chain", "--chain-backend", "tensorflow"], "unknown backend 'tensorflow'"),
    (["lite", "--device", "gpu7"], "unknown device 'gpu7'"),
    (["node", "--node-seconds", "0"], "--node-seconds must be above 0"),
    (["node", "--node-seconds", "inf"], "--node-seconds must be above 0 and at most 86400 s"),  # ran for ever
    (["node", "--soak", "inf"], "--soak must be 0 (none) to 86400 s"),
    (["node", "--soak", "nan"], "--soak must be 0 (none) to 86400 s"),
    (["node", "--node-rate", "inf"], "--node-rate must be above 0 and at most 1000 Hz"),  # was a traceback
    (["node", "--node-rate", "nan"], "--node-rate must be above 0"),
    (["node", "--node-rate", "1e-9"], "publishes no frame in 10 s"),  # slept 1/rate s, far past the window
    (["dcp", "--max-seconds", "nan"], "--max-seconds a number of seconds"),
    (["--sizes", "100000x100000"], "exceeds the limit"),
    (["--sizes", "64x48,abc"], "--sizes '64x48,abc': size must look like 640x480, got 'abc'"),
    (["--sizes", ","], "--sizes names no WIDTHxHEIGHT: ','"),
    (["lite", "--backends", ","], "--backends ',' names none; known: "),
    (["chain", "--chain-detector", "auto,int8"], "--chain-detector 'auto,int8' names unknown ['int8']"),
    (["node", "--node-fastdds", "auto,on"], "--node-fastdds 'auto,on' names unknown ['on']"),
    (["--json", "/proc/figures.json"], "--json /proc/figures.json cannot be written"),
    (["lite", "--sizes", "160x120", "--working-sizes", "320x240,2000x8"],  # was: no row and no word
     "--working-sizes 320x240 is not smaller than any of --sizes 160x120"),
    (["--threads", "100000"], "CPUs this process may use"),  # was: MemoryError traceback reading the frames
    (["train", "--train-batch", "0"], "--train-batch values must be 1 to 512"),
    (["train", "--train-batch", "4,100000"], "--train-batch values must be 1 to 512"),
    (["train", "--train-config", "/nonexistent/recipe.yaml"], "/nonexistent/recipe.yaml"),
    (["outputs", "--chain-model", "paper"],  # was: the error after every earlier target's rows were measured
     "the outputs target runs --chain-model paper with its shipped weights, and there are none"),
    *([(["node", "--node-model", "base"],  # was: "the node did not start" after a 90 s wait
        "the node target runs --node-model base with its shipped weights, and there are none")]
      if not shipped_weights_path("base").is_file() else []),
    *([(["chain", "--chain-backend", "tensorrt"], "tensorrt backend unavailable"),
       (["lite", "--backends", "tensorrt"], "tensorrt")] if tensorrt_unavailable_reason() else []),
])
def test_a_bad_option_of_a_later_target_is_refused_before_anything_is_measured(
        args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import dgdehaze_core.benchmarks.networks as networks

    def measured_too_early(*_: object) -> None:
        raise AssertionError("DCP was measured before the options were checked")

    monkeypatch.setattr(networks, "bench_dcp", measured_too_early)
    assert main(["bench", "dcp", *args, "--repeats", "1"]) == 2
    assert message in capsys.readouterr().err


def test_a_trailing_or_doubled_comma_in_a_list_is_read_as_eval_reads_it(tmp_path: Path) -> None:
    """`--sizes 64x48,` failed with "size must look like 640x480, got ''" (eval's lists skip empty items)."""
    assert set(run_bench(tmp_path, "dcp", "--sizes", "64x48,,32x24,")) == {"dcp@64x48", "dcp@32x24"}


def test_a_bad_cache_setting_is_refused_not_taken_for_a_missing_backend(monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed DGDEHAZE_ENGINE_CACHE_DAYS skipped every cached network row with a warning, exit 0."""
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE_DAYS", "abc")
    assert main(["bench", "lite", "--backends", "onnxruntime", "--sizes", "64x48", "--repeats", "1"]) == 2
    assert "DGDEHAZE_ENGINE_CACHE_DAYS must be a number of days, got 'abc'" in capsys.readouterr().err


@pytest.mark.skipif(tensorrt_unavailable_reason() is None, reason="TensorRT runs here: its rows would exist")
def test_a_network_target_none_of_whose_backends_runs_here_fails_with_the_reasons(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "lite", "--backends", "tensorrt", "--sizes", "64x48", "--repeats", "1"]) == 2
    error = capsys.readouterr().err
    assert "no requested backend runs" in error and "tensorrt:" in error


def test_a_training_step_is_timed_with_the_operations_it_dispatches(tmp_path: Path) -> None:
    smoke = REPO_DIR / "training" / "smoke.yaml"
    table = run_bench(tmp_path, "train", "--train-config", str(smoke), "--train-batch", "1,2", "--device", "cpu")
    assert set(table) == {"train/smoke@cpu/batch1", "train/smoke@cpu/batch2"}
    for batch in (1, 2):
        row = table[f"train/smoke@cpu/batch{batch}"]
        positive(row, ("step_ms_median", "step_ms_p95", "steps_per_s", "crops_per_s", "dispatched_ops"))
        assert row["runs"] == 2
        assert row["steps_per_s"] == pytest.approx(1000.0 / row["step_ms_median"])
        assert row["crops_per_s"] == pytest.approx(row["steps_per_s"] * 2 * batch)
        assert row["dispatched_ops"] > 1000, "a step's forward, backward and optimizer: thousands of operations"
    assert list(tmp_path.iterdir()) == [tmp_path / "bench.json"], "the step writes no run folder"


def test_each_network_row_is_a_share_of_its_own_devices_peak() -> None:
    """A CUDA row against the CPU's matmul peak read as hundreds of per cent (an H200 run: 260 %): each row is now
    compared with the peak of the device and precision it runs in, and each peak has its row."""
    from dgdehaze_core.benchmarks.networks import BenchSettings, RuntimeVariant, peak_names, with_pct_of_peak

    variants = [RuntimeVariant("onnxruntime", "cpu", False), RuntimeVariant("torch", "cuda", False),
                RuntimeVariant("torch", "cuda", True), RuntimeVariant("tensorrt", "cuda:0", True)]
    names = peak_names(variants, BenchSettings(threads=2))
    assert [names[v.label] for v in variants] == ["cpu-peak/torch-matmul", "cuda-peak/torch-matmul",
                                                  "cuda-peak/torch-matmul-fp16", "cuda-peak/torch-matmul-fp16"]
    rows = {f"lite/{v.label}@640x480": {"gmac_per_s": 50.0} for v in variants}
    before = {"cpu-peak/torch-matmul": {"gmac_per_s": 100.0, "threads": 2.0},
              "cuda-peak/torch-matmul": {"gmac_per_s": 40_000.0}, "cuda-peak/torch-matmul-fp16": {"gmac_per_s": 1e5}}
    after = {"cpu-peak/torch-matmul": {"gmac_per_s": 200.0, "threads": 2.0},
             "cuda-peak/torch-matmul": {"gmac_per_s": 50_000.0}, "cuda-peak/torch-matmul-fp16": {"gmac_per_s": 2e5}}
    table = with_pct_of_peak(rows, names, before, after)
    assert table["lite/onnxruntime@640x480"]["pct_of_peak"] == pytest.approx(25.0)
    assert table["lite/torch-cuda@640x480"]["pct_of_peak"] == pytest.approx(0.1)
    assert table["lite/torch-cuda-fp16@640x480"]["pct_of_peak"] == pytest.approx(0.025)
    assert table["lite/tensorrt-fp16@640x480"]["pct_of_peak"] == pytest.approx(0.025)
    assert table["cuda-peak/torch-matmul"] == {"gmac_per_s": 50_000.0, "before": 40_000.0, "after": 50_000.0}
    assert table["cpu-peak/torch-matmul"]["threads"] == 2.0


@pytest.mark.skipif(default_threads() < 2, reason="ONNX Runtime's default is one thread here, as torch's is made")
def test_the_cpu_peak_is_measured_on_the_threads_of_the_rows_it_divides(tmp_path: Path) -> None:
    """The CPU peak ran on torch's threads whatever the rows ran on: ONNX Runtime's sessions take
    `default_threads()` (at most 4), torch its own count (all cores, or OMP_NUM_THREADS), so on a 16-core host or
    under OMP_NUM_THREADS=1 an ONNX Runtime row's `pct_of_peak` divided by a peak on other threads."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)  # torch's threads as OMP_NUM_THREADS=1 sets them
    try:
        table = run_bench(tmp_path, "lite", "--backends", "torch,onnxruntime", "--sizes", "32x24")
        assert torch.get_num_threads() == 1, "the peak put torch's threads back"
    finally:
        torch.set_num_threads(saved)
    ort = default_threads()
    peaks = {name: row for name, row in table.items() if "peak" in name}
    assert set(peaks) == {"cpu-peak/torch-matmul-1threads", f"cpu-peak/torch-matmul-{ort}threads"}
    assert peaks["cpu-peak/torch-matmul-1threads"]["threads"] == 1.0
    assert peaks[f"cpu-peak/torch-matmul-{ort}threads"]["threads"] == ort
    for label, name in (("torch", "cpu-peak/torch-matmul-1threads"),
                        ("onnxruntime", f"cpu-peak/torch-matmul-{ort}threads")):
        row = table[f"lite/{label}@32x24"]
        assert row["pct_of_peak"] == pytest.approx(100.0 * row["gmac_per_s"] / peaks[name]["gmac_per_s"])


def test_threads_given_to_the_bench_are_put_back_after_it(tmp_path: Path) -> None:
    """--threads held for the whole process after the run: a caller running bench in its own process (the tests,
    `cli.run_parsed`) went on with OpenCV and torch on the bench's threads."""
    import cv2
    import torch

    saved = cv2.getNumThreads(), torch.get_num_threads()
    cv2.setNumThreads(2)
    torch.set_num_threads(2)
    try:
        run_bench(tmp_path, "dcp", "--sizes", "32x24", "--threads", "1")
        assert (cv2.getNumThreads(), torch.get_num_threads()) == (2, 2)
    finally:
        cv2.setNumThreads(saved[0])
        torch.set_num_threads(saved[1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to leave one out")
def test_threads_beyond_the_cpus_this_process_may_use_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--threads was checked against the machine's CPUs (os.cpu_count), not those the process may use: under taskset
    or a container's cpuset a bench on more threads than its cores ran and measured the oversubscription."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(saved)})
    try:
        assert main(["bench", "dcp", "--sizes", "32x24", "--repeats", "1", "--threads", "2"]) == 2
    finally:
        os.sched_setaffinity(0, saved)
    assert "--threads 2 exceeds the 1 CPUs this process may use" in capsys.readouterr().err


def test_a_target_named_twice_is_measured_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`bench lite lite` measured lite's rows twice (the second over the first): minutes of a run for nothing."""
    with caplog.at_level("INFO", logger="dgdehaze_core.benchmarks.networks"):
        table = run_bench(tmp_path, "lite", "lite", "--backends", "onnxruntime", "--sizes", "8x8")
    assert "lite/onnxruntime@8x8" in table
    assert [r.getMessage() for r in caplog.records].count("measuring lite/onnxruntime@8x8") == 1


def test_measure_counts_the_page_faults_and_the_cpu_time_of_a_run() -> None:
    """A step that maps 8 MiB afresh and writes it faults each of its 2048 pages in every run; one that writes a
    buffer kept from run to run faults none; both spend CPU time."""
    import mmap

    from dgdehaze_core.benchmarks.timing import measure

    size = 8 << 20
    data = b"x" * size

    def fresh() -> None:
        with mmap.mmap(-1, size) as mapped:
            mapped.write(data)
    kept = mmap.mmap(-1, size)

    def reused() -> None:
        kept.seek(0)
        kept.write(data)
    try:
        fresh_row, kept_row = measure(fresh, repeats=5), measure(reused, repeats=5)
    finally:
        kept.close()
    assert fresh_row["page_faults_per_run"] >= size // mmap.PAGESIZE
    assert kept_row["page_faults_per_run"] < 10
    assert fresh_row["cpu_ms_per_run"] > 0 and kept_row["cpu_ms_per_run"] > 0



def test_a_frame_the_pipeline_runs_shrunk_counts_the_macs_of_what_the_network_ran() -> None:
    """A 4000x4 frame runs the network at 1984x4 (its padding budget; a frame beyond a TensorRT engine's profile is
    shrunk so too), but its MACs were counted at 4000x4 padded: twice what ran, so `pct_of_peak` read 103 %."""
    from dgdehaze_core.benchmarks.networks import BenchSettings, RuntimeVariant, bench_network, hazy_frames

    rows = bench_network("lite", [RuntimeVariant("torch", "cpu", False)], hazy_frames([(4000, 4)]),
                         BenchSettings(repeats=1, threads=1))
    row = rows["lite/torch@4000x4"]
    assert row["gmacs"] == pytest.approx(count_macs(build_model("lite").eval(), 32, 1984, with_clear=False) / 1e9)
    assert row["gmac_per_s"] == pytest.approx(row["gmacs"] / row["network_ms_median"] * 1000.0)


def test_a_run_stopped_by_ctrl_c_prints_the_rows_it_measured_and_leaves_its_json_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C in a long run (the chain, after DCP and the networks) printed only 'interrupted': every row measured
    was lost. The rows of the targets measured whole are printed, and the --json (a whole run or none) is left as
    it was. The stop is raised where the chain starts: no timing lands a signal there every time."""
    import dgdehaze_core.benchmarks.networks as networks

    def stopped(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(networks, "bench_chain", stopped)
    out = tmp_path / "bench.json"
    out.write_text('{"earlier": {}}\n')
    assert main(["bench", "dcp", "chain", "--sizes", "32x24", "--repeats", "1", "--json", str(out)]) == 130
    printed = capsys.readouterr().out
    assert "stopped: the rows measured before the stop, written to no --json" in printed
    assert "dcp@32x24" in printed
    assert out.read_text() == '{"earlier": {}}\n' and list(tmp_path.iterdir()) == [out]


def test_network_rows_of_a_run_stopped_before_the_second_peak_are_shares_of_the_first() -> None:
    from dgdehaze_core.benchmarks.networks import with_pct_of_peak

    table = with_pct_of_peak({"lite/torch@64x48": {"gmac_per_s": 5.0}}, {"torch": "cpu-peak/torch-matmul"},
                             {"cpu-peak/torch-matmul": {"gmac_per_s": 20.0, "threads": 1.0}})
    assert table["lite/torch@64x48"]["pct_of_peak"] == 25.0
    assert table["cpu-peak/torch-matmul"] == {"gmac_per_s": 20.0, "before": 20.0, "threads": 1.0}


def test_a_value_given_twice_in_a_list_is_measured_once() -> None:
    """`--backends torch,torch`, `--detect-every 1,1`, `--working-sizes 80x60,80x60` or `--chain-detector auto,auto`
    measured the same rows twice under one name, the second over the first: minutes of a run for nothing, as a
    target named twice was before. (`--node-fastdds auto,off,auto,off` alternates on purpose and is left so.)"""
    from dgdehaze_core.benchmarks.networks import available_variants
    from dgdehaze_core.cli import build_parser
    from dgdehaze_core.commands.bench import _check

    assert [v.label for v in available_variants(["torch", "torch"], "cpu")] == ["torch"]
    args = build_parser().parse_args(["bench", "lite", "chain", "--sizes", "160x120", "--detect-every", "1,3,1",
                                      "--train-batch", "8,8", "--working-sizes", "80x60,80x60"])
    assert args.detect_every == [1, 3] and args.train_batch == [8]
    assert _check(args, ["lite", "chain"])[1] == [(80, 60)]


def test_a_cpu_network_row_says_the_threads_it_ran_on() -> None:
    """A row's figures depend on its threads, which only the title said ('threads: default') and the JSON did not:
    under OMP_NUM_THREADS=1 torch's rows ran on 1 and ONNX Runtime's on its default, 2 to 4, and a dashboard fed the
    JSON could not tell which peak row a `pct_of_peak` was a share of."""
    import torch

    from dgdehaze_core.benchmarks.networks import BenchSettings, RuntimeVariant, bench_network, hazy_frames

    rows = bench_network("lite", [RuntimeVariant("torch", "cpu", False)], hazy_frames([(32, 24)]),
                         BenchSettings(repeats=1))
    assert rows["lite/torch@32x24"]["threads"] == torch.get_num_threads()
