"""KITTI depth's `depth_selection/val_selection_cropped` layout (image/ + groundtruth_depth/ + intrinsics/, each
frame cropped to the bottom-centre 1216x352 of its raw frame) read as a depth set for `eval --measure
depth,visibility`, built here from kitti-tiny's raw frames exactly as KITTI builds it."""
from __future__ import annotations

import fnmatch
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.evaluation.depth_datasets import kitti_depth_files, load_depth_set, load_kitti
from dgdehaze_core.evaluation.visibility_eval import frame_intrinsics, kitti_intrinsics
from dgdehaze_core.io.images import ImageError
from dgdehaze_core.training.video_frames import find_kitti_sequences

DATE = "2011_09_26"
DRIVE = f"{DATE}_drive_0023_sync"
FRAMES = ("0000000000", "0000000001")
LEFT = tuple(("image_02", frame) for frame in FRAMES)
"""(camera, frame) of the left colour camera's frames used here."""
CROP = (352, 1216)
"""KITTI's crop (height, width) of its 1242x375 raw frames: the bottom rows, centred across."""


def _raw(shared_data: Path) -> Path:
    return shared_data / "depth" / "kitti-tiny"


def _crop_box(shape: tuple[int, ...]) -> tuple[int, int]:
    """(top, left) of KITTI's bottom-centre crop of a frame of `shape`."""
    return shape[0] - CROP[0], (shape[1] - CROP[1]) // 2


def _crop(array: np.ndarray) -> np.ndarray:
    top, left = _crop_box(array.shape)
    return array[top:top + CROP[0], left:left + CROP[1]]


def _rectified_k(raw: Path, camera: str, shift: tuple[int, int]) -> list[float]:
    """calib_cam_to_cam.txt's P_rect of `camera` as a 3x3 K, its principal point moved by `shift` (top, left)."""
    line = next(line for line in (raw / DATE / "calib_cam_to_cam.txt").read_text().splitlines()
                if line.startswith(f"P_rect_{camera.removeprefix('image_')}:"))
    p = [float(value) for value in line.split()[1:]]
    return [p[0], p[1], p[2] - shift[1], p[4], p[5], p[6] - shift[0], p[8], p[9], p[10]]


def _write(files: dict[Path, np.ndarray]) -> None:
    for path, pixels in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), pixels)


def _build(shared_data: Path, tmp_path: Path, frames: tuple[tuple[str, str], ...] = LEFT) -> tuple[Path, Path]:
    """(the selection layout of `frames` (camera, frame) of kitti-tiny, a raw layout of the same cropped frames,
    depth PNGs and K): both hold the very same pixels, depths and intrinsics. velodyne_raw/ holds half the depth,
    so that a sample read from it would show."""
    raw = _raw(shared_data)
    selection = tmp_path / "val_selection_cropped"
    cropped = tmp_path / "raw-cropped"
    calib = (raw / DATE / "calib_cam_to_cam.txt").read_text().splitlines()
    for camera, frame in frames:
        image = cv2.imread(str(raw / DATE / DRIVE / camera / "data" / f"{frame}.png"), cv2.IMREAD_COLOR)
        with np.load(raw / DATE / DRIVE / "proj_depth" / "velodyne" / camera / f"{frame}.npz") as archive:
            depth = np.nan_to_num(archive[archive.files[0]].astype(np.float32))
        truth = np.round(_crop(depth) * 256).astype(np.uint16)
        _write({selection / "image" / f"{DRIVE}_image_{frame}_{camera}.png": _crop(image),
                selection / "groundtruth_depth" / f"{DRIVE}_groundtruth_depth_{frame}_{camera}.png": truth,
                selection / "velodyne_raw" / f"{DRIVE}_velodyne_raw_{frame}_{camera}.png": truth // 2,
                cropped / DATE / DRIVE / camera / "data" / f"{frame}.png": _crop(image),
                cropped / DATE / DRIVE / "proj_depth" / "groundtruth" / camera / f"{frame}.png": truth})
        k = _rectified_k(raw, camera, _crop_box(image.shape))
        intrinsics = selection / "intrinsics" / f"{DRIVE}_image_{frame}_{camera}.txt"
        intrinsics.parent.mkdir(exist_ok=True)
        intrinsics.write_text(" ".join(f"{value:e}" for value in k) + "\n")
        key = f"P_rect_{camera.removeprefix('image_')}:"
        p = [float(value) for value in next(line for line in calib if line.startswith(key)).split()[1:]]
        p[2], p[6] = k[2], k[5]
        calib = [f"{key} " + " ".join(f"{value:e}" for value in p) if line.startswith(key) else line
                 for line in calib]
    (cropped / DATE / "calib_cam_to_cam.txt").write_text("\n".join(calib) + "\n")
    return selection, cropped


def _eval(folder: Path, out: Path, *options: str) -> dict:
    assert main(["eval", "--dataset", str(folder), "--json", str(out), *options]) == 0
    return json.loads(out.read_text())


def test_the_selection_layout_lists_kitti_frames_named_as_the_raw_layout_with_the_cropped_ground_truth(
        shared_data: Path, tmp_path: Path):
    selection, _ = _build(shared_data, tmp_path, (*LEFT, ("image_03", FRAMES[0])))
    listed = load_depth_set(selection)
    assert listed.sparse and listed.max_depth == 80.0
    raw = load_kitti(_raw(shared_data))
    by_name = {frame.name: frame for frame in raw.frames}
    names = [frame.name for frame in listed.frames]
    assert names == [f"{DRIVE}/image_02/{FRAMES[0]}", f"{DRIVE}/image_02/{FRAMES[1]}", f"{DRIVE}/image_03/{FRAMES[0]}"]
    assert [name for name in names if fnmatch.fnmatch(name, "*/image_02/*")] == names[:2]  # the raw layout's glob
    for frame in listed.frames:
        sample, whole = frame.read(), by_name[frame.name].read()
        assert sample.image.shape == (*CROP, 3) and np.array_equal(sample.image, _crop(whole.image))
        assert np.array_equal(np.isnan(sample.depth), np.isnan(_crop(whole.depth)))  # groundtruth, not velodyne_raw
        np.testing.assert_allclose(sample.depth, _crop(whole.depth), atol=0.5 / 256)  # the PNG's 1/256 m steps
        camera = frame_intrinsics(selection, frame.name)
        assert (camera.fx, camera.cx, camera.cy) == pytest.approx((721.5377, 609.5593 - 13, 172.854 - 23), abs=1e-3)


def test_depth_on_the_selection_scores_as_the_raw_layout_of_the_same_cropped_frames(shared_data: Path,
                                                                                     tmp_path: Path):
    """The raw layout holding the very same cropped frames, depth PNGs and K gives the very same rows; the whole
    raw frames (23 more rows of sky and tree tops, 26 more columns) score close to them."""
    selection, cropped = _build(shared_data, tmp_path)
    options = ("--measure", "depth", "--method", "hazy,dcp")
    rows = _eval(selection, tmp_path / "selection.json", *options)
    assert rows == _eval(cropped, tmp_path / "cropped.json", *options)
    assert rows["dcp@t0.25"]["images"] == 2 and "hazy@clear" not in rows
    whole = _eval(_raw(shared_data), tmp_path / "raw.json", *options, "--include", f"*/image_02/{FRAMES[0]}",
                  "--include", f"*/image_02/{FRAMES[1]}")
    for condition in ("clear", "t0.70", "t0.45", "t0.25"):
        # measured on these two frames: the crop's AbsRel lies 1 to 4 % below the whole frames' (1.02 / 1.03 clear,
        # 0.354 / 0.369 at t0.45): the haze's beta is solved for the mean transmission of another image (without
        # the sky rows cut off), and DCP's patches and guided filter see other borders. Twice that is allowed.
        assert rows[f"dcp@{condition}"]["absrel"] == pytest.approx(whole[f"dcp@{condition}"]["absrel"], rel=0.08)


def test_visibility_on_the_selection_reads_each_frames_own_intrinsics(shared_data: Path, tmp_path: Path):
    selection, cropped = _build(shared_data, tmp_path)
    options = ("--measure", "visibility", "--method", "dcp")
    rows = _eval(selection, tmp_path / "selection.json", *options)
    assert rows == _eval(cropped, tmp_path / "cropped.json", *options)  # the same pixels, depths and camera
    whole = _eval(_raw(shared_data), tmp_path / "raw.json", *options, "--include", f"*/image_02/{FRAMES[0]}",
                  "--include", f"*/image_02/{FRAMES[1]}")
    # a road pixel's distance depends on its row's offset from the principal point, which the crop keeps (cy moved
    # with it): the whole frames read the same fog on the road (+road: the road users the crop cuts differ), measured
    # within 0.3 % at each visibility (the road region is the same fraction of another image size, DCP's filters see
    # other borders); 3 % is allowed
    for condition in ("vis50", "vis150", "vis400"):
        assert rows[f"dcp+road@{condition}"]["visibility_median"] == pytest.approx(
            whole[f"dcp+road@{condition}"]["visibility_median"], rel=0.03)
    for path in (selection / "intrinsics").iterdir():  # the raw frame's K, not shifted by the crop: cy 23 px low
        path.write_text(" ".join(map(str, _rectified_k(_raw(shared_data), "image_02", (0, 0)))))
    unshifted = _eval(selection, tmp_path / "unshifted.json", *options)["dcp+road@vis50"]["visibility_median"]
    assert abs(unshifted / rows["dcp+road@vis50"]["visibility_median"] - 1) > 0.1  # measured: 49.4 m against 42.4 m


def _one_frame(shared_data: Path, tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    selection, _ = _build(shared_data, tmp_path, LEFT[:1])
    stem = f"{DRIVE}_{{}}_{FRAMES[0]}_image_02"
    return selection, {"image": selection / "image" / f"{stem.format('image')}.png",
                       "truth": selection / "groundtruth_depth" / f"{stem.format('groundtruth_depth')}.png",
                       "lidar": selection / "velodyne_raw" / f"{stem.format('velodyne_raw')}.png",
                       "k": selection / "intrinsics" / f"{stem.format('image')}.txt"}


def test_an_image_without_ground_truth_and_ground_truth_without_image_are_refused_naming_the_file(
        shared_data: Path, tmp_path: Path):
    selection, files = _one_frame(shared_data, tmp_path)
    files["truth"].unlink()  # velodyne_raw/ stands in, as in the raw layout
    (sample,) = load_depth_set(selection).samples()
    np.testing.assert_allclose(np.nanmax(sample.depth), np.nanmax(cv2.imread(
        str(files["lidar"]), cv2.IMREAD_UNCHANGED)) / 256)
    files["lidar"].unlink()
    with pytest.raises(ImageError, match=re.escape(f"{files['image']} has no ground truth {files['truth'].name}")):
        load_depth_set(selection)
    cv2.imwrite(str(files["truth"]), np.full((4, 4), 2560, np.uint16))
    files["image"].unlink()
    with pytest.raises(ImageError, match=re.escape(f"{files['truth']} has no image {files['image'].name}")):
        load_depth_set(selection)
    for misnamed in (files["image"].with_name("frame.png"), files["image"].with_name(files["truth"].name)):
        files["truth"].rename(misnamed)  # a frame KITTI does not name so, or a depth map among the images
        with pytest.raises(ImageError, match=re.escape(f"{misnamed} is not named DRIVE_image_FRAME_image_0X.png")):
            load_depth_set(selection)
        misnamed.rename(files["truth"])


@pytest.mark.parametrize("broken, content, message", [
    ("image", b"\x89PNG\r\n\x1a\n cut short", "is not a readable image"),
    ("truth", b"\x89PNG\r\n\x1a\n cut short", "is not a readable depth PNG"),
    ("truth", np.full((352, 1216), 10, np.uint8), "uint8 with 1 channel.*one 16-bit channel"),
    ("truth", np.full((352, 1216, 3), 2560, np.uint16), "uint16 with 3 channel.*one 16-bit channel"),
])
def test_an_unreadable_or_8_bit_png_is_refused_when_its_frame_is_read(shared_data: Path, tmp_path: Path,
                                                                       broken: str, content, message: str):
    selection, files = _one_frame(shared_data, tmp_path)
    if isinstance(content, bytes):
        files[broken].write_bytes(content)
    else:
        assert cv2.imwrite(str(files[broken]), content)
    listed = load_depth_set(selection)  # listing reads no pixel
    with pytest.raises(ImageError, match=message) as refused:
        listed.read_all()
    assert str(files[broken]) in str(refused.value)


@pytest.mark.parametrize("text, message", [
    ("721.5 0 596.6 0 721.5 149.9 0 0", "holds 8 numbers"),
    ("721.5 0 596.6 0 721.5 nan 0 0 1", "holds 9 numbers, not all finite"),
    ("721.5 0 596.6 0 721.5 149.9 0 0 1 0", "holds 10 numbers"),
    ("721.5 0 596.6 0 x 149.9 0 0 1", "not a text file of 9 numbers"),
    ("0 0 596.6 0 721.5 149.9 0 0 1", "positive focal lengths"),
    ("721.5 0 596.6 0 -721.5 149.9 0 0 1", "positive focal lengths"),
    ("721.5 0 0 0 721.5 0 596.6 149.9 1", "last row"),
])
def test_an_intrinsics_file_that_is_no_camera_is_refused_naming_it(shared_data: Path, tmp_path: Path, text: str,
                                                                   message: str, capsys):
    selection, files = _one_frame(shared_data, tmp_path)
    files["k"].write_text(text + "\n")
    code = main(["eval", "--dataset", str(selection), "--measure", "visibility", "--method", "dcp"])
    error = capsys.readouterr().err.strip().splitlines()[-1]  # the lines before: tqdm's progress
    assert code == 2 and str(files["k"]) in error and re.search(message, error), error


def test_a_missing_intrinsics_file_fails_visibility_naming_it_and_leaves_depth_alone(shared_data: Path,
                                                                                    tmp_path: Path, capsys):
    selection, files = _one_frame(shared_data, tmp_path)
    files["k"].unlink()
    code = main(["eval", "--dataset", str(selection), "--measure", "visibility", "--method", "dcp"])
    assert code == 2 and f"{files['k']} is missing" in capsys.readouterr().err
    assert math.isfinite(_eval(selection, tmp_path / "depth.json", "--measure", "depth", "--method",
                               "dcp")["dcp@clear"]["absrel"])


def test_a_kitti_date_folder_linked_into_place_is_read_through_the_link(shared_data: Path, tmp_path: Path):
    """A set is often linked into place: KITTI with its date folder a symlink was refused as holding no frames
    (pathlib's rglob does not enter linked folders), its calibration unfound, its drives no training sequences."""
    linked = tmp_path / "kitti"
    linked.mkdir()
    (linked / DATE).symlink_to(_raw(shared_data) / DATE, target_is_directory=True)
    frames = load_depth_set(linked).frames
    assert [frame.name for frame in frames] == [frame.name for frame in load_depth_set(_raw(shared_data)).frames]
    assert kitti_intrinsics(linked, frames[0].name) == kitti_intrinsics(_raw(shared_data), frames[0].name)
    assert [sequence.name for sequence in find_kitti_sequences(linked)] == [f"{DRIVE}/image_02"]
    depth = next((_raw(shared_data) / DATE / DRIVE / "proj_depth").rglob("image_02/*"))
    copied = tmp_path / "copied" / DATE / DRIVE / depth.relative_to(_raw(shared_data) / DATE / DRIVE)
    copied.parent.mkdir(parents=True)
    copied.write_bytes(depth.read_bytes())
    (copied.parent / f"._{copied.name}").write_bytes(b"macOS")  # a sidecar is no LiDAR scan of another frame
    assert kitti_depth_files(tmp_path / "copied") == [copied]
