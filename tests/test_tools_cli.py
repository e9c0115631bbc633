"""The scripts in tools/ as a user runs them: bad input and an output that cannot (or must not) be written end in one
line on stderr and exit status 2, before any work, not in a traceback or a silently overwritten photo; a profile
that chooses recipes refuses the frames that only judge.

Each runs the script in a fresh interpreter on tiny synthetic data or on the shared data set it names.
"""
from __future__ import annotations

import importlib.util
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.physics.visibility import Intrinsics, Mounting

TOOLS = REPO_DIR / "tools"


def _tool(name: str, *arguments: object, timeout: float = 120, cwd: Path = REPO_DIR,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / name), *map(str, arguments)], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)


def _error(result: subprocess.CompletedProcess, name: str) -> str:
    """The one line `NAME: error: MESSAGE` that is all a refused run writes to stderr (its message)."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: "), result.stderr
    return lines[0]


def _photos(folder: Path, count: int = 2) -> list[Path]:
    """`count` small foggy-road-like JPEGs (sky bright, road darker) in `folder`, named as DAWN names them."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        image = np.full((120, 160, 3), 200, np.uint8)
        image[60:] = 120 + index * 20
        image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"foggy-{index + 1:03d}.jpg")
        cv2.imwrite(str(paths[-1]), image)
    return paths


def _truncated(path: Path, source: Path) -> Path:
    path.write_bytes(source.read_bytes()[:600])
    return path


def test_the_road_profile_refuses_the_frames_that_only_judge(shared_data: Path) -> None:
    for dataset in (shared_data / "depth" / "kitti-tiny", shared_data / "depth"):
        result = _tool("road_transmission_profile.py", dataset, "--method", "dcp", "--every", "100")
        assert "only judge" in _error(result, "road_transmission_profile.py") and "kitti-tiny" in result.stderr
        assert result.stdout == ""


def test_the_road_profile_refuses_a_folder_without_kitti_frames_and_an_unwritable_json(tmp_path: Path,
                                                                                       shared_data: Path) -> None:
    _photos(tmp_path / "photos")
    assert "no KITTI frames" in _error(_tool("road_transmission_profile.py", tmp_path / "photos", "--method", "dcp"),
                                       "road_transmission_profile.py")
    unwritable = _tool("road_transmission_profile.py", shared_data / "depth" / "kitti-seq", "--method", "dcp",
                       "--every", "1000", "--json", "/proc/profile.json")
    assert "--json /proc/profile.json cannot be written" in _error(unwritable, "road_transmission_profile.py")
    assert unwritable.stdout == ""  # refused before the profile ran
    (tmp_path / "p-error.json").mkdir()
    sibling = _tool("road_transmission_profile.py", shared_data / "depth" / "kitti-seq", "--method", "dcp",
                    "--every", "1000", "--json", tmp_path / "p.json")
    assert "error table" in _error(sibling, "road_transmission_profile.py") and sibling.stdout == ""


def test_the_visibility_sheet_writes_nothing_into_its_photo_folder(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    before = {path: path.read_bytes() for path in photos}
    for out in (photos[0], tmp_path / "photos" / "sheet.jpg", tmp_path / "photos"):
        result = _tool("visibility_sheet.py", tmp_path / "photos", "--method", "dcp", "--out", out)
        assert "lies in the input folder" in _error(result, "visibility_sheet.py")
    json_inside = _tool("visibility_sheet.py", tmp_path / "photos", "--method", "dcp", "--out", tmp_path / "s.jpg",
                        "--json", photos[1])
    assert "--json" in _error(json_inside, "visibility_sheet.py")
    assert {path: path.read_bytes() for path in photos} == before
    assert sorted((tmp_path / "photos").iterdir()) == photos and not (tmp_path / "s.jpg").exists()


def test_the_visibility_sheet_refuses_outputs_it_cannot_write_before_any_work(tmp_path: Path) -> None:
    _photos(tmp_path / "photos")
    unwritable = _tool("visibility_sheet.py", tmp_path / "photos", "--method", "dcp", "--out", tmp_path / "s.jpg",
                       "--json", "/proc/sheet.json")
    assert "--json /proc/sheet.json cannot be written" in _error(unwritable, "visibility_sheet.py")
    not_an_image = _tool("visibility_sheet.py", tmp_path / "photos", "--method", "dcp", "--out", tmp_path / "s.txt")
    assert "'.txt'" in _error(not_an_image, "visibility_sheet.py")
    no_method = _tool("visibility_sheet.py", tmp_path / "photos", "--method", ",", "--out", tmp_path / "s.jpg")
    assert "--method ',' names no method" in _error(no_method, "visibility_sheet.py"), "an empty table, exit 0"
    assert list(tmp_path.iterdir()) == [tmp_path / "photos"]


def test_the_visibility_sheet_skips_an_unreadable_photo_and_says_so(tmp_path: Path) -> None:
    good, other = _photos(tmp_path / "photos")
    _truncated(other, good)
    result = _tool("visibility_sheet.py", tmp_path / "photos", "--method", "dcp", "--out", tmp_path / "s.png",
                   "--json", tmp_path / "s.json")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and f"skipped: {other} is not a readable image" in result.stderr
    assert list(json.loads((tmp_path / "s.json").read_text())) == [good.name]
    assert cv2.imread(str(tmp_path / "s.png")) is not None and "| all (1) |" in result.stdout
    _truncated(good, other)
    assert "none of the 2 photos" in _tool("visibility_sheet.py", tmp_path / "photos", "--method", "dcp", "--out",
                                           tmp_path / "t.png").stderr


def test_the_noise_figure_refuses_a_missing_photo_and_an_output_that_is_no_image(tmp_path: Path) -> None:
    photo, = _photos(tmp_path / "photos", 1)
    missing = _tool("noise_figure.py", tmp_path / "photos" / "none.jpg", "--out", tmp_path / "n.jpg")
    assert "no such file" in _error(missing, "noise_figure.py")
    unreadable = _tool("noise_figure.py", _truncated(tmp_path / "cut.jpg", photo), "--out", tmp_path / "n.jpg")
    assert "not a readable image" in _error(unreadable, "noise_figure.py")
    assert "'.txt'" in _error(_tool("noise_figure.py", photo, "--out", tmp_path / "n.txt"), "noise_figure.py")
    assert "would overwrite the input" in _error(_tool("noise_figure.py", photo, "--out", photo), "noise_figure.py")
    assert "cannot be written" in _error(_tool("noise_figure.py", photo, "--out", "/proc/n.jpg"), "noise_figure.py")
    assert sorted(tmp_path.iterdir()) == [tmp_path / "cut.jpg", tmp_path / "photos"]


@pytest.mark.parametrize("tool", ["noise_figure.py", "boundary_figure.py"])
def test_the_before_after_figures_write_the_format_their_out_names(tool: str, tmp_path: Path) -> None:
    photo, = _photos(tmp_path / "photos", 1)
    result = _tool(tool, photo, "--out", tmp_path / "figure.png", timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_runs_refuses_a_missing_run_and_an_unwritable_json_before_anything_runs(tmp_path: Path) -> None:
    missing = _tool("validate_runs.py", f"A={tmp_path / 'no-run'}", "--json", tmp_path / "round.json")
    assert "no weights at" in _error(missing, "validate_runs.py")
    unwritable = _tool("validate_runs.py", f"A={tmp_path / 'no-run'}", "--json", "/proc/round.json")
    assert "--json /proc/round.json cannot be written" in _error(unwritable, "validate_runs.py")
    assert list(tmp_path.iterdir()) == []


class _Call:
    """Unpickling this calls `call(*args)`, as a malicious weights file would."""

    def __init__(self, call: object, *args: object) -> None:
        self.call, self.args = call, args

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return self.call, self.args


def test_validate_runs_reads_a_run_s_gates_without_running_what_its_weights_file_would(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    weights = tmp_path / "last.pt"
    torch.save({"state_dict": {}, "meta": _Call(os.system, f"touch {marker}")}, weights)
    script = "import sys; from pathlib import Path; from tools.validate_runs import gates; gates(Path(sys.argv[1]))"
    result = subprocess.run([sys.executable, "-c", script, str(weights)], capture_output=True, text=True,
                            timeout=120, cwd=REPO_DIR)
    assert result.returncode == 1 and "posix.system" in result.stderr.strip().splitlines()[-1]
    assert not marker.exists()


@pytest.mark.parametrize("tool", ["choose_contrast_clip.py", "choose_fusion_rule.py", "choose_radiance_floor.py"])
def test_the_choosing_tools_refuse_an_unwritable_json_before_a_model_loads(tool: str, tmp_path: Path) -> None:
    result = _tool(tool, "--data", tmp_path, "--json", "/proc/rows.json")
    assert "--json /proc/rows.json cannot be written" in _error(result, tool)


@pytest.mark.parametrize("tool", ["choose_contrast_clip.py", "choose_fusion_rule.py", "choose_radiance_floor.py",
                                  "compiled_network_timing.py"])
def test_the_tools_that_print_tables_refuse_json_dash(tool: str, tmp_path: Path) -> None:
    """`--json -` (stdout for the dgdehaze commands) would have written a file named `-` beside the table the tool
    prints to stdout: it is refused before any work."""
    result = _tool(tool, *(["--data", tmp_path] if tool.startswith("choose") else []), "--json", "-")
    assert "--json -: this command writes its JSON to a file only" in _error(result, tool)
    assert not (REPO_DIR / "-").exists()


WITHOUT_TORCH = ("import runpy, sys\nsys.modules['torch'] = None  # an import of torch fails\n"
                 "sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
"""Runs the tool its first argument names, with its other arguments, where torch cannot be imported."""


@pytest.mark.parametrize("tool, arguments", [
    ("road_transmission_profile.py", ["{data}/depth/kitti-tiny", "--method", "dcp"]),
    ("visibility_sheet.py", ["{tmp}", "--out", "{tmp}/sheet.jpg"]),
    ("noise_figure.py", ["{tmp}/none.jpg", "--out", "{tmp}/n.jpg"]),
    ("boundary_figure.py", ["{tmp}/none.jpg", "--out", "{tmp}/n.jpg"]),
    ("choose_fusion_rule.py", ["--data", "{tmp}", "--json", "-"]),
    ("choose_contrast_clip.py", ["--data", "{tmp}", "--json", "-"]),
    ("choose_radiance_floor.py", ["--floors", "0.02,0.6"]),
    ("choose_radiance_floor.py", ["--limit", "0"]),
    ("choose_radiance_floor.py", ["--limit", "-1"]),
    ("validate_runs.py", ["a={tmp}/no-run", "--json", "{tmp}/round.json"])])
def test_a_tool_refuses_bad_input_before_it_imports_torch(tool: str, arguments: list[str], tmp_path: Path,
                                                          shared_data: Path) -> None:
    """Their refusals came after seconds of importing torch (with the detector or the dehazing methods), the
    same seconds as a run's; now the modules that import it are imported once the checks have passed."""
    named = [a.format(data=shared_data, tmp=tmp_path) for a in arguments]
    result = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(TOOLS / tool), *named], capture_output=True,
                            text=True, timeout=60, cwd=REPO_DIR)
    _error(result, tool)


def test_choose_radiance_floor_refuses_a_floor_given_twice_before_it_imports_torch(tmp_path: Path) -> None:
    """`--floors 0.02,0.020` ran lite at 0.02 twice (minutes) under one row name, the second row replacing the first."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, str(TOOLS / "choose_radiance_floor.py"), "--floors",
                             "0,0.02,0.020", "--data", str(tmp_path)], capture_output=True, text=True, timeout=60,
                            cwd=REPO_DIR)
    assert "--floors 0,0.02,0.020: 0.02 given more than once" in _error(result, "choose_radiance_floor.py")


def test_the_visibility_sheet_run_in_its_photo_folder_refuses_json_dash_as_such(tmp_path: Path) -> None:
    """`--json -` from inside the photo folder was refused as 'lies in the input folder' (a file '-' there), not as
    the stdout this tool does not write its JSON to."""
    photos = _photos(tmp_path / "photos")
    result = _tool("visibility_sheet.py", ".", "--method", "dcp", "--out", tmp_path / "s.jpg", "--json", "-",
                   cwd=photos[0].parent)
    assert "--json -: this command writes its JSON to a file only" in _error(result, "visibility_sheet.py")
    assert sorted((tmp_path / "photos").iterdir()) == photos


def test_the_dawn_tools_find_the_shared_data_and_the_split_from_any_folder(tmp_path: Path) -> None:
    """Their defaults (the DAWN photos, data/splits/dawn-fog.yaml, the figure's path) were named from the current
    folder: run from another one they found no split file and read ../shared/data there, not $DGDEHAZE_DATA."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    (data / "detection" / "dawn-fog").mkdir(parents=True)
    elsewhere.mkdir()
    env = {**os.environ, "DGDEHAZE_DATA": str(data)}
    photos = data / "detection" / "dawn-fog"
    for tool in ("choose_fusion_rule.py", "choose_contrast_clip.py"):
        result = _tool(tool, cwd=elsewhere, env=env)  # the split file read, the empty photo folder refused, in
        assert _error(result, tool).startswith(f"{tool}: error: {photos} ")  # one line: before the detector loads
    assert f"{photos} holds no DAWN photos" in _error(_tool("make_dawn_split.py", cwd=elsewhere, env=env),
                                                      "make_dawn_split.py")
    missing = _tool("noise_figure.py", "--out", tmp_path / "n.jpg", cwd=elsewhere, env=env)
    assert f"{photos / 'haze-032.jpg'}" in _error(missing, "noise_figure.py")
    assert list(elsewhere.iterdir()) == []


def test_the_compiled_timing_refuses_an_int8_row_it_cannot_build_before_compiling(tmp_path: Path) -> None:
    """Without torchao (not a dependency) the int8 row ended in a ModuleNotFoundError traceback, and a missing
    calibration folder in an error, after minutes of compiling the other rows."""
    tool = "compiled_network_timing.py"
    if importlib.util.find_spec("torchao") is None:
        result = _tool(tool, "--int8-calibration", tmp_path, timeout=60)
        assert result.returncode == 2 and "--int8-calibration needs torchao" in result.stderr.splitlines()[-1]
        assert "Traceback" not in result.stderr
    else:
        result = _tool(tool, "--int8-calibration", tmp_path / "none", timeout=60)
        assert result.returncode == 2 and f"{tmp_path / 'none'}: no such folder" in result.stderr


def test_make_dawn_split_refuses_a_folder_without_photos(tmp_path: Path) -> None:
    (tmp_path / "detection" / "dawn-fog").mkdir(parents=True)
    result = _tool("make_dawn_split.py", "--data", tmp_path, "--out", tmp_path / "split.yaml")
    assert "holds no DAWN photos" in _error(result, "make_dawn_split.py")
    _photos(tmp_path / "detection" / "dawn-fog", 1)
    result = _tool("make_dawn_split.py", "--data", tmp_path, "--out", tmp_path / "split.yaml")
    assert "empty" in _error(result, "make_dawn_split.py") and not (tmp_path / "split.yaml").exists()


def test_make_dawn_split_refuses_a_truncated_photo_naming_it(shared_data: Path, tmp_path: Path) -> None:
    """cv2.imread decodes a JPEG cut short with only a warning on stderr, the missing rows grey: the split listed
    a photo that every reader of the project refuses."""
    folder = tmp_path / "detection" / "dawn-fog"
    folder.mkdir(parents=True)
    for photo in sorted((shared_data / "detection" / "dawn-fog").glob("foggy-*.jpg"))[:10]:
        (folder / photo.name).write_bytes(photo.read_bytes())
    assert _tool("make_dawn_split.py", "--data", tmp_path, "--out", tmp_path / "whole.yaml").returncode == 0
    cut = sorted(folder.iterdir())[3]
    whole = cut.read_bytes()
    cut.write_bytes(whole[:len(whole) - 2000])
    assert cv2.imread(str(cut)) is not None  # what the tool read it with
    result = _tool("make_dawn_split.py", "--data", tmp_path, "--out", tmp_path / "split.yaml")
    assert f"{cut} is not a readable image (truncated or damaged?)" in _error(result, "make_dawn_split.py")
    assert not (tmp_path / "split.yaml").exists()


def test_make_demo_bag_refuses_a_bad_width_or_frame_count(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for index in range(3):
        writer.write(np.full((48, 64, 3), 60 * index, np.uint8))
    writer.release()
    for flags, named in ((["--width", "-5"], "--width -5"), (["--frames", "0"], "--frames 0")):
        result = _tool("make_demo_bag.py", "--video", video, "--out", tmp_path / "bag", *flags)
        assert named in _error(result, "make_demo_bag.py")
    late = _tool("make_demo_bag.py", "--video", video, "--out", tmp_path / "bag", "--start", "7", "--width", "0")
    assert "no frames from index 7 (it holds 3)" in _error(late, "make_demo_bag.py")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clip.mp4"]


def _distance_tool() -> dict:
    return runpy.run_path(str(TOOLS / "detection_distance.py"))


def test_the_distance_harness_takes_the_object_s_returns_not_the_background_past_it_nor_a_car_in_front() -> None:
    """A box at 10 m with background (40 m) seen through its upper part and a nearer car (6 m, its own box standing
    lower in the frame) covering its left: the truth is the 10 m surface; without the front car's box the nearest
    surface would be that car's."""
    tool = _distance_tool()
    intrinsics, mounting = Intrinsics(200.0, 200.0, 200.0, 100.0), Mounting(1.65, 0.0)
    lidar = np.full((200, 400), np.nan, np.float32)
    sparse = np.zeros(lidar.shape, bool)
    sparse[::3, ::3] = True
    lidar[60:125, 150:250] = 10.0
    lidar[60:80, 150:250] = 40.0  # through the windows
    lidar[70:160, 100:200] = 6.0  # the car in front, its box's bottom (160) below the object's (130)
    lidar[~sparse] = np.nan
    box, front = (150.0, 60.0, 250.0, 130.0), (100.0, 70.0, 200.0, 160.0)
    assert tool["true_z"](lidar, box, intrinsics, mounting, [front]) == pytest.approx(10.0)
    assert tool["true_z"](lidar, box, intrinsics, mounting, [front], "nearest") == pytest.approx(10.0)
    assert tool["true_z"](lidar, box, intrinsics, mounting, [], "nearest") == pytest.approx(6.0)
    assert np.isnan(tool["true_z"](lidar, (300.0, 10.0, 390.0, 50.0), intrinsics, mounting, []))  # no returns


def test_the_distance_harness_prints_each_rule_s_error_on_a_kitti_frame(shared_data: Path) -> None:
    result = _tool("detection_distance.py", shared_data / "depth" / "kitti-seq", "--every", "100", timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if "@lidar" in line}
    assert set(rows) == {f"{rule}@lidar" for rule in ("median", "central", "p25", "cluster", "ground", "ground,median",
                                                      "cluster+ground", "median|ground", "central|ground")}
    assert float(rows["median@lidar"][3]) >= 1 and 0 <= float(rows["median@lidar"][0]) < 0.5
