"""ONNX export with dynamic height and width, run by ONNX Runtime against PyTorch on real images."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
import torch
from torch.torch_version import TorchVersion

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import WEIGHTS_DIR
from dgdehaze_core.inference.backends import OUTPUT_NAMES, PHYSICS_OUTPUTS, check_outputs
from dgdehaze_core.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from dgdehaze_core.inference.backends.selection import create_backend
from dgdehaze_core.inference.export import default_exporter
from dgdehaze_core.inference.export.to_onnx import export_onnx
from dgdehaze_core.inference.pipeline import load_pipeline, pad_to_stride, pipeline_from_model
from dgdehaze_core.io.images import bgr_to_rgb_float, read_image
from dgdehaze_core.io.onnx_files import WEIGHTS_DIGEST, WEIGHTS_LAYOUT, checked_dgdehaze_export, weights_digest
from dgdehaze_core.models import build_model

pytestmark = pytest.mark.slow  # exports lite and base, and once with the dynamo exporter (about 20 s)


def build(config: str):
    torch.manual_seed(0)
    model = build_model(config).eval()
    torch.nn.init.normal_(model.dehazer.clear_head.weight, std=0.1)
    return model


@pytest.fixture(scope="module", params=["lite", "base"])
def exported(request, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    model = build(request.param)
    # lite is traced at one stride high (what `export --height 20 --dynamic` asks): the graph stays free in H and W
    example_size = (model.stride, 2 * model.stride) if request.param == "lite" else None
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx", example_size=example_size)
    return model, path


def real_batch(shared_data: Path, stride: int, size: tuple[int, int]) -> np.ndarray:
    """Two real hazy images (O-HAZE, URHI) resized to `size` (w, h) and padded to the stride: (2, 3, H, W)."""
    paths = [shared_data / "hazy-real" / "o-haze" / sorted(p.name for p in (shared_data / "hazy-real" / "o-haze")
                                                          .iterdir())[0],
             shared_data / "hazy-real" / "urhi" / "SFC_Google_197.png"]
    images = [cv2.resize(bgr_to_rgb_float(read_image(path)), size, interpolation=cv2.INTER_AREA) for path in paths]
    return np.ascontiguousarray(pad_to_stride(np.stack(images), stride).transpose(0, 3, 1, 2))


def test_an_export_with_nan_weights_or_a_bad_stride_is_refused_not_run_to_black_frames(exported, tmp_path: Path,
                                                                                         capsys) -> None:
    """ONNX Runtime ran an export whose weights held a NaN and every frame came out black (exit 0); a stride of 0
    in its metadata divided by zero at the first frame."""
    _, path = exported
    model = onnx.load(str(path))
    weight = next(i for i in model.graph.initializer if numpy_helper.to_array(i).dtype == np.float32)
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] = np.nan
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    digest = next(prop for prop in model.metadata_props if prop.key == WEIGHTS_DIGEST)
    digest.value = weights_digest(model)  # exported so, not damaged since
    onnx.save(model, str(tmp_path / "nan.onnx"))
    with pytest.raises(ValueError, match=f"holds weights that are not finite .*first in '{weight.name}'"):
        OnnxRuntimeBackend(tmp_path / "nan.onnx")
    model = onnx.load(str(path))
    next(prop for prop in model.metadata_props if prop.key == "dgdehaze_stride").value = "0"
    onnx.save(model, str(tmp_path / "stride0.onnx"))
    with pytest.raises(ValueError, match="dgdehaze_stride metadata '0' is not a positive number"):
        OnnxRuntimeBackend(tmp_path / "stride0.onnx")
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.full((40, 60, 3), 180, np.uint8))
    assert main(["dehaze", str(frame), "--method", str(tmp_path / "nan.onnx"), "--out", str(tmp_path / "o")]) == 2
    assert "holds weights that are not finite" in capsys.readouterr().err


def damaged_copy(path: Path, target: Path) -> Path:
    """`path` with one bit flipped inside its largest weight, written to `target` (the same size as `path`)."""
    data = bytearray(path.read_bytes())
    weight = max(onnx.load(str(path)).graph.initializer, key=lambda tensor: len(tensor.raw_data))
    data[data.index(weight.raw_data) + len(weight.raw_data) // 2] ^= 0x04
    target.write_bytes(bytes(data))
    return target


def test_an_export_damaged_since_it_was_written_is_refused_and_an_undamaged_copy_runs(exported, tmp_path: Path,
                                                                                       capsys) -> None:
    """ONNX keeps no checksum: a byte changed on disk or in transfer inside a weight loaded and ran as other weights
    (silently wrong images). The export records a digest of its weights, which the runtimes and the TensorRT build
    check."""
    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile, build_engine

    _, path = exported
    damaged = damaged_copy(path, tmp_path / "damaged.onnx")
    refusal = f"^{re.escape(str(damaged))} is damaged: its weights do not match .* export it again$"
    with pytest.raises(ValueError, match=refusal):
        OnnxRuntimeBackend(damaged)
    with pytest.raises(ValueError, match=refusal):
        build_engine(damaged, tmp_path / "damaged.engine", ShapeProfile.for_camera(64, 64, 32))
    proto = onnx.load(str(path))  # a scale the TorchScript exporter keeps in a Constant node, not a weight
    scale = next(attribute.t for node in proto.graph.node if node.op_type == "Constant" for attribute in node.attribute
                 if attribute.t.data_type == onnx.TensorProto.FLOAT)
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 2, scale.name))
    onnx.save(proto, str(damaged))
    with pytest.raises(ValueError, match=refusal):
        OnnxRuntimeBackend(damaged)
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), np.full((40, 60, 3), 180, np.uint8))
    assert main(["dehaze", str(frame), "--method", str(damaged), "--out", str(tmp_path / "o")]) == 2
    assert f"{damaged} is damaged" in capsys.readouterr().err
    assert main(["dehaze", str(frame), "--method", str(path), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "frame_dehazed.png").is_file()


def test_an_export_a_tool_rewrote_keeping_its_metadata_runs_with_a_warning_not_refused_as_damaged(
        exported, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """ONNX Runtime's offline optimisation (optimized_model_filepath) keeps a file's metadata and folds the
    TorchScript exporter's Constant nodes into initializers of other names: the digest of its weights no longer
    matched, and the file, which ran before digests were recorded, was refused as damaged in disk or in transfer.
    Its tensors are not those recorded at export (their layout), so it runs, with a warning that the digest
    cannot check it; a damaged file keeps its tensors and is refused (the test above)."""
    _, path = exported
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert any(prop.key == WEIGHTS_DIGEST for prop in onnx.load(options.optimized_model_filepath).metadata_props)
    batch = np.random.default_rng(0).random((1, 3, 64, 96), dtype=np.float32)
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core.io.onnx_files"):
        optimized = OnnxRuntimeBackend(tmp_path / "optimized.onnx", threads=1).run(batch)
        OnnxRuntimeBackend(tmp_path / "optimized.onnx", threads=1)
    assert caplog.text.count("its tensors are not those it was exported with") == 1, \
        "a file checked once in a process, the same since, is not read and warned of again"
    for name, value in OnnxRuntimeBackend(path, threads=1).run(batch).items():
        np.testing.assert_allclose(optimized[name], value, atol=1e-5)
    damaged_copy(path, tmp_path / "optimized.onnx")  # the file replaced since its check: read and checked again
    with pytest.raises(ValueError, match="is damaged"):
        OnnxRuntimeBackend(tmp_path / "optimized.onnx", threads=1)


def test_an_export_damaged_in_place_keeping_its_size_is_read_and_refused_again(exported, tmp_path: Path) -> None:
    """A file checked once in a process is not read again while it stays the same file: a bit flipped in place,
    which keeps its device, inode and size, changes its modification time, and the next check reads it again."""
    _, path = exported
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(path.read_bytes())
    assert checked_dgdehaze_export(copy).stride > 0
    inode = copy.stat().st_ino
    with copy.open("r+b") as handle:
        handle.write(damaged_copy(path, tmp_path / "damaged.onnx").read_bytes())
    assert (copy.stat().st_ino, copy.stat().st_size) == (inode, path.stat().st_size)
    with pytest.raises(ValueError, match="is damaged"):
        checked_dgdehaze_export(copy)


def test_a_damaged_export_that_records_no_layout_is_refused(exported, tmp_path: Path) -> None:
    """An export that records a weights digest and no layout (made before layouts were recorded) cannot have been
    rewritten by a tool as far as the file says: weights that no longer match its digest are damage, refused."""
    _, path = exported
    proto = onnx.load(str(damaged_copy(path, tmp_path / "damaged.onnx")))
    kept = [prop for prop in proto.metadata_props if prop.key != WEIGHTS_LAYOUT]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "no_layout.onnx"))
    with pytest.raises(ValueError, match="no_layout.onnx is damaged"):
        checked_dgdehaze_export(tmp_path / "no_layout.onnx")


def test_an_export_moved_to_external_data_is_checked_without_reading_that_data(
        exported, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The weights digest takes the tensors the .onnx file holds: an export saved again with its weights in an
    external data file (as onnx does for a file over 2 GB) is not read beyond it, and passes with the rewrite
    warning, whatever the working directory."""
    _, path = exported
    onnx.save(onnx.load(str(path)), str(tmp_path / "external.onnx"), save_as_external_data=True,
              location="external.data", size_threshold=1024)
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core.io.onnx_files"):
        assert checked_dgdehaze_export(tmp_path / "external.onnx").stride > 0
    assert "its tensors are not those it was exported with" in caplog.text


def test_a_tensor_a_tool_renamed_retyped_or_reshaped_is_a_rewrite_not_damage(
        exported, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The layout digest takes each tensor's name, type and shape: a tool renames a weight keeping its values, a
    float16 converter keeps the weights' names and changes their type, a reshape keeps name and bytes; each file
    warns that the digest cannot check it, and none is refused as damaged."""
    _, path = exported
    for change in ("name", "type", "shape"):
        proto = onnx.load(str(path))
        weight = max(proto.graph.initializer, key=lambda tensor: len(tensor.raw_data))
        values, name = numpy_helper.to_array(weight), weight.name
        if change == "name":
            name = f"{weight.name}_renamed"
            for node in proto.graph.node:
                node.input[:] = [name if entry == weight.name else entry for entry in node.input]
        elif change == "type":
            values = values.astype(np.float16)
        else:
            values = values.reshape(-1)
        weight.CopyFrom(numpy_helper.from_array(values, name))
        onnx.save(proto, str(tmp_path / f"{change}.onnx"))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dgdehaze_core.io.onnx_files"):
            checked_dgdehaze_export(tmp_path / f"{change}.onnx")
        assert "its tensors are not those it was exported with" in caplog.text, change


def assert_runs_like_torch_at_several_sizes(model: torch.nn.Module, path: Path, shared_data: Path) -> None:
    """The dynamic export at `path` takes free batch, height and width and runs in ONNX Runtime like `model` on two
    real images at two sizes."""
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert all(dim.dim_param and not dim.dim_value for i, dim in enumerate(dims) if i != 1), "batch/H/W dynamic"
    backend = OnnxRuntimeBackend(path, threads=2)
    assert backend.stride == model.stride and backend.config_name == model.config_name
    assert backend.outputs == OUTPUT_NAMES
    for size in ((641, 479), (300, 200)):
        batch = real_batch(shared_data, model.stride, size)
        with torch.no_grad():
            expected = model(torch.from_numpy(batch))
        actual = backend.run(batch)
        for name in OUTPUT_NAMES:
            assert actual[name].shape == tuple(expected[name].shape), name
            error = np.abs(actual[name] - expected[name].numpy()).max()
            assert error < 1e-3, f"{name} at {size}: ONNX Runtime differs from torch by {error}"


def test_onnx_runtime_matches_torch_at_several_sizes(exported, shared_data: Path) -> None:
    model, path = exported
    assert onnx.load(str(path)).opset_import[0].version >= 17
    assert_runs_like_torch_at_several_sizes(model, path, shared_data)


def test_onnx_pipeline_matches_the_torch_pipeline(exported, shared_data: Path) -> None:
    model, path = exported
    frame = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    onnx_result = load_pipeline(str(path), working_size=(320, 240), radiance_floor=0.1)(frame)  # not the default
    torch_result = pipeline_from_model(model, working_size=(320, 240), radiance_floor=0.1)(frame)
    assert np.abs(onnx_result.image.astype(int) - torch_result.image.astype(int)).max() <= 1
    np.testing.assert_allclose(onnx_result.transmission, torch_result.transmission, atol=1e-3)
    np.testing.assert_allclose(onnx_result.depth, torch_result.depth, atol=1e-3)


def test_fp16_export_runs_close_to_fp32(tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An fp16 export runs in fp16 whatever `half` says, says so where it is opened (it ran without a word), and is
    named fp16 in the record of the weights that runs."""
    model = build("lite")
    batch = real_batch(shared_data, model.stride, (320, 240))
    # a fixed-size graph: tracing free height and width takes several times longer, and the parity tests above
    # cover dynamic shapes
    path = export_onnx(model, tmp_path / "lite_fp16.onnx", half=True, dynamic=False, example_size=batch.shape[2:])
    backend = OnnxRuntimeBackend(path, threads=2)
    assert backend.input_dtype == np.float16
    for image in batch:
        with torch.no_grad():
            expected = model(torch.from_numpy(image[None]))
        actual = backend.run(image[None])
        for name in OUTPUT_NAMES:
            assert actual[name].dtype == np.float32
            assert np.abs(actual[name] - expected[name].numpy()).max() < 0.02, name
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core"):
        assert create_backend(path, "onnxruntime", "cpu").input_dtype == np.float16
    assert f"{path} is an fp16 export: it runs in fp16 whatever half says (on the CPU fp16 is slower)" in caplog.text
    assert "an ONNX export of a `lite` network, fp16" in load_pipeline(str(path), threads=1).weights_summary, \
        "named fp16 where eval, bag-eval and the node's /diagnostics name the weights (they said fp32)"
    assert "were not checked" not in caplog.text, f"ONNX Runtime {ort.__version__} runs it right"
    monkeypatch.setattr(ort, "__version__", "1.18.1")  # the floor requirements-ros.txt admits
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core"):
        OnnxRuntimeBackend(path, threads=1)
    assert f"{path} is an fp16 export on the CPU provider of ONNX Runtime 1.18.1: ONNX Runtime 1.18.1's ran such a " \
           "file right on its first frame only" in caplog.text, "its later frames came out wrong without a word"


def test_fixed_size_export_and_bad_files(tmp_path: Path) -> None:
    model = build("lite")
    with pytest.raises(ValueError, match="multiple of the stride"):
        export_onnx(model, tmp_path / "bad.onnx", dynamic=False, example_size=(100, 100))
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "bad.onnx", opset=11)
    # opset 17 was taken, and torch wrote an opset-18 file after a traceback (its conversion down fails on the
    # graph's ReduceMean): a runtime that reads only 17 got a file it cannot load
    with pytest.raises(ValueError, match="opset must be 18 or later"):
        export_onnx(model, tmp_path / "bad.onnx", opset=17, dynamic=False, example_size=(32, 32))
    assert not list(tmp_path.iterdir()), "a failed export leaves no file behind"
    with pytest.raises(ValueError, match="not a dgdehaze export"):
        OnnxRuntimeBackend(WEIGHTS_DIR / "yolov8n_int8.onnx")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(b"\x08\x07garbage")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        OnnxRuntimeBackend(truncated)
    with pytest.raises(FileNotFoundError):
        load_pipeline(str(tmp_path / "absent.onnx"))
    with pytest.raises(ValueError, match="absent.onnx is not a readable dgdehaze ONNX export: .*No such file"):
        checked_dgdehaze_export(tmp_path / "absent.onnx")


@pytest.mark.parametrize("exported", ["lite"], indirect=True)
def test_a_physics_only_export_drops_the_decoder_image_and_keeps_every_other_output(exported, shared_data: Path,
                                                                                     tmp_path: Path) -> None:
    model, full_path = exported
    batch = real_batch(shared_data, model.stride, (641, 479))
    path = export_onnx(model, tmp_path / "physics.onnx", outputs=PHYSICS_OUTPUTS, dynamic=False,
                       example_size=batch.shape[2:])  # fixed size: much faster to trace than free height and width
    proto, full_proto = onnx.load(str(path)), onnx.load(str(full_path))
    assert [output.name for output in proto.graph.output] == list(PHYSICS_OUTPUTS)
    assert {p.key: p.value for p in proto.metadata_props}["dgdehaze_outputs"] == ",".join(PHYSICS_OUTPUTS)
    assert len(proto.graph.node) < len(full_proto.graph.node), "the decoder's image branch is gone from the graph"
    backend, full_backend = OnnxRuntimeBackend(path, threads=2), OnnxRuntimeBackend(full_path, threads=2)
    assert backend.outputs == PHYSICS_OUTPUTS and full_backend.outputs == OUTPUT_NAMES
    for image in batch:
        physics, full = backend.run(image[None]), full_backend.run(image[None])
        assert set(physics) == set(PHYSICS_OUTPUTS)
        for name in PHYSICS_OUTPUTS:
            assert np.abs(physics[name] - full[name]).max() < 1e-5, name
    frame = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    lean = load_pipeline(str(path), working_size=(641, 479))(frame)
    complete = load_pipeline(str(full_path), output="physics", working_size=(641, 479))(frame)
    assert np.abs(lean.image.astype(int) - complete.image.astype(int)).max() <= 1
    with pytest.raises(ValueError, match="without it"):
        load_pipeline(str(path), output="decoder")
    with pytest.raises(ValueError, match="network outputs must be"):
        check_outputs(("clear", "transmission"))


def test_the_dynamo_exporter_on_request_runs_like_torch_at_free_sizes(tmp_path: Path, shared_data: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The dynamo exporter (for a torch without the TorchScript exporter, the default), asked for by name or by
    $DGDEHAZE_ONNX_EXPORTER (the exports that name none: the node's), exports the same network at free sizes,
    recorded as such; another exporter's name is refused."""
    model = build("lite")
    monkeypatch.setenv("DGDEHAZE_ONNX_EXPORTER", "dynamo")
    exporters = {}
    # the torchscript file is read for its record alone: fixed at one stride, the quickest to trace; the dynamo
    # export is traced at one stride high, as `exported` traces lite (free in H and W all the same)
    for exporter, size in (("torchscript", {"dynamic": False, "example_size": (model.stride, model.stride)}),
                           (None, {"example_size": (model.stride, 2 * model.stride)})):
        path = export_onnx(model, tmp_path / f"{exporter}.onnx", exporter=exporter, **size)
        exporters[exporter] = dict((p.key, p.value) for p in onnx.load(str(path)).metadata_props)["dgdehaze_exporter"]
    assert exporters == {"torchscript": "torchscript", None: "dynamo"}
    path = tmp_path / "None.onnx"
    assert_runs_like_torch_at_several_sizes(model, path, shared_data)
    with pytest.raises(ValueError, match="exporter must be one of torchscript, dynamo"):
        export_onnx(model, tmp_path / "other.onnx", exporter="script")
    monkeypatch.setenv("DGDEHAZE_ONNX_EXPORTER", "script")
    with pytest.raises(ValueError, match="DGDEHAZE_ONNX_EXPORTER must be one of torchscript, dynamo"):
        export_onnx(model, tmp_path / "other.onnx")


def test_the_default_exporter_takes_the_variable_trimmed_and_an_empty_one_as_unset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """$DGDEHAZE_ONNX_EXPORTER names the exporter of the exports that name none; set empty (`VAR= cmd`) it is unset,
    and the spaces a launch file or a shell quote leaves around the name do not make it another exporter."""
    monkeypatch.setenv("DGDEHAZE_ONNX_EXPORTER", "")
    assert default_exporter() == "torchscript"
    monkeypatch.setenv("DGDEHAZE_ONNX_EXPORTER", " dynamo\n")
    assert default_exporter() == "dynamo"


def test_the_dynamo_exporter_is_refused_on_torch_2_6_before_any_tracing(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    """torch 2.6's dynamo exporter fails on these networks (EXPORTERS): asked for there, export_onnx says so and
    which exporter to use, and writes nothing."""
    monkeypatch.setattr(torch, "__version__", TorchVersion("2.6.0+cpu"))
    with pytest.raises(ValueError, match="torch 2.6.0.cpu's dynamo exporter cannot export these networks"):
        export_onnx(build("lite"), tmp_path / "lite.onnx", exporter="dynamo")
    assert not any(tmp_path.iterdir())
