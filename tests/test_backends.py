"""Backend selection, the TensorRT backend without TensorRT, and the engine cache (key, staleness, corruption,
atomic writes), on this CPU-only machine."""
from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from dgdehaze_core.inference.backends import BackendUnavailable
from dgdehaze_core.inference.backends.engine_cache import (CacheKey, EngineCache, check_artifact, read_trusted_for,
                                                         sidecar_path)
from dgdehaze_core.inference.export.to_onnx import export_code_digest
from dgdehaze_core.inference.backends.selection import choose_backend, create_backend
from dgdehaze_core.inference.pipeline import network_batch
from dgdehaze_core.models import build_model

GPU = "NVIDIA H100 80GB HBM3 sm90"
"""A GPU as `tensorrt_backend.gpu_name` names it, for the TensorRT provider's options (no GPU here)."""
cpu_only = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the choices of a machine without CUDA")


@cpu_only
def test_tensorrt_backend_imports_without_tensorrt_and_says_why_it_cannot_run() -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    module = importlib.import_module("dgdehaze_core.inference.backends.tensorrt_backend")
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed"):
        module.import_tensorrt()
    with pytest.raises(BackendUnavailable, match="tensorrt backend unavailable"):
        choose_backend("tensorrt")
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        create_backend(build_model("lite"), backend="tensorrt", device="auto")


def test_a_tensorrt_8_of_jetpack_5_or_6_0_is_refused_naming_the_jetpack_that_brings_tensorrt_10(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """JetPack 5 and 6.0 ship TensorRT 8.5 and 8.6: the refusal sent their users to `pip install tensorrt`, which does
    not install on a Jetson, or, on a machine without CUDA, said only that CUDA was missing. TensorRT cannot run
    here, so a module of that name and version stands in for it."""
    from dgdehaze_core.inference.backends.tensorrt_backend import import_tensorrt

    for version in ("8.5.2.2", "8.6.2.3"):
        monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
        with pytest.raises(BackendUnavailable, match=rf"TensorRT {version} found.*JetPack 6\.1 or later on a Jetson"):
            import_tensorrt()
        with pytest.raises(BackendUnavailable, match=rf"tensorrt backend unavailable: TensorRT {version} found"):
            choose_backend("tensorrt")


def test_an_int8_calibration_table_is_read_back_only_for_the_network_images_size_and_bits_it_was_measured_on(
        tmp_path: Path) -> None:
    from dgdehaze_core.inference.backends.tensorrt_backend import CalibrationTable, calibration_key

    model_a, model_b = tmp_path / "lite.onnx", tmp_path / "other" / "lite.onnx"  # same name, other network
    model_b.parent.mkdir()
    model_a.write_bytes(b"network A")
    model_b.write_bytes(b"network B")
    images = []
    for name in ("a.png", "b.png"):
        images.append(tmp_path / name)
        images[-1].write_bytes(name.encode())
    key = calibration_key(model_a, images, 480, 640)
    other_scene = tmp_path / "other" / "a.png"  # the same name and size, other pixels
    other_scene.write_bytes(b"a.pnh")
    others = [calibration_key(model_b, images, 480, 640), calibration_key(model_a, images[:1], 480, 640),
              calibration_key(model_a, images, 240, 320), calibration_key(model_a, [other_scene, images[1]], 480, 640),
              calibration_key(model_a, images, 480, 640, bits=12)]  # the last: a 12-bit camera's images read with 12
    assert len({key, *others}) == 6
    assert calibration_key(model_a, images, 480, 640, bits=16) == key, "the tables of full-range images stay valid"
    table = CalibrationTable(tmp_path / "lite.engine.calib", key)
    assert table.read() is None
    table.write(b"TRT-calibration of A")
    assert table.read() == b"TRT-calibration of A"
    assert CalibrationTable(table.path, calibration_key(model_b, images, 480, 640)).read() is None
    assert CalibrationTable(table.path, calibration_key(model_a, images, 480, 640, bits=12)).read() is None
    table.sidecar.unlink()  # a write cut between the table and its sidecar
    assert table.read() is None


def test_shape_profile_for_a_camera() -> None:
    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile

    profile = ShapeProfile.for_camera(480, 640, 32)
    assert profile.opt == (1, 3, 480, 640) and profile.min == (1, 3, 32, 32)
    assert profile.max == (1, 3, 1088, 1920)
    assert profile.contains((1, 3, 736, 1280)) and not profile.contains((2, 3, 480, 640))
    assert ShapeProfile.for_camera(479, 641, 32).opt == (1, 3, 480, 672)
    assert profile.describe() == "hazy:1x3x32x32/1x3x480x640/1x3x1088x1920"
    for height, width in ((1, 1), (9, 17), (3, 1000)):  # the smallest frames pad to one stride: inside the profile
        frame = np.zeros((height, width, 3), np.uint8)
        assert profile.contains(network_batch([frame], (width, height), 32).shape), (height, width)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeProfile((1, 3, 64, 64), (1, 3, 32, 64), (1, 3, 128, 128))


def test_an_onnx_file_of_a_fixed_size_gets_an_engine_profile_of_that_size_alone(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile, onnx_input_dims

    def identity(path: Path, dims: list[int | str]) -> Path:
        tensor = helper.make_tensor_value_info
        graph = helper.make_graph([helper.make_node("Identity", ["hazy"], ["out"])], "g",
                                  [tensor("hazy", TensorProto.FLOAT, dims)], [tensor("out", TensorProto.FLOAT, dims)])
        onnx.save(helper.make_model(graph), str(path))
        return path

    fixed = onnx_input_dims(identity(tmp_path / "fixed.onnx", [1, 3, 480, 640]))
    assert fixed == (1, 3, 480, 640)
    camera = ShapeProfile.for_camera(720, 1280, 32)  # what the pipeline asks for a 1280x720 camera
    assert camera.fitted(fixed) == ShapeProfile((1, 3, 480, 640), (1, 3, 480, 640), (1, 3, 480, 640))
    free = onnx_input_dims(identity(tmp_path / "dynamic.onnx", ["batch", 3, "rows", "cols"]))
    assert free == (None, 3, None, None) and camera.fitted(free) == camera


@cpu_only
def test_auto_picks_onnxruntime_on_the_cpu_and_explicit_requests_are_honoured(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dgdehaze_core.inference.backends.selection"):
        choice = choose_backend("auto", "auto")
    assert (choice.name, choice.device) == ("onnxruntime", "cpu")
    assert "tensorrt skipped" in choice.reason and "tensorrt skipped" in caplog.text
    assert choose_backend("torch", "cpu").name == "torch"
    assert choose_backend("onnxruntime", "cpu").providers == ("CPUExecutionProvider",)
    with pytest.raises(BackendUnavailable, match="CUDA is not available"):
        choose_backend("torch", "cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        choose_backend("openvino")
    with pytest.raises(ValueError, match="unknown device .tpu.; use auto, cpu, cuda, cuda:N or N"):
        choose_backend("auto", "tpu")


@cpu_only
def test_auto_never_hands_an_onnx_file_to_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`auto` fell back to torch where neither TensorRT nor ONNX Runtime could run (here: onnxruntime not installed;
    on a GPU: the CPU onnxruntime wheel of requirements.txt and no TensorRT) for an .onnx file too, which torch
    cannot run: the torch backend was handed no network and stopped with AttributeError ('NoneType' object has no
    attribute 'to'). Now the file is refused saying why; a network still falls back to torch."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails, as where it is not installed
    export = tmp_path / "lite.onnx"
    export.write_bytes(b"")  # not read: no runtime it runs on is here
    with pytest.raises(BackendUnavailable, match=r"onnxruntime is not installed \(tensorrt skipped \(the device is"):
        create_backend(export, backend="auto", device="cpu")
    choice = choose_backend("auto", "cpu")
    assert (choice.name, choice.reason) == ("torch", "tensorrt skipped (the device is the CPU); onnxruntime skipped "
                                                     "(not installed); torch eager on CPU")


def key(**changes: str) -> CacheKey:
    fields = {"model_sha256": "ab" * 32, "runtime": "tensorrt-10.3.0", "device": "Orin sm87",
              "shapes": "hazy:1x3x32x32/1x3x480x640/1x3x1088x1920", "precision": "fp16", **changes}
    return CacheKey(**fields)  # type: ignore[arg-type]


class Builds:
    """A build function that writes known bytes and counts its calls, and a loader that checks them."""

    def __init__(self, payload: bytes = b"engine-bytes") -> None:
        self.payload, self.calls = payload, 0

    def build(self, tmp: Path) -> None:
        self.calls += 1
        tmp.write_bytes(self.payload + str(self.calls).encode())

    @staticmethod
    def load(path: Path) -> bytes:
        data = path.read_bytes()
        if not data.startswith(b"engine-bytes"):
            raise RuntimeError("not an engine")
        return data


def test_a_build_removes_what_no_process_loaded_for_the_kept_days(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import time

    cache: EngineCache[bytes] = EngineCache(tmp_path, keep_days=30)
    builds = Builds()
    paths = [cache.get_or_build(key(), name, ".onnx", builds.build, builds.load)[1] for name in ("old", "used")]
    months_ago = time.time() - 90 * 86400
    for path in paths:
        os.utime(sidecar_path(path), (months_ago, months_ago))
    cache.get_or_build(key(), "used", ".onnx", builds.build, builds.load)  # a node loads it: it stays
    cache.get_or_build(key(), "new", ".onnx", builds.build, builds.load)
    kept = sorted(p.name.split("_")[0] for p in tmp_path.glob("*.onnx"))
    assert kept == ["new", "used"] and builds.calls == 3
    assert not sidecar_path(paths[0]).exists(), "the sidecar goes with its artifact"
    assert not list(tmp_path.glob("*.lock")), "nor lock files: a build removes its own when it ends"
    assert EngineCache(tmp_path, keep_days=0).remove_unused() == []
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE_DAYS", "soon")
    with pytest.raises(ValueError, match="DGDEHAZE_ENGINE_CACHE_DAYS"):
        EngineCache(tmp_path)


def test_an_entry_being_built_is_not_pruned_and_a_build_after_a_prune_locks_the_new_lock_file(
        tmp_path: Path) -> None:
    import fcntl
    import os
    import threading
    import time

    from dgdehaze_core.inference.backends.engine_cache import _build_lock

    cache: EngineCache[bytes] = EngineCache(tmp_path, keep_days=30)
    builds = Builds()
    path = cache.get_or_build(key(), "old", ".onnx", builds.build, builds.load)[1]
    months_ago = time.time() - 90 * 86400
    os.utime(sidecar_path(path), (months_ago, months_ago))
    with _build_lock(path):  # another node rebuilding it right now
        assert cache.remove_unused() == [] and path.is_file() and sidecar_path(path).is_file()
    lock = path.with_name(path.name + ".lock")
    assert cache.remove_unused() == [path] and not path.exists() and not lock.exists()

    seen: list[bool] = []

    def build_waiting_for_the_lock() -> None:
        with _build_lock(path):
            seen.append(lock.is_file())

    with open(lock, "a+b") as pruner:  # a prune holds the lock, removes the file, lets go
        fcntl.flock(pruner.fileno(), fcntl.LOCK_EX)
        waiting = threading.Thread(target=build_waiting_for_the_lock)
        waiting.start()
        time.sleep(0.5)
        lock.unlink()
    waiting.join(10)
    assert seen == [True], "the waiting build locks the lock file a later build opens, not the removed one"


def test_what_a_build_killed_midway_left_is_removed_by_a_later_build_and_never_while_it_runs(tmp_path: Path) -> None:
    """A build killed midway (a node stopped during a TensorRT build) left its lock files, and what it had written,
    in the cache for ever when that artifact was not built again."""
    import dataclasses
    import subprocess
    import sys
    import textwrap
    import time

    cache_dir, building = tmp_path / "cache", tmp_path / "building"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from dgdehaze_core.inference.backends.engine_cache import CacheKey, EngineCache

        def build(tmp):
            tmp.write_bytes(b"half an engine")
            Path(sys.argv[2]).touch()
            time.sleep(300)

        EngineCache(sys.argv[1], keep_days=30).get_or_build(CacheKey(**{dataclasses.asdict(key())!r}), "killed",
                                                            ".engine", build, Path.read_bytes)
        """)
    cache: EngineCache[bytes] = EngineCache(cache_dir, keep_days=30)
    builds = Builds()
    child = subprocess.Popen([sys.executable, "-c", script, str(cache_dir), str(building)])
    try:
        deadline = time.monotonic() + 60
        while not building.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert building.exists(), "the child never started its build"
        running = {p.name for p in cache_dir.iterdir()}
        assert len(running) == 3 and all("killed" in name for name in running), running  # 2 locks and a part
        cache.get_or_build(key(), "during", ".engine", builds.build, builds.load)
        assert running <= {p.name for p in cache_dir.iterdir()}, "a build removed what a running build holds"
    finally:
        child.kill()
        child.wait(10)
    _, after = cache.get_or_build(key(), "after", ".engine", builds.build, builds.load)
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted(
        name for path in (after, cache.path_for(key(), "during", ".engine"))
        for name in (path.name, sidecar_path(path).name)), "what the killed build left stays"
    _, killed = cache.get_or_build(key(), "killed", ".engine", builds.build, builds.load)
    assert builds.load(killed).startswith(b"engine-bytes"), "its artifact builds: its lock died with it"


def test_cache_builds_once_then_loads_and_rebuilds_when_stale(tmp_path: Path) -> None:
    cache: EngineCache[bytes] = EngineCache(tmp_path)
    builds = Builds()
    value, path = cache.get_or_build(key(), "lite", ".engine", builds.build, builds.load)
    assert value == b"engine-bytes1" and builds.calls == 1
    assert path.name == "lite_fp16_hazy-1x3x32x32-1x3x480x640-1x3x1088x1920_orin-sm87.engine"
    record = json.loads(sidecar_path(path).read_text())
    assert record["key"]["runtime"] == "tensorrt-10.3.0" and record["bytes"] == len(value)
    assert cache.get_or_build(key(), "lite", ".engine", builds.build, builds.load)[0] == value
    assert builds.calls == 1, "a valid cached artifact is loaded, not rebuilt"

    upgraded = key(runtime="tensorrt-10.4.0")
    assert check_artifact(path, upgraded) == "stale: runtime changed"
    value, same_path = cache.get_or_build(upgraded, "lite", ".engine", builds.build, builds.load)
    assert builds.calls == 2 and value == b"engine-bytes2" and same_path == path, "replaced, not piled up"
    assert check_artifact(path, key(model_sha256="cd" * 32)).startswith("stale: model_sha256")


def test_an_artifact_replaced_by_a_build_for_another_key_after_its_check_is_not_loaded_in_its_place(
        tmp_path: Path) -> None:
    """Checked, then loaded: another process's build of the same name for another key (another TensorRT version,
    another export of one name) renamed into place in between ran in its place. The TensorRT backend loads through
    `read_trusted_for`, which takes the bytes only where the sidecar read with them holds the key asked for; a
    refusal inside the loader makes the cache build the artifact again, under its lock."""
    cache: EngineCache[bytes] = EngineCache(tmp_path)
    builds = Builds()
    _, path = cache.get_or_build(key(), "lite", ".engine", builds.build, builds.load)
    assert read_trusted_for(path, key()) == b"engine-bytes1"
    upgraded = key(runtime="tensorrt-10.4.0")
    cache.build(upgraded, path, builds.build)  # the other process's build, in place since the check
    with pytest.raises(ValueError, match="replaced by a build for another key since it was checked"):
        read_trusted_for(path, key())
    value, _ = cache.get_or_build(key(), "lite", ".engine", builds.build, lambda p: read_trusted_for(p, key()))
    assert value == b"engine-bytes3" and read_trusted_for(path, key()) == value


@pytest.mark.parametrize("damage", ["truncate", "drop_sidecar", "garble_sidecar", "foreign_bytes"])
def test_corrupt_artifacts_are_rebuilt_with_a_warning(damage: str, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    cache: EngineCache[bytes] = EngineCache(tmp_path)
    builds = Builds()
    _, path = cache.get_or_build(key(), "lite", ".engine", builds.build, builds.load)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:5])
    elif damage == "drop_sidecar":
        sidecar_path(path).unlink()
    elif damage == "garble_sidecar":
        sidecar_path(path).write_text("{not json")
    else:  # right hash in the sidecar, bytes the loader rejects
        path.write_bytes(b"garbage")
        record = json.loads(sidecar_path(path).read_text())
        from dgdehaze_core.io.file_digest import file_sha256
        record["sha256"] = file_sha256(path)
        sidecar_path(path).write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core.inference.backends.engine_cache"):
        value, _ = cache.get_or_build(key(), "lite", ".engine", builds.build, builds.load)
    assert builds.calls == 2 and value == b"engine-bytes2"
    assert "corrupt" in caplog.text
    assert check_artifact(path, key()) is None


def test_a_failed_build_leaves_the_previous_artifact_and_no_partial_file(tmp_path: Path) -> None:
    cache: EngineCache[bytes] = EngineCache(tmp_path)
    builds = Builds()
    _, path = cache.get_or_build(key(), "lite", ".engine", builds.build, builds.load)

    def crash(tmp: Path) -> None:
        tmp.write_bytes(b"half an eng")
        raise RuntimeError("builder ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get_or_build(key(precision="int8"), "lite", ".engine", crash, builds.load)
    with pytest.raises(RuntimeError, match="produced no file"):
        cache.build(key(precision="int8"), tmp_path / "empty.engine", lambda tmp: tmp.write_bytes(b""))
    leftovers = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert leftovers == sorted([path.name, sidecar_path(path).name])
    assert check_artifact(path, key()) is None


def test_a_cache_that_cannot_take_a_build_says_it_is_the_cache(tmp_path: Path) -> None:
    """A cache folder that is a file (or full, or read-only) failed with the OS error alone ("[Errno 17] File
    exists"), naming neither the cache nor the variable that moves it; a builder's own OSError stays its own."""
    (tmp_path / "cache").write_text("not a folder")
    builds = Builds()
    with pytest.raises(OSError, match=f"the engine cache {tmp_path / 'cache'} cannot take lite.*missing.*"
                                      "set DGDEHAZE_ENGINE_CACHE to another folder"):
        EngineCache(tmp_path / "cache").get_or_build(key(), "lite", ".engine", builds.build, builds.load)

    def missing_source(tmp: Path) -> None:
        (tmp_path / "weights.pt").read_bytes()

    with pytest.raises(FileNotFoundError, match="weights.pt") as raised:
        EngineCache(tmp_path / "good").get_or_build(key(), "lite", ".engine", missing_source, builds.load)
    assert "engine cache" not in str(raised.value)


def test_shape_profile_parses_what_it_describes() -> None:
    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile

    profile = ShapeProfile.for_camera(720, 1280, 32)
    assert ShapeProfile.parse(profile.describe()) == profile
    for bad in ("", "hazy:1x3x64x64/1x3x480x640", "image:1x3x64x64/1x3x480x640/1x3x1088x1920",
                "hazy:1x3x64/1x3x480x640/1x3x1088x1920", "hazy:1x3xAx64/1x3x480x640/1x3x1088x1920"):
        with pytest.raises(ValueError, match="not a shape profile"):
            ShapeProfile.parse(bad)


def prebuilt(tmp_path: Path, **changes: object) -> Path:
    """An engine file with the sidecar `dgdehaze export --format engine` writes (bytes TensorRT would reject)."""
    fields: dict[str, object] = {"extra": {"stride": "32"}, **changes}
    path = tmp_path / "dgdehaze_lite_480x640_fp16.engine"
    EngineCache(tmp_path).build(key(**fields), path,  # type: ignore[arg-type]
                                lambda tmp: tmp.write_bytes(b"serialized engine"))
    return path


def test_a_prebuilt_engine_is_read_from_its_sidecar_and_refused_where_it_was_not_built(tmp_path: Path) -> None:
    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile, prebuilt_engine

    here = ("tensorrt-10.3.0", "Orin sm87")
    built = prebuilt_engine(prebuilt(tmp_path), *here)
    assert (built.precision, built.stride) == ("fp16", 32)
    assert built.data == b"serialized engine", "TensorRT is handed the bytes whose hash was checked, read once"
    assert built.record == json.loads(sidecar_path(prebuilt(tmp_path)).read_text())
    assert built.profile == ShapeProfile.for_camera(480, 640, 32)
    with pytest.raises(ValueError, match="built for runtime 'tensorrt-10.3.0'.*'tensorrt-10.7.0'.*dgdehaze export"):
        prebuilt_engine(prebuilt(tmp_path), "tensorrt-10.7.0", here[1])
    with pytest.raises(ValueError, match="built for device 'Orin sm87'.*'NVIDIA H100 sm90'"):
        prebuilt_engine(prebuilt(tmp_path), here[0], "NVIDIA H100 sm90")
    with pytest.raises(ValueError, match="no network stride"):
        prebuilt_engine(prebuilt(tmp_path, extra={}), *here)

    path = prebuilt(tmp_path)
    path.write_bytes(b"serialized engine, edited")
    with pytest.raises(ValueError, match="does not match the hash"):
        prebuilt_engine(path, *here)
    sidecar_path(path).unlink()
    with pytest.raises(ValueError, match="has no sidecar"):
        prebuilt_engine(path, *here)
    with pytest.raises(FileNotFoundError, match="no such engine"):
        prebuilt_engine(tmp_path / "missing.engine", *here)


def test_an_engine_names_the_trained_weights_it_was_built_from(tmp_path: Path) -> None:
    """Engines carried no provenance (only ONNX exports did): an engine deployed on a vehicle, or scored by eval,
    could not say which trained weights it holds. Its sidecar now records them, and everything that names a
    network file (the results record, the node's /diagnostics) reads them from there."""
    from dgdehaze_core.inference.provenance import how_made, network_file_provenance, weights_line, weights_record
    from dgdehaze_core.io.checkpoints import weights_provenance
    from dgdehaze_core.models import shipped_weights_path

    lite = shipped_weights_path("lite")
    source = {"path": lite.name, **weights_provenance(lite)}
    engine = tmp_path / "lite.engine"
    EngineCache(tmp_path).build(key(extra={"stride": "32"}), engine, lambda tmp: tmp.write_bytes(b"serialized engine"),
                                source)
    entry = network_file_provenance(engine)
    assert entry["exported_from"] == source and entry["engine_precision"] == "fp16"
    made = how_made(entry)
    assert made.startswith(f"a TensorRT engine, fp16, built with tensorrt-10.3.0 for Orin sm87, of `{lite.name}` "
                           f"(sha256 {source['sha256']}, {source['iterations']} training iterations of recipe lite")
    assert weights_record(engine) == {"path": engine.name, **entry}, "what its pipeline, and so eval's record, names"
    assert weights_line(weights_record(engine)) == f"lite.engine (sha256 {entry['sha256']}, {made})"

    builds = Builds()  # an engine the cache builds (the node's, from an .onnx) keeps what it is given too
    _, cached = EngineCache(tmp_path / "cache").get_or_build(key(), "lite", ".engine", builds.build, builds.load,
                                                            source)
    assert json.loads(sidecar_path(cached).read_text())["exported_from"] == source
    record = json.loads(sidecar_path(engine).read_text())
    engine.write_bytes(b"serialized engine, edited")
    with pytest.raises(ValueError, match="does not match the hash"):
        weights_record(engine)  # an edited engine is named as untrusted (and refused as it loads: prebuilt_engine)
    # a loaded engine is named from the sidecar its loader checked the bytes it runs against, not from a second
    # read of a file that may have been replaced since
    assert weights_record(engine, engine_record=record) == {"path": engine.name, **entry}


def test_a_checkpoint_exported_on_its_way_to_a_runtime_records_the_weights_it_was_read_from(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .pt run on the tensorrt backend (node or CLI) was exported without the checkpoint's record, and a cached
    export of the same weights was taken as it was: the engine built from it had no `exported_from` in its sidecar,
    so /diagnostics and eval could not name the trained weights the engine holds. The fp32 export ONNX Runtime runs
    on the CPU is the one a TensorRT engine is built from (`create_backend`), whose sidecar takes its record; the
    record is part of the export's cache key, so an export of the same weights held in memory, which records none,
    is another entry."""
    from dgdehaze_core.inference.pipeline import load_pipeline
    from dgdehaze_core.inference.provenance import exported_from
    from dgdehaze_core.io.file_digest import file_sha256
    from dgdehaze_core.io.onnx_files import checked_dgdehaze_export
    from dgdehaze_core.models import load_model, save_checkpoint

    cache = tmp_path / "cache"
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(cache))
    monkeypatch.delenv("DGDEHAZE_ONNX_EXPORTER", raising=False)
    checkpoint = save_checkpoint(load_model("lite"), tmp_path / "mine.pt",
                                 {"iterations": 7, "recipe": "mine", "commit": "abc1234"})
    pipeline = load_pipeline(str(checkpoint), backend="onnxruntime")
    (recorded,) = cache.glob("*.onnx")
    source = exported_from(checked_dgdehaze_export(recorded).metadata)
    sha256 = file_sha256(checkpoint)[:12]
    assert source == pipeline.weights == {"path": "mine.pt", "sha256": sha256, "iterations": 7, "recipe": "mine",
                                          "commit": "abc1234"}
    key = json.loads(sidecar_path(recorded).read_text())["key"]
    assert key["extra"]["exported_from"] == f"mine.pt {sha256}" and "-from-" in recorded.name
    assert key["runtime"].endswith(f"-code{export_code_digest()}"), "an upgraded network or exporter exports again"
    assert "-torchscript-opset" in key["runtime"], "an export by the other exporter is another entry"
    load_pipeline(str(checkpoint), backend="onnxruntime")
    assert list(cache.glob("*.onnx")) == [recorded], "loaded again from the cache, not exported again"


def test_an_export_s_record_of_its_weights_written_otherwise_is_read_as_far_as_it_goes() -> None:
    """An export's metadata is JSON any tool may write: a `started_from` that was no record (a string) stopped the
    weights line, hence the pipeline's load, with an AttributeError."""
    from dgdehaze_core.inference.provenance import training_line

    assert training_line({"iterations": 7, "recipe": "mine", "started_from": "lite.pt"}) == \
        "7 training iterations of recipe mine at commit `?`"
    assert training_line({"iterations": 7, "recipe": "mine", "commit": "abc",
                          "started_from": {"init_weights": "lite.pt", "sha256": 12}}).endswith(
        ", started from `lite.pt` (sha256 12)")


def test_the_export_code_digest_follows_the_networks_and_the_exporters_source_and_nothing_else(
        tmp_path: Path) -> None:
    """The export cache outlives upgrades: one keyed on the weights, torch and opset alone ran the old graph after
    an upgrade changed a network's forward without changing its weights (ONNX Runtime and TensorRT then disagreed
    with torch). Its key now holds a digest of the source of the networks and the exporter."""
    import shutil

    from dgdehaze_core.inference.export.to_onnx import EXPORT_CODE, PACKAGE

    for folder in EXPORT_CODE:
        shutil.copytree(PACKAGE / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "io").mkdir()
    (tmp_path / "io" / "images.py").write_text("# another part of the package\n")
    assert export_code_digest.__wrapped__(tmp_path) == export_code_digest()
    forward = tmp_path / "models" / "dghat.py"
    forward.write_text(forward.read_text().replace("return", "return  ", 1))
    assert export_code_digest.__wrapped__(tmp_path) != export_code_digest()


@cpu_only
def test_a_prebuilt_engine_runs_on_the_tensorrt_backend_only_and_says_why_not_here(tmp_path: Path) -> None:
    from dgdehaze_core.inference.pipeline import load_pipeline

    engine = prebuilt(tmp_path)
    for backend in ("onnxruntime", "torch"):
        with pytest.raises(ValueError, match=f"runs on the tensorrt backend, not {backend}"):
            load_pipeline(str(engine), backend=backend)
        with pytest.raises(ValueError, match=f"runs on the tensorrt backend, not {backend}"):
            create_backend(engine, backend=backend)
    with pytest.raises(BackendUnavailable, match="'cuda' was requested but CUDA is not available"):
        load_pipeline(str(engine))
    with pytest.raises(BackendUnavailable, match="tensorrt backend unavailable: the device is the CPU"):
        load_pipeline(str(engine), backend="auto", device="cpu")


def test_the_tensorrt_backend_releases_its_context_then_engine_then_runtime() -> None:
    """TensorRT 10 calls destroying a runtime before its engines undefined behaviour (NVIDIA/TensorRT#4436); the
    runtime is set first, so plain teardown would release it first. Stand-ins record the order (no TensorRT here)."""
    from dgdehaze_core.inference.backends.tensorrt_backend import TensorRTBackend

    released: list[str] = []

    class Handle:
        def __init__(self, name: str) -> None:
            self.name = name

        def __del__(self) -> None:
            released.append(self.name)

    backend = TensorRTBackend.__new__(TensorRTBackend)
    for name in ("runtime", "engine", "context"):
        setattr(backend, name, Handle(name))
    del backend
    assert released == ["context", "engine", "runtime"]


def _added_constant_onnx(path: Path, value: float) -> Path:
    """An ONNX file of one graph, y = x + w, with the weight `value`: files of one graph and other weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "added",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [numpy_helper.from_array(np.array([value], np.float32), "w")])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_onnx_runtime_s_tensorrt_provider_caches_each_file_s_engines_apart(tmp_path: Path) -> None:
    """The provider names an engine by the model's path and graph, not its weights: with one cache folder for every
    file, an export written again under its name with new weights ran the engine built from the old ones."""
    from dgdehaze_core.inference.backends.selection import ORT_TENSORRT_CACHE, ort_tensorrt_options

    model = tmp_path / "mine.onnx"
    first = ort_tensorrt_options(_added_constant_onnx(model, 1.0), False, tmp_path / "cache", gpu=GPU)
    assert Path(str(first["trt_engine_cache_path"])).parent == tmp_path / "cache" / ORT_TENSORRT_CACHE
    assert ort_tensorrt_options(model, False, tmp_path / "cache", gpu=GPU) == first, "the same file: the same engines"
    second = ort_tensorrt_options(_added_constant_onnx(model, 2.0), True, tmp_path / "cache", gpu=GPU)
    assert second["trt_engine_cache_path"] != first["trt_engine_cache_path"], "new weights under the same name"
    assert (second["trt_fp16_enable"], second["trt_int8_enable"]) == (True, False)


def test_onnx_runtime_s_tensorrt_provider_builds_for_the_camera_s_range_of_sizes(tmp_path: Path) -> None:
    """Without a profile the provider built its engine for the first frame's size and built again, for minutes,
    whenever a larger frame came (a working-size change, a resized stream); it now gets the range the TensorRT
    backend builds for, in the provider's NAME:BxCxHxW form."""
    from dgdehaze_core.inference.backends.selection import ort_tensorrt_options
    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile

    model = _added_constant_onnx(tmp_path / "mine.onnx", 1.0)
    options = ort_tensorrt_options(model, False, tmp_path / "cache", ShapeProfile.for_camera(480, 640, 32), gpu=GPU)
    assert (options["trt_profile_min_shapes"], options["trt_profile_opt_shapes"], options["trt_profile_max_shapes"]) \
        == ("hazy:1x3x32x32", "hazy:1x3x480x640", "hazy:1x3x1088x1920")
    unprofiled = ort_tensorrt_options(model, False, tmp_path / "cache", gpu=GPU)
    assert not any(key.startswith("trt_profile") for key in unprofiled)


def test_onnx_runtime_s_tensorrt_provider_caches_each_runtime_version_s_engines_apart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider names an engine file by the graph and the GPU's compute capability, not by the versions of ONNX
    Runtime and TensorRT, whose upgrade ONNX Runtime's documentation says must clear its engine cache: an engine of
    the old TensorRT fails to load, and the session ran on the CUDA provider alone at every start, as the folder,
    named by the file alone, was the same. The upgrade is made here by the version ONNX Runtime says it is."""
    import onnxruntime

    from dgdehaze_core.inference.backends.selection import ort_tensorrt_options

    model = _added_constant_onnx(tmp_path / "mine.onnx", 1.0)
    before = ort_tensorrt_options(model, False, tmp_path / "cache", gpu=GPU)["trt_engine_cache_path"]
    assert ort_tensorrt_options(model, False, tmp_path / "cache", gpu=GPU)["trt_engine_cache_path"] == before
    monkeypatch.setattr(onnxruntime, "__version__", onnxruntime.__version__ + ".upgraded")
    assert ort_tensorrt_options(model, False, tmp_path / "cache", gpu=GPU)["trt_engine_cache_path"] != before


def test_onnx_runtime_s_tensorrt_provider_caches_each_gpu_model_s_engines_apart(tmp_path: Path) -> None:
    """The provider names an engine file by the graph and the GPU's compute capability, which GPUs of other models
    and memory sizes share (an engine of one may not load on the other, its source says): in one folder for both,
    as a cache folder shared by two machines or a machine's two GPUs is, each would be handed the other's engines."""
    from dgdehaze_core.inference.backends.selection import ort_tensorrt_options

    model = _added_constant_onnx(tmp_path / "mine.onnx", 1.0)
    gpus = ("NVIDIA GeForce RTX 3090 sm86", "NVIDIA A10 sm86", "NVIDIA GeForce RTX 3090 sm86")
    rtx, a10, rtx_again = (ort_tensorrt_options(model, False, tmp_path / "cache", gpu=gpu)["trt_engine_cache_path"]
                           for gpu in gpus)
    assert rtx != a10, "two GPU models of one compute capability: two folders"
    assert rtx == rtx_again, "the same GPU model: the same folder"


def test_the_tensorrt_provider_s_folders_unused_for_the_cache_s_days_are_removed_and_the_one_in_use_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each re-export got a folder of engines of its own, never removed: the engine cache's rule (unused for
    $DGDEHAZE_ENGINE_CACHE_DAYS) now holds for them too, by the time a session was last given each."""
    import os
    import time

    from dgdehaze_core.inference.backends.engine_cache import USED_MARKER
    from dgdehaze_core.inference.backends.selection import ort_tensorrt_options

    cache = tmp_path / "cache"
    folders = {}
    for value in (1.0, 2.0, 3.0):
        model = _added_constant_onnx(tmp_path / f"model{value:g}.onnx", value)
        folders[value] = Path(str(ort_tensorrt_options(model, False, cache, gpu=GPU)["trt_engine_cache_path"]))
        (folders[value] / "engine.engine").write_bytes(b"built")  # as the provider writes its engines
    long_ago = time.time() - 61 * 86400
    os.utime(folders[1.0] / USED_MARKER, (long_ago, long_ago))  # unused for 61 days: past the default 60
    os.utime(folders[3.0] / USED_MARKER, (long_ago, long_ago))
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE_DAYS", "0")
    ort_tensorrt_options(tmp_path / "model2.onnx", False, cache, gpu=GPU)
    assert all(folder.is_dir() for folder in folders.values()), "0 days keeps everything"
    monkeypatch.delenv("DGDEHAZE_ENGINE_CACHE_DAYS")
    ort_tensorrt_options(tmp_path / "model3.onnx", False, cache, gpu=GPU)  # handed out now: kept, however old its mark
    assert not folders[1.0].exists(), "unused for longer than the cache keeps anything"
    assert folders[2.0].is_dir() and (folders[3.0] / "engine.engine").is_file()
    assert (folders[3.0] / USED_MARKER).stat().st_mtime > long_ago, "marked used again"
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE_DAYS", "soon")
    with pytest.raises(ValueError, match="DGDEHAZE_ENGINE_CACHE_DAYS must be a number of days"):
        ort_tensorrt_options(tmp_path / "model2.onnx", False, cache, gpu=GPU)


def test_the_tensorrt_provider_s_folders_without_a_mark_go_by_their_own_time(tmp_path: Path) -> None:
    """A folder no session marked (made before folders were marked, or by hand) is judged by its own time."""
    import os
    import time

    from dgdehaze_core.inference.backends.selection import ORT_TENSORRT_CACHE, ort_tensorrt_options

    folders = tmp_path / "cache" / ORT_TENSORRT_CACHE
    old, new = folders / "0123456789abcdef", folders / "fedcba9876543210"
    for folder in (old, new):
        folder.mkdir(parents=True)
        (folder / "engine.engine").write_bytes(b"built")
    long_ago = time.time() - 61 * 86400
    os.utime(old, (long_ago, long_ago))
    ort_tensorrt_options(_added_constant_onnx(tmp_path / "model.onnx", 1.0), False, tmp_path / "cache", gpu=GPU)
    assert not old.exists() and (new / "engine.engine").is_file()


def test_a_tensorrt_provider_s_folder_whose_removal_fails_midway_is_not_left_half_empty_under_its_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A removal failing midway (a file it may not delete: root deletes any, so the failure is made here) must not
    stop the session asking for options, nor leave a half-emptied folder for a session of that file to be given:
    the folder is renamed away first, and what is left of it is removed by the next prune."""
    import os
    import time

    from dgdehaze_core.inference.backends import engine_cache
    from dgdehaze_core.inference.backends.selection import ort_tensorrt_options

    cache = tmp_path / "cache"
    stale_model = _added_constant_onnx(tmp_path / "stale.onnx", 1.0)
    stale = Path(str(ort_tensorrt_options(stale_model, False, cache, gpu=GPU)["trt_engine_cache_path"]))
    for name in ("a.engine", "b.engine"):
        (stale / name).write_bytes(b"built")
    long_ago = time.time() - 61 * 86400
    os.utime(stale / engine_cache.USED_MARKER, (long_ago, long_ago))

    def fail_midway(path: Path) -> None:
        (Path(path) / "a.engine").unlink()
        raise PermissionError(13, "Permission denied", str(Path(path) / "b.engine"))

    monkeypatch.setattr(engine_cache.shutil, "rmtree", fail_midway)
    other = _added_constant_onnx(tmp_path / "other.onnx", 2.0)
    with caplog.at_level("WARNING", logger=engine_cache.__name__):
        ort_tensorrt_options(other, False, cache, gpu=GPU)
    assert "could not remove" in caplog.text and stale.name in caplog.text
    assert not stale.exists(), "a half-removed folder under the name its file's sessions are given"
    monkeypatch.undo()  # removals succeed again
    kept = Path(str(ort_tensorrt_options(other, False, cache, gpu=GPU)["trt_engine_cache_path"]))
    assert list(stale.parent.iterdir()) == [kept], "what was left is removed by the next prune"


def test_onnx_runtime_gpu_providers_that_do_not_start_are_refused_not_replaced_by_the_cpu(tmp_path: Path) -> None:
    """ONNX Runtime lists the providers it was built with as available even where their CUDA, cuDNN or TensorRT
    libraries do not load, and then runs the session on the CPU alone, with a log line: the onnxruntime backend,
    chosen for the GPU, ran there on the CPU (an fp16 export too) while the selection logged the GPU. The CPU-only
    onnxruntime here makes of a session given the CUDA provider what a broken onnxruntime-gpu makes of it."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    from dgdehaze_core.inference.backends.onnxruntime_backend import OnnxRuntimeBackend

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    hazy = helper.make_tensor_value_info("hazy", TensorProto.FLOAT, ["batch", 3, "rows", "cols"])
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 3, "rows", "cols"])
               for name in ("clear", "depth")]
    nodes = [helper.make_node("Identity", ["hazy"], [output.name]) for output in outputs]
    export = helper.make_model(helper.make_graph(nodes, "passthrough", [hazy], outputs))
    helper.set_model_props(export, {"dgdehaze_stride": "1"})  # a network of a decoder's outputs, as the paper's
    model = tmp_path / "model.onnx"
    onnx.save(export, str(model))
    assert OnnxRuntimeBackend(model).run(np.zeros((1, 3, 2, 2), np.float32))["clear"].shape == (1, 3, 2, 2)
    with pytest.raises(BackendUnavailable, match="could not start CUDAExecutionProvider for .*model.onnx .* would "
                                                 "run it on CPUExecutionProvider alone"):
        OnnxRuntimeBackend(model, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def passthrough_export(path: Path, dtype: int, stride: int) -> Path:
    """A stand-in for a dgdehaze export at `path`: `hazy` (of ONNX element type `dtype`) passed through to `clear` and
    `depth`, free batch, height and width, with its `dgdehaze_stride`."""
    import onnx
    from onnx import helper

    hazy = helper.make_tensor_value_info("hazy", dtype, ["batch", 3, "rows", "cols"])
    outputs = [helper.make_tensor_value_info(name, dtype, ["batch", 3, "rows", "cols"]) for name in ("clear", "depth")]
    export = helper.make_model(helper.make_graph([helper.make_node("Identity", ["hazy"], [out.name])
                                                  for out in outputs], "passthrough", [hazy], outputs))
    helper.set_model_props(export, {"dgdehaze_stride": str(stride)})
    onnx.save(export, str(path))
    return path


def test_an_export_running_at_another_precision_than_half_asks_names_the_export_option_that_changes_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The warnings told the user to export the file again "with --half" or "without --half", an option `dgdehaze
    export` does not have (its option is --fp16: pasted, the command was refused). An fp16 file opened on the CPU is
    warned of as it runs here; an fp32 file on ONNX Runtime's CUDA provider (no GPU here) through the same check."""
    from onnx import TensorProto

    from dgdehaze_core.inference.backends.selection import BackendChoice, _warn_when_the_file_decides_precision

    model = passthrough_export(tmp_path / "model_fp16.onnx", TensorProto.FLOAT16, stride=1)
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core"):
        assert create_backend(model, "onnxruntime", "cpu").input_dtype == np.float16
        cuda = BackendChoice("onnxruntime", "cuda:0", ("CUDAExecutionProvider", "CPUExecutionProvider"), "")
        _warn_when_the_file_decides_precision(tmp_path / "model_fp32.onnx", False, True, cuda)
    assert "model_fp16.onnx is an fp16 export: it runs in fp16 whatever half says (on the CPU fp16 is slower); " \
        "export it without --fp16 for fp32" in caplog.text
    assert "model_fp32.onnx is an fp32 export: ONNX Runtime's CUDAExecutionProvider, CPUExecutionProvider runs it " \
        "in fp32 whatever half says; export it with `dgdehaze export --fp16` for fp16" in caplog.text
    assert "--half" not in caplog.text


def test_a_gpu_runtime_is_handed_a_device_torch_takes_for_every_device_name_the_node_takes() -> None:
    """The node and the CLI take "N" for "cuda:N" (as Ultralytics does), and the selection handed it on as it was:
    the TensorRT backend's torch.device("0") raised "Invalid device string" for an engine on device 0."""
    from dgdehaze_core.inference.backends.selection import _cuda_device

    assert [_cuda_device(name) for name in ("auto", "0", "1", "cuda", "cuda:2")] == \
        ["cuda:0", "cuda:0", "cuda:1", "cuda", "cuda:2"]
    assert all(torch.device(_cuda_device(name)) for name in ("0", "1"))


def test_onnx_runtime_s_gpu_providers_run_on_the_device_asked_for() -> None:
    """ONNX Runtime's TensorRT provider, given options, takes device_id 0 where it is not among them, and its CUDA
    provider, given none, the process's default device 0: a network asked for on cuda:1 ran on GPU 0. Both now get
    the device's id, in the form ONNX Runtime's own argument check passes on to its providers."""
    from onnxruntime.capi.onnxruntime_inference_collection import check_and_normalize_provider_args

    from dgdehaze_core.inference.backends.selection import ORT_GPU_PROVIDERS, ort_providers

    names = (*ORT_GPU_PROVIDERS, "CPUExecutionProvider")
    providers = ort_providers(names, "cuda:1", {"trt_fp16_enable": True})
    assert providers == [("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": True}),
                         ("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert check_and_normalize_provider_args(providers, None, names) == (
        list(names), [{"device_id": "1", "trt_fp16_enable": "True"}, {"device_id": "1"}, {}])
    assert [options["device_id"] for _, options in ort_providers(ORT_GPU_PROVIDERS, "cuda")] == [0, 0]
    assert ort_providers(("CPUExecutionProvider",), "cpu") == ["CPUExecutionProvider"]


def test_onnx_runtime_s_tensorrt_provider_takes_frames_up_to_its_profile_s_largest_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's TensorRT provider builds its engine for the explicit profile it is given and widens only the
    profiles it derived from inputs itself: a frame larger than trt_profile_max_shapes (a 4K camera on an engine
    profiled for 640x480, at most 1088x1920) failed, where the TensorRT backend's engine shrinks it to fit. The
    backend now says the profile's largest size and batch where that provider runs (no TensorRT here: the session
    is made to report it), and nothing where it does not."""
    import onnxruntime
    from onnx import TensorProto

    from dgdehaze_core.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dgdehaze_core.inference.backends.selection import ort_providers
    from dgdehaze_core.inference.backends.tensorrt_backend import ShapeProfile

    model = passthrough_export(tmp_path / "model.onnx", TensorProto.FLOAT, stride=32)
    profile = ShapeProfile.for_camera(480, 640, 32)
    providers = ort_providers(("TensorrtExecutionProvider", "CPUExecutionProvider"), "cuda:0",
                              {"trt_profile_max_shapes": profile.shapes()[2]})
    unprofiled = OnnxRuntimeBackend(model)
    assert (unprofiled.max_size, unprofiled.max_batch) == (None, None), "the CPU provider takes any size"
    monkeypatch.setattr(onnxruntime.InferenceSession, "get_providers",
                        lambda self: ["TensorrtExecutionProvider", "CPUExecutionProvider"])
    runtime = OnnxRuntimeBackend(model, providers=providers)
    assert (runtime.max_size, runtime.max_batch) == ((1088, 1920), 1)


def test_the_onnx_cache_exports_again_for_changed_weights_or_another_precision(tmp_path: Path,
                                                                                foggy_road: np.ndarray) -> None:
    """The export a pipeline runs on ONNX Runtime is cached by the network's weights and precision: the same
    network reuses its file; weights changed since (a fine-tuning step, a checkpoint reloaded in the node) and fp16
    are exported again, never served the stale file."""
    import onnx

    from dgdehaze_core.inference.backends import PHYSICS_OUTPUTS
    from dgdehaze_core.inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    from dgdehaze_core.inference.backends.selection import cached_onnx
    from dgdehaze_core.inference.backends.torch_backend import TorchBackend
    from dgdehaze_core.models import load_model_and_record

    model, _ = load_model_and_record("lite")
    first = cached_onnx(model, cache_dir=tmp_path, outputs=PHYSICS_OUTPUTS)
    built = first.read_bytes()
    assert cached_onnx(model, cache_dir=tmp_path, outputs=PHYSICS_OUTPUTS).read_bytes() == built, "reused"
    with torch.no_grad():
        model.dehazer.transmission_head.bias.add_(1.0)
    changed = cached_onnx(model, cache_dir=tmp_path, outputs=PHYSICS_OUTPUTS)
    batch = network_batch([foggy_road[:64, :96]], (96, 64), model.stride)
    np.testing.assert_allclose(OnnxRuntimeBackend(changed).run(batch)["transmission"],
                               TorchBackend(model, outputs=PHYSICS_OUTPUTS).run(batch)["transmission"], atol=1e-4)
    half = cached_onnx(model, half=True, cache_dir=tmp_path, outputs=PHYSICS_OUTPUTS)
    assert onnx.load(str(half)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
