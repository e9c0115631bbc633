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


def _custom_int8_detector(model, names: dict[int, str], folder: Path) -> Path:
    """`model` (an Ultralytics DetectionModel) made as export.py tells users to: saved as a .pt, exported to a
    dynamic ONNX by `export_detector`, quantised by `quantize_dynamic` with uint8 weights."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from dgdehaze_core.detection.export import export_detector
    from dgdehaze_core.detection.offline import offline_ultralytics

    yolo = offline_ultralytics().YOLO("yolov8n.yaml", task="detect")
    model.args, model.task, model.names = yolo.model.args, "detect", names
    yolo.model = model.eval()
    yolo.save(str(folder / "custom.pt"))
    float_onnx = export_detector(folder / "custom.pt", "onnx", dynamic=True, cache_dir=folder / "cache")
    int8 = folder / "custom_int8.onnx"
    logging.disable(logging.INFO)
    try:
        quantize_dynamic(str(float_onnx), str(int8), weight_type=QuantType.QUInt8)
    finally:
        logging.disable(logging.NOTSET)
    return int8


def test_a_detector_export_names_its_precision_as_ultralytics_asks_and_stays_float(tmp_path: Path) -> None:
    """export.py passed half= (and int8=) to Ultralytics, which warned "'half' is deprecated ... Use 'quantize'
    instead" on every export; the fp32 ONNX it writes is the same."""
    import logging

    from dgdehaze_core.detection.export import export_detector
    from dgdehaze_core.detection.offline import offline_ultralytics

    offline_ultralytics().YOLO("yolov8n.yaml", task="detect").save(str(tmp_path / "small.pt"))
    said: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("ultralytics").addHandler(handler)
    try:
        exported = export_detector(tmp_path / "small.pt", "onnx", imgsz=64, cache_dir=tmp_path / "cache")
    finally:
        logging.getLogger("ultralytics").removeHandler(handler)
    assert not [message for message in said if "deprecated" in message], said
    floats = {array.dtype for array in initializers(exported).values() if array.dtype.kind == "f"}
    assert floats == {np.dtype(np.float32)}


def test_a_custom_class_int8_detector_is_rebuilt_in_float_and_finds_what_the_int8_file_finds(
        tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An 81-class YOLOv8n (the shipped weights and one class more, which scores nothing) quantised as export.py
    says: the rebuild hard-coded 80 classes, whose class head is narrower (its width follows the class count), and
    was refused; now its float rebuild finds on real foggy photos the boxes the int8 file finds."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from dgdehaze_core.detection.rebuild import rebuild_float_detector

    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(tmp_path / "engines"))
    shipped = rebuild_float_detector()
    model = DetectionModel("yolov8n.yaml", nc=81, verbose=False).fuse(verbose=False)
    state = model.state_dict()
    for key, values in shipped.model.state_dict().items():  # the shipped weights, zero for the extra class
        state[key] = torch.zeros_like(state[key])
        state[key][tuple(slice(0, n) for n in values.shape)] = values
    for level in range(3):
        state[f"model.22.cv3.{level}.2.bias"][80] = -20.0
    model.load_state_dict(state)
    int8 = _custom_int8_detector(model, {**shipped.model.names, 80: "fog lamp"}, tmp_path)
    rebuilt, as_file = Detector(int8, precision="float"), Detector(int8, precision="file")
    assert rebuilt.runtime_file != int8 and len(rebuilt.names) == 81
    frames = [cv2.imread(str(path)) for path in sorted((shared_data / "detection" / "dawn-fog").glob("*.jpg"))[:16]]
    reference = [as_file(frame) for frame in frames]
    found = [rebuilt(frame) for frame in frames]
    total = sum(len(r) for r in reference)
    matched = sum(kept(r, f) for r, f in zip(reference, found))
    assert total >= 20 and matched >= 0.9 * total, (matched, total)


def test_weights_the_onnx_exporter_stored_once_for_identical_tensors_are_rebuilt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A freshly initialised two-class YOLOv8n has identical tensors (its folded batch norms' zero biases): the ONNX
    exporter keeps one and names the others by `Identity` nodes, which the rebuild missed ("missing
    model.12.cv1.conv.bias")."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from dgdehaze_core.detection.rebuild import rebuild_float_detector

    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(tmp_path / "engines"))
    torch.manual_seed(0)
    int8 = _custom_int8_detector(DetectionModel("yolov8n.yaml", nc=2, verbose=False).fuse(verbose=False),
                                 {0: "pedestrian", 1: "vehicle"}, tmp_path)
    aliases = {node.output[0] for node in onnx.load(str(int8)).graph.node if node.op_type == "Identity"}
    state, names = dequantized_state_dict(int8)
    assert names == {0: "pedestrian", 1: "vehicle"} and {"model.12.cv1.conv.bias"} <= aliases <= set(state)
    rebuilt = rebuild_float_detector(int8).model.state_dict()
    for name in aliases:
        np.testing.assert_array_equal(rebuilt[name].numpy(), state[name], err_msg=name)
    detector = Detector(int8, precision="float")
    assert detector.runtime_file != int8 and detector.names == names
