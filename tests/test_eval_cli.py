"""`dgdehaze eval` end to end on a few real SOTS pairs, and its errors for bad input."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dgdehaze_core.cli import main
from dgdehaze_core.evaluation.methods import parse_methods
from dgdehaze_core.evaluation.metrics import psnr
from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.io.images import read_image
from dgdehaze_core.io.tables import format_table, write_json


@pytest.mark.slow
def test_quality_and_detection_on_real_pairs(sots_pairs: Path, tmp_path: Path, capsys):
    out = tmp_path / "eval.json"
    code = main(["eval", "--dataset", str(sots_pairs), "--measure", "quality,detection",
                 "--method", "hazy,dcp,clear,clear-jpeg90", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    assert set(rows) == {"quality/hazy", "quality/dcp", "detection/hazy", "detection/dcp", "detection/clear",
                         "detection/clear-jpeg90"}
    printed = capsys.readouterr().out
    assert "psnr" in printed and "map50" in printed
    assert all(key in printed for key in rows), "the printed rows carry the names the JSON keys them by"
    # the table's PSNR is the mean of the per-pair PSNRs
    hazy_psnrs = [psnr(read_image(p), read_image(sots_pairs / "clear" / f"{p.stem.split('_')[0]}.png"))
                  for p in sorted((sots_pairs / "hazy").iterdir())]
    assert rows["quality/hazy"]["psnr"] == pytest.approx(sum(hazy_psnrs) / 2)
    assert rows["quality/hazy"]["pairs"] == 2
    assert rows["quality/dcp"]["psnr"] > rows["quality/hazy"]["psnr"] + 3
    assert rows["quality/dcp"]["ssim"] > rows["quality/hazy"]["ssim"]
    clear = rows["detection/clear"]
    assert clear["f1"] == clear["map50"] == 1.0 and clear["objects"] > 0
    for method in ("hazy", "dcp", "clear-jpeg90"):
        row = rows[f"detection/{method}"]
        assert row["objects"] == clear["objects"] and row["images"] == 2 and row["detections"] > 0
        assert 0.0 <= row["f1"] <= 1.0 and 0.0 <= row["map50"] <= 1.0
        assert row["reference"] == "clear-image detections"
    assert rows["detection/clear-jpeg90"]["f1"] >= 0.9  # a close copy: the detector sees nearly what it saw


def test_without_methods_every_shipped_model_runs_and_detection_adds_the_contrast_baseline(sots_pairs: Path,
                                                                                          tmp_path: Path):
    out = tmp_path / "default.json"
    assert main(["eval", "--dataset", str(sots_pairs), "--measure", "quality,detection", "--limit", "1",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert set(rows) == {"quality/hazy", "quality/dcp", "quality/lite", "detection/hazy", "detection/dcp",
                         "detection/lite", "detection/hazy+clahe"}
    assert rows["detection/hazy+clahe"]["images"] == rows["detection/hazy"]["images"] == 1


def test_one_measure_on_one_set_keys_rows_by_method(sots_pairs: Path, tmp_path: Path):
    out = tmp_path / "q.json"
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "dcp", "--limit", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert list(rows) == ["dcp"] and rows["dcp"]["pairs"] == 1


def test_method_names_and_sources():
    specs = parse_methods("hazy, dcp,lite-no-depth=runs/ablation/best.pt,runs/x/lite.pt,last.pt+hazy,int8.onnx")
    assert [(s.name, s.source) for s in specs] == [
        ("hazy", "hazy"), ("dcp", "dcp"), ("lite-no-depth", "runs/ablation/best.pt"), ("lite", "runs/x/lite.pt"),
        ("last+hazy", "last.pt"), ("int8", "int8.onnx")], "a file in the current folder is named by its stem too"
    with pytest.raises(ValueError, match="unique"):
        parse_methods("dcp,dcp")
    with pytest.raises(ValueError, match="may not contain '/'"):
        parse_methods("a/b=dcp")


@pytest.mark.parametrize("extra, message", [
    (["--measure", "speed"], "unknown measure"),
    (["--measure", "quality", "--method", "hazy,dcp", "--bootstrap", "100"], "--bootstrap compares detection"),
    (["--method", "missing=/nonexistent/lite.pt"], "method 'missing' is unavailable: no such checkpoint"),
    (["--method", "nonsense"], "unknown dehazing method 'nonsense'"),
    (["--measure", "depth"], "fits none of the measures depth"),
    (["--measure", "all,speed"], "unknown measure(s) ['speed']"),
    (["--method", ""], "--method is empty"),
    (["--method", "clear,hazy+clahe"], "none of the methods clear, hazy+clahe applies"),
    (["--measure", "scattering", "--method", "hazy"], "none of the methods hazy applies (it needs a method that"),
    (["--measure", "detection", "--method", "hazy,dcp", "--bootstrap", "10"], "at least 100 redraws"),
    (["--method", "lite", "--half"], "--half runs the networks in fp16 on a GPU: add --device cuda"),
    (["--method", "lite", "--device", "gpu7"], "unknown device 'gpu7'"),
    # left out without a word (the same figures as without them), where dehaze refuses them for dcp:
    (["--method", "hazy,dcp", "--backend", "onnxruntime"], "and none of the methods hazy, dcp is a network"),
    (["--method", "dcp", "--working-size", "320x240"], "choose how a network runs, and none of the methods dcp"),
    (["--method", "hazy,dcp", "--radiance-floor", "none"], "and none of the methods hazy, dcp is a network"),
    (["--method", "hazy,dcp", "--max-detail-gain", "0"], "and none of the methods hazy, dcp is a network"),
    (["--method", "lite", "--output", "decoder", "--radiance-floor", "0.1"], "--output decoder writes the decoder's"),
    *([(["--method", "lite", "--device", "cuda"], "CUDA is not available"),
       (["--method", "lite", "--backend", "tensorrt"], "--backend tensorrt runs on CUDA only, and this machine has "
                                                       "no CUDA device")] if not torch.cuda.is_available()
      else []),
])
def test_bad_arguments_exit_2_with_one_line(sots_pairs: Path, capsys, extra, message):
    assert main(["eval", "--dataset", str(sots_pairs), *extra]) == 2
    assert message in capsys.readouterr().err


def test_the_networks_run_on_the_backend_asked_for_and_score_as_on_torch(sots_pairs: Path, tmp_path: Path,
                                                                          caplog) -> None:
    """What a deployment runs (here ONNX Runtime, the node's backend on a CPU) scores within a hundredth of a dB
    of torch; the log names the runtime each method ran on and the weights it loaded."""
    caplog.set_level("INFO", logger="dgdehaze_core.evaluation.methods")
    figures = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.json"
        assert main(["eval", "--dataset", str(sots_pairs), "--method", "lite", "--backend", backend,
                     "--json", str(out)]) == 0
        figures[backend] = json.loads(out.read_text())["lite"]
        assert f"method lite: lite on {backend}, weights dgdehaze_lite.pt (sha256 " in caplog.text
        caplog.clear()
    assert figures["onnxruntime"]["psnr"] == pytest.approx(figures["torch"]["psnr"], abs=0.01)
    assert figures["onnxruntime"]["ssim"] == pytest.approx(figures["torch"]["ssim"], abs=1e-3)


def test_the_detail_gain_asked_for_reaches_the_networks_and_not_dcp(sots_pairs: Path, tmp_path: Path) -> None:
    """--max-detail-gain scores the node's max_detail_gain: the exact inversion (0) gives lite another image, and so
    other figures, than the default limit on the dense pair; dcp's image does not depend on it."""
    figures = {}
    for gain in ("2", "0"):
        out = tmp_path / f"{gain}.json"
        assert main(["eval", "--dataset", str(sots_pairs), "--include", "1400_7*", "--method", "dcp,lite",
                     "--max-detail-gain", gain, "--json", str(out), "--no-progress"]) == 0
        figures[gain] = json.loads(out.read_text())
    assert figures["0"]["dcp"] == figures["2"]["dcp"] and figures["0"]["lite"]["pairs"] == 1
    assert figures["0"]["lite"]["psnr"] != pytest.approx(figures["2"]["lite"]["psnr"], abs=1e-4)


def test_a_clear_depth_network_runs_on_the_device_asked_for_and_refuses_what_it_cannot_run(
        sots_pairs: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """A `train-depth` checkpoint ran on torch on the CPU whatever --backend, --device and --half said."""
    from dgdehaze_core.evaluation.methods import MethodSpec, load_method
    from dgdehaze_core.io.file_digest import file_sha256
    from dgdehaze_core.models.clear_depth import (ClearDepthArchitecture, ClearDepthNet, ClearDepthPredictor,
                                                  save_clear_depth)

    checkpoint = save_clear_depth(ClearDepthNet(ClearDepthArchitecture(widths=(8, 16), blocks=(0, 0))).eval(),
                                  (64, 64), tmp_path / "depthnet.pt")
    for extra, message in ((["--backend", "onnxruntime"], "'depthnet': a clear-depth network runs on torch only"),
                           (["--backend", "tensorrt", "--device", "cpu"], "runs on torch only, not tensorrt")):
        assert main(["eval", "--dataset", str(sots_pairs), "--method", str(checkpoint), *extra]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ValueError, match="'depthnet': a clear-depth network runs in fp32 only"):
        load_method(MethodSpec("depthnet", str(checkpoint)), device="cuda", half=True)
    devices = []
    loaded = ClearDepthPredictor.from_checkpoint.__func__
    monkeypatch.setattr(ClearDepthPredictor, "from_checkpoint",
                        classmethod(lambda cls, path, device="cpu", read=None:
                                    devices.append(device) or loaded(cls, path, read=read)))
    for options in ({"device": "cuda:1", "backend": "torch"}, {"device": "cpu", "backend": "auto"}, {}):
        load_method(MethodSpec("depthnet", str(checkpoint)), **options)
    assert devices == ["cuda:1", "cpu", "cpu"]
    assert load_method(MethodSpec("depthnet", str(checkpoint))).weights == {
        "path": "depthnet.pt", "sha256": file_sha256(checkpoint)[:12]}, "the weights it loaded, for eval's record"


def test_eval_reads_each_weights_file_once(sots_pairs: Path, tmp_path: Path, opened: list[str]) -> None:
    """A .pt was read once to tell a clear-depth network from a dehazer and again to load it: twice the time, and
    the figures named for the second read's bytes while the first decided what ran."""
    from dgdehaze_core.models import shipped_weights_path

    depth = shipped_weights_path("lite").parent / "clear_depth_kitti.pt"
    out = tmp_path / "quality.json"
    assert main(["eval", "--dataset", str(sots_pairs), "--method", f"lite={shipped_weights_path('lite')},"
                 f"depthnet={depth}", "--limit", "1", "--no-progress", "--json", str(out)]) == 0
    assert opened.count("dgdehaze_lite.pt") == 1 and opened.count("clear_depth_kitti.pt") == 1, opened
    assert list(json.loads(out.read_text())) == ["lite"]


def test_a_depth_network_gets_no_rows_where_its_image_is_its_input(sots_pairs: Path, tmp_path: Path) -> None:
    """A clear-depth network's image is its input and its t is 1: its quality and haze rows were hazy's, scored as
    a method's. Only its depth is measured; alone in another measure it is refused."""
    from dgdehaze_core.models import shipped_weights_path

    depth = f"depthnet={shipped_weights_path('lite').parent / 'clear_depth_kitti.pt'}"
    for measure in ("quality", "haze"):
        out = tmp_path / f"{measure}.json"
        assert main(["eval", "--dataset", str(sots_pairs), "--measure", measure, "--method", f"hazy,{depth}",
                     "--limit", "1", "--no-progress", "--json", str(out)]) == 0
        assert list(json.loads(out.read_text())) == ["hazy"], measure
        assert main(["eval", "--dataset", str(sots_pairs), "--measure", measure, "--method", depth, "--limit", "1",
                     "--no-progress"]) == 2, measure


def test_repeated_method_options_add_up_and_a_set_given_twice_through_a_link_is_refused(
        sots_pairs: Path, tmp_path: Path, capsys):
    out = tmp_path / "q.json"
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "hazy", "--method", "dcp", "--limit", "1",
                 "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())) == ["hazy", "dcp"]
    link = tmp_path / "link"
    link.symlink_to(sots_pairs)
    assert main(["eval", "--dataset", str(sots_pairs), "--dataset", str(link), "--method", "hazy"]) == 2
    assert f"--dataset {link} is given twice" in capsys.readouterr().err


def test_no_progress_leaves_the_bars_out_of_a_log(sots_pairs: Path, capsys: pytest.CaptureFixture) -> None:
    """eval drew a bar per measure and set with no way to leave it out of a script's log."""
    command = ["eval", "--dataset", str(sots_pairs), "--measure", "quality,scattering", "--method", "dcp"]
    assert main(command) == 0
    drawn = capsys.readouterr().err
    assert f"quality {sots_pairs.name}: 100%|" in drawn and f"scattering {sots_pairs.name}: 100%|" in drawn
    assert main([*command, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "%|" not in captured.err and "psnr" in captured.out


def test_a_failed_run_says_that_its_json_file_holds_an_earlier_run_s_figures(tmp_path: Path, capsys):
    """A failed eval left the --json of an earlier run without a word: a script read it as this run's figures."""
    figures = tmp_path / "figures.json"
    figures.write_text('{"dcp": {"psnr": 20.0}}')
    os.utime(figures, (1_700_000_000, 1_700_000_000))
    assert main(["eval", "--dataset", str(tmp_path / "missing"), "--measure", "quality", "--method", "dcp",
                 "--json", str(figures)]) == 2
    error = capsys.readouterr().err
    assert f"--json {figures} was not written by this run: it holds what it held before" in error
    assert figures.read_text() == '{"dcp": {"psnr": 20.0}}'
    assert main(["eval", "--dataset", str(tmp_path / "missing"), "--measure", "quality", "--method", "dcp",
                 "--json", str(tmp_path / "new.json")]) == 2
    assert "was not written" not in capsys.readouterr().err  # no earlier file: nothing to say
    os.utime(tmp_path, (1_700_000_000, 1_700_000_000))
    assert main(["eval", "--dataset", str(tmp_path / "missing"), "--measure", "quality", "--method", "dcp",
                 "--json", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"--json {tmp_path} is a folder: give the file to write" in error
    assert "was not written" not in error, "a folder holds no earlier run's figures"


def test_a_json_named_as_an_image_is_refused_and_the_set_it_would_land_in_stays_whole(sots_pairs: Path, capsys):
    """`--json SET/hazy/1430_1.png`, a new file, was written: the set then held a .png of JSON, and every later eval
    of it failed on that 'unreadable image'. A file's kind is told by its suffix, written as read (README)."""
    before = sorted(sots_pairs.rglob("*"))
    for name in ("1400_9.png", "figures.PNG", "figures.mp4"):
        assert main(["eval", "--dataset", str(sots_pairs), "--method", "dcp", "--no-progress",
                     "--json", str(sots_pairs / "hazy" / name)]) == 2
        assert "is read as an image or a video" in capsys.readouterr().err
    assert sorted(sots_pairs.rglob("*")) == before
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "dcp", "--no-progress"]) == 0


def test_a_malformed_option_value_says_why(capsys):
    """`--imgsz 0` was taken without a word where no detection was measured (it only failed at the detector)."""
    for option, value, reason in (("--working-size", "12", "a size WxH such as 320x240, or 320x0"),
                                  ("--group", "", "a comparison group is NAME=METHOD"),
                                  ("--imgsz", "0", "imgsz must be a multiple of 32 in [32, 4096], got 0"),
                                  ("--imgsz", "big", "imgsz must be a whole number of pixels, got 'big'"),
                                  ("--radiance-floor", "0.6", "radiance_floor must be a number in [0, 0.5], got 0.6"),
                                  ("--radiance-floor", "off", "a number in [0, 0.5] or none, got 'off'"),
                                  ("--max-detail-gain", "0.5", "max_detail_gain must be 0 (the exact inversion) "
                                                               "or a number in [1, 100], got 0.5"),
                                  ("--max-detail-gain", "101", "or a number in [1, 100], got 101.0"),
                                  ("--max-detail-gain", "nan", "or a number in [1, 100], got nan"),
                                  ("--max-detail-gain", "exact", "or one in [1, 100], got 'exact'")):
        with pytest.raises(SystemExit) as exit_code:
            main(["eval", "--measure", "quality", option, value])
        error = capsys.readouterr().err
        assert exit_code.value.code == 2 and "invalid" not in error and reason in error, error


def test_broken_sets_exit_2_naming_the_problem(sots_pairs: Path, tmp_path: Path, capsys):
    (sots_pairs / "hazy" / "1999_2.png").write_bytes((sots_pairs / "hazy" / "1400_2.png").read_bytes())
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "hazy"]) == 2
    assert "1999_2.png" in capsys.readouterr().err
    empty = tmp_path / "empty"
    (empty / "hazy").mkdir(parents=True)
    (empty / "clear").mkdir()
    assert main(["eval", "--dataset", str(empty), "--method", "hazy"]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert main(["eval", "--dataset", str(tmp_path / "absent")]) == 2
    assert "no such dataset folder" in capsys.readouterr().err
    photo = sots_pairs / "hazy" / "1400_2.png"  # was "no such dataset folder", naming a file that is there
    assert main(["eval", "--dataset", str(photo)]) == 2
    assert f"--dataset {photo} is a file, not a data set's folder: give the folder" in capsys.readouterr().err
    (tmp_path / "link").symlink_to(tmp_path / "unmounted")
    assert main(["eval", "--dataset", str(tmp_path / "link")]) == 2
    assert f"{tmp_path / 'link'} is a link to {tmp_path / 'unmounted'}, which leads to no dataset folder" in \
        capsys.readouterr().err


def test_the_default_run_leaves_out_a_set_a_measure_refuses_but_fails_on_broken_data(sots_pairs: Path, tmp_path: Path,
                                                                                     monkeypatch, capsys, caplog):
    data = tmp_path / "data"
    shutil.copytree(sots_pairs, data / "paired" / "good")
    other = data / "paired" / "other"
    (other / "clear").mkdir(parents=True)
    (other / "hazy").mkdir()
    shutil.copy(sots_pairs / "clear" / "1400.png", other / "clear" / "1401.png")
    shutil.copy(sots_pairs / "hazy" / "1400_2.png", other / "hazy" / "1401_2.png")
    monkeypatch.setenv("DGDEHAZE_DATA", str(data))
    out = tmp_path / "rows.json"
    assert main(["eval", "--method", "hazy", "--include", "1400_*", "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())) == ["good/hazy"]  # `other` holds no selected image: refused, left out
    assert "quality on other left out: no image in" in caplog.text
    hazy = other / "hazy" / "1401_2.png"
    hazy.write_bytes(hazy.read_bytes()[:300])  # a truncated download
    assert main(["eval", "--method", "hazy", "--json", str(out)]) == 2
    error, note = capsys.readouterr().err.strip().splitlines()[-2:]  # before them: tqdm's progress
    assert note.startswith(f"dgdehaze eval: --json {out} was not written by this run")  # the first run's rows
    assert error.startswith("dgdehaze eval: error: quality on ")
    assert error.endswith("1401_2.png is not a readable image")


def test_measure_all_on_a_given_set_runs_what_applies_and_leaves_out_the_rest(shared_data: Path, tmp_path: Path,
                                                                             caplog, capsys):
    middlebury = shared_data / "depth" / "middlebury2003"
    out = tmp_path / "all.json"
    assert main(["eval", "--dataset", str(middlebury), "--measure", "all", "--method", "dcp", "--limit", "1",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert "depth/dcp@t0.45" in rows and rows["clear/dcp"]["images"] == 1  # a depth set's frames are clear ones
    assert {key.split("/")[0] for key in rows} == {"depth", "clear"}
    assert rows["clear/dcp"]["f1"] is None and rows["clear/dcp"]["objects"] == 0  # no object the detector knows
    assert 10.0 < rows["clear/dcp"]["psnr"] < 40.0 and rows["clear/dcp"]["brightness_change"] < 0
    assert "visibility on middlebury2003 left out: middlebury2003 has no road" in caplog.text
    unfit = [r for r in caplog.records if "measure applies to none of the sets" in r.getMessage()]
    assert unfit and all(r.levelname == "WARNING" for r in unfit), "a measure left out whole is said at warning"
    assert main(["eval", "--dataset", str(middlebury), "--measure", "visibility", "--method", "dcp"]) == 2
    assert "has no road" in capsys.readouterr().err  # named on its own, the measure's refusal fails the run


def test_a_trained_model_runs_through_every_measure(shared_data: Path, sots_pairs: Path, tmp_path: Path):
    """The network path of the evaluation (depth, physics outputs at the input's size), with untrained weights."""
    import torch

    from dgdehaze_core.models import build_model, save_checkpoint

    torch.manual_seed(0)
    weights = save_checkpoint(build_model("lite"), tmp_path / "untrained.pt")
    assert load_pipeline(str(weights)) is not None
    out = tmp_path / "net.json"
    code = main(["eval", "--dataset", str(sots_pairs), "--dataset", str(shared_data / "depth" / "middlebury2003"),
                 "--measure", "quality,depth,haze", "--method", f"net={weights}", "--limit", "1", "--output", "physics",
                 "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    assert "quality/net" in rows and "depth/net@t0.45" in rows and "haze/net" in rows
    assert 0.0 <= rows["depth/net@t0.45"]["delta1"] <= 1.0


def test_subset_rows_beside_the_whole_set_and_include(sots_pairs: Path, tmp_path: Path, capsys):
    out = tmp_path / "subset.json"
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "hazy", "--subset", "dense=*_7.png",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert list(rows) == ["sots4/hazy", "sots4:dense/hazy"]
    assert rows["sots4/hazy"]["pairs"] == 2 and rows["sots4:dense/hazy"]["pairs"] == 1
    dense = psnr(read_image(sots_pairs / "hazy" / "1400_7.png"), read_image(sots_pairs / "clear" / "1400.png"))
    assert rows["sots4:dense/hazy"]["psnr"] == pytest.approx(dense)
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "hazy", "--include", "*_2.png",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["hazy"]["pairs"] == 1
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "hazy", "--include", "1999_*"]) == 2
    assert "no image in" in capsys.readouterr().err
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "hazy", "--subset", "none=1999_*",
                 "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())) == ["sots4/hazy"]  # a subset without images has no rows
    assert main(["eval", "--dataset", str(sots_pairs), "--method", "hazy", "--subset", "a/b=*"]) == 2
    assert "NAME=GLOB" in capsys.readouterr().err


def test_a_method_dehazes_each_distinct_frame_once():
    import numpy as np

    from dgdehaze_core.evaluation.methods import CACHED_BYTES, Method, MethodSpec

    calls = []
    reference = Method(MethodSpec("hazy", "hazy"), None)

    def run(frame):
        calls.append(frame.copy())
        return reference.dehaze(frame)

    method = Method(MethodSpec("counted", "counted"), run)
    first, second = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8)
    assert method.dehaze(first) is method.dehaze(first.copy())
    method.dehaze(second)
    assert len(calls) == 2
    photo = np.zeros((3000, 4000, 3), np.uint8)  # 12 megapixels: one result holds about 130 MB
    kept = [method.dehaze(photo + i) for i in range(4)]
    assert CACHED_BYTES < sum(r.image.nbytes + r.depth.nbytes + r.transmission.nbytes for r in kept)
    assert len(calls) == 6 and method.dehaze(photo + 3) is kept[3], "the newest result stays"
    method.dehaze(photo)
    assert len(calls) == 7, "the oldest went, rather than holding gigabytes"


def test_methods_that_share_a_pipeline_keep_its_results_within_one_cap(shared_data: Path, monkeypatch):
    """`dcp+hazy` and `dcp` run one pipeline and keep one set of results: each counting only what it dehazed itself
    held twice the cap (and more, once one dropped what the other had kept)."""
    from dgdehaze_core.evaluation import methods as methods_module

    frames = [read_image(path) for path in sorted((shared_data / "paired" / "sots-indoor" / "hazy").glob("140*"))[:4]]
    fused, plain = methods_module.load_methods(parse_methods("dcp+hazy,dcp"))
    first = plain.dehaze(frames[0])
    size = sum(array.nbytes for array in (first.image, first.depth, first.transmission))
    monkeypatch.setattr(methods_module, "CACHED_BYTES", 2 * size)  # two SOTS results
    plain.dehaze(frames[1])
    fused.dehaze(frames[2])
    newest = fused.dehaze(frames[3])
    assert plain.dehaze(frames[3]) is newest, "the newest result is kept for both"
    assert plain.dehaze(frames[0]) is not first, "the oldest went: the two methods' results together hold the cap"
    assert plain.results is fused.results and plain.results.nbytes == 2 * size


def test_the_jpeg_reference_is_a_close_copy_of_the_clear_image(sots_pairs: Path):
    from dgdehaze_core.evaluation.methods import jpeg_copy

    clear = read_image(sots_pairs / "clear" / "1400.png")
    copy = jpeg_copy(clear)
    assert copy.shape == clear.shape and copy.dtype == clear.dtype
    assert 35.0 < psnr(copy, clear) < 60.0


def _paired_set(root: Path, clear: np.ndarray, hazy: np.ndarray) -> Path:
    """A one-pair set of hand-made images: root/clear/1.png and root/hazy/1_1.png."""
    (root / "clear").mkdir(parents=True)
    (root / "hazy").mkdir()
    cv2.imwrite(str(root / "clear" / "1.png"), clear)
    cv2.imwrite(str(root / "hazy" / "1_1.png"), hazy)
    return root


def test_sets_whose_folder_and_parent_agree_keep_apart_rows(tmp_path: Path, capsys):
    clear = np.full((16, 16, 3), 100, np.uint8)
    first = _paired_set(tmp_path / "x1" / "sets" / "q", clear, clear + np.uint8(10))
    second = _paired_set(tmp_path / "x2" / "sets" / "q", clear, clear + np.uint8(40))
    out = tmp_path / "two.json"
    assert main(["eval", "--dataset", str(first), "--dataset", str(second), "--method", "hazy",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert list(rows) == ["x1/sets/q/hazy", "x2/sets/q/hazy"]
    assert rows["x1/sets/q/hazy"]["psnr"] > rows["x2/sets/q/hazy"]["psnr"] + 10
    assert main(["eval", "--dataset", str(first), "--dataset", str(first), "--method", "hazy"]) == 2
    assert f"--dataset {first} is given twice" in capsys.readouterr().err


def test_an_identical_pair_keeps_the_mean_psnr_finite_in_the_table_and_json(tmp_path: Path, capsys):
    clear = np.full((16, 16, 3), 100, np.uint8)
    root = _paired_set(tmp_path / "same", clear, clear)
    cv2.imwrite(str(root / "clear" / "2.png"), clear)
    cv2.imwrite(str(root / "hazy" / "2_1.png"), clear + np.uint8(10))
    out = tmp_path / "same.json"
    assert main(["eval", "--dataset", str(root), "--method", "hazy", "--json", str(out)]) == 0
    shifted = 10 * math.log10(1.0 / (10 / 255) ** 2)
    assert json.loads(out.read_text())["hazy"]["psnr"] == pytest.approx((100.0 + shifted) / 2)
    assert f"{(100.0 + shifted) / 2:.2f}" in capsys.readouterr().out


def test_the_json_writes_an_infinite_figure_as_the_table_prints_it(tmp_path: Path):
    rows = {"a": {"error": math.inf, "low": -math.inf, "none": math.nan, "n": 3, "name": "x"}}
    write_json(tmp_path / "rows.json", rows)
    assert json.loads((tmp_path / "rows.json").read_text()) == {"a": {"error": "inf", "low": "-inf", "none": None,
                                                                       "n": 3, "name": "x"}}
    assert format_table(rows).splitlines()[-1].split()[1:3] == ["inf", "-inf"]
    numpy_rows = {"a": {"psnr": np.float32(21.5), "images": np.int64(7), "absrel": np.float32("nan")}}
    write_json(tmp_path / "numpy.json", numpy_rows)  # a figure computed in float32 is written, not a TypeError
    assert json.loads((tmp_path / "numpy.json").read_text()) == {"a": {"psnr": 21.5, "images": 7, "absrel": None}}
    assert format_table(numpy_rows).splitlines()[-1].split() == ["a", "21.50", "7", "n/a"], "as a Python float prints"


def test_a_12_bit_camera_s_16_bit_pngs_are_scored_as_their_8_bit_images_with_input_bits_12(shared_data: Path,
                                                                                         tmp_path: Path, caplog):
    """A paired set and a folder of hazy photos exported as a 12-bit camera's 16-bit PNGs (samples 0..4095): with
    --input-bits 12 every figure is that of the images as 8 bits; without it a warning, once for the run, says to
    give it."""
    sources = {"pairs/hazy/0016_0.8_0.08": shared_data / "paired" / "sots-outdoor" / "hazy" / "0016_0.8_0.08.jpg",
               "pairs/clear/0016": shared_data / "paired" / "sots-outdoor" / "clear" / "0016.jpg",
               "photos/foggy-001": shared_data / "detection" / "dawn-fog" / "foggy-001.jpg",
               "photos/foggy-004": shared_data / "detection" / "dawn-fog" / "foggy-004.jpg"}
    for bits in (8, 12):
        for name, source in sources.items():
            image = read_image(source)
            target = tmp_path / str(bits) / f"{name}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), image if bits == 8 else ((image.astype(np.uint32) * 4095 + 127) // 255)
                        .astype(np.uint16))

    def rows(folder: str, *options: str) -> dict:
        out = tmp_path / f"{folder}{''.join(options)}.json"
        sets = [item for kind in ("pairs", "photos") for item in ("--dataset", str(tmp_path / folder / kind))]
        assert main(["eval", *sets, "--measure", "quality,haze", "--method", "hazy,dcp", *options,
                     "--json", str(out)]) == 0
        return json.loads(out.read_text())

    with caplog.at_level("WARNING", logger="dgdehaze_core.io.images"):
        expected = rows("8")
        assert rows("12", "--input-bits", "12") == expected
        assert not caplog.records
        black = rows("12")
    assert len(caplog.records) == 1 and "give --input-bits 12" in caplog.text
    assert set(black) == set(expected) and "haze/photos/dcp" in expected
    for row in ("haze/pairs/hazy", "haze/photos/hazy"):  # read as 16 bits: nearly black photos, scored as such
        assert black[row]["dark_channel"] < expected[row]["dark_channel"] / 4
