"""`dgdehaze export` end to end on this CPU: a checkpoint to a fixed-size ONNX file, the shipped detector to ONNX at
another input size, and clear refusals (no TensorRT here, bad arguments) that leave no file behind."""
from __future__ import annotations

from pathlib import Path

import json
import shutil

import cv2
import numpy as np
import onnx
import pytest
import torch

from dgdehaze_core.cli import main
from dgdehaze_core.detection.detector import DEFAULT_DETECTOR, Detector
from dgdehaze_core.inference.backends import PHYSICS_OUTPUTS
from dgdehaze_core.evaluation.results_record import record
from dgdehaze_core.evaluation.results_tables import provenance
from dgdehaze_core.io.file_digest import file_sha256
from dgdehaze_core.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from dgdehaze_core.inference.export.to_onnx import EXPORTED_FROM
from dgdehaze_core.inference.pipeline import load_pipeline, pipeline_from_model
from dgdehaze_core.inference.provenance import exported_from
from dgdehaze_core.io.images import bgr_to_rgb_float
from dgdehaze_core.io.onnx_files import checked_dgdehaze_export
from dgdehaze_core.models import build_model, save_checkpoint


def input_dims(path: Path) -> list[int | str]:
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value or d.dim_param for d in dims]


def test_checkpoint_to_fixed_size_onnx_that_matches_torch(tmp_path: Path, shared_data: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    model = build_model("lite").eval()
    checkpoint = save_checkpoint(model, tmp_path / "lite.pt", {"iterations": 7, "recipe": "mine", "commit": "abc1234"})
    out = tmp_path / "out" / "lite.onnx"
    monkeypatch.setenv("DGDEHAZE_ONNX_EXPORTER", "dynamo")  # --exporter, given, decides
    assert main(["export", "--config", "lite", "--weights", str(checkpoint), "--format", "onnx",
                 "--height", "60", "--width", "90", "--physics-only", "--exporter", "torchscript",
                 "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert input_dims(out) == [1, 3, 64, 96], "rounded up to the stride, fixed"
    metadata = {prop.key: prop.value for prop in onnx.load(str(out)).metadata_props}
    assert metadata["dgdehaze_exporter"] == "torchscript"
    assert metadata["dgdehaze_graph_rewrites"] == "v3: 3", \
        "two heads kept planar, the depth head's softplus (TorchScript's GELUs already come in the fusable order)"
    source = json.loads(metadata[EXPORTED_FROM])
    assert source == {"path": "lite.pt", "sha256": file_sha256(checkpoint)[:12], "iterations": 7, "recipe": "mine",
                      "commit": "abc1234"}, "the export says which trained weights it holds"
    assert exported_from(checked_dgdehaze_export(out).metadata) == source, \
        "what an engine built from it records (tensorrt_backend)"
    assert load_pipeline(str(out), threads=1).weights_summary.endswith(
        f"an ONNX export of a `lite` network, fp32, of `lite.pt` (sha256 {source['sha256']}, 7 training iterations "
        "of recipe mine at commit `abc1234`))"), "named so on the node's /diagnostics"
    backend = OnnxRuntimeBackend(out, threads=1)
    assert backend.config_name == "lite" and backend.outputs == PHYSICS_OUTPUTS
    frame = cv2.resize(cv2.imread(str(shared_data / "hazy-real" / "urhi" / "SFC_Google_197.png")), (96, 64))
    batch = np.ascontiguousarray(bgr_to_rgb_float(frame).transpose(2, 0, 1)[None])
    with torch.no_grad():
        expected = model(torch.from_numpy(batch))
    for name, value in backend.run(batch).items():
        assert np.abs(value - expected[name].numpy()).max() < 1e-3, name
    assert sorted(p.name for p in out.parent.iterdir()) == ["lite.onnx"], "no temporary files left"
    pairs = tmp_path / "sots1"
    for folder, name in (("clear", "1400.png"), ("hazy", "1400_2.png")):
        (pairs / folder).mkdir(parents=True)
        shutil.copy(shared_data / "paired" / "sots-indoor" / folder / name, pairs / folder)
    assert record("exported", ["--dataset", str(pairs), "--method", f"mine={out}"], tmp_path / "results") == 0
    meta = json.loads((tmp_path / "results" / "exported.meta.json").read_text())
    assert provenance(meta, "exported").splitlines()[-1].endswith(
        f"an ONNX export of a `lite` network, fp32, of `lite.pt` (sha256 {source['sha256']}, 7 training iterations "
        "of recipe mine at commit `abc1234`))"), "a figure of an export says which trained weights it measured"

    # the pipeline runs a fixed-size export at its own size on a frame of any size, as torch does at that working size
    photo = cv2.imread(str(shared_data / "hazy-real" / "urhi" / "SFC_Google_197.png"))
    fixed = load_pipeline(str(out))
    assert fixed.working_size == (96, 64)
    result = fixed(photo)
    expected_result = pipeline_from_model(model, working_size=(96, 64), output="physics")(photo)
    assert result.image.shape == photo.shape and result.depth.shape == photo.shape[:2]
    assert np.abs(result.image.astype(int) - expected_result.image.astype(int)).max() <= 2
    assert np.allclose(result.depth, expected_result.depth, rtol=1e-3, atol=1e-3, equal_nan=True)
    assert load_pipeline(str(out), working_size=(90, 60)).working_size == (90, 60), "pads to the export's size"
    assert backend.max_batch == 1
    pair = fixed.process_batch([photo, photo[::-1].copy()])  # a batch of one at a time, as the file takes
    assert np.array_equal(pair[0].image, result.image) and pair[1].image.shape == photo.shape
    with pytest.raises(ValueError, match="takes 96x64 inputs only.*export with --dynamic"):
        load_pipeline(str(out), working_size=(160, 120))


@pytest.mark.slow  # rebuilds YOLOv8n from the int8 file and exports it twice (about 10 s)
def test_shipped_detector_exports_at_another_size_and_as_dynamic_int8(tmp_path: Path, shared_data: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(tmp_path / "cache"))
    frame = cv2.imread(str(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png"))
    fixed = tmp_path / "yolov8n_320.onnx"
    assert main(["export", "--detector", str(DEFAULT_DETECTOR), "--format", "onnx", "--imgsz", "320",
                 "--out", str(fixed)]) == 0
    assert input_dims(fixed) == [1, 3, 320, 320]
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    again = tmp_path / "yolov8n_320_again.onnx"
    assert main(["export", "--detector", str(DEFAULT_DETECTOR), "--format", "onnx", "--imgsz", "320",
                 "--out", str(again)]) == 0
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == entries, \
        "the same export again comes from the cache: nothing is built or added (an engine takes minutes)"
    assert again.read_bytes() == fixed.read_bytes()
    dynamic = tmp_path / "yolov8n_int8_dynamic.onnx"
    assert main(["export", "--detector", str(DEFAULT_DETECTOR), "--format", "onnx", "--int8",
                 "--out", str(dynamic)]) == 0
    assert input_dims(dynamic) == ["batch", 3, "height", "width"]
    with caplog.at_level("WARNING", logger="dgdehaze_core.commands.export"):
        assert main(["export", "--detector", str(DEFAULT_DETECTOR), "--format", "onnx", "--int8",
                     "--out", str(again)]) == 0
    assert f"replacing {again}\n" in caplog.text, "said, not done without a word (no network of ours to name)"
    assert again.read_bytes() == dynamic.read_bytes()
    for path in (fixed, dynamic):
        persons = [d for d in Detector(path, imgsz=320, precision="file")(frame) if d.class_name == "person"]
        assert len(persons) >= 3, f"{path.name} finds the people of YST_Bing_667 (RTTS: nine)"
    cached = sorted(p.suffix for p in (tmp_path / "cache").iterdir() if p.suffix in (".onnx", ".pt", ".json"))
    assert cached.count(".onnx") >= 2 and cached.count(".pt") == 1, "the rebuilt .pt is cached with the exports"
    assert cached.count(".json") == cached.count(".onnx") + cached.count(".pt"), \
        "the exports are kept in the engine cache ($DGDEHAZE_ENGINE_CACHE) with their sidecars, as DEPLOYMENT.md says"


@pytest.mark.parametrize("args, message", [
    (["--config", "lite", "--untrained", "--format", "engine"], "TensorRT is not installed"),
    (["--config", "lite", "--untrained", "--int8"], "--int8 needs --calib DIR"),
    (["--config", "lite", "--untrained", "--int8", "--fp16", "--calib", "."], "exclude each other"),
    (["--detector", "yolov8n.pt", "--int8"], "use --format engine"),
    (["--detector", "yolov8n.pt", "--format", "engine", "--int8"], "needs --calib DATA.yaml"),  # was coco8.yaml
    (["--detector", "yolov8n.pt", "--fp16"], "fp16 ONNX detector only on a GPU"),  # was an fp32 file, cached as fp16
    (["--config", "lite", "--untrained", "--height", "480"], "both --height and --width"),
    (["--detector", "model.tflite"], "quantised Ultralytics .onnx"),
    (["--detector", "absent.pt"], "no such detector weights"),
    (["--detector", "yolov8n.pt", "--physics-only"], "belong to --config"),
    (["--config", "nosuch"], "unknown model configuration 'nosuch'"),
    (["--config", "lite", "--untrained", "--height", "8200", "--width", "40", "--dynamic"], "up to 8192 pixels a side"),
    (["--config", "lite", "--untrained", "--height", "100000", "--width", "100000"], "exceeds the limit"),
    (["--config", "lite", "--untrained", "--input-bits", "12"], "goes with --config --int8 --calib DIR only"),
    (["--detector", "yolov8n.pt", "--format", "engine", "--int8", "--calib", "data.yaml", "--input-bits", "12"],
     "goes with --config --int8 --calib DIR only"),
    # each of these was accepted and left out of the export without a word:
    (["--detector", "yolov8n.pt", "--height", "320", "--width", "320"], "a --detector's input size is --imgsz"),
    (["--config", "lite", "--untrained", "--imgsz", "320"], "a --config export's is --height and --width"),
    (["--config", "lite", "--weights", "best.pt", "--untrained"], "--weights and --untrained exclude each other"),
    (["--config", "lite", "--untrained", "--calib", "."], "without --int8 nothing reads it"),
    (["--detector", "yolov8n.pt", "--exporter", "dynamo"], "Ultralytics exports the detector"),
    # was 'no trained weights for 'paper' at dgdehaze_core/weights/dgdehaze_paper.pt', a file no one can make
    (["--config", "paper"], "the paper's released weights are not shipped: give --weights model_Roadmap.pth"),
])
def test_refusals_exit_2_with_a_message_and_write_nothing(args: list[str], message: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available() and "engine" in args:
        pytest.skip("CUDA is available: an engine may build here")
    out = tmp_path / ("out.engine" if "engine" in args else "out.onnx")
    assert main(["export", *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_size_off_the_stride_is_said_to_resize_frames_only_where_the_file_is_fixed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`--height 20 --width 20 --dynamic` warned 'frames are resized to 32x32', though a dynamic file (or an engine's
    profile) takes frames of any size: the size is only the one traced, or the engine's optimum."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: an engine may build here")
    said = {}
    for fixed in (False, True):
        caplog.clear()
        with caplog.at_level("INFO", logger="dgdehaze_core.commands.export"):
            assert main(["export", "--config", "lite", "--untrained", "--format", "engine", "--height", "20",
                         "--width", "20", *([] if fixed else ["--dynamic"]), "--out", str(tmp_path / "x.engine")]) == 2
        said[fixed] = caplog.text
    assert "frames are resized to 32x32" not in said[False] and "the engine is optimised for 32x32" in said[False]
    assert "WARNING" in said[True] and "give that working size, or frames are resized to 32x32" in said[True]


def test_the_help_names_both_kinds_of_detector_file_export_takes(capsys: pytest.CaptureFixture[str]) -> None:
    """DEPLOYMENT.md exports the shipped int8 .onnx with --detector; `export --help` offered a .pt only."""
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    detector = text[text.rindex("--detector DETECTOR"):text.rindex("--weights WEIGHTS")]
    assert ".pt" in detector and "quantised Ultralytics .onnx" in detector and "yolov8n_int8.onnx" in detector


@pytest.mark.parametrize("out, message", [("folder", "is a folder"), ("/proc/lite.onnx", "cannot be written")])
def test_an_output_that_cannot_be_written_is_refused_before_the_export(out: str, message: str, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path if out == "folder" else Path(out)
    assert main(["export", "--config", "lite", "--untrained", "--out", str(target)]) == 2
    assert message in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_an_export_never_writes_over_the_file_it_exports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--out` naming the weights or the detector being exported replaced them with the export (a checkpoint
    became an ONNX file, the int8 detector its float rebuild)."""
    from dgdehaze_core.models import shipped_weights_path

    weights, detector = tmp_path / "lite.pt", tmp_path / "yolo.onnx"
    weights.write_bytes(shipped_weights_path("lite").read_bytes())
    detector.write_bytes(DEFAULT_DETECTOR.read_bytes())
    (tmp_path / "link.pt").symlink_to(weights)
    for args, source in ((["--config", "lite", "--weights", str(weights), "--out", str(weights)], weights),
                         (["--config", "lite", "--weights", str(weights), "--out", str(tmp_path / "link.pt")], weights),
                         (["--detector", str(detector), "--format", "onnx", "--imgsz", "320", "--out", str(detector)],
                          detector)):
        before = source.read_bytes()
        assert main(["export", *args]) == 2
        assert "would overwrite the input" in capsys.readouterr().err
        assert source.read_bytes() == before


def test_an_export_named_as_another_kind_of_file_is_refused_and_never_replaces_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--out` was written whatever its name: an ONNX export replaced a checkpoint (`--out best.pt`) or a photo, and
    the file it left was read by its suffix as a checkpoint, which it is not."""
    from dgdehaze_core.models import shipped_weights_path

    checkpoint, photo = tmp_path / "best.pt", tmp_path / "road.png"
    checkpoint.write_bytes(shipped_weights_path("lite").read_bytes())
    cv2.imwrite(str(photo), np.full((8, 8, 3), 90, np.uint8))
    kept = {path: path.read_bytes() for path in (checkpoint, photo)}
    for args, out, message in (([], checkpoint, "an ONNX file is read only from a file named *.onnx"),
                               ([], photo, "an ONNX file is read only from a file named *.onnx"),
                               (["--format", "engine"], tmp_path / "lite.onnx", "a TensorRT engine is read only "
                                                                               "from a file named *.engine")):
        assert main(["export", "--config", "lite", "--untrained", *args, "--out", str(out)]) == 2
        assert f"--out {out}: {message}" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in kept} == kept and len(list(tmp_path.iterdir())) == 2


def test_an_export_given_as_the_weights_to_export_is_named_as_an_export(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """An ONNX file given as --weights (or as a recipe's init_weights) was 'truncated, or not a torch checkpoint'."""
    assert main(["export", "--config", "lite", "--weights", str(DEFAULT_DETECTOR),
                 "--out", str(tmp_path / "lite.onnx")]) == 2
    assert f"{DEFAULT_DETECTOR} is not a readable dgdehaze checkpoint: it is an ONNX file (an export, which runs as " \
           "a --method), not a torch checkpoint (.pt)" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_a_truncated_detector_file_is_refused_in_one_line_and_the_existing_output_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truncated = tmp_path / "yolo.onnx"
    truncated.write_bytes(DEFAULT_DETECTOR.read_bytes()[:100_000])
    out = tmp_path / "detector.onnx"
    out.write_text("the previous export")
    assert main(["export", "--detector", str(truncated), "--format", "onnx", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "is not a readable ONNX detector" in error and len(error.strip().splitlines()) == 1, error
    assert out.read_text() == "the previous export"


def test_weights_that_are_a_loop_of_links_are_named_as_such(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Python's Path.resolve, comparing the weights with --out, raised 'Symlink loop from ...' before the weights
    were read, where dehaze and eval say what such a file is."""
    loop = tmp_path / "loop.pt"
    loop.symlink_to("loop.pt")
    out = tmp_path / "out.onnx"
    assert main(["export", "--config", "lite", "--weights", str(loop), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"error: {loop} is a link to loop.pt, which leads to no checkpoint (missing, or a loop of links)")
    assert not out.exists()


def test_an_untrained_export_keeps_off_the_trained_exports_default_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/DEPLOYMENT.md's export block, run as written: `--untrained` (a speed test) wrote its fresh weights over
    `exports/dgdehaze_lite_dynamic_fp32.onnx`, the shipped weights' export the block made a line before, so that the
    file a user then deployed under that name dehazed with random weights."""
    monkeypatch.chdir(tmp_path)
    size = ["--format", "onnx", "--height", "64", "--width", "64"]
    assert main(["export", "--config", "lite", *size]) == 0
    assert main(["export", "--config", "lite", "--untrained", *size]) == 0
    trained, untrained = capsys.readouterr().out.split()
    assert trained != untrained and "untrained" in Path(untrained).name
    assert exported_from(checked_dgdehaze_export(Path(trained)).metadata) is not None
    assert exported_from(checked_dgdehaze_export(Path(untrained)).metadata) is None
