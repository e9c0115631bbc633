"""Weights files run no code when loaded (#21 items 1 and 6): a pickle that calls os.system is refused, unexecuted,
in one line, by the detector, `dgdehaze export` and the dehazer's own loaders (the running node:
tests/test_ros_node.py); real Ultralytics checkpoints still load."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from dgdehaze_core.cli import main
from dgdehaze_core.detection.checkpoint import UnsafeCheckpoint, check_detector_checkpoint
from dgdehaze_core.detection.detector import Detector, DetectorUnavailable


class _Payload:
    """Unpickling this calls `call(*args)`, as a malicious weights file would."""

    def __init__(self, call: object, *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call, self.args


class _CallablePayload(_Payload):
    """A payload pickle accepts where a callable is due; unpickled, it is whatever its call returns."""

    def __call__(self, *args: object) -> None:
        raise AssertionError("never called while pickling")


def malicious_checkpoint(folder: Path, marker: Path, how: str = "torch") -> Path:
    """A .pt that looks like a checkpoint and creates `marker` when unpickled."""
    payload = {"model": _Payload(os.system, f"touch {marker}"), "date": "2026-12-01"}
    path = folder / f"yolo_{how}.pt"
    if how == "torch":
        torch.save(payload, path)
    elif how == "exec":
        torch.save({"model": _Payload(exec, f"open({str(marker)!r}, 'w').close()")}, path)
    else:  # a bare pickle, the format torch.load read before zip checkpoints
        path.write_bytes(pickle.dumps(payload))
    return path


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Ultralytics YOLOv8n checkpoint as `YOLO.save` writes it (built from its YAML: nothing to download)."""
    from dgdehaze_core.detection.rebuild import rebuild_float_detector

    path = tmp_path_factory.mktemp("yolo") / "yolov8n_float.pt"
    rebuild_float_detector().save(str(path))
    return path


@pytest.mark.parametrize("how", ["torch", "exec", "bare-pickle"])
def test_a_pickle_that_runs_code_is_refused_before_it_runs(how: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    weights = malicious_checkpoint(tmp_path, marker, how)
    with pytest.raises(DetectorUnavailable) as refused:
        Detector(weights)
    message = str(refused.value)
    assert "\n" not in message and str(weights) in message
    assert ("os.system" in message or "posix.system" in message or "builtins.exec" in message
            or "not a torch checkpoint" in message)
    assert not marker.exists()


def test_a_function_inside_an_allowed_package_is_refused(tmp_path: Path) -> None:
    from ultralytics.nn import tasks

    marker = tmp_path / "pwned"
    weights = tmp_path / "sneaky.pt"
    torch.save({"model": _Payload(tasks.torch_safe_load, str(tmp_path / "other.pt"))}, weights)
    with pytest.raises(UnsafeCheckpoint, match="torch_safe_load"):
        check_detector_checkpoint(weights)
    assert not marker.exists()


def test_a_callable_reached_through_getattr_is_never_called(tmp_path: Path) -> None:
    weights = tmp_path / "chained.pt"  # getattr is allowed for bound methods; calling its result is not
    hook = _CallablePayload(getattr, torch.nn.Module, "register_forward_hook")
    torch.save({"model": _Payload(hook, None)}, weights)
    with pytest.raises(UnsafeCheckpoint, match="restricted unpickler"):
        check_detector_checkpoint(weights)


def test_a_real_ultralytics_checkpoint_loads_and_detects(real_checkpoint: Path, shared_data: Path) -> None:
    from dgdehaze_core.io.images import read_image

    check_detector_checkpoint(real_checkpoint)
    detector = Detector(real_checkpoint, imgsz=320)
    frame = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    shipped = Detector(imgsz=320)
    assert detector.names == shipped.names
    assert {d.class_name for d in detector(frame)} & {d.class_name for d in shipped(frame)}


def test_export_refuses_a_malicious_detector_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    out = tmp_path / "out.onnx"
    assert main(["export", "--detector", str(malicious_checkpoint(tmp_path, marker)), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "refused" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not out.exists()


def test_export_of_a_truncated_detector_says_so_in_the_words_a_dehazer_checkpoint_gets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A detector .pt cut short in a copy was refused with torch's 'PytorchStreamReader failed reading zip archive:
    failed finding central directory. This is an internal miniz error. If you are seeing this error, ...'."""
    weights = tmp_path / "yolo.pt"
    torch.save({"model": None, "pad": torch.zeros(4096)}, weights)
    weights.write_bytes(weights.read_bytes()[:2000])
    assert main(["export", "--detector", str(weights), "--format", "onnx", "--out", str(tmp_path / "out.onnx")]) == 2
    assert capsys.readouterr().err.strip() == (f"dgdehaze export: error: {weights} is not a readable detector "
                                               "checkpoint: truncated, or not a torch checkpoint (no zip archive in "
                                               "it)")


def test_export_of_a_pt_ultralytics_cannot_read_names_the_user_s_file_not_the_private_copy(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint holding no Ultralytics model (a dehazer's weights given as the detector) was refused in
    Ultralytics' words, which named the private copy it read in a temporary folder, gone once the command ended."""
    weights = tmp_path / "mine.pt"
    torch.save({"model": None, "date": "2026-12-01"}, weights)
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(tmp_path / "cache"))
    assert main(["export", "--detector", str(weights), "--format", "onnx", "--out", str(tmp_path / "out.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"dgdehaze export: error: Ultralytics could not export {weights} to onnx: ") and \
        len(err.splitlines()) == 1, err
    assert err.count(str(weights)) == 2 and "dgdehaze-yolo-export-" not in err, "its message names the user's file"


@pytest.mark.parametrize("kind", ["malicious", "truncated"])
def test_the_dehazers_own_loaders_refuse_in_one_line(kind: str, tmp_path: Path, shared_data: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from dgdehaze_core.datasets.paths import WEIGHTS_DIR
    from dgdehaze_core.models.clear_depth import load_clear_depth

    marker = tmp_path / "pwned"
    if kind == "malicious":
        weights = malicious_checkpoint(tmp_path, marker)
    else:
        weights = tmp_path / "truncated.pt"
        weights.write_bytes((WEIGHTS_DIR / "dgdehaze_lite.pt").read_bytes()[:5000])
    photo = shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png"
    assert main(["dehaze", "--method", str(weights), "--out", str(tmp_path / "out"), str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(weights) in err
    assert ("posix.system" in err or "os.system" in err) if kind == "malicious" else "truncated" in err
    with pytest.raises(ValueError) as refused:
        load_clear_depth(weights)
    assert "\n" not in str(refused.value)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_layer_whose_constructor_the_pickle_calls_is_refused_before_it_runs(tmp_path: Path) -> None:
    """Ultralytics' AutoBackend is a layer (an nn.Module of ultralytics.nn), and its constructor loads the file it is
    given with the unrestricted unpickler: a checkpoint that calls it on a malicious file ran that file's code
    during the check itself. A layer is restored, never constructed, by a real checkpoint's pickle."""
    from ultralytics.nn.autobackend import AutoBackend

    marker = tmp_path / "pwned"
    weights = tmp_path / "loader.pt"
    torch.save({"model": _Payload(AutoBackend, str(malicious_checkpoint(tmp_path, marker)))}, weights)
    with pytest.raises(UnsafeCheckpoint, match="constructor of ultralytics.nn.autobackend.AutoBackend"):
        check_detector_checkpoint(weights)
    assert not marker.exists()
    huge = tmp_path / "huge.pt"  # a constructor of torch's own: 40 GB of weights
    torch.save({"model": _Payload(torch.nn.Linear, 100_000, 100_000)}, huge)
    with pytest.raises(UnsafeCheckpoint, match="constructor of torch.nn.modules.linear.Linear"):
        check_detector_checkpoint(huge)
