"""Self-supervised depth from video: the geometry on a rendered scene, the losses' masks, the data and the trainer."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import WEIGHTS_DIR
from dgdehaze_core.evaluation.depth_datasets import load_kitti
from dgdehaze_core.evaluation.methods import MethodSpec, load_method
from dgdehaze_core.io.images import ImageError
from dgdehaze_core.models.clear_depth import ClearDepthPredictor, is_clear_depth_checkpoint, load_clear_depth
from dgdehaze_core.models.pose_net import PoseNet, pose_matrix
from dgdehaze_core.training.depth_recipe import depth_recipe_from_dict, load_depth_recipe
from dgdehaze_core.training.depth_trainer import DepthTrainer
from dgdehaze_core.training.self_supervised_depth import (downscale_intrinsics, inverse_warp, photometric_error,
                                                          reprojection_loss, scale_normalised_depth, smoothness_loss)
from dgdehaze_core.training import video_frames
from dgdehaze_core.training.recipe import RecipeError
from dgdehaze_core.training.run_files import CsvLog
from dgdehaze_core.training.video_frames import (FrameFolder, FrameTuples, find_kitti_sequences, load_sequences,
                                                  read_kitti_intrinsics)
from test_training_failures import a_loader_worker, kill_and_wait

REPO = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 96, 320
CAMERA_HEIGHT, WALL_DEPTH = 1.6, 25.0


def kitti_intrinsics(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """KITTI's left colour camera (P_rect_02 at 1242x375) scaled to width x height."""
    fx, cx, fy, cy = 721.5377 * width / 1242, 609.5593 * width / 1242, 721.5377 * height / 375, 172.854 * height / 375
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


def texture(points: np.ndarray) -> np.ndarray:
    """A smooth colour pattern fixed to the world (N, 3) -> (N, 3) in [0, 1]."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    channels = [np.sin(1.7 * x + 0.9 * z) + np.cos(1.1 * y - 0.6 * x), np.sin(0.8 * z - 1.3 * y) * np.cos(0.7 * x),
                np.cos(1.9 * x) * np.sin(0.5 * z + y)]
    return 0.5 + 0.22 * np.stack(channels, axis=1)


def render(rotation: np.ndarray, centre: np.ndarray, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A road (y = CAMERA_HEIGHT, y down) ending at a wall (z = WALL_DEPTH) seen by a camera with world-to-camera
    `rotation` at `centre`: the RGB image and the camera's z-depth."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    pixels = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)]).astype(np.float64)
    rays_camera = np.linalg.inv(intrinsics) @ pixels
    rays_world = rotation.T @ rays_camera
    with np.errstate(divide="ignore", invalid="ignore"):
        to_ground = (CAMERA_HEIGHT - centre[1]) / rays_world[1]
        to_wall = (WALL_DEPTH - centre[2]) / rays_world[2]
    to_ground = np.where(to_ground > 0, to_ground, np.inf)
    scale = np.minimum(to_ground, to_wall)
    points = centre[:, None] + rays_world * scale
    image = texture(points.T).reshape(HEIGHT, WIDTH, 3)
    depth = (rays_camera[2] * scale).reshape(HEIGHT, WIDTH)
    return image.astype(np.float32), depth.astype(np.float32)


def tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


@pytest.fixture(scope="module")
def rendered_pair() -> dict[str, torch.Tensor]:
    """A target view and a source view 0.6 m behind it, turned 2 degrees, with the target's true depth."""
    intrinsics = kitti_intrinsics()
    angle = np.deg2rad(2.0)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    centre = np.array([0.1, 0.0, -0.6])
    target, depth = render(np.eye(3), np.zeros(3), intrinsics)
    source, _ = render(rotation, centre, intrinsics)
    transform = np.eye(4)
    transform[:3, :3], transform[:3, 3] = rotation, -rotation @ centre
    return {"target": tensor(target), "source": tensor(source), "depth": torch.from_numpy(depth)[None, None],
            "transform": torch.from_numpy(transform).float()[None],
            "intrinsics": torch.from_numpy(intrinsics).float()[None]}


def test_reprojection_with_true_depth_and_motion_resynthesises_the_target(rendered_pair):
    pair = rendered_pair
    warped = inverse_warp(pair["source"], pair["depth"], pair["transform"], pair["intrinsics"])
    error = photometric_error(warped, pair["target"])[..., 2:-2, 2:-2].mean().item()
    unwarped = photometric_error(pair["source"], pair["target"])[..., 2:-2, 2:-2].mean().item()
    assert error < 0.01
    assert unwarped > 5 * error
    for wrong in (pair["depth"] * 0.5, pair["depth"] * 2.0, torch.full_like(pair["depth"], 10.0)):
        warped_wrong = inverse_warp(pair["source"], wrong, pair["transform"], pair["intrinsics"])
        assert photometric_error(warped_wrong, pair["target"])[..., 2:-2, 2:-2].mean().item() > 3 * error


def test_minimum_reprojection_takes_the_source_that_matches(rendered_pair):
    pair = rendered_pair
    good = inverse_warp(pair["source"], pair["depth"], pair["transform"], pair["intrinsics"])
    bad = torch.rand_like(good)
    with_min = reprojection_loss(pair["target"], [good, bad], [pair["source"], bad], automask=False)
    with_mean = reprojection_loss(pair["target"], [good, bad], [pair["source"], bad], automask=False,
                                  min_reprojection=False)
    assert with_min.loss.item() < 0.01 < with_mean.loss.item()


def test_identical_frames_identity_pose_gives_zero_error_and_automask_drops_every_pixel(rendered_pair):
    frame, depth, intrinsics = rendered_pair["target"], rendered_pair["depth"], rendered_pair["intrinsics"]
    identity = torch.eye(4)[None]
    for any_depth in (depth, torch.full_like(depth, 3.0)):
        warped = inverse_warp(frame, any_depth, identity, intrinsics)
        assert torch.allclose(warped, frame, atol=1e-4)
    moved = inverse_warp(frame, depth, pose_matrix(torch.tensor([[0.0, 0.02, 0.0]]), torch.tensor([[0.3, 0, 0]])),
                         intrinsics)
    masked = reprojection_loss(frame, [moved], [frame], automask=True)
    assert masked.mask.sum().item() == 0
    assert masked.loss.item() == 0.0
    unmasked = reprojection_loss(frame, [moved], [frame], automask=False)
    assert unmasked.loss.item() > 0.01
    pose = PoseNet()
    with torch.no_grad():
        transform = pose(frame, frame)[0]
    rotation = transform[:3, :3]
    assert torch.allclose(rotation @ rotation.T, torch.eye(3), atol=1e-5)
    assert torch.allclose(transform, torch.eye(4), atol=0.05)


def test_automasking_drops_the_still_part_of_a_frame_from_training_and_trains_the_rest_as_without_it(
        shared_data: Path):
    """A camera standing still whose right half sees something move (another real photo there in the source): a
    warp that shifts the still left half by 3 pixels and nearly explains the right half. The left half, which the
    unwarped source matches, is masked and gets no gradient; the right half gets the same gradient as without
    auto-masking (the loss stays a mean over every pixel). With a second source that does not match, the one that
    does still masks it: the unwarped sources compete by their minimum."""
    target, other = kitti_rgb(shared_data, 0), kitti_rgb(shared_data, 2)
    half = WIDTH // 2
    source = target.copy()
    source[:, half:] = other[:, half:]
    warped_image = np.roll(target, 3, axis=1)
    warped_image[:, half:] = 0.8 * target[:, half:] + 0.2 * other[:, half:]
    gradients, masks = [], []
    for sources in ([tensor(source)], [tensor(source), tensor(other)]):
        for automask in (True, False):
            warped = [tensor(warped_image).requires_grad_(True) for _ in sources]
            result = reprojection_loss(tensor(target), warped, sources, automask=automask)
            result.loss.backward()
            gradients.append(warped[0].grad[0].abs().sum(dim=0).numpy())
            masks.append(result.mask[0, 0].numpy())
    for masked, unmasked, mask in zip(gradients[0::2], gradients[1::2], masks[0::2]):
        still, moving = (slice(8, half - 8), slice(half + 8, WIDTH - 8))
        assert mask[2:-2, still].mean() < 0.01 and mask[2:-2, moving].mean() > 0.99
        assert masked[2:-2, still].max() == 0.0 and unmasked[2:-2, still].max() > 0
        np.testing.assert_allclose(masked[2:-2, moving], unmasked[2:-2, moving], rtol=1e-4, atol=1e-9)


def test_smoothness_is_scale_free_and_zero_for_flat_disparity(rendered_pair):
    image = rendered_pair["target"]
    disparity = 1.0 / rendered_pair["depth"]
    assert smoothness_loss(torch.full_like(disparity, 0.3), image).item() == 0.0
    assert smoothness_loss(disparity, image).item() == pytest.approx(smoothness_loss(disparity * 7.0, image).item(),
                                                                    rel=1e-4)


def kitti_rgb(shared_data: Path, index: int) -> np.ndarray:
    """A 96x320 crop of a real KITTI road photo as float RGB in [0, 1]."""
    photos = sorted((shared_data / "clear" / "kitti").glob("*.jpg"))
    return cv2.cvtColor(cv2.imread(str(photos[index]))[:HEIGHT, :WIDTH], cv2.COLOR_BGR2RGB).astype(np.float32) / 255


def test_the_photometric_error_is_monodepth2_s_against_scikit_image_s_ssim(shared_data: Path):
    """(1 - SSIM) / 2 over 3x3 windows with SSIM's constants (K1 0.01, K2 0.03), weighted 0.85 against 0.15 L1, on
    two real photos: scikit-image's SSIM map (population statistics, uniform 3x3 window) is the reference inside the
    one-pixel border, where the two pad differently."""
    from skimage.metrics import structural_similarity

    a, b = kitti_rgb(shared_data, 0), kitti_rgb(shared_data, 1)
    _, ssim = structural_similarity(a, b, win_size=3, data_range=1.0, channel_axis=2, gaussian_weights=False,
                                    use_sample_covariance=False, K1=0.01, K2=0.03, full=True)
    distance = np.clip((1 - ssim) / 2, 0, 1).mean(axis=2)
    expected = 0.85 * distance + 0.15 * np.abs(a - b).mean(axis=2)
    error = photometric_error(tensor(a), tensor(b))[0, 0].numpy()
    assert 0.1 < distance.mean() < 0.5
    np.testing.assert_allclose(error[1:-1, 1:-1], expected[1:-1, 1:-1], atol=1e-4)


def test_the_warped_depth_has_mean_disparity_one_and_a_shrunk_k_keeps_pixel_centres(rendered_pair):
    """scale_normalised_depth: 1/depth averages to 1 per image whatever the depth's scale. downscale_intrinsics: a
    point seen at the centre of full-resolution pixel (x, y) lies, in the image shrunk by f, at ((x + 0.5) / f - 0.5,
    (y + 0.5) / f - 0.5), the centre of the pixel averaged over it."""
    depth = torch.cat([rendered_pair["depth"], 3.0 * rendered_pair["depth"]])
    normalised = scale_normalised_depth(depth)
    np.testing.assert_allclose((1.0 / normalised).mean(dim=(1, 2, 3)).numpy(), [1.0, 1.0], rtol=1e-5)
    torch.testing.assert_close(normalised[1], normalised[0])
    intrinsics = rendered_pair["intrinsics"].double()
    pixels = torch.tensor([[0.0, 0.0, 1.0], [7.0, 3.0, 1.0], [319.0, 95.0, 1.0]], dtype=torch.float64).T
    points = torch.linalg.inv(intrinsics[0]) @ pixels * 12.5  # on rays through those pixels, 12.5 m deep
    for factor in (2, 4):
        seen = downscale_intrinsics(intrinsics, factor)[0] @ points
        np.testing.assert_allclose((seen[:2] / seen[2]).numpy(), ((pixels[:2] + 0.5) / factor - 0.5).numpy(),
                                   atol=1e-9)


def test_smoothness_weighs_a_disparity_edge_by_exp_minus_the_image_s_edge() -> None:
    """Edge-aware, with a known answer: on an image black on the left half and white on the right (an edge of 1), a
    band of higher disparity (a near pole) whose left side lies on that edge costs (1 + e^-1) / 2 of what the same
    band costs in the flat black half; the band is as wide both times, so the mean disparity normalising it is one."""
    image = torch.zeros(1, 3, HEIGHT, WIDTH)
    image[..., WIDTH // 2:] = 1.0
    costs = []
    for left in (WIDTH // 2, 40):
        disparity = torch.full((1, 1, HEIGHT, WIDTH), 0.2)
        disparity[..., left:left + 40] = 0.4
        costs.append(smoothness_loss(disparity, image).item())
    assert costs[0] / costs[1] == pytest.approx((1 + np.exp(-1)) / 2, rel=1e-5)


def kitti_sequence(root: Path, frames: list[np.ndarray], shared_data: Path | None = None) -> Path:
    """A KITTI raw layout under `root` with `frames` (BGR) and the 2011_09_26 calibration."""
    date = root / "2011_09_26"
    data = date / "2011_09_26_drive_test_sync" / "image_02" / "data"
    data.mkdir(parents=True)
    calibration = ("S_rect_02: 1.242000e+03 3.750000e+02\nP_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 "
                   "4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 "
                   "1.000000e+00 2.745884e-03\n")
    (date / "calib_cam_to_cam.txt").write_text(calibration)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(data / f"{index:010d}.png"), frame)
    return root


def test_intrinsics_scale_to_the_training_size(tmp_path: Path):
    root = kitti_sequence(tmp_path, [np.zeros((375, 1242, 3), np.uint8)] * 2)
    normalised = read_kitti_intrinsics(root / "2011_09_26" / "calib_cam_to_cam.txt", "02")
    sequence = find_kitti_sequences(root)[0]
    assert sequence.normalised_intrinsics == normalised
    np.testing.assert_allclose(sequence.intrinsics(416, 128), kitti_intrinsics(416, 128), rtol=1e-5)


def test_a_sequence_with_one_frame_is_a_clear_error(tmp_path: Path):
    root = kitti_sequence(tmp_path / "data", [np.full((375, 1242, 3), 90, np.uint8)])
    with pytest.raises(ImageError, match="has 1 frame") as raised:
        FrameTuples(find_kitti_sequences(root), 416, 128, (-1, 1))
    assert str(root / "2011_09_26" / "2011_09_26_drive_test_sync" / "image_02" / "data") in str(raised.value)
    recipe = tmp_path / "one.yaml"
    recipe.write_text(yaml.safe_dump({"name": "one", "sequences": [str(root)], "iterations": 1}))
    assert main(["train-depth", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run").exists()  # a run that fails on its data leaves no folder behind


def test_frames_of_different_sizes_train_and_predict_at_one_size(tmp_path: Path):
    rng = np.random.default_rng(0)
    sizes = [(375, 1242), (188, 621), (300, 1000)]
    frames = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    root = kitti_sequence(tmp_path, frames)
    sample = FrameTuples(find_kitti_sequences(root), 160, 64, (-1, 1))[0]
    assert sample["frames"].shape == (3, 3, 64, 160) and sample["inputs"].shape == (3, 3, 64, 160)
    assert sample["intrinsics"].shape == (3, 3)
    trainer = DepthTrainer(load_depth_recipe(REPO / "training" / "depth_kitti.yaml",
                                             [f"sequences=[{root}]", "width=160", "height=64", "validation=[]"]),
                           tmp_path / "run")
    predictor = ClearDepthPredictor(trainer.depth, trainer.input_size)
    for frame in frames:
        depth = predictor(frame)
        assert depth.shape == frame.shape[:2] and depth.dtype == np.float32 and np.isfinite(depth).all()


def framed_views(folder: Path, views: list[np.ndarray], top: int = 20, bottom: int = 12) -> None:
    """Rendered views saved as PNG with a sky band of `top` rows above and a 'hood' of `bottom` rows below."""
    folder.mkdir(parents=True)
    for index, view in enumerate(views):
        framed = np.concatenate([np.full((top, WIDTH, 3), 230, np.uint8), (view * 255).round().astype(np.uint8),
                                 np.full((bottom, WIDTH, 3), 15, np.uint8)])
        cv2.imwrite(str(folder / f"cam__{index:04d}.png"), framed[:, :, ::-1])


def test_a_cropped_frame_folder_keeps_the_geometry_that_reprojection_needs(rendered_pair, tmp_path: Path):
    intrinsics = kitti_intrinsics()
    target, source = (pair_view[0].permute(1, 2, 0).numpy() for pair_view in (rendered_pair["target"],
                                                                               rendered_pair["source"]))
    framed_views(tmp_path / "frames", [source, target, source])
    (tmp_path / "frames" / "notes.txt").write_text("not a frame")
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    folder = FrameFolder(tmp_path / "frames", (fx, fy, cx, cy + 20), "cam__*", (0, 20, WIDTH, 20 + HEIGHT))
    sequence = load_sequences(folder)[0]
    assert len(sequence.frames) == 3
    sample = FrameTuples([sequence], WIDTH, HEIGHT, (-1, 1), augment=False)[0]
    np.testing.assert_allclose(sample["intrinsics"].numpy(), intrinsics, rtol=1e-5)
    frames = sample["frames"][:, None]
    warped = inverse_warp(frames[1], rendered_pair["depth"], rendered_pair["transform"], sample["intrinsics"][None])
    error = photometric_error(warped, frames[0])[..., 2:-2, 2:-2].mean().item()
    assert error < 0.01
    uncropped = FrameFolder(tmp_path / "frames", (fx, fy, cx, cy + 20), "cam__*")
    sample = FrameTuples(load_sequences(uncropped), WIDTH, HEIGHT, (-1, 1), augment=False)[0]
    warped = inverse_warp(sample["frames"][1:2], rendered_pair["depth"], rendered_pair["transform"],
                          sample["intrinsics"][None])
    assert photometric_error(warped, sample["frames"][:1])[..., 2:-2, 2:-2].mean().item() > 5 * error
    with pytest.raises(ImageError, match="does not lie inside"):
        load_sequences(FrameFolder(tmp_path / "frames", (fx, fy, cx, cy), "cam__*", (0, 0, WIDTH + 1, 50)))
    with pytest.raises(ImageError, match="no frames matching"):
        load_sequences(FrameFolder(tmp_path / "frames", (fx, fy, cx, cy), "*.jpg"))


def test_tuples_across_a_cut_are_left_out_and_a_folder_may_pair_its_own_neighbours(rendered_pair, tmp_path: Path):
    target = rendered_pair["target"][0].permute(1, 2, 0).numpy()
    source = rendered_pair["source"][0].permute(1, 2, 0).numpy()
    other_scene = 1.0 - target
    framed_views(tmp_path / "frames", [source, target, source, other_scene, other_scene[::-1]], top=0, bottom=0)
    intrinsics = tuple(float(v) for v in kitti_intrinsics()[[0, 1, 0, 1], [0, 1, 2, 2]])
    sequence = load_sequences(FrameFolder(tmp_path / "frames", intrinsics, frame_offsets=(-1, 1)))[0]
    everything = FrameTuples([sequence], WIDTH, HEIGHT, (-2, 2))
    assert everything.offsets == [(-1, 1)] and [index for _, index in everything.samples] == [1, 2, 3]
    within = FrameTuples([sequence], WIDTH, HEIGHT, (-2, 2), max_change=0.15)
    assert [index for _, index in within.samples] == [1]
    with pytest.raises(ImageError, match="another scene"):
        FrameTuples([sequence], WIDTH, HEIGHT, (-2, 2), min_change=0.2, max_change=0.25)
    with pytest.raises(ValueError, match="as many as the recipe's"):
        FrameTuples([sequence], WIDTH, HEIGHT, (-2, -1, 1))
    with pytest.raises(ValueError, match="of their signs in their order"):  # the pose would run backwards
        FrameTuples([sequence], WIDTH, HEIGHT, (2, -2))


def test_a_run_s_recipe_reads_back_as_the_recipe_it_ran(tmp_path: Path):
    """A run folder's recipe.yaml held `frame_offsets: null` for a frame folder without offsets of its own, and
    `source_file: null` for a recipe not read from a file, which the reader refused: the recipe a run wrote could
    not be given to train-depth to run it again."""
    entry = {"path": "frames", "intrinsics": [700, 700, 300.5, 90]}
    recipe = depth_recipe_from_dict({"name": "mixed", "iterations": 1, "sequences": ["kitti", entry]}, tmp_path)
    written = yaml.safe_load(yaml.safe_dump(recipe.as_recipe_file(), sort_keys=False))
    assert written["sequences"][1]["frame_offsets"] is None
    assert depth_recipe_from_dict(written, tmp_path) == recipe


def test_a_recipe_reads_plain_frame_folders_and_refuses_malformed_ones(tmp_path: Path):
    base = {"name": "mixed", "iterations": 1, "frame_offsets": [-2, 2]}
    entry = {"path": "frames", "include": "cam__*", "intrinsics": [700, 700, 300.5, 90], "crop": [0, 20, 320, 116],
             "frame_offsets": [-1, 1]}
    recipe = depth_recipe_from_dict({**base, "sequences": ["kitti", entry], "max_frame_change": 0.15}, tmp_path)
    assert recipe.sequences == (tmp_path / "kitti", FrameFolder(tmp_path / "frames", (700.0, 700.0, 300.5, 90.0),
                                                                "cam__*", (0, 20, 320, 116), (-1, 1)))
    assert recipe.as_dict()["sequences"][1]["path"] == str(tmp_path / "frames")
    bad_entries = {"'intrinsics'": {"path": "frames"}, "4 finite numbers": {**entry, "intrinsics": [700, 700, 300]},
                   "'crop'": {**entry, "crop": [10, 20, 5, 116]}, "unknown 'sequences'": {**entry, "fps": 2},
                   "as many as the recipe's": {**entry, "frame_offsets": [-1, 1, 2]},
                   "with their signs in their order": {**entry, "frame_offsets": [1, -1]}}
    for reason, bad in bad_entries.items():
        with pytest.raises(RecipeError, match=reason):
            depth_recipe_from_dict({**base, "sequences": [bad]}, tmp_path)
    with pytest.raises(RecipeError, match="max_frame_change"):
        depth_recipe_from_dict({**base, "sequences": ["kitti"], "min_frame_change": 0.2, "max_frame_change": 0.1},
                               tmp_path)
    with pytest.raises(RecipeError, match="'smoothness' must be a finite number"):
        depth_recipe_from_dict({**base, "sequences": ["kitti"], "smoothness": float("nan")}, tmp_path)
    with pytest.raises(RecipeError, match="'camera' must be a KITTI camera.*got '2'"):
        depth_recipe_from_dict({**base, "sequences": ["kitti"], "camera": 2}, tmp_path)  # YAML's camera: 02
    with pytest.raises(RecipeError, match="'seed' must lie in"):  # else it fails after the run folder is made
        depth_recipe_from_dict({**base, "sequences": ["kitti"], "seed": -1}, tmp_path)
    for change, reason in (({"pose_widths": [0]}, "'pose_widths' must all be at least 1"),
                           ({"pose_widths": [-16, 32]}, "'pose_widths' must all be at least 1"),
                           ({"architecture": {"widths": [0, 0, 0, 0, 0]}}, "widths must be at least 1"),
                           ({"architecture": {"blocks": [0, -1, 1, 2, 1]}}, "blocks at least 0"),
                           ({"architecture": {"max_depth": float("inf")}}, "max_depth, finite"),
                           # an OverflowError traceback, and a scale of 1.9 or widths of 16.5 cut to integers
                           ({"architecture": {"input_scale": float("inf")}}, "input_scale must be 1 or 2, got inf"),
                           ({"architecture": {"input_scale": 1.9}}, "input_scale must be 1 or 2, got 1.9"),
                           ({"architecture": {"widths": [16.5, 32, 48, 96, 128]}}, "'architecture.widths' must be"),
                           # torch's "Expected more than 1 value per channel when training" at the first step
                           ({"width": 32, "height": 32, "batch_size": 1}, "deepest batch norm one value per channel"),
                           ({"lr": 1e39}, "'lr' must be > 0 and a float32"),  # float32 overflow
                           # each named alone with its value, not in a list of keys that might be wrong
                           ({"lr": -0.1}, r"'lr' must be > 0 and a float32 \(at most 3.4e\+38\), got -0.1$"),
                           ({"lr_decay_at": 2}, r"^'lr_decay_at' must lie in \(0, 1\], got 2"),
                           ({"ssim_weight": 1.5}, r"^'ssim_weight' must lie in \[0, 1\], got 1.5$"),
                           ({"min_frame_change": -1}, r"^'min_frame_change' must be >= 0, got -1"),
                           ({"name": "/tmp/x"}, "'name' names the run folder")):  # raw torch errors, or ran
        with pytest.raises(RecipeError, match=reason):
            depth_recipe_from_dict({**base, "sequences": ["kitti"], **change}, tmp_path)


@pytest.fixture()
def three_kitti_frames(shared_data: Path, tmp_path: Path) -> Path:
    """Frames 10-12 of kitti-seq with their calibration and LiDAR, in the KITTI raw layout."""
    source = shared_data / "depth" / "kitti-seq" / "2011_09_26"
    date = tmp_path / "kitti3" / "2011_09_26"
    drive = date / "2011_09_26_drive_sfnd_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    (drive / "proj_depth" / "velodyne" / "image_02").mkdir(parents=True)
    shutil.copy(source / "calib_cam_to_cam.txt", date)
    for index in (10, 11, 12):
        name = f"{index:010d}"
        shutil.copy(source / drive.name / "image_02" / "data" / f"{name}.jpg", drive / "image_02" / "data")
        shutil.copy(source / drive.name / "proj_depth" / "velodyne" / "image_02" / f"{name}.npz",
                    drive / "proj_depth" / "velodyne" / "image_02")
    return tmp_path / "kitti3"


def test_hidden_files_and_folders_of_a_kitti_folder_are_left_out_as_a_frame_folder_s_are(
        three_kitti_frames: Path) -> None:
    """A macOS ._ sidecar beside the frames was listed as the first frame (and refused as an unreadable image), and a
    hidden copy of the drive (a trash folder) was trained on as a second sequence."""
    date = three_kitti_frames / "2011_09_26"
    data = date / "2011_09_26_drive_sfnd_sync" / "image_02" / "data"
    frames = sorted(data.iterdir())
    (data / f"._{frames[0].name}").write_bytes(b"\x00\x05\x16\x07 AppleDouble sidecar")
    shutil.copytree(date, three_kitti_frames / ".Trash" / "2011_09_26")
    sequences = find_kitti_sequences(three_kitti_frames)
    assert [sequence.frames for sequence in sequences] == [tuple(frames)]
    assert len(FrameTuples(sequences, 64, 32, (-1, 1), augment=False).samples) == 1


def test_frames_numbered_without_zero_padding_are_refused_not_paired_out_of_time_order(
        three_kitti_frames: Path, tmp_path: Path) -> None:
    """frame10.png sorts before frame9.png by name: frames 8..11 named so were taken as 10, 11, 8, 9, and the
    tuples paired frames that are no neighbours, silently."""
    data = three_kitti_frames / "2011_09_26" / "2011_09_26_drive_sfnd_sync" / "image_02" / "data"
    frames = sorted(data.iterdir())
    intrinsics = (721.5, 721.5, 609.6, 172.9)
    (tmp_path / "padded").mkdir()
    for index, frame in enumerate(frames, start=9):  # 9, 10, 11
        shutil.copy(frame, tmp_path / "padded" / f"frame{index:02d}.jpg")
    assert [p.name for p in load_sequences(FrameFolder(tmp_path / "padded", intrinsics))[0].frames] == [
        "frame09.jpg", "frame10.jpg", "frame11.jpg"]
    for frame in (tmp_path / "padded").iterdir():
        frame.rename(frame.with_name(frame.name.replace("frame0", "frame")))
    with pytest.raises(ImageError, match=r"frames in .*padded are in one order by name and in another by the numbers "
                                         r"in their names \(frame10\.jpg sorts before frame9\.jpg\)"):
        load_sequences(FrameFolder(tmp_path / "padded", intrinsics))
    for frame in frames:
        frame.rename(frame.with_name(frame.name.lstrip("0")))  # 10.jpg, 11.jpg, 12.jpg: one width, kept
    assert [p.name for p in find_kitti_sequences(three_kitti_frames)[0].frames] == ["10.jpg", "11.jpg", "12.jpg"]
    shutil.copy(data / "10.jpg", data / "9.jpg")
    with pytest.raises(ImageError, match=r"10\.jpg sorts before 9\.jpg"):
        find_kitti_sequences(three_kitti_frames)


def test_tuples_across_a_frame_missing_from_a_kitti_drive_are_left_out_with_one_warning(
        shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Frame 12 of frames 10-15 missing: 11 and 13 were paired as the neighbours of a ±1 tuple, as were 11 and 14,
    silently, though they lie two frames apart."""
    source = shared_data / "depth" / "kitti-seq" / "2011_09_26"
    date = tmp_path / "gap" / "2011_09_26"
    data = date / "2011_09_26_drive_sfnd_sync" / "image_02" / "data"
    data.mkdir(parents=True)
    shutil.copy(source / "calib_cam_to_cam.txt", date)
    for index in (10, 11, 13, 14, 15):
        shutil.copy(source / "2011_09_26_drive_sfnd_sync" / "image_02" / "data" / f"{index:010d}.jpg", data)
    sequences = find_kitti_sequences(tmp_path / "gap")
    assert sequences[0].numbers == (10, 11, 13, 14, 15)
    with caplog.at_level("WARNING", logger="dgdehaze_core.training.video_frames"):
        tuples = FrameTuples(sequences, 64, 32, (-1, 1), augment=False)
    assert tuples.samples == [(0, 3)]  # frame 14 with 13 and 15: the only tuple of true neighbours
    warnings = [record.getMessage() for record in caplog.records if "not consecutive" in record.getMessage()]
    assert len(warnings) == 1
    assert "(1 missing, the first 0000000012)" in warnings[0] and "the 2 of its 3 frame tuples" in warnings[0]


def test_a_calibration_of_larger_frames_than_the_folder_s_is_refused_and_a_plain_folder_is_told_its_mapping(
        three_kitti_frames: Path, tmp_path: Path) -> None:
    """A user's frames saved at a third of KITTI's size, given the calibration of the full-size camera (cx 609.6 on
    414-pixel-wide frames): the run trained on with a principal point off the frames, without a word. A folder of
    frames named as a KITTI raw folder was refused without saying how another camera's frames are given."""
    (tmp_path / "small").mkdir()
    for path in sorted(three_kitti_frames.rglob("image_02/data/*.jpg")):
        cv2.imwrite(str(tmp_path / "small" / f"{path.stem}.png"),
                    cv2.resize(cv2.imread(str(path)), (414, 125), interpolation=cv2.INTER_AREA))
    full_size = (721.5377, 721.5377, 609.5593, 172.854)
    with pytest.raises(ImageError, match=r"principal point \(609\.559, 172\.854\) outside its 414x125 frames: give "
                                         r"fx, fy, cx, cy in the files' pixels"):
        load_sequences(FrameFolder(tmp_path / "small", full_size))
    scaled = tuple(value / 3 for value in full_size)
    sequence = load_sequences(FrameFolder(tmp_path / "small", scaled))[0]
    np.testing.assert_allclose(sequence.intrinsics(1242, 375), kitti_intrinsics(1242, 375), rtol=2e-3)
    with pytest.raises(ImageError, match=r"holds no KITTI raw frames .*another camera's frames are a mapping with "
                                         r"'path' and 'intrinsics'"):
        load_sequences(tmp_path / "small")


def test_a_video_or_a_bag_named_as_a_sequence_is_told_to_extract_its_frames(shared_data: Path, tmp_path: Path):
    """A dashcam's video named as a sequence's path was refused as 'no such sequence folder' (it exists), and a
    folder holding it as holding no frames, without a word of what train-depth reads or how to get it."""
    from test_bag_io import demo_frames, write_camera_bag

    (tmp_path / "dashcam").mkdir()
    video = tmp_path / "dashcam" / "drive.mp4"
    video.symlink_to(shared_data / "video" / "dvd_rural_fog_day.mp4")
    write_camera_bag(tmp_path / "bag", "sqlite3", demo_frames(2))
    intrinsics = (721.5, 721.5, 609.6, 172.9)
    extract = r"train-depth reads a recording's frames saved as image files, in time order: extract a video's"
    for source, kind in ((FrameFolder(video, intrinsics), "a video"), (video, "a video"),
                         (FrameFolder(tmp_path / "bag", intrinsics), "a bag"), (tmp_path / "bag", "a bag")):
        with pytest.raises(ImageError, match=f"is {kind}, not a folder of frames: {extract}"):
            load_sequences(source)
    with pytest.raises(ImageError, match=f"holds no frames matching '\\*' \\(it holds 1 video\\(s\\) or bag\\(s\\), "
                                         f"e.g. drive.mp4: {extract}"):
        load_sequences(FrameFolder(tmp_path / "dashcam", intrinsics))
    with pytest.raises(FileNotFoundError, match="no such sequence folder"):
        load_sequences(FrameFolder(tmp_path / "absent", intrinsics))


def test_frames_cropped_to_another_aspect_than_their_calibration_are_warned_of_and_resized_ones_are_not(
        three_kitti_frames: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A KITTI drive whose frames were cropped to 1216x352 (S_rect_02: 1242x375), or a folder whose later frames were
    cut to another aspect, trained with intrinsics that are not the frames' own, without a word; frames resized to
    monodepth2's 640x192 keep theirs right, and are not warned of."""
    frames = sorted(three_kitti_frames.rglob("image_02/data/*.jpg"))
    originals = [cv2.imread(str(path)) for path in frames]
    intrinsics = (721.5377, 721.5377, 609.5593, 172.854)
    (tmp_path / "cut").mkdir()
    for index, image in enumerate(originals):  # the last frame cut to its middle 800 columns
        cv2.imwrite(str(tmp_path / "cut" / f"{index:04d}.png"), image[:, 200:1000] if index == 2 else image)
    cases = {"cropped": (lambda image: image[23:, 13:13 + 1216], "0000000010.jpg is 1216x352, 4.3 % wider than the "
                                                                 "1242x375 image its intrinsics describe"),
             "resized": (lambda image: cv2.resize(image, (640, 192), interpolation=cv2.INTER_AREA), None)}
    for name, (change, expected) in cases.items():
        for path, image in zip(frames, originals):
            cv2.imwrite(str(path), change(image))
        caplog.clear()
        with caplog.at_level("WARNING", logger="dgdehaze_core.training.video_frames"):
            FrameTuples(find_kitti_sequences(three_kitti_frames), 416, 128, (-1, 1))
        warnings = [record.getMessage() for record in caplog.records if "intrinsics describe" in record.getMessage()]
        assert warnings == [] if expected is None else len(warnings) == 1 and expected in warnings[0], (name, warnings)
    caplog.clear()
    with caplog.at_level("WARNING", logger="dgdehaze_core.training.video_frames"):
        FrameTuples(load_sequences(FrameFolder(tmp_path / "cut", intrinsics)), 416, 128, (-1, 1))
    assert [record.getMessage() for record in caplog.records if "0002.png is 800x375, 35.6 % narrower than the "
            "1242x375 image its intrinsics describe: resized so, its intrinsics scale with it; cropped so, they are "
            "wrong" in record.getMessage()]


def test_a_sequence_too_short_for_its_offsets_is_refused_before_the_others_frames_are_read(
        three_kitti_frames: Path, tmp_path: Path) -> None:
    """A recipe of a long recording and a short one (three frames at 30 fps, offsets [-6, 6]) was refused for the
    short one only after every frame of the long one had been read and resized: minutes for a user's drive. A
    damaged frame of the first, read first, is what the run reported."""
    damaged = sorted(three_kitti_frames.rglob("image_02/data/*.jpg"))[1]
    shutil.copytree(damaged.parent, tmp_path / "short")
    damaged.write_bytes(damaged.read_bytes()[:200])
    sequences = [*find_kitti_sequences(three_kitti_frames),
                 *load_sequences(FrameFolder(tmp_path / "short", (721.5, 721.5, 609.6, 172.9), frame_offsets=(-6, 6)))]
    with pytest.raises(ImageError, match=r"has 3 frame\(s\); self-supervised depth needs at least 13 consecutive "
                                         r"frames for offsets \[-6, 6\]"):
        FrameTuples(sequences, 192, 64, (-1, 1))


def test_a_12_bit_camera_s_frame_folder_trains_on_its_frames_with_input_bits_12_and_is_warned_without(
        three_kitti_frames: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Three real KITTI frames exported as a 12-bit camera's 16-bit PNGs (samples 0..4095): a sequence with
    input_bits: 12 trains on the frames their 8-bit PNGs give; one without trains on nearly black frames, which is
    warned once for the sequence, naming input_bits: 12."""
    from dgdehaze_core.io.images import read_image

    for folder in ("eight", "twelve"):
        (tmp_path / folder).mkdir()
    for path in sorted(three_kitti_frames.rglob("image_02/data/*.jpg")):
        photo = read_image(path)
        cv2.imwrite(str(tmp_path / "eight" / f"{path.stem}.png"), photo)
        cv2.imwrite(str(tmp_path / "twelve" / f"{path.stem}.png"),
                    ((photo.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16))
    base = {"name": "camera12", "iterations": 1, "frame_offsets": [-1, 1]}
    entry = {"path": "twelve", "intrinsics": [721.5, 721.5, 609.6, 172.9], "input_bits": 12}
    recipe = depth_recipe_from_dict({**base, "sequences": [entry]}, tmp_path)
    assert recipe.sequences[0].input_bits == 12 and recipe.as_dict()["sequences"][0]["input_bits"] == 12
    frames = {}
    for name, source in (("eight", {**entry, "path": "eight", "input_bits": 16}), ("12", entry),
                         ("16", {**entry, "input_bits": 16})):
        caplog.clear()
        folder = depth_recipe_from_dict({**base, "sequences": [source]}, tmp_path).sequences[0]
        with caplog.at_level("WARNING", logger="dgdehaze_core.io.images"):
            frames[name] = FrameTuples(load_sequences(folder), 416, 128, (-1, 1), augment=False).frames[0]
        warnings = [record.getMessage() for record in caplog.records if record.name == "dgdehaze_core.io.images"]
        assert len(warnings) == (name == "16"), (name, warnings)
    assert "none above 4095" in warnings[0] and "set input_bits: 12 on its entry in the recipe's sequences" in \
        warnings[0]
    assert np.array_equal(frames["12"], frames["eight"]) and frames["eight"].mean() > 60
    assert frames["16"].mean() < 20, "read with 16 bits, the 12-bit frames are nearly black"
    for bad in (17, "12", True):
        with pytest.raises(RecipeError, match=r"'input_bits' in 'sequences' must be an integer in 8\.\.16"):
            depth_recipe_from_dict({**base, "sequences": [{**entry, "input_bits": bad}]}, tmp_path)


def test_training_on_real_frames_runs_checkpoints_and_resumes(three_kitti_frames: Path, tmp_path: Path):
    torch.set_num_threads(1)
    config = tmp_path / "depth.yaml"
    raw = yaml.safe_load((REPO / "training" / "depth_kitti.yaml").read_text())
    raw.update({"sequences": [str(three_kitti_frames)], "validation": [str(three_kitti_frames)], "width": 192,
                "height": 64, "frame_offsets": [-1, 1], "min_frame_change": 0.0, "iterations": 4, "batch_size": 2,
                "log_every": 1, "checkpoint_every": 2, "val_every": 2})
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    assert main(["train-depth", "--config", str(config), "--out", str(run), "--iterations", "2",
                 "--no-progress"]) == 0
    first = torch.load(run / "last.pt", weights_only=True)
    assert first["training"]["iteration"] == 2
    assert main(["train-depth", "--config", str(config), "--out", str(run), "--no-progress"]) == 2
    assert main(["train-depth", "--config", str(config), "--out", str(run), "--resume", "--no-progress",
                 "--set", "smoothness=0.5"]) == 2  # another recipe: refused, the run untouched
    assert torch.load(run / "last.pt", weights_only=True)["training"]["recipe"]["smoothness"] == raw["smoothness"]
    recorded = (run / "recipe.yaml").read_text()
    assert main(["train-depth", "--config", str(config), "--out", str(run), "--resume", "--no-progress",
                 "--iterations", "1"]) == 2  # a run at iteration 2 cannot end at 1: refused, the run untouched
    assert (run / "recipe.yaml").read_text() == recorded
    assert torch.load(run / "last.pt", weights_only=True)["training"]["iteration"] == 2
    exported = tmp_path / "depth.pt"
    figures = tmp_path / "figures.json"
    assert main(["train-depth", "--config", str(config), "--out", str(run), "--resume", "--no-progress",
                 "--export", str(exported), "--json", str(figures)]) == 0
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["training"]["iteration"] == 4
    changed = [not torch.equal(first["state_dict"][k], last["state_dict"][k]) for k in last["state_dict"]]
    assert any(changed)
    with open(run / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["iteration"] for row in rows] == ["1", "2", "3", "4"]
    # each row's lr is the one its step ran at: the rate falls at 75 % of the run (step 2 of 2, then 4 of 4)
    lr, decayed = raw["lr"], raw["lr"] * raw["lr_decay"]
    assert [float(row["lr"]) for row in rows] == pytest.approx([lr, decayed, lr, decayed])
    assert len((run / "val.csv").read_text().splitlines()) == 3
    assert last["meta"]["validation_iteration"] == 4
    assert last["meta"]["commit"] == first["meta"]["commit"]  # the run's start; each resume is listed
    assert [leg["iteration"] for leg in last["meta"]["resumes"]] == [2]
    written = json.loads(figures.read_text())
    assert written["loss"]["iterations"] == 4 and set(written[f"last/{three_kitti_frames.name}"]) == {
        "absrel", "rmse_log", "delta1"}
    assert is_clear_depth_checkpoint(exported) and is_clear_depth_checkpoint(run / "last.pt")
    model, size = load_clear_depth(exported)
    assert size == (192, 64) and "training" not in torch.load(exported, weights_only=True)
    method = load_method(MethodSpec("clear-depth", str(exported)))
    sample = load_kitti(three_kitti_frames).frames[0].read()
    result = method.dehaze(sample.image)
    assert result.depth.shape == sample.depth.shape and np.isfinite(result.depth).all()
    assert np.array_equal(result.image, sample.image)


@pytest.mark.parametrize("fields", [{}, {"architecture": {"widths": [8]}, "input_size": [192, 64]},
                                    {"architecture": None, "input_size": "wide"}])
def test_a_damaged_clear_depth_checkpoint_is_refused_in_one_line(tmp_path: Path, fields: dict) -> None:
    from dgdehaze_core.models.clear_depth import CHECKPOINT_KIND

    torch.save({"kind": CHECKPOINT_KIND, "state_dict": {}, **fields}, tmp_path / "damaged.pt")
    with pytest.raises(ValueError, match="damaged clear-depth checkpoint") as raised:
        load_clear_depth(tmp_path / "damaged.pt")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("input_size", [[0, 0], [100, 50], [-416, 128], [32 * 10 ** 6, 32]])
def test_a_clear_depth_checkpoint_with_an_input_size_the_network_cannot_run_is_refused_when_loaded(
        tmp_path: Path, input_size: list[int]) -> None:
    """An input size of 0 or below loaded, and the first frame failed in OpenCV's resize (cv2.error); one that is no
    multiple of the stride failed in the decoder's concatenation (RuntimeError); a huge one tried to allocate it."""
    checkpoint = torch.load(WEIGHTS_DIR / "clear_depth_kitti.pt", weights_only=True)
    torch.save({**checkpoint, "input_size": input_size}, tmp_path / "sized.pt")
    with pytest.raises(ValueError, match=r"damaged clear-depth checkpoint \(its input_size -?\d+x-?\d+ is not a "
                                         r"positive multiple of the network's stride 32"):
        ClearDepthPredictor.from_checkpoint(tmp_path / "sized.pt")


def test_a_clear_depth_checkpoint_that_does_not_fit_its_network_is_refused_in_one_line(tmp_path: Path) -> None:
    """A tensor missing, one too many or a value that is no tensor was refused with torch's loader message, several
    tab-indented lines; it is now one line, the dehazer loader's summary where tensors are missing or unexpected."""
    checkpoint = torch.load(WEIGHTS_DIR / "clear_depth_kitti.pt", weights_only=True)
    partial = dict(checkpoint["state_dict"])
    partial.pop("net.stem.0.weight")
    partial["extra.weight"] = torch.zeros(1)
    not_a_tensor = {**checkpoint["state_dict"], "net.head.bias": [0.5]}
    for name, state, reason in [("partial", partial, r"1 tensors missing, 1 unexpected, 0 of another shape "
                                                     r"\(first: 'net.stem.0.weight'\)"),
                                ("list", not_a_tensor, "net.head.bias")]:
        torch.save({**checkpoint, "state_dict": state}, tmp_path / f"{name}.pt")
        with pytest.raises(ValueError, match=f"{name}.pt does not match its own architecture: .*{reason}") as raised:
            load_clear_depth(tmp_path / f"{name}.pt")
        assert "\n" not in str(raised.value)


def test_a_clear_depth_checkpoint_of_a_diverged_run_is_refused_naming_the_tensor(tmp_path: Path) -> None:
    """Weights holding a NaN loaded without a word and gave a NaN depth for every frame (haze synthesised from it in
    training, depth scored in eval); the dehazer's loader refused such weights, this one did not."""
    checkpoint = torch.load(WEIGHTS_DIR / "clear_depth_kitti.pt", weights_only=True)
    state = dict(checkpoint["state_dict"])
    name = next(key for key, value in state.items() if value.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")
    torch.save({**checkpoint, "state_dict": state}, tmp_path / "diverged.pt")
    with pytest.raises(ValueError, match=rf"diverged.pt holds weights that are not finite .*first in '{name}'"):
        ClearDepthPredictor.from_checkpoint(tmp_path / "diverged.pt")


def test_a_missing_validation_folder_is_refused_before_any_step(three_kitti_frames: Path, tmp_path: Path):
    """A validation folder without LiDAR was found at the first validation, val_every steps into the run."""
    (tmp_path / "empty").mkdir()
    recipe = depth_recipe_from_dict({"name": "v", "iterations": 4, "sequences": [str(three_kitti_frames)],
                                     "validation": [str(tmp_path / "empty")], "width": 192, "height": 64,
                                     "frame_offsets": [-1, 1], "min_frame_change": 0.0, "batch_size": 2,
                                     "val_every": 2, "device": "cpu"}, tmp_path)
    with pytest.raises(ImageError, match="no KITTI frames"):
        DepthTrainer(recipe, tmp_path / "run").train(progress=False)
    assert not (tmp_path / "run").exists()


def test_a_validation_frame_without_lidar_in_the_measured_range_is_refused_before_any_step(
        three_kitti_frames: Path, tmp_path: Path) -> None:
    """A frame's LiDAR written in millimetres (no point within 80 m) loaded, and the run failed at its first
    validation, val_every steps in, with 'no pixel has both a valid ground-truth depth and a finite prediction'
    naming no frame."""
    scan = next(three_kitti_frames.rglob("0000000011.npz"))
    depth = np.load(scan)["velodyne_depth"]
    np.savez_compressed(scan, velodyne_depth=depth * 1000)
    recipe = depth_recipe_from_dict({"name": "v", "iterations": 4, "sequences": [str(three_kitti_frames)],
                                     "validation": [str(three_kitti_frames)], "width": 192, "height": 64,
                                     "frame_offsets": [-1, 1], "min_frame_change": 0.0, "batch_size": 2,
                                     "val_every": 2, "device": "cpu"}, tmp_path)
    trainer = DepthTrainer(recipe, tmp_path / "run")
    with pytest.raises(ImageError, match=r"kitti3/2011_09_26_drive_sfnd_sync/image_02/0000000011: none of its \d+ "
                                         r"ground-truth depths lies within the 0\.001 to 80 m measured"):
        trainer.train(progress=False)
    assert trainer.iteration == 0 and not (tmp_path / "run").exists()


class _DivergingDepthTrainer(DepthTrainer):
    """Its loss goes NaN at step 1."""

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(batch)
        if self.iteration == 1:
            terms["total"] = terms["total"] * float("nan")
        return terms


def test_a_depth_run_that_fails_before_its_first_checkpoint_leaves_its_folder_to_the_next_run(
        three_kitti_frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Its resume then refuses a changed frame before it reads any (it read every frame first)."""
    torch.set_num_threads(1)
    fields = {"name": "nan", "iterations": 3, "sequences": [str(three_kitti_frames)], "width": 192, "height": 64,
              "frame_offsets": [-1, 1], "min_frame_change": 0.0, "batch_size": 2, "log_every": 1,
              "checkpoint_every": 100, "device": "cpu"}
    recipe = depth_recipe_from_dict(fields, tmp_path)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="loss became nan at iteration 1: .*no checkpoint was saved yet"):
        _DivergingDepthTrainer(recipe, run).train(progress=False)
    assert not run.exists()
    DepthTrainer(depth_recipe_from_dict({**fields, "checkpoint_every": 1}, tmp_path), run).train(progress=False)
    rows = (run / "train.csv").read_bytes()
    assert b"\r" not in rows and len(rows.splitlines()) == 4
    frames = three_kitti_frames / "2011_09_26" / "2011_09_26_drive_sfnd_sync" / "image_02" / "data"
    shutil.copy(frames / "0000000010.jpg", frames / "0000000011.jpg")
    read: list[Path] = []
    load_frame = video_frames.load_frame
    monkeypatch.setattr(video_frames, "load_frame", lambda path, *args: read.append(path) or load_frame(path, *args))
    with pytest.raises(ValueError, match="training data changed since it was saved: frames \\(3 -> 3 files: "
                                         "2011_09_26_drive_sfnd_sync/image_02/0000000011.jpg [0-9]+ -> [0-9]+ bytes"):
        DepthTrainer(depth_recipe_from_dict({**fields, "iterations": 4}, tmp_path), run,
                     resume=True).train(progress=False)
    assert read == [], "no frame read before the refusal"


@pytest.mark.parametrize("field", ["sequences", "validation"])
def test_the_drive_that_judges_depth_never_trains_or_validates(field: str, three_kitti_frames: Path,
                                                               shared_data: Path, tmp_path: Path):
    """`sequences: [${DATA}/depth]` (or validation there) reached kitti-tiny, the drive every depth and visibility
    figure is judged on, as well as kitti-seq."""
    from dgdehaze_core.datasets.splits import SplitError

    fields = {"sequences": [str(three_kitti_frames)], field: [str(shared_data / "depth")]}
    recipe = depth_recipe_from_dict({"name": "j", "iterations": 2, "width": 192, "height": 64,
                                     "frame_offsets": [-1, 1], "min_frame_change": 0.0, "batch_size": 2,
                                     "device": "cpu", **fields}, tmp_path)
    # the recipe's camera (02): 7 frames; the LiDAR of both cameras: 14 files
    what, count = ("training video", 7) if field == "sequences" else ("validation LiDAR", 14)
    with pytest.raises(SplitError, match=f"{what}: {count} file\\(s\\) that only judge may not train or choose "
                                         f"a setting, e.g. "
                                         ".*kitti-tiny/.* \\(depth/kitti-tiny only judges\\)"):
        DepthTrainer(recipe, tmp_path / "run").train(progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()


def test_judging_validation_lidar_is_refused_before_the_training_frames_are_read(three_kitti_frames: Path,
                                                                                 shared_data: Path, tmp_path: Path):
    """kitti-tiny named as validation was refused only after every training frame had been read and resized (minutes
    for a user's long recording): a damaged training frame, read first, is what the run reported."""
    from dgdehaze_core.datasets.splits import SplitError

    damaged = sorted(three_kitti_frames.rglob("image_02/data/*.jpg"))[1]
    damaged.write_bytes(damaged.read_bytes()[:200])
    recipe = depth_recipe_from_dict({"name": "j", "iterations": 2, "width": 192, "height": 64,
                                     "frame_offsets": [-1, 1], "batch_size": 2, "sequences": [str(three_kitti_frames)],
                                     "validation": [str(shared_data / "depth" / "kitti-tiny")]}, tmp_path)
    with pytest.raises(SplitError, match="validation LiDAR: 14 file"):
        DepthTrainer(recipe, tmp_path / "run").train(progress=False)
    with pytest.raises(ImageError, match=damaged.name):  # the frames are still read before the first step
        DepthTrainer(dataclasses.replace(recipe, validation=()), tmp_path / "run").train(progress=False)


class _InterruptedDepthTrainer(DepthTrainer):
    """Gets a real Ctrl-C (SIGINT) in the middle of step 1."""

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(batch)
        if self.iteration == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return terms


def test_an_interrupted_depth_run_resumes_to_the_run_it_was_cut_from(three_kitti_frames: Path, tmp_path: Path,
                                                                   terminal_signals):
    torch.set_num_threads(1)
    recipe = depth_recipe_from_dict({"name": "cut", "iterations": 4, "sequences": [str(three_kitti_frames)],
                                     "width": 192, "height": 64, "frame_offsets": [-1, 1], "min_frame_change": 0.0,
                                     "batch_size": 2, "checkpoint_every": 100, "device": "cpu"}, tmp_path)
    straight = DepthTrainer(recipe, tmp_path / "straight")
    straight.train(progress=False)
    with pytest.raises(KeyboardInterrupt):
        _InterruptedDepthTrainer(recipe, tmp_path / "cut").train(progress=False)
    assert torch.load(tmp_path / "cut" / "last.pt", weights_only=True)["training"]["iteration"] == 2
    resumed = DepthTrainer(recipe, tmp_path / "cut", resume=True)
    resumed.train(progress=False)
    for name, value in straight.depth.state_dict().items():
        assert torch.equal(value, resumed.depth.state_dict()[name]), name


class _WorkerKilledDepthTrainer(DepthTrainer):
    """Its data loader worker is killed (SIGKILL) in the middle of step 2."""

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(batch)
        if self.iteration == 1:
            kill_and_wait(a_loader_worker(self))
        return terms


class _OutOfMemoryDepthTrainer(DepthTrainer):
    """Step 3's forward pass (the automasking's jitter drawn) asks the CPU allocator for more than the address space
    holds."""

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(batch)
        if self.iteration == 2:
            torch.empty(2 ** 62, dtype=torch.uint8)
        return terms


def test_a_depth_run_whose_loader_worker_is_killed_or_whose_step_runs_out_of_memory_saves_and_resumes(
        three_kitti_frames: Path, tmp_path: Path) -> None:
    """The run ended with torch's 'DataLoader worker (pid N) is killed by signal: Killed.', raised mid-step, or with
    the allocator's error, and lost every step since its last checkpoint. Either resumes to the run it was cut from."""
    torch.set_num_threads(1)
    fields = {"name": "killed", "iterations": 3, "sequences": [str(three_kitti_frames)], "width": 192,
              "height": 64, "frame_offsets": [-1, 1], "min_frame_change": 0.0, "batch_size": 2,
              "checkpoint_every": 100, "num_workers": 1, "device": "cpu"}
    straight = DepthTrainer(depth_recipe_from_dict(fields, tmp_path), tmp_path / "straight")
    straight.train(progress=False)
    with pytest.raises(RuntimeError, match=r"^a data loader worker \(pid \d+\) was killed by SIGKILL, most likely by "
                                           r"the kernel's OOM killer .*; saved \S+last.pt at iteration 2: --resume "
                                           r"continues from it$"):
        _WorkerKilledDepthTrainer(depth_recipe_from_dict(fields, tmp_path), tmp_path / "killed").train(progress=False)
    with pytest.raises(RuntimeError, match=r"^step 3 ran out of memory .* the weights of iteration 2 are intact; "
                                           r"saved \S+last.pt at iteration 2: --resume continues from it$"):
        _OutOfMemoryDepthTrainer(depth_recipe_from_dict(fields, tmp_path), tmp_path / "oom").train(progress=False)
    for run in ("killed", "oom"):
        assert torch.load(tmp_path / run / "last.pt", weights_only=True)["training"]["iteration"] == 2
        resumed = DepthTrainer(depth_recipe_from_dict(fields, tmp_path), tmp_path / run, resume=True)
        resumed.train(progress=False)
        for name, value in straight.depth.state_dict().items():
            assert torch.equal(value, resumed.depth.state_dict()[name]), (run, name)


class _ValidationOutOfMemoryDepthTrainer(DepthTrainer):
    """The validation of iteration 2, the last, asks the CPU allocator for more than the address space holds."""

    def _validate(self, val_log: CsvLog) -> None:
        if self.iteration == 2:
            torch.empty(2 ** 62, dtype=torch.uint8)
        super()._validate(val_log)


def test_a_depth_run_whose_validation_runs_out_of_memory_saves_and_resumes(three_kitti_frames: Path,
                                                                           tmp_path: Path) -> None:
    """Out of memory in a validation (it moves no training state) ended the run with the allocator's traceback and
    lost every step since its last checkpoint. It saves that iteration and resumes to the run it was cut from, that
    validation first (here the last iteration's: the resumed run takes no step)."""
    torch.set_num_threads(1)
    fields = {"name": "val", "iterations": 2, "sequences": [str(three_kitti_frames)], "width": 192, "height": 64,
              "frame_offsets": [-1, 1], "min_frame_change": 0.0, "batch_size": 2, "checkpoint_every": 100,
              "device": "cpu"}
    straight = DepthTrainer(depth_recipe_from_dict(fields, tmp_path), tmp_path / "straight")
    straight.train(progress=False)
    validated = depth_recipe_from_dict({**fields, "validation": [str(three_kitti_frames)], "val_every": 1}, tmp_path)
    with pytest.raises(RuntimeError, match=r"^the validation of iteration 2 ran out of memory \(it could not allocate "
                                           r"4611686018427387904 bytes\): free the memory another process holds or "
                                           r"resume on another --device; saved \S+last.pt at iteration 2: --resume "
                                           r"continues from it$"):
        _ValidationOutOfMemoryDepthTrainer(validated, tmp_path / "oom").train(progress=False)
    resumed = DepthTrainer(validated, tmp_path / "oom", resume=True)
    resumed.train(progress=False)
    for name, value in straight.depth.state_dict().items():
        assert torch.equal(value, resumed.depth.state_dict()[name]), name
    with open(tmp_path / "oom" / "val.csv", newline="") as handle:
        assert [row["iteration"] for row in csv.DictReader(handle)] == ["1", "2"], "the validation cut off runs"
    assert torch.load(tmp_path / "oom" / "last.pt", weights_only=True)["meta"]["validation_iteration"] == 2, \
        "a run resumed at its last iteration takes no step, and saves the validation it ran"


def test_a_depth_run_trains_the_same_weights_whether_a_worker_or_the_training_process_loads_its_batches(
        three_kitti_frames: Path, tmp_path: Path) -> None:
    """docs/TRAINING.md: a batch is the same whichever worker loads it. The training process's batches kept the
    frames' channels-last layout and a worker's came contiguous, which the convolutions round otherwise: the same
    recipe trained other weights with `num_workers: 0` than with 1."""
    torch.set_num_threads(1)
    fields = {"name": "layout", "iterations": 2, "sequences": [str(three_kitti_frames)], "width": 192, "height": 64,
              "frame_offsets": [-1, 1], "min_frame_change": 0.0, "batch_size": 2, "device": "cpu"}
    weights = []
    for workers in (0, 1):
        trainer = DepthTrainer(depth_recipe_from_dict({**fields, "num_workers": workers}, tmp_path),
                               tmp_path / f"workers{workers}")
        trainer.train(progress=False)
        weights.append(trainer.depth.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


@pytest.mark.parametrize("recipe_file", sorted((REPO / "training").glob("depth_*.yaml")), ids=lambda path: path.name)
def test_committed_depth_recipes_validate_and_never_train_on_kitti_tiny(recipe_file: Path, shared_data: Path):
    recipe = load_depth_recipe(recipe_file)
    sequences = [sequence for source in recipe.sequences for sequence in load_sequences(source, recipe.camera)]
    frames = [frame.resolve() for sequence in sequences for frame in sequence.frames]
    assert frames and not any("kitti-tiny" in part for frame in frames for part in frame.parts)
    assert not any("kitti-tiny" in folder.parts for folder in recipe.validation)


def test_pose_between_frames_inverts_for_an_earlier_source(rendered_pair):
    torch.manual_seed(0)
    pose = PoseNet()
    later, earlier = rendered_pair["target"], rendered_pair["source"]
    with torch.no_grad():
        forward = pose.between(earlier, later, source_is_earlier=False)
        backward = pose.between(later, earlier, source_is_earlier=True)
    assert torch.allclose(backward @ forward, torch.eye(4)[None], atol=1e-5)


def test_an_axis_angle_pose_is_the_right_handed_motion_that_resynthesises_the_target(rendered_pair):
    """The rendered source camera is turned 2 degrees about y (right-handed) and moved: pose_matrix of that axis-angle
    and translation is the scene's transform, and warping with it resynthesises the target; its rigid inverse is
    the matrix inverse (the 0.6 m move turned by R^T, not just negated)."""
    from dgdehaze_core.models.pose_net import rigid_inverse

    transform = rendered_pair["transform"]
    rebuilt = pose_matrix(torch.tensor([[0.0, float(np.deg2rad(2.0)), 0.0]]), transform[:, :3, 3])
    torch.testing.assert_close(rebuilt, transform, atol=1e-6, rtol=0)
    warped = inverse_warp(rendered_pair["source"], rendered_pair["depth"], rebuilt, rendered_pair["intrinsics"])
    assert photometric_error(warped, rendered_pair["target"])[..., 2:-2, 2:-2].mean().item() < 0.01
    torch.testing.assert_close(rigid_inverse(transform.double()), torch.linalg.inv(transform.double()), atol=1e-6,
                               rtol=0)


def test_the_shipped_clear_depth_network_beats_a_constant_on_a_drive_it_never_saw(shared_data: Path) -> None:
    from dgdehaze_core.datasets.paths import WEIGHTS_DIR
    from dgdehaze_core.evaluation.depth_eval import depth_errors

    predictor = ClearDepthPredictor.from_checkpoint(WEIGHTS_DIR / "clear_depth_kitti.pt")
    tiny = load_kitti(shared_data / "depth" / "kitti-tiny")
    left = [frame.read() for frame in tiny.frames if "image_02" in frame.name]
    assert left
    network = [depth_errors(predictor(s.image), s.depth, tiny.max_depth)["absrel"] for s in left]
    constant = [depth_errors(np.ones_like(s.depth), s.depth, tiny.max_depth)["absrel"] for s in left]
    assert np.mean(network) < np.mean(constant) - 0.04, (np.mean(network), np.mean(constant))


def test_a_depth_last_pt_whose_own_fields_were_edited_to_other_types_is_refused_at_load_naming_the_field(
        three_kitti_frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The depth trainer's resume reads fields of its own beside those every trainer's does (its LAST_PT_FIELDS,
    run_control's RESUMED_FIELDS and the training data's fingerprint): one edited by hand to another type is refused
    naming it, not met later as a traceback."""
    config = tmp_path / "depth.yaml"
    raw = yaml.safe_load((REPO / "training" / "depth_kitti.yaml").read_text())
    raw.update({"sequences": [str(three_kitti_frames)], "width": 192, "height": 64, "frame_offsets": [-1, 1],
                "min_frame_change": 0.0, "iterations": 4, "batch_size": 2})
    config.write_text(yaml.safe_dump(raw))
    run = tmp_path / "run"
    run.mkdir()
    recipe = load_depth_recipe(config).as_dict()
    data = "its training.data is not each kind's list of (file name, bytes)"
    for training, meta, reason in (({"pose": "pose"}, {}, "its training.pose holds str, not a mapping"),
                                   ({"cuda_rng": [0]}, {}, "its training.cuda_rng holds list, not a tensor or None"),
                                   ({}, {"validation": []}, "its meta.validation holds list, not a mapping"),
                                   ({}, [], "its meta holds list, not a mapping"),
                                   ({}, {"resumes": "2"}, "its meta.resumes holds str, not a list"),
                                   ({"data": {"frames": [["a.png"]]}}, {}, data),
                                   ({"data": {"frames": [[1, 2]]}}, {}, data),
                                   ({"data": {"frames": [["a.png", "2"]]}}, {}, data),
                                   ({"data": {1: []}}, {}, data)):
        torch.save({"state_dict": {}, "meta": meta, "training": {"recipe": recipe, **training}}, run / "last.pt")
        assert main(["train-depth", "--config", str(config), "--out", str(run), "--resume", "--no-progress"]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"dgdehaze train-depth: error: {run / 'last.pt'} is not a resumable depth training checkpoint: {reason} "
            "(edited by hand?); the run cannot be continued: start a new run in another --out folder")
