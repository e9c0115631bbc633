"""The shipped int8 detector rebuilt with dynamic input size: same weights, runs at any imgsz, finds the same
objects on real hazy photos."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from dgdehaze_core.benchmarks.detectors import kept
from dgdehaze_core.cli import main
from dgdehaze_core.detection.detector import DEFAULT_DETECTOR, Detector
from dgdehaze_core.detection.rebuild import dequantized_state_dict, dynamic_detector_exports

pytestmark = pytest.mark.slow  # builds YOLOv8n, exports and quantises it (about 10 s)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return dynamic_detector_exports(cache_dir=tmp_path_factory.mktemp("cache"))


def initializers(path: Path) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in onnx.load(str(path)).graph.initializer}


def test_requantised_weights_equal_the_shipped_ones_and_the_graph_is_dynamic(exports: dict[str, Path]) -> None:
    shipped, rebuilt = initializers(DEFAULT_DETECTOR), initializers(exports["int8"])
    quantised = [name for name in shipped if name.endswith(".weight_quantized")]
    assert len(quantised) == 64
    for name in quantised:
        np.testing.assert_array_equal(rebuilt[name], shipped[name], err_msg=name)
    for path in exports.values():
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert dims[2].dim_param and dims[3].dim_param, "height and width are free"
    again = dynamic_detector_exports(cache_dir=exports["int8"].parent)
    assert again == exports and all(p.with_name(p.name + ".json").is_file() for p in exports.values())


def test_rebuilt_detectors_find_the_shipped_detections_on_real_hazy_photos(exports: dict[str, Path],
                                                                           shared_data: Path) -> None:
    frames = [cv2.imread(str(shared_data / "hazy-real" / "urhi" / name))
              for name in ("YST_Bing_667.png", "SFC_Google_197.png", "MLS_Google_585.png")]
    reference = [Detector(precision="file")(frame) for frame in frames]
    total = sum(len(r) for r in reference)
    assert total >= 8
    for path in exports.values():
        found = [Detector(path, precision="file")(frame) for frame in frames]
        assert sum(kept(r, f) for r, f in zip(reference, found)) >= 0.75 * total, path.name
    persons = [d for d in Detector(exports["int8"], imgsz=320, precision="file")(frames[0]) if d.class_name == "person"]
    assert len(persons) >= 3, "YST_Bing_667 shows nine people (RTTS labels); the 320 model still finds several"


def test_bench_detector_rows(exports: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(exports["int8"].parent))
    out = tmp_path / "bench.json"
    assert main(["bench", "detector", "--imgsz", "320", "--sizes", "320x240", "--repeats", "1",
                 "--json", str(out)]) == 0
    table = json.loads(out.read_text())
    assert set(table) == {"detector-int8-shipped/onnxruntime@640", "detector-int8/onnxruntime@320",
                          "detector-fp32/onnxruntime@320"}
    assert table["detector-int8-shipped/onnxruntime@640"]["detections_kept_pct"] == 100.0
    for row in table.values():
        assert row["latency_ms_median"] > 0 and row["fps"] > 0 and row["detections_per_frame"] > 0
        assert row["ratio_to_dcp"] == pytest.approx(row["latency_ms_median"] / row["dcp_ms_median"])
        assert row["dcp_ms_median"] > 0
        assert 0 < row["detections_kept_pct"] <= 100


def test_a_file_that_is_not_a_quantised_detector_is_refused(tmp_path: Path) -> None:
    proto = onnx.load(str(DEFAULT_DETECTOR))
    del proto.metadata_props[:]
    stripped = tmp_path / "stripped.onnx"
    onnx.save(proto, str(stripped))
    with pytest.raises(ValueError, match="not a quantised Ultralytics detector"):
        dequantized_state_dict(stripped)
    with pytest.raises(FileNotFoundError):
        dynamic_detector_exports(tmp_path / "absent.onnx", cache_dir=tmp_path)


def test_two_detector_files_of_one_name_keep_a_cache_entry_each(tmp_path: Path) -> None:
    from dgdehaze_core.detection.rebuild import float_detector_export

    proto = onnx.load(str(DEFAULT_DETECTOR))
    scale = next(init for init in proto.graph.initializer
                 if init.data_type == onnx.TensorProto.FLOAT and "scale" in init.name)
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 1.01, scale.name))  # a fine-tuned twin
    twin = tmp_path / "other" / DEFAULT_DETECTOR.name
    twin.parent.mkdir()
    onnx.save(proto, str(twin))
    cache = tmp_path / "cache"
    ours, theirs = float_detector_export(DEFAULT_DETECTOR, cache), float_detector_export(twin, cache)
    assert ours != theirs and ours.is_file() and theirs.is_file()
    built = ours.stat().st_mtime_ns
    assert float_detector_export(DEFAULT_DETECTOR, cache) == ours and ours.stat().st_mtime_ns == built
