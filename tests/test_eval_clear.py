"""The clear measure: what each method does to a clear KITTI frame, against the frame itself."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.evaluation.clear_eval import CLEAR_COLUMNS, evaluate_clear
from dgdehaze_core.evaluation.depth_datasets import load_kitti
from dgdehaze_core.evaluation.methods import Method, MethodSpec, load_methods, parse_methods
from dgdehaze_core.evaluation.metrics import PSNR_CAP
from dgdehaze_core.inference.dehaze_result import DehazeResult
from dgdehaze_core.physics.dark_channel import haze_density

FRAMES = ("2011_09_26_drive_0023_sync/image_02/0000000001", "2011_09_26_drive_0023_sync/image_02/0000000002")
DARKER = 20
"""Levels the darkening stand-in takes from every channel."""


@pytest.fixture(scope="module")
def kitti_frames(shared_data: Path):
    """Two clear KITTI frames of the left camera (cars in view), read once."""
    depth_set = load_kitti(shared_data / "depth" / "kitti-tiny")
    depth_set.frames = [frame for frame in depth_set.frames if frame.name in FRAMES]
    assert len(depth_set.frames) == 2
    return depth_set.read_all()


def _darkening(frame: np.ndarray) -> DehazeResult:
    """A method that takes DARKER levels from every channel, stopping at 0."""
    height, width = frame.shape[:2]
    image = (np.maximum(frame.astype(np.int16) - DARKER, 0)).astype(np.uint8)
    return DehazeResult(image=image, depth=np.ones((height, width), np.float32),
                        transmission=np.full((height, width), 0.8, np.float32),
                        airlight=np.ones(3, np.float32), haze_density=haze_density(frame))


def test_the_untouched_frame_is_unchanged_and_a_fusion_gets_detection_figures_only(kitti_frames, detector):
    hazy, fused = load_methods(parse_methods("hazy,dcp+hazy"))
    rows = evaluate_clear(kitti_frames, [hazy, fused], detector, progress=False, max_det=detector.max_det)
    assert tuple(rows["hazy"]) == CLEAR_COLUMNS
    assert rows["hazy"]["psnr"] == PSNR_CAP and rows["hazy"]["ssim"] == 1.0
    assert rows["hazy"]["brightness_change"] == 0.0 and rows["hazy"]["crushed"] == 0.0 and rows["hazy"]["blown"] == 0.0
    assert (rows["hazy"]["precision"], rows["hazy"]["recall"], rows["hazy"]["f1"]) == (1.0, 1.0, 1.0)
    assert rows["hazy"]["objects"] >= 10 and rows["hazy"]["images"] == 2  # cars parked along both sides
    assert all(np.isnan(rows["dcp+hazy"][key]) for key in ("psnr", "ssim", "brightness_change", "crushed", "blown"))
    assert 0.5 <= rows["dcp+hazy"]["f1"] <= 1.0 and rows["dcp+hazy"]["objects"] == rows["hazy"]["objects"]


def test_a_darkening_method_is_measured_with_its_sign_and_size(kitti_frames, detector):
    dark = Method(MethodSpec("dark", "dark"), _darkening)
    rows = evaluate_clear(kitti_frames, [dark], detector, progress=False)["dark"]
    frames = [sample.image.astype(np.float64) for sample in kitti_frames.samples()]
    darker = [np.maximum(frame - DARKER, 0.0) for frame in frames]
    assert rows["brightness_change"] == pytest.approx(np.mean([d.mean() - f.mean() for d, f in zip(darker, frames)]))
    assert -DARKER <= rows["brightness_change"] < -DARKER + 2  # few channels lie below 20 levels
    crushed = [((f > 0) & (f <= DARKER)).any(axis=2).mean() for f in frames]
    assert rows["crushed"] == pytest.approx(np.mean(crushed)) and rows["crushed"] > 0.001
    assert rows["blown"] == 0.0
    mse = [np.mean(((d - f) / 255.0) ** 2) for d, f in zip(darker, frames)]
    assert rows["psnr"] == pytest.approx(np.mean([10 * np.log10(1 / m) for m in mse]))
    assert 0.0 <= rows["f1"] < 1.0 and rows["images"] == 2


def test_eval_writes_one_json_key_per_method_under_the_table_s_names(shared_data: Path, tmp_path: Path, capsys):
    out = tmp_path / "clear.json"
    assert main(["eval", "--dataset", str(shared_data / "depth" / "kitti-tiny"), "--measure", "clear",
                 "--method", "hazy,clear-jpeg90", "--include", FRAMES[0], "--no-progress",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert list(rows) == ["hazy", "clear-jpeg90"] and all(tuple(row) == CLEAR_COLUMNS for row in rows.values())
    assert rows["hazy"]["psnr"] == PSNR_CAP and rows["hazy"]["f1"] == 1.0 and rows["hazy"]["images"] == 1
    assert 20.0 < rows["clear-jpeg90"]["psnr"] < 40.0 and abs(rows["clear-jpeg90"]["brightness_change"]) < 1.0
    assert "brightness_change" in capsys.readouterr().out


def test_a_set_without_clear_frames_is_refused_with_one_line(sots_pairs: Path, tmp_path: Path, capsys):
    assert main(["eval", "--dataset", str(sots_pairs), "--measure", "clear", "--method", "hazy"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (f"dgdehaze eval: error: {sots_pairs} fits none of the measures clear; it fits quality, "
                     "scattering, detection, haze: give --measure quality,scattering,detection,haze")
    drive = tmp_path / "kitti" / "2011_09_26_drive_0001_sync"
    (drive / "proj_depth" / "velodyne" / "image_02").mkdir(parents=True)
    (drive / "proj_depth" / "velodyne" / "image_02" / "0000000000.png").write_bytes(b"")
    assert main(["eval", "--dataset", str(tmp_path / "kitti"), "--measure", "clear", "--method", "hazy"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"dgdehaze eval: error: clear on {tmp_path / 'kitti'}: ")
    assert error.endswith("(move or link data_depth_annotated's DRIVE/proj_depth/ into the raw DATE/DRIVE/)")


def test_methods_no_measure_applies_to_are_told_where_they_do_apply_clear_included(sots_pairs: Path, capsys):
    assert main(["eval", "--dataset", str(sots_pairs), "--measure", "quality",
                 "--method", "clear-jpeg90,hazy+clahe"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith("none of the methods clear-jpeg90, hazy+clahe applies (clear and clear-jpeg90 are for "
                          "detection on paired sets and for clear, the +hazy and +clahe methods for detection and "
                          "clear's detection figures, a depth network for depth alone)")
