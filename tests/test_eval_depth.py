"""Depth accuracy: the error measures on known cases, haze synthesized from true depth, and the real loaders."""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.evaluation.depth_datasets import (MIN_DEPTH, DepthFrame, DepthSample, DepthSet, _lidar_depth,
                                                     load_depth_set, load_kitti, load_middlebury, middlebury_depth)
from dgdehaze_core.evaluation.depth_eval import (beta_for_transmission, change_between, dense_depth, depth_errors,
                                                 evaluate_depth, synthesize)
from dgdehaze_core.evaluation.methods import Method, MethodSpec, depth_only, load_method
from dgdehaze_core.evaluation.visibility_eval import frame_intrinsics
from dgdehaze_core.io.images import ImageError


def _ramp(height: int = 8, width: int = 10) -> np.ndarray:
    return np.linspace(2.0, 40.0, height * width, dtype=np.float32).reshape(height, width)


def test_identical_and_scaled_depth_have_no_error():
    true = _ramp()
    for predicted in (true, true * 0.01):  # median scaling removes the unknown scale
        errors = depth_errors(predicted, true, max_depth=80.0)
        assert errors["absrel"] == pytest.approx(0.0, abs=1e-6)
        assert errors["rmse_log"] == pytest.approx(0.0, abs=1e-6)
        assert errors["delta1"] == 1.0


def test_change_vs_clear_ignores_scale_and_counts_what_haze_moved():
    true = _ramp()
    clear = true * 0.5
    assert change_between(clear * 3.0, clear, true, max_depth=80.0) == pytest.approx(0.0, abs=1e-6)
    moved = clear.copy()
    moved[:4] = moved[:4][::-1]  # the top half's rows swapped top to bottom: the haze moved objects
    assert change_between(moved, clear, true, max_depth=80.0) > 0.1
    flat = np.full_like(clear, 7.0)  # a depth that reads only haze thickness loses the scene's layout
    assert change_between(flat, clear, true, max_depth=80.0) > change_between(moved, clear, true, max_depth=80.0)


def test_a_known_error_on_a_quarter_of_the_pixels():
    true = np.full((8, 8), 10.0, np.float32)
    predicted = true.copy()
    predicted[:4, :4] = 20.0  # the median stays 10, so the scale stays 1
    errors = depth_errors(predicted, true, max_depth=80.0)
    assert errors["absrel"] == pytest.approx(0.25)
    assert errors["rmse_log"] == pytest.approx(0.5 * np.log(2.0))
    assert errors["delta1"] == pytest.approx(0.75)


def test_delta_counts_a_ratio_below_1_25_not_at_it():
    """delta<1.25 (Eigen et al.) is strict: a constant depth scaled to the median true depth, 10 m, against true
    depths of 8 m (ratio exactly 1.25), 7.9 and 12.6 m (1.27 and 1.26) fails; 8.1 m (1.23) and 10 m pass."""
    true = np.array([[7.9, 8.0, 8.1, 10.0, 10.0, 10.0, 12.6]], np.float32)
    assert depth_errors(np.ones_like(true), true, max_depth=80.0)["delta1"] == pytest.approx(4 / 7)


def test_depth_figures_are_means_over_the_frames_of_each_frame_s_figures():
    """Three flat scenes 10, 20 and 40 m away (frames 4, 5 and 6 pixels wide); the network reads one pixel of the
    second at twice, of the third at three times the rest's depth: AbsRel 0, 1/10 and 2/12 after median scaling,
    whose mean is the row's, in every condition (the network ignores the haze). beta is solved per frame (-ln t / d
    for a flat scene), and mean_beta is their mean; the black scenes reach it in grey haze of A (1 - t), A = 0.9."""
    frames = [DepthSample(f"f{width}", np.zeros((2, width, 3), np.uint8), np.full((2, width), depth, np.float32))
              for width, depth in ((4, 10.0), (5, 20.0), (6, 40.0))]
    relative = {width: np.ones((2, width), np.float32) for width in (4, 5, 6)}
    relative[5][1, 4], relative[6][1, 5] = 2.0, 3.0
    seen: list[np.ndarray] = []
    network = Method(MethodSpec("net", "net.pt"),
                     depth_only(lambda frame: seen.append(frame) or relative[frame.shape[1]]))
    table = evaluate_depth(DepthSet("flat", frames, 200.0, False), [network], progress=False)
    for condition in ("clear", "t0.70", "t0.45", "t0.25"):
        row = table[f"net@{condition}"]
        assert row["absrel"] == pytest.approx((0 + 1 / 10 + 2 / 12) / 3) and row["images"] == 3
    for condition, transmission in (("t0.70", 0.70), ("t0.45", 0.45), ("t0.25", 0.25)):
        assert table[f"net@{condition}"]["mean_beta"] == pytest.approx(
            -np.log(transmission) * (1 / 10 + 1 / 20 + 1 / 40) / 3, rel=1e-6)
    assert np.isnan(table["net@clear"]["mean_beta"])
    grey = [255 * 0.9 * (1 - transmission) for transmission in (1.0, 0.70, 0.45, 0.25)]
    assert len(seen) == 12 and all(np.abs(frame - level).max() <= 0.5 for frame, level in zip(seen, grey * 3))


def test_a_scaled_prediction_out_of_range_counts_as_the_nearest_or_farthest_depth():
    """A relative depth of 0 (DCP's -ln t where it sees no haze) or one far beyond the rest (its sky) is scored as
    the set's nearest or farthest depth after scaling: unclipped, one such pixel's log error grows without bound
    (DCP on the clear Middlebury view: RMSE(log) 1.15 instead of 0.73)."""
    true = np.full((4, 4), 10.0, np.float32)
    predicted = np.ones((4, 4), np.float32)
    predicted[0, 0], predicted[0, 1], predicted[0, 2] = 0.0, -3.0, 1e6  # a negative one counts as the nearest too
    errors = depth_errors(predicted, true, max_depth=80.0)
    assert errors["absrel"] == pytest.approx((2 * (10.0 - MIN_DEPTH) / 10.0 + 70.0 / 10.0) / 16)
    assert errors["rmse_log"] == pytest.approx(np.sqrt((2 * np.log(MIN_DEPTH / 10.0) ** 2 + np.log(8.0) ** 2) / 16))
    assert errors["delta1"] == pytest.approx(13 / 16)


def test_change_vs_clear_leaves_out_a_pixel_either_depth_lacks():
    """A clear-frame depth without a value at one pixel (NaN) leaves that pixel out, as the hazy one's would: of the
    other 15, median-scaled to 10 m, the bottom row's 4 moved by 1 m in the hazy depth."""
    true = np.full((4, 4), 10.0, np.float32)
    clear = np.ones((4, 4), np.float32)
    clear[0, 0] = np.nan
    hazy = np.ones((4, 4), np.float32)
    hazy[3] = 1.1
    assert change_between(hazy, clear, true, max_depth=80.0) == pytest.approx(4 * 0.1 / 15)
    assert change_between(clear, hazy, true, max_depth=80.0) == pytest.approx(4 * 0.1 / 15)


def test_change_vs_clear_is_a_share_of_the_true_distance():
    """The clear view's depth here knows no layout (one value, scaled to the median true depth); haze doubles the
    top quarter, the nearest pixels: each moved by the median depth, a large share of their short true distance."""
    true = _ramp()
    clear = np.full_like(true, 5.0)
    hazy = clear.copy()
    hazy[:2] = 10.0
    median = float(np.median(true))
    expected = np.mean(np.where(np.arange(8)[:, None] < 2, median / true.astype(np.float64), 0.0))
    assert change_between(hazy, clear, true, max_depth=80.0) == pytest.approx(expected)
    assert expected > 0.5


def test_unknown_ground_truth_and_far_pixels_are_left_out():
    true = np.full((4, 4), 10.0, np.float32)
    true[0] = np.nan
    true[1] = 200.0  # beyond max depth
    predicted = np.full((4, 4), 3.0, np.float32)
    predicted[0] = 1e6
    predicted[1] = 1e6
    assert depth_errors(predicted, true, max_depth=80.0)["absrel"] == pytest.approx(0.0)


def test_bad_depth_input_gets_a_clear_message():
    with pytest.raises(ValueError, match=r"predicted depth is \(4, 4\) but the ground truth is \(4, 5\)"):
        depth_errors(np.ones((4, 4)), np.ones((4, 5)), max_depth=80.0)
    with pytest.raises(ValueError, match="no pixel has both a valid ground-truth depth"):
        depth_errors(np.ones((4, 4)), np.full((4, 4), np.nan), max_depth=80.0)
    with pytest.raises(ValueError, match="holds no valid value"):
        dense_depth(np.full((4, 4), np.nan, np.float32), 80.0, sparse=True)


def test_beta_hits_the_mean_transmission_and_haze_follows_the_scattering_model():
    depth = _ramp()
    for target in (0.70, 0.45, 0.25):
        beta = beta_for_transmission(depth, target)
        assert np.exp(-beta * depth).mean() == pytest.approx(target, abs=1e-6)
    beta = beta_for_transmission(depth, 0.45)
    clear = np.zeros((8, 10, 3), np.uint8)
    hazy = synthesize(clear, depth, beta, airlight=0.9)
    expected = np.rint(255 * 0.9 * (1 - np.exp(-beta * depth)))
    assert np.abs(hazy[:, :, 1].astype(float) - expected).max() <= 1
    assert hazy[0, 0, 0] < hazy[-1, -1, 0]  # farther is hazier


def test_sparse_lidar_is_filled_with_max_depth_above_its_top_return():
    true = np.full((6, 3), np.nan, np.float32)
    true[3, 1] = 10.0
    true[5, 0] = 20.0
    filled = dense_depth(true, 80.0, sparse=True)
    assert filled[0, 1] == 80.0 and filled[3, 1] == 10.0 and filled[4, 1] in (10.0, 20.0)
    assert filled[4, 0] == 80.0 and filled[5, 0] == 20.0
    assert (filled[:3, 2] == 80.0).all() and filled[3, 2] == 10.0  # no return: its neighbour's top return
    assert dense_depth(true, 80.0, sparse=False)[0, 1] == 10.0


def test_a_lidar_column_without_a_return_is_not_made_sky_down_to_the_road(shared_data: Path):
    """KITTI's LiDAR leaves single columns without a return (kitti-seq frame 4: column 277): they were filled with
    the max depth from top to bottom, a stripe of pure airlight down the road of the hazy frames."""
    depth_set = load_kitti(shared_data / "depth" / "kitti-seq")
    sample = next(frame.read() for frame in depth_set.frames if frame.name.endswith("/0000000004"))
    gaps = np.flatnonzero(~np.isfinite(sample.depth).any(axis=0))
    assert gaps.size > 0, "the frame keeps a column without any LiDAR return"
    filled = dense_depth(sample.depth, depth_set.max_depth, sparse=True)
    assert (filled[-1, gaps] < 10.0).all()  # the road a few metres ahead, as beside the gap
    hazy = synthesize(sample.image, filled, beta_for_transmission(filled, 0.45))
    beside = hazy[-1, gaps + 1].astype(int)
    assert (np.abs(hazy[-1, gaps].astype(int) - beside) < 30).all()


def test_kitti_and_middlebury_loaders(shared_data: Path):
    kitti = load_kitti(shared_data / "depth" / "kitti-tiny")
    assert len(kitti.frames) == 14 and kitti.sparse and kitti.max_depth == 80.0
    sample = kitti.frames[0].read()
    assert sample.image.shape == (375, 1242, 3) and sample.depth.shape == (375, 1242)
    lidar = sample.depth[np.isfinite(sample.depth)]
    assert 5_000 < lidar.size < 40_000 and 1.0 < lidar.min() and lidar.max() < 120.0
    middlebury = load_middlebury(shared_data / "depth" / "middlebury2003")
    assert [s.name for s in middlebury.samples()] == ["cones/im2", "cones/im6", "teddy/im2", "teddy/im6"]
    depth = middlebury.frames[0].read().depth
    assert np.isfinite(depth).mean() > 0.9
    # the nearest cones: disparity 55 px -> 935 * 0.16 / 55 = 2.72 m
    assert np.nanmin(depth) == pytest.approx(935 * 0.16 / 55.0, rel=1e-4)


def test_kitti_files_with_upper_case_suffixes_are_found(tmp_path: Path):
    drive = tmp_path / "2011_09_26" / "2011_09_26_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    (drive / "proj_depth" / "groundtruth" / "image_02").mkdir(parents=True)
    cv2.imwrite(str(drive / "image_02" / "data" / "0000000000.PNG"), np.full((20, 30, 3), 80, np.uint8))
    lidar = np.zeros((20, 30), np.uint16)
    lidar[15:, :] = 10 * 256  # 10 m on the lower rows
    cv2.imwrite(str(drive / "proj_depth" / "groundtruth" / "image_02" / "0000000000.PNG"), lidar)
    (sample,) = load_kitti(tmp_path).samples()
    assert np.nanmax(sample.depth) == pytest.approx(10.0)


def test_a_kitti_depth_layout_gives_one_sample_per_frame_from_groundtruth_first(shared_data: Path, tmp_path: Path):
    """KITTI depth holds groundtruth/ and velodyne_raw/ beside each other: one sample per frame, its groundtruth where
    the frame has one, else its raw LiDAR."""
    source = shared_data / "depth" / "kitti-tiny" / "2011_09_26" / "2011_09_26_drive_0023_sync"
    drive = tmp_path / "2011_09_26" / source.name
    (drive / "image_02" / "data").mkdir(parents=True)
    lidar = {}
    for frame in ("0000000000", "0000000001", "0000000002"):
        (drive / "image_02" / "data" / f"{frame}.png").write_bytes(
            (source / "image_02" / "data" / f"{frame}.png").read_bytes())
        with np.load(source / "proj_depth" / "velodyne" / "image_02" / f"{frame}.npz") as archive:
            lidar[frame] = np.nan_to_num(archive[archive.files[0]].astype(np.float32))
    for kind, frames, scale in (("velodyne_raw", lidar, 1.0), ("groundtruth", list(lidar)[:2], 0.5)):
        (drive / "proj_depth" / kind / "image_02").mkdir(parents=True)
        for frame in frames:  # groundtruth halved, so that the source of each sample shows
            cv2.imwrite(str(drive / "proj_depth" / kind / "image_02" / f"{frame}.png"),
                        np.round(lidar[frame] * scale * 256).astype(np.uint16))
    samples = list(load_kitti(tmp_path).samples())
    assert [s.name for s in samples] == [f"{source.name}/image_02/000000000{i}" for i in range(3)]
    for sample, scale in zip(samples, (0.5, 0.5, 1.0)):
        true = lidar[sample.name.rsplit("/", 1)[1]]
        np.testing.assert_allclose(np.nan_to_num(sample.depth), true * scale, atol=1 / 256)


def _kitti_depth_frame(shared_data: Path, drive: Path) -> None:
    """kitti-tiny's first left frame's KITTI depth ground truth (uint16 PNG, metres * 256) in `drive`/proj_depth/, as
    KITTI depth's data_depth_annotated ships it."""
    source = shared_data / "depth" / "kitti-tiny" / "2011_09_26" / "2011_09_26_drive_0023_sync"
    (drive / "proj_depth" / "groundtruth" / "image_02").mkdir(parents=True)
    with np.load(source / "proj_depth" / "velodyne" / "image_02" / "0000000000.npz") as archive:
        lidar = np.nan_to_num(archive[archive.files[0]].astype(np.float32))
    cv2.imwrite(str(drive / "proj_depth" / "groundtruth" / "image_02" / "0000000000.png"),
                np.round(lidar * 256).astype(np.uint16))


def test_kitti_depth_in_a_raw_drive_reads_from_that_drive_and_apart_from_it_is_refused_saying_where(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    """A KITTI raw drive folder given with KITTI depth's proj_depth/ moved into it was refused as "neither a KITTI
    raw set (proj_depth/)", and data_depth_annotated as it ships (apart from the raw images) failed naming the
    missing image without saying where KITTI depth has to lie."""
    source = shared_data / "depth" / "kitti-tiny" / "2011_09_26"
    date = tmp_path / "raw" / "2011_09_26"
    drive = date / "2011_09_26_drive_0023_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    shutil.copyfile(source / "calib_cam_to_cam.txt", date / "calib_cam_to_cam.txt")
    shutil.copyfile(source / drive.name / "image_02" / "data" / "0000000000.png",
                    drive / "image_02" / "data" / "0000000000.png")
    _kitti_depth_frame(shared_data, drive)
    name = f"{drive.name}/image_02/0000000000"
    from_date, from_drive = load_depth_set(date), load_depth_set(drive)
    assert [(f.name, f.image_path, f.depth_path) for f in from_drive.frames] == \
        [(f.name, f.image_path, f.depth_path) for f in from_date.frames] == \
        [(name, drive / "image_02" / "data" / "0000000000.png",
          drive / "proj_depth" / "groundtruth" / "image_02" / "0000000000.png")]
    assert frame_intrinsics(drive, name) == frame_intrinsics(date, name)
    out = tmp_path / "depth.json"
    assert main(["eval", "--dataset", str(drive), "--measure", "depth", "--method", "dcp", "--no-progress",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["dcp@clear"]["images"] == 1
    annotated = tmp_path / "data_depth_annotated" / "train" / drive.name
    _kitti_depth_frame(shared_data, annotated)
    capsys.readouterr()
    assert main(["eval", "--dataset", str(annotated.parent.parent), "--measure", "depth", "--method", "dcp"]) == 2
    assert "move or link data_depth_annotated's DRIVE/proj_depth/ into the raw DATE/DRIVE/" in capsys.readouterr().err


def test_a_truncated_kitti_depth_archive_is_refused_naming_it(shared_data: Path, tmp_path: Path):
    """A LiDAR .npz cut short (a copy that stopped) raised zipfile's BadZipFile as a traceback from `eval`."""
    source = shared_data / "depth" / "kitti-tiny" / "2011_09_26" / "2011_09_26_drive_0023_sync"
    drive = tmp_path / "2011_09_26" / source.name
    (drive / "image_02" / "data").mkdir(parents=True)
    (drive / "proj_depth" / "velodyne" / "image_02").mkdir(parents=True)
    (drive / "image_02" / "data" / "0000000000.png").write_bytes(
        (source / "image_02" / "data" / "0000000000.png").read_bytes())
    archive = source / "proj_depth" / "velodyne" / "image_02" / "0000000000.npz"
    damaged = drive / "proj_depth" / "velodyne" / "image_02" / "0000000000.npz"
    damaged.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(ImageError, match=f"{damaged} is not a readable depth archive"):
        load_kitti(tmp_path).read_all()


def test_loaders_refuse_folders_without_depth(tmp_path: Path):
    with pytest.raises(ImageError, match="no KITTI frames"):
        load_kitti(tmp_path)
    with pytest.raises(ImageError, match="no Middlebury"):
        load_middlebury(tmp_path)


def test_dcp_depth_on_real_middlebury_under_synthesized_haze(shared_data: Path):
    scene = load_middlebury(shared_data / "depth" / "middlebury2003")
    one = DepthSet(scene.name, scene.frames[:1], scene.max_depth, scene.sparse)
    table = evaluate_depth(one, [load_method(MethodSpec("dcp", "dcp")), load_method(MethodSpec("hazy", "hazy"))])
    assert "hazy@clear" not in table  # the input predicts no depth
    # DCP reads depth from haze: with dense haze its -ln(t) tracks the true depth far better than on the clear view
    assert table["dcp@t0.25"]["delta1"] > table["dcp@clear"]["delta1"] + 0.2
    assert table["dcp@t0.25"]["absrel"] < table["constant"]["absrel"]
    assert table["dcp@t0.25"]["mean_beta"] > table["dcp@t0.70"]["mean_beta"] > 0
    # DCP's depth is mostly haze: what it reads of the clear view moves a lot once the haze is there
    assert np.isnan(table["dcp@clear"]["change_vs_clear"])
    assert table["dcp@t0.25"]["change_vs_clear"] > 0.1


def test_a_frame_without_ground_truth_in_range_is_refused_naming_it(shared_data: Path, tmp_path: Path):
    """A view whose every disparity lies beyond the set's 40 m failed as 'no pixel has both a valid ground-truth
    depth and a finite prediction', naming neither the frame nor the real cause."""
    shutil.copytree(shared_data / "depth" / "middlebury2003" / "cones", tmp_path / "cones")
    disparity = cv2.imread(str(tmp_path / "cones" / "disp6.pgm"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(tmp_path / "cones" / "disp6.pgm"), np.where(disparity > 0, 8, 0).astype(np.uint8))  # 75 m
    with pytest.raises(ImageError, match="cones/im6: no ground-truth depth within 40 m"):
        evaluate_depth(load_middlebury(tmp_path), [load_method(MethodSpec("dcp", "dcp"))], progress=False)


def test_a_method_without_finite_depth_on_a_frame_is_named(shared_data: Path):
    """A network whose depth overflowed (fp16: NaN throughout) failed the evaluation as 'no pixel has both a valid
    ground-truth depth and a finite prediction', naming neither the method nor the frame."""
    import torch

    from dgdehaze_core.evaluation.methods import Method, depth_only
    from dgdehaze_core.models.clear_depth import ClearDepthArchitecture, ClearDepthNet, ClearDepthPredictor

    network = ClearDepthNet(ClearDepthArchitecture(widths=(8, 16), blocks=(0, 0)))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.fill_(float("nan"))
    overflowed = Method(MethodSpec("overflowed", "overflowed.pt"), depth_only(ClearDepthPredictor(network, (64, 64))))
    scene = load_middlebury(shared_data / "depth" / "middlebury2003")
    with pytest.raises(ValueError, match=r"cones/im2 \(clear\) through overflowed: no pixel has both"):
        evaluate_depth(DepthSet(scene.name, scene.frames[:1], scene.max_depth, scene.sparse), [overflowed],
                       progress=False)


def test_a_middlebury_disparity_not_in_one_8_bit_channel_is_refused(shared_data: Path, tmp_path: Path):
    """A 16-bit copy of a disparity file gave depths 257 times too small and figures to match, exit 0."""
    disparity = cv2.imread(str(shared_data / "depth" / "middlebury2003" / "cones" / "disp2.pgm"), cv2.IMREAD_UNCHANGED)
    wide = tmp_path / "wide.pgm"
    cv2.imwrite(str(wide), disparity.astype(np.uint16) * 257)
    with pytest.raises(ValueError, match="one 8-bit channel"):
        middlebury_depth(wide)
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), cv2.merge([disparity] * 3))
    with pytest.raises(ValueError, match="one 8-bit channel"):
        middlebury_depth(colour)
    assert np.nanmin(middlebury_depth(shared_data / "depth" / "middlebury2003" / "cones" / "disp2.pgm")) > 0


def test_a_depth_map_of_more_than_one_plane_is_refused_with_its_shape():
    from dgdehaze_core.evaluation.depth_datasets import _checked
    with pytest.raises(ValueError, match=r"its depth has shape \(4, 5, 1\), not one plane"):
        _checked("frame", np.zeros((4, 5, 3), np.uint8), np.ones((4, 5, 1), np.float32))


def _tagged_kitti_frame(shared_data: Path, root: Path, image_turn: int,
                        depth_turn: int | None) -> tuple[np.ndarray, np.ndarray, Path]:
    """Frame 0 of kitti-tiny's left camera written under `root` as a camera that tags its files stores it: its photo
    a PNG whose stored pixels `image_turn` (an EXIF orientation) turns upright, its LiDAR a KITTI depth PNG
    (metres * 256) stored and tagged alike with `depth_turn`, or the untagged .npz as KITTI ships it (None).
    (the photo as shipped, its depth in metres as shipped, the depth file written)."""
    from PIL import Image

    source = shared_data / "depth" / "kitti-tiny" / "2011_09_26" / "2011_09_26_drive_0023_sync"
    drive = root / "2011_09_26" / source.name
    (drive / "image_02" / "data").mkdir(parents=True)
    image = cv2.imread(str(source / "image_02" / "data" / "0000000000.png"))
    with np.load(source / "proj_depth" / "velodyne" / "image_02" / "0000000000.npz") as archive:
        lidar = archive[archive.files[0]].astype(np.float32)
    to_stored = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90}

    def save(picture: Image.Image, path: Path, turn: int) -> None:
        exif = Image.Exif()
        exif[0x0112] = turn
        stored = picture if to_stored[turn] is None else picture.transpose(to_stored[turn])
        stored.save(path, exif=exif)

    save(Image.fromarray(image[:, :, ::-1]), drive / "image_02" / "data" / "0000000000.png", image_turn)
    if depth_turn is None:
        (drive / "proj_depth" / "velodyne" / "image_02").mkdir(parents=True)
        depth_path = drive / "proj_depth" / "velodyne" / "image_02" / "0000000000.npz"
        depth_path.write_bytes((source / "proj_depth" / "velodyne" / "image_02" / "0000000000.npz").read_bytes())
    else:
        (drive / "proj_depth" / "groundtruth" / "image_02").mkdir(parents=True)
        depth_path = drive / "proj_depth" / "groundtruth" / "image_02" / "0000000000.png"
        save(Image.fromarray(np.round(lidar * 256).astype(np.uint16)), depth_path, depth_turn)
    return image, np.where(lidar > 0, np.round(lidar * 256) / 256, np.nan), depth_path


@pytest.mark.parametrize("turn", [3, 6])
def test_a_kitti_frame_whose_photo_and_depth_carry_one_exif_orientation_is_read_upright_and_aligned(
        shared_data: Path, tmp_path: Path, turn: int):
    image, depth, _ = _tagged_kitti_frame(shared_data, tmp_path, turn, turn)
    (sample,) = load_kitti(tmp_path).samples()
    assert np.array_equal(sample.image, image)
    np.testing.assert_allclose(sample.depth, depth, atol=1e-6)


IN_CLOSE_NOWRITE, IN_OPEN = 0x10, 0x20


@contextmanager
def _opens_counted(paths: list[Path]) -> Iterator[dict[Path, int]]:
    """How many times each of `paths` is opened in the block, as the kernel reports it (Linux inotify). Closes are
    watched too: inotify merges an event identical to the last one unread, so that opens alone would count one."""
    libc = ctypes.CDLL(None, use_errno=True)
    queue = libc.inotify_init1(os.O_NONBLOCK)
    assert queue >= 0, os.strerror(ctypes.get_errno())
    watches = {libc.inotify_add_watch(queue, bytes(path), IN_OPEN | IN_CLOSE_NOWRITE): path for path in paths}
    counts = dict.fromkeys(paths, 0)
    try:
        yield counts
        try:
            events = os.read(queue, 1 << 16)
        except BlockingIOError:  # no event: nothing was opened
            events = b""
    finally:
        os.close(queue)
    offset = 0
    while offset < len(events):
        watch, mask, _, name_length = struct.unpack_from("iIII", events, offset)
        offset += struct.calcsize("iIII") + name_length
        counts[watches[watch]] += bool(mask & IN_OPEN)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts opens with Linux inotify")
def test_a_frame_reads_each_file_once_and_turns_a_tagged_jpeg_and_its_depth_upright(shared_data: Path,
                                                                                    tmp_path: Path):
    """The photo was read twice (decoded, then its bytes read again for its EXIF orientation) and the depth two or
    three times (OpenCV's imread opens a file twice, then its orientation): each file is now read once."""
    from PIL import Image, ImageOps

    source = shared_data / "depth" / "kitti-tiny" / "2011_09_26" / "2011_09_26_drive_0023_sync"
    upright = cv2.imread(str(source / "image_02" / "data" / "0000000000.png"))
    depth_m = np.linspace(1.0, 80.0, upright.shape[0] * upright.shape[1]).reshape(upright.shape[:2])
    exif = Image.Exif()
    exif[0x0112] = 6  # a viewer turns the stored pixels a quarter clockwise
    photo, depth_file = tmp_path / "photo.jpg", tmp_path / "depth.png"
    Image.fromarray(upright[:, :, ::-1]).transpose(Image.Transpose.ROTATE_90).save(photo, quality=95, exif=exif)
    Image.fromarray(np.round(depth_m * 256).astype(np.uint16)).transpose(Image.Transpose.ROTATE_90).save(
        depth_file, exif=exif)
    frame = DepthFrame("tagged", photo, depth_file, _lidar_depth)
    with _opens_counted([photo, depth_file]) as opens:
        sample = frame.read()
    assert opens == {photo: 1, depth_file: 1}
    with Image.open(photo) as stored:
        viewed = np.asarray(ImageOps.exif_transpose(stored))[:, :, ::-1]  # as Pillow shows the photo
    assert sample.image.shape == viewed.shape == upright.shape
    assert np.abs(sample.image.astype(int) - viewed).mean() < 1.0
    np.testing.assert_allclose(sample.depth, np.round(depth_m * 256) / 256, atol=1e-6)


@pytest.mark.parametrize("image_turn, depth_turn", [(3, None), (1, 3), (6, 1)])
def test_a_kitti_frame_whose_photo_and_depth_carry_different_orientations_is_refused_naming_both(
        shared_data: Path, tmp_path: Path, image_turn: int, depth_turn: int | None):
    """The photo was read upright by its EXIF orientation and its depth as stored: a photo tagged as turned half a
    circle over KITTI's untagged LiDAR was scored against its depth upside down, without a word."""
    _, _, depth_path = _tagged_kitti_frame(shared_data, tmp_path, image_turn, depth_turn)
    with pytest.raises(ImageError, match=rf"0000000000.png carries EXIF orientation {image_turn} and its depth "
                                         rf"{depth_path} {depth_turn or 1}: which way the depth lies"):
        load_kitti(tmp_path).read_all()
