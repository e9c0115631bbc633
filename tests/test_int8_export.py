"""`dgdehaze export --format onnx --int8`: the shipped lite as a statically quantised QDQ model, calibrated on real
hazy photos, checked against its fp32 export on real photos with ONNX Runtime, and its bench row. (TensorRT, which
builds its engine from the same file, cannot run here.)"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.inference.backends import PHYSICS_OUTPUTS
from dgdehaze_core.io.file_digest import file_sha256
from dgdehaze_core.inference.backends.selection import cached_onnx
from dgdehaze_core.inference.backends.tensorrt_backend import onnx_is_quantized
from dgdehaze_core.inference.export.quantize import FLOAT_WEIGHTS, module_paths, quantize_onnx
from dgdehaze_core.inference.export.to_onnx import EXPORTED_FROM
from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.io.onnx_files import WEIGHTS_DIGEST, weights_record
from dgdehaze_core.models import load_model, shipped_weights_path


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped lite's fp32 physics export (the pipeline's cached one) and its QDQ int8 model."""
    from dgdehaze_core.datasets.paths import shared_data_dir
    data = shared_data_dir()
    if data is None:
        pytest.skip("../shared/data is absent: int8 calibration reads its real hazy photos")
    fp32 = cached_onnx(load_model("lite"), outputs=PHYSICS_OUTPUTS)
    int8 = quantize_onnx(fp32, data / "hazy-real", tmp_path_factory.mktemp("int8") / "lite_int8.onnx")
    return fp32, int8


def test_the_qdq_file_quantises_the_body_and_keeps_stems_heads_and_metadata(exports: tuple[Path, Path]) -> None:
    fp32, int8 = exports
    assert onnx_is_quantized(int8) and not onnx_is_quantized(fp32)
    model = onnx.load(str(int8))
    dequantized = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    quantized = [node for node in convs if node.input[1] in dequantized]
    float_convs = [node for node in convs if node.input[1] not in dequantized]
    assert len(quantized) > 30, "the depth network, embeddings and decoder are int8"
    weights = {init.name for init in model.graph.initializer}
    assert float_convs and all(any(part in path for path in module_paths(node, weights) for part in FLOAT_WEIGHTS)
                               for node in float_convs)
    stems = {node.name for node in convs if "/stem/" in node.name}
    assert len(stems) == 3 and stems <= {node.name for node in float_convs}, \
        "the image-reading stems stay float, those whose batch norm was folded as well (weights onnx::Conv_*)"
    assert not any(node.op_type == "QuantizeLinear" and "MatMul" in node.output[0] for node in model.graph.node)
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    original = {entry.key: entry.value for entry in onnx.load(str(fp32)).metadata_props}
    own = weights_record(model)
    assert {key: metadata[key] for key in original if key not in own} == \
        {key: value for key, value in original.items() if key not in own}
    assert {key: metadata[key] for key in own} == own and own[WEIGHTS_DIGEST] != original[WEIGHTS_DIGEST], \
        "its own weights' digest and layout"
    assert "int8 QDQ, symmetric" in metadata["dgdehaze_quantization"]


@pytest.mark.parametrize("photo", ["detection/dawn-fog/foggy-001.jpg", "paired/sots-outdoor/hazy/0016_0.8_0.08.jpg"])
def test_int8_tracks_fp32_on_real_photos(exports: tuple[Path, Path], shared_data: Path, photo: str) -> None:
    frame = cv2.imread(str(shared_data / photo))
    fp32, int8 = (load_pipeline(str(path)) for path in exports)
    reference, quantized = fp32(frame), int8(frame)
    assert quantized.image.shape == frame.shape and quantized.transmission.shape == frame.shape[:2]
    assert np.abs(quantized.transmission - reference.transmission).mean() < 0.02
    assert np.abs(quantized.image.astype(float) - reference.image).mean() < 4.0, "levels of 255"
    assert np.mean(np.abs(quantized.depth - reference.depth) / reference.depth) < 0.08


@pytest.mark.slow  # an export and its calibration at a small fixed size
def test_export_writes_a_qdq_file_of_the_size_asked(tmp_path: Path, shared_data: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "lite_int8_64x96.onnx"
    monkeypatch.setenv("DGDEHAZE_ONNX_EXPORTER", "dynamo")  # --exporter, given, decides
    assert main(["export", "--config", "lite", "--physics-only", "--int8", "--calib", str(shared_data / "hazy-real"),
                 "--height", "64", "--width", "96", "--exporter", "torchscript", "--out", str(out)]) == 0
    assert onnx_is_quantized(out)
    metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert metadata["dgdehaze_exporter"] == "torchscript", "the float export's, kept through the quantisation"
    source = json.loads(metadata[EXPORTED_FROM])
    assert source["path"] == "dgdehaze_lite.pt" and source["sha256"] == file_sha256(shipped_weights_path("lite"))[:12]
    assert source["iterations"] == 4500, "the shipped weights' training, kept through the quantisation"
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 64, 96]
    result = load_pipeline(str(out))(cv2.imread(str(shared_data / "detection/dawn-fog/foggy-001.jpg")))
    assert np.isfinite(result.transmission).all()


def activation_scales(path: Path) -> dict[str, float]:
    """The scale of each quantised activation of a QDQ file (a QuantizeLinear fed by the graph, not a weight): the
    range its calibration measured."""
    model = onnx.load(str(path))
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    return {node.input[0]: float(constants[node.input[1]].max()) for node in model.graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in constants}


def test_a_12_bit_camera_s_calibration_images_calibrate_int8_on_their_range_with_input_bits_12(
        tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Real hazy photos exported as a 12-bit camera's 16-bit PNGs (samples 0..4095): with --input-bits 12 int8 is
    calibrated on what the photos show, the very ranges their 8-bit files give; with the default 16 bits on nearly
    black images (other ranges), which is warned once, naming --input-bits 12."""
    from dgdehaze_core.io.images import images_under, read_image

    photos = [cv2.resize(read_image(path), (96, 64), interpolation=cv2.INTER_AREA)
              for path in images_under(shared_data / "hazy-real")[:3]]
    for folder in ("eight", "twelve"):
        (tmp_path / folder).mkdir()
    for index, photo in enumerate(photos):
        cv2.imwrite(str(tmp_path / "eight" / f"frame{index}.png"), photo)
        cv2.imwrite(str(tmp_path / "twelve" / f"frame{index}.png"),
                    ((photo.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16))
    common = ["export", "--config", "lite", "--physics-only", "--height", "64", "--width", "96", "--int8"]
    runs = {"eight": ["--calib", str(tmp_path / "eight")], "12": ["--calib", str(tmp_path / "twelve"),
                                                                   "--input-bits", "12"],
            "16": ["--calib", str(tmp_path / "twelve")]}
    scales = {}
    for name, args in runs.items():
        caplog.clear()
        with caplog.at_level("WARNING", logger="dgdehaze_core.io.images"):
            assert main([*common, *args, "--out", str(tmp_path / f"{name}.onnx")]) == 0
        warnings = [record.getMessage() for record in caplog.records if record.name == "dgdehaze_core.io.images"]
        assert len(warnings) == (name == "16"), (name, warnings)
        scales[name] = activation_scales(tmp_path / f"{name}.onnx")
    assert "none above 4095" in warnings[0] and "--input-bits 12" in warnings[0]
    assert len(scales["eight"]) > 30 and scales["12"] == pytest.approx(scales["eight"], rel=1e-6)
    changed = [name for name, scale in scales["16"].items() if abs(scale / scales["eight"][name] - 1) > 0.2]
    assert len(changed) > len(scales["eight"]) / 3, "calibrated on nearly black images, the ranges differ"
    recorded = {entry.key: entry.value for entry in onnx.load(str(tmp_path / "12.onnx")).metadata_props}
    assert recorded["dgdehaze_quantization"].endswith("of 3 images read with 12 significant bits")


def test_the_quantisation_record_counts_the_calibration_images_that_were_read(
        tmp_path: Path, shared_data: Path, exports: tuple[Path, Path], caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A calibration folder with a file that does not read: it was skipped with a warning, but the file's record
    said 'percentile of 3 images', counting it among those calibrated on. The export replaces an earlier one at
    --out, saying whose weights it held (it did so without a word), and prints its path alone on standard output
    (ONNX Runtime's calibration printed five lines there before it)."""
    from dgdehaze_core.io.images import images_under, read_image

    calib = tmp_path / "calib"
    calib.mkdir()
    for index, path in enumerate(images_under(shared_data / "hazy-real")[:2]):
        cv2.imwrite(str(calib / f"frame{index}.png"), cv2.resize(read_image(path), (96, 64)))
    (calib / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "int8.onnx"
    out.write_bytes(exports[1].read_bytes())
    with caplog.at_level("WARNING", logger="dgdehaze_core.commands.export"):
        assert main(["export", "--config", "lite", "--physics-only", "--height", "64", "--width", "96", "--int8",
                     "--calib", str(calib), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"{out}\n", "what `ONNX=$(dgdehaze export ...)` takes"
    assert f"replacing {out}, which holds int8.onnx (sha256 {file_sha256(exports[1])[:12]}, an ONNX export of a " \
           "`lite` network, int8 QDQ" in caplog.text
    recorded = {entry.key: entry.value for entry in onnx.load(str(out)).metadata_props}
    assert recorded["dgdehaze_quantization"].endswith("percentile of 2 images")


def test_calibration_needs_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("not an image")
    out = tmp_path / "int8.onnx"
    assert main(["export", "--config", "lite", "--int8", "--calib", str(empty), "--out", str(out)]) == 2
    assert "no images to calibrate int8 with" in capsys.readouterr().err
    assert not out.exists()
    (empty / "sub" / "broken.png").write_bytes(b"\x89PNG truncated")
    assert main(["export", "--config", "lite", "--int8", "--calib", str(empty), "--height", "64", "--width", "96",
                 "--physics-only", "--out", str(out)]) == 2
    assert "none of the 1 images" in capsys.readouterr().err and not out.exists()
    bag, video = REPO_DIR / "data" / "demo" / "rural_fog_day", tmp_path / "drive.mp4"
    video.write_bytes(b"")  # told by its name, never read
    for recording, kind in ((bag, "a bag"), (bag / "rural_fog_day.mcap", "a bag"), (video, "a video")):
        assert main(["export", "--config", "lite", "--int8", "--calib", str(recording), "--out", str(out)]) == 2
        assert f"--calib {recording} is {kind}: int8 calibrates on a folder of image files" in \
            capsys.readouterr().err, "not 'is not a folder', nor 'no images' for a rosbag2 folder"


@pytest.mark.slow  # quantises the shipped lite again for the row
def test_bench_has_an_int8_row(tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgdehaze_core.benchmarks import networks

    monkeypatch.setattr(networks, "PEAK_MATRIX", 1024)  # the CPU peak rows on smaller products: seconds less
    out = tmp_path / "bench.json"
    assert main(["bench", "model", "--config", "lite", "--backends", "onnxruntime,onnxruntime-int8", "--sizes",
                 "128x96", "--repeats", "2", "--json", str(out)]) == 0
    table = json.loads(out.read_text())
    fp32, int8 = table["lite/onnxruntime@128x96"], table["lite/onnxruntime-int8@128x96"]
    assert int8["gmacs"] == fp32["gmacs"], "the float network's MACs: pct_of_peak compares like with like"
    assert int8["network_ms_median"] > 0 and int8["ratio_to_dcp"] > 0
