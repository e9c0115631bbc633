"""`eval --measure visibility`: the fog synthesis along each ray, the scores, KITTI's camera, and the real set."""
from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.evaluation.depth_datasets import DepthSample, load_kitti, load_middlebury
from dgdehaze_core.evaluation.depth_eval import dense_depth
from dgdehaze_core.evaluation.methods import Method, MethodSpec, load_method
from dgdehaze_core.evaluation.visibility_eval import (SKY_DISTANCE, VISIBILITIES, VISIBILITY_COLUMNS, condition_row,
                                                      evaluate_visibility, frame_scores, kitti_intrinsics,
                                                      synthesize_fog)
from dgdehaze_core.inference.dehaze_result import DehazeResult
from dgdehaze_core.physics.visibility import KOSCHMIEDER, Intrinsics, Mounting, ground_range, ray_norms

CLEAR_DEPTH_WEIGHTS = Path(__file__).parents[1] / "dgdehaze_core" / "weights" / "clear_depth_kitti.pt"


def test_fog_is_synthesized_along_each_ray_towards_a_grey_airlight():
    image = np.zeros((2, 2, 3), np.uint8)  # black: the hazy value is the airlight's share, 0.9 (1 - t)
    dense = np.full((2, 2), 20.0, np.float32)
    norms = np.array([[1.0, 1.5], [1.0, 2.0]])
    hazy = synthesize_fog(DepthSample("x", image, dense), dense, norms, visibility=50.0)
    expected = 0.9 * (1.0 - np.exp(-(KOSCHMIEDER / 50.0) * 20.0 * norms))
    np.testing.assert_allclose(hazy[:, :, 0] / 255.0, expected, atol=1 / 255)


def test_scores_count_valid_pixels_for_absrel_and_near_truth_for_coverage():
    true = np.array([[10.0, 20.0, 60.0, np.nan]], np.float32)
    estimate = np.array([[12.0, np.nan, 60.0, 5.0]], np.float32)
    absrel, coverage = frame_scores(estimate, true, np.ones_like(true), visibility=50.0, max_depth=80.0)
    assert absrel == pytest.approx((0.2 + 0.0) / 2)  # 10 and 60 m are called valid; no truth at the last pixel
    assert coverage == pytest.approx(0.5)  # of the points nearer than 50 m (10, 20), one is called valid
    nothing = np.full_like(true, np.nan)
    assert math.isnan(frame_scores(nothing, true, np.ones_like(true), 50.0, 80.0)[0])


def test_a_method_without_an_estimate_on_most_frames_reads_infinitely_wrong_not_unmeasured():
    frames = [(math.nan, math.nan, 0.0), (math.nan, math.nan, 0.0), (60.0, 0.1, 0.5)]  # no fog read twice at 50 m
    row = condition_row(frames, visibility=50.0)
    assert row["visibility_rel_error"] == math.inf and row["no_fog_share"] == pytest.approx(2 / 3)
    assert row["visibility_median"] == 60.0 and row["absrel_metric"] == pytest.approx(0.1)
    assert condition_row(frames[2:], visibility=50.0)["visibility_rel_error"] == pytest.approx(0.2)


def test_kitti_intrinsics_come_from_the_rectified_projection(shared_data: Path):
    folder = shared_data / "depth" / "kitti-tiny"
    camera = kitti_intrinsics(folder, "2011_09_26_drive_0023_sync/image_02/0000000000")
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == pytest.approx((721.5377, 721.5377, 609.5593, 172.854))


def test_one_kitti_frame_gives_every_row_and_middlebury_is_refused_for_its_missing_road(shared_data: Path):
    folder = shared_data / "depth" / "kitti-tiny"
    depth_set = load_kitti(folder)
    depth_set.frames = depth_set.frames[:1]
    rows = evaluate_visibility(depth_set, folder, [load_method(MethodSpec("hazy", "hazy")),
                                                   load_method(MethodSpec("dcp", "dcp"))])
    assert list(rows) == ["dcp@clear", "dcp@vis50", "dcp@vis150", "dcp@vis400"]  # hazy estimates no transmission
    for name, row in rows.items():
        assert tuple(row) == VISIBILITY_COLUMNS and row["images"] == 1
        if name != "dcp@clear":
            assert 0.0 <= row["coverage"] <= 1.0 and row["absrel_metric"] > 0
    assert math.isnan(rows["dcp@clear"]["absrel_metric"]) and rows["dcp@clear"]["no_fog_share"] in (0.0, 1.0)
    assert rows["dcp@vis50"]["visibility_median"] < rows["dcp@vis400"]["visibility_median"]
    middlebury = shared_data / "depth" / "middlebury2003"
    with pytest.raises(ValueError, match="no road"):
        evaluate_visibility(load_middlebury(middlebury), middlebury, [load_method(MethodSpec("dcp", "dcp"))])


def test_a_depth_network_has_no_visibility_rows_its_t_of_1_would_read_as_no_fog(shared_data: Path):
    """A clear-depth checkpoint returns t = 1: it got rows reading every fog as none (error inf) and a @clear row
    with the ideal no_fog_share of 1, as though it measured fog; alone it is refused for what it lacks."""
    folder = shared_data / "depth" / "kitti-tiny"
    depth_set = load_kitti(folder)
    depth_set.frames = depth_set.frames[:1]
    depth_network = load_method(MethodSpec("clear-depth", str(CLEAR_DEPTH_WEIGHTS)))
    rows = evaluate_visibility(depth_set, folder, [depth_network, load_method(MethodSpec("dcp", "dcp"))])
    assert list(rows) == ["dcp@clear", "dcp@vis50", "dcp@vis150", "dcp@vis400"]
    with pytest.raises(ValueError, match="estimates a transmission"):
        evaluate_visibility(depth_set, folder, [depth_network])
    assert depth_network.gives_depth and not depth_network.gives_transmission


def test_the_road_profile_leaves_out_a_depth_network_whose_t_of_1_scored_as_the_closest_to_thin_fog(
        shared_data: Path, tmp_path: Path):
    """Its optical depth of 0 was the truth at @clear and nearer the truth at 400 m than DCP's: the best method of
    the table that compares recipes, for measuring nothing."""
    profile_tool = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "road_transmission_profile.py"))
    profile_tool["main"]([str(shared_data / "depth" / "kitti-seq"), "--every", "100", "--method",
                          f"dcp,clear-depth={CLEAR_DEPTH_WEIGHTS}", "--json", str(tmp_path / "profile.json")])
    assert list(json.loads((tmp_path / "profile-error.json").read_text())) == ["dcp"]
    assert not [row for row in json.loads((tmp_path / "profile.json").read_text()) if "clear-depth" in row]


def test_the_true_transmission_reads_every_visibility_including_400_m(shared_data: Path):
    """An oracle that returns the very transmission each fog was synthesized with must read each visibility: the
    estimator's ceiling lies above the thinnest fog evaluated (the node's default of 200 m made 400 m 'no fog')."""
    folder = shared_data / "depth" / "kitti-tiny"
    depth_set = load_kitti(folder)
    depth_set.frames = [f for f in depth_set.frames if "/image_02/" in f.name][:1]
    sample = depth_set.frames[0].read()
    norms = ray_norms(sample.depth.shape, kitti_intrinsics(folder, sample.name))
    dense = dense_depth(sample.depth, SKY_DISTANCE, depth_set.sparse)
    floor = 0.05
    truth = {synthesize_fog(sample, dense, norms, v).tobytes():
             np.maximum(np.exp(-(KOSCHMIEDER / v) * dense * norms), floor).astype(np.float32)
             for v in VISIBILITIES.values()}

    def oracle(frame: np.ndarray) -> DehazeResult:
        transmission = truth.get(frame.tobytes(), np.ones(frame.shape[:2], np.float32))
        return DehazeResult(frame, np.zeros_like(transmission), transmission, np.full(3, 0.9, np.float32), 0.0,
                            transmission_floor=floor)

    rows = evaluate_visibility(depth_set, folder, [Method(MethodSpec("oracle", "oracle"), oracle)])
    for condition, visibility in VISIBILITIES.items():
        row = rows[f"oracle@{condition}"]
        assert row["no_fog_share"] == 0.0, condition
        assert row["visibility_median"] == pytest.approx(visibility, rel=0.1), condition
        assert row["visibility_rel_error"] < 0.1 and 0.0 < row["absrel_metric"] < 0.1, condition
    assert rows["oracle@clear"]["no_fog_share"] == 1.0  # t = 1 everywhere: no fog


def test_the_visibility_sheet_draws_every_photo_and_writes_its_estimate(tmp_path: Path):
    sheet_tool = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "visibility_sheet.py"))
    camera = Intrinsics(300.0, 300.0, 160.0, 120.0)  # what --hfov 56 gives a 320-wide photo
    distance = ground_range((240, 320), camera, Mounting(1.4, 0.0))
    clear = np.random.default_rng(0).uniform(0.15, 0.35, (240, 320, 3))
    (tmp_path / "photos").mkdir()
    for visibility in (40, 120):
        t = np.exp(-(KOSCHMIEDER / visibility) * np.nan_to_num(distance, nan=1e4))[:, :, None]
        cv2.imwrite(str(tmp_path / "photos" / f"fog{visibility}.png"),
                    ((clear * t + 0.9 * (1 - t)) * 255 + 0.5).astype(np.uint8))
    hfov = str(2 * math.degrees(math.atan(160 / 300)))
    code = sheet_tool["main"]([str(tmp_path / "photos"), "--method", "dcp", "--hfov", hfov, "--out",
                               str(tmp_path / "sheet.png"), "--json", str(tmp_path / "sheet.json")])
    assert code == 0
    figures = json.loads((tmp_path / "sheet.json").read_text())
    assert figures["fog40.png"]["dcp"]["visibility_m"] < figures["fog120.png"]["dcp"]["visibility_m"]
    assert cv2.imread(str(tmp_path / "sheet.png")).shape[1] == 4 * 320
    table = sheet_tool["summary_table"](figures, ["dcp"])
    assert table.splitlines()[-1].startswith("| all (2) | ") and table.splitlines()[-1].endswith(" | 0 |")
    assert sheet_tool["main"]([str(tmp_path / "photos"), "--include", "fog40*", "--method", "dcp", "--hfov", hfov,
                               "--out", str(tmp_path / "one.png"), "--json", str(tmp_path / "one.json")]) == 0
    assert list(json.loads((tmp_path / "one.json").read_text())) == ["fog40.png"]
    assert sheet_tool["main"]([str(tmp_path / "photos"), "--include", "none*", "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_the_visibility_sheet_reads_dense_fog_against_each_method_s_own_transmission_floor(tmp_path: Path):
    """DCP clips t at its t0 (0.1), above the networks' floor the estimator assumed: the sheet read DCP's floor as
    fog, so 4 m and 8 m fog both read 11 m, the floor's number, and never as the most the visibility can be."""
    sheet_tool = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "visibility_sheet.py"))
    camera = Intrinsics(300.0, 300.0, 160.0, 120.0)
    distance = ground_range((240, 320), camera, Mounting(1.4, 0.0))
    clear = np.random.default_rng(0).uniform(0.15, 0.35, (240, 320, 3))
    (tmp_path / "photos").mkdir()
    for visibility in (4, 8):
        t = np.exp(-(KOSCHMIEDER / visibility) * np.nan_to_num(distance, nan=1e4))[:, :, None]
        cv2.imwrite(str(tmp_path / "photos" / f"fog{visibility}.png"),
                    ((clear * t + 0.9 * (1 - t)) * 255 + 0.5).astype(np.uint8))
    hfov = str(2 * math.degrees(math.atan(160 / 300)))
    assert sheet_tool["main"]([str(tmp_path / "photos"), "--method", "dcp", "--hfov", hfov, "--out",
                               str(tmp_path / "sheet.png"), "--json", str(tmp_path / "sheet.json")]) == 0
    figures = {name: row["dcp"] for name, row in json.loads((tmp_path / "sheet.json").read_text()).items()}
    assert figures["fog8.png"]["visibility_m"] == pytest.approx(8.0, rel=0.2)
    assert figures["fog4.png"]["visibility_m"] < figures["fog8.png"]["visibility_m"]
    assert figures["fog4.png"]["at_most"] and not figures["fog8.png"]["at_most"], \
        "the JSON says which figure is the most the visibility can be, as the sheet's '<=' does"


def _kitti_copy(shared_data: Path, tmp_path: Path) -> tuple[Path, str]:
    """kitti-tiny's calibration and the first left-camera frame's layout, copied (files linked) to edit."""
    import shutil
    source = shared_data / "depth" / "kitti-tiny"
    folder = tmp_path / "kitti"
    shutil.copytree(source, folder, copy_function=lambda a, b: Path(b).symlink_to(a))
    calib = next(folder.rglob("calib_cam_to_cam.txt"))
    text = calib.read_text()
    calib.unlink()
    calib.write_text(text)
    return folder, "2011_09_26_drive_0023_sync/image_02/0000000000"


@pytest.mark.parametrize("edit, message", [
    (lambda p: "P_rect_02: " + " ".join(p[:3]), "3 numbers, not the 12"),
    (lambda p: "P_rect_02: 0 " + " ".join(p[1:]), "positive focal lengths"),
    (lambda p: "P_rect_02: nan " + " ".join(p[1:]), "positive focal lengths"),
    (lambda p: "P_rect_02: " + " ".join(p[:5]) + " inf " + " ".join(p[6:]), "positive focal lengths|finite"),
    (lambda p: "P_rect_02: abc " + " ".join(p[1:]), "could not convert"),
])
def test_a_malformed_kitti_projection_is_refused_naming_the_file(shared_data: Path, tmp_path: Path, edit,
                                                                 message: str):
    """Too few numbers were a traceback (IndexError) and fx 0 or NaN a set of figures reading 'no fog' (exit 0)."""
    folder, name = _kitti_copy(shared_data, tmp_path)
    calib = next(folder.rglob("calib_cam_to_cam.txt"))
    lines = calib.read_text().splitlines()
    lines = [edit(line.split()[1:]) if line.startswith("P_rect_02:") else line for line in lines]
    calib.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=message) as refused:
        kitti_intrinsics(folder, name)
    assert str(calib) in str(refused.value)
    calib.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match="not a KITTI calibration text file"):
        kitti_intrinsics(folder, name)


def test_a_frame_with_no_ground_truth_within_range_is_refused_not_left_out_of_the_means(shared_data: Path):
    folder = shared_data / "depth" / "kitti-tiny"
    depth_set = load_kitti(folder)
    sample = depth_set.frames[0].read()
    far = np.where(np.isfinite(sample.depth), depth_set.max_depth + 10.0, np.nan).astype(np.float32)
    depth_set.frames = [DepthSample(sample.name, sample.image, far), *depth_set.frames[1:2]]
    with pytest.raises(ValueError, match=f"{sample.name}: no ground-truth depth within"):
        evaluate_visibility(depth_set, folder, [load_method(MethodSpec("dcp", "dcp"))])
