"""Depth and visibility sets are listed first and read frame by frame: `eval --include/--limit` bound what is read,
a broken frame outside the selection leaves the figures untouched, and a broken selected frame fails naming its file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.evaluation.depth_datasets import load_kitti
from dgdehaze_core.io.images import ImageError


def _linked_copy(source: Path, target: Path) -> Path:
    """`source` copied as links to its files, so that a test can replace some of them."""
    shutil.copytree(source, target, copy_function=lambda a, b: Path(b).symlink_to(a))
    return target


def _break(path: Path, kind: str = "truncated") -> None:
    """Replace a linked file by a damaged copy: its first 300 bytes (a download cut short) or no valid content."""
    data = path.read_bytes()[:300] if kind == "truncated" else b"not an image"
    path.unlink()
    path.write_bytes(data)


def _rows(folder: Path, out: Path, *options: str) -> dict:
    assert main(["eval", "--dataset", str(folder), "--method", "dcp", "--json", str(out), *options]) == 0
    return json.loads(out.read_text())


def test_broken_middlebury_frames_outside_include_or_limit_leave_the_figures_as_on_a_clean_copy(
        shared_data: Path, tmp_path: Path):
    folder = _linked_copy(shared_data / "depth" / "middlebury2003", tmp_path / "middlebury2003")
    included = _rows(folder, tmp_path / "clean-include.json", "--measure", "depth", "--include", "cones/*")
    limited = _rows(folder, tmp_path / "clean-limit.json", "--measure", "depth", "--limit", "2")
    _break(folder / "teddy" / "im6.png")
    _break(folder / "teddy" / "disp2.pgm", "garbage")
    assert _rows(folder, tmp_path / "include.json", "--measure", "depth", "--include", "cones/*") == included
    assert _rows(folder, tmp_path / "limit.json", "--measure", "depth", "--limit", "2") == limited  # the cones
    assert included["dcp@t0.45"]["images"] == 2


def test_a_broken_selected_frame_fails_naming_its_file_not_a_broken_one_left_out(shared_data: Path, tmp_path: Path,
                                                                                 capsys):
    folder = _linked_copy(shared_data / "depth" / "middlebury2003", tmp_path / "middlebury2003")
    _break(folder / "cones" / "disp2.pgm", "garbage")  # listed first, not selected
    _break(folder / "teddy" / "im6.png")
    code = main(["eval", "--dataset", str(folder), "--measure", "depth", "--method", "dcp", "--include", "teddy/*"])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # the lines before: tqdm's progress
    assert error.startswith(f"dgdehaze eval: error: depth on {folder}: ")
    assert error.endswith(f"{folder / 'teddy' / 'im6.png'} is not a readable image")
    _break(folder / "teddy" / "disp2.pgm", "garbage")  # now the first selected frame's depth
    assert main(["eval", "--dataset", str(folder), "--measure", "depth", "--method", "dcp", "--include",
                 "teddy/*"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{folder / 'teddy' / 'disp2.pgm'} is not a readable disparity "
                                                    "image (truncated or damaged?)")


def test_limit_reads_only_its_frames_every_other_one_would_fail(shared_data: Path, tmp_path: Path):
    """Every KITTI frame but the first (image_02/0000000000) has its image or its LiDAR broken: --limit 1 must read
    none of them."""
    folder = _linked_copy(shared_data / "depth" / "kitti-tiny", tmp_path / "kitti-tiny")
    clean = _rows(folder, tmp_path / "clean.json", "--measure", "depth,visibility", "--limit", "1")
    drive = folder / "2011_09_26" / "2011_09_26_drive_0023_sync"
    files = sorted([*drive.glob("image_0[23]/data/*.png"), *drive.glob("proj_depth/velodyne/image_0[23]/*.npz")])
    first = {drive / "image_02" / "data" / "0000000000.png", drive / "proj_depth/velodyne/image_02/0000000000.npz"}
    for number, path in enumerate(sorted(set(files) - first)):
        _break(path, "garbage" if number % 2 else "truncated")
    assert _rows(folder, tmp_path / "limit.json", "--measure", "depth,visibility", "--limit", "1") == clean
    assert clean["depth/dcp@t0.45"]["images"] == clean["visibility/dcp@vis50"]["images"] == 1
    frames = load_kitti(folder).frames
    assert len(frames) == 14 and frames[0].read().image.shape == (375, 1242, 3)
    for frame in frames[1:]:  # each frame left out would have failed the run, had it been read
        with pytest.raises(ImageError, match=frame.name.rsplit("/", 1)[1]):
            frame.read()


def test_listing_a_set_reads_no_frame_and_reading_one_names_its_file(shared_data: Path, tmp_path: Path):
    folder = _linked_copy(shared_data / "depth" / "kitti-tiny", tmp_path / "kitti-tiny")
    for lidar in folder.rglob("proj_depth/velodyne/*/*.npz"):
        _break(lidar)
    listed = load_kitti(folder)
    assert len(listed.frames) == 14 and listed.frames[0].name == "2011_09_26_drive_0023_sync/image_02/0000000000"
    with pytest.raises(ImageError, match=f"{listed.frames[3].depth_path} is not a readable depth archive"):
        listed.frames[3].read()
