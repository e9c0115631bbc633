"""Raw frames' geometry: a camera_info's lens distortion undone as image_geometry's rectifyPoint undoes it, on KITTI's
raw camera 2 (calib_cam_to_cam.txt K_02, D_02, R_rect_02, P_rect_02) with its LiDAR points and a flat road projected
into the raw image through K and D (cv2.projectPoints, the forward model); rectified frames' geometry unchanged."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from dgdehaze_core.physics.ground_contact import ground_contact
from dgdehaze_core.physics.lens import distortion_note, frames_rectified, lens_of
from dgdehaze_core.physics.visibility import (KOSCHMIEDER, Mounting, VisibilityEstimator, ground_range, intrinsics_of,
                                              pixel_rays, ray_norms)

DRIVE = Path("depth") / "kitti-seq" / "2011_09_26"
LIDAR = DRIVE / "2011_09_26_drive_sfnd_sync" / "proj_depth" / "velodyne" / "image_02" / "0000000024.npz"
RAW = (512, 1392)
"""KITTI's raw camera 2 image (S_02), height and width."""


def kitti_calibration(shared_data: Path) -> dict[str, np.ndarray]:
    values = {}
    for line in (shared_data / DRIVE / "calib_cam_to_cam.txt").read_text().splitlines():
        key, _, numbers = line.partition(":")
        if key in ("K_02", "D_02", "R_rect_02", "P_rect_02"):
            values[key] = np.array([float(v) for v in numbers.split()])
    return values


def raw_camera_info(calibration: dict[str, np.ndarray], monocular: bool, model: str = "plumb_bob",
                    d: np.ndarray | None = None) -> SimpleNamespace:
    """A sensor_msgs/CameraInfo of KITTI's raw (unrectified) camera 2 (a bag reader's carries these fields): K, D,
    R_rect and P_rect as KITTI's calibration gives them, or `monocular`: a camera whose R is the identity and P keeps
    K."""
    k = calibration["K_02"]
    r = np.eye(3).ravel() if monocular else calibration["R_rect_02"]
    p = np.hstack([k.reshape(3, 3), np.zeros((3, 1))]).ravel() if monocular else calibration["P_rect_02"]
    return SimpleNamespace(width=RAW[1], height=RAW[0], distortion_model=model,
                           d=calibration["D_02"] if d is None else d, k=k, r=r, p=p, binning_x=0, binning_y=0,
                           roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False))


def lidar_points(shared_data: Path, calibration: dict[str, np.ndarray]) -> np.ndarray:
    """The LiDAR points of a KITTI frame (N x 3, m) in the rectified camera 2's optical frame: each return at its
    rectified pixel, on P_rect_02's straight ray at its Z."""
    depth = np.load(shared_data / LIDAR)["velodyne_depth"]
    v, u = np.nonzero(depth > 0)
    z = depth[v, u].astype(np.float64)
    p = calibration["P_rect_02"]
    return np.stack([(u - p[2]) / p[0] * z, (v - p[6]) / p[5] * z, z], axis=1)


def project_raw(points: np.ndarray, info: SimpleNamespace) -> np.ndarray:
    """Where the raw image sees `points` (rectified frame): rotated back by R, through K and D (N x 2 pixels)."""
    raw_frame = points @ np.asarray(info.r).reshape(3, 3)  # R^T x for each row x
    k, d = np.asarray(info.k).reshape(3, 3), np.asarray(info.d)
    if info.distortion_model == "equidistant":
        pixels, _ = cv2.fisheye.projectPoints(raw_frame.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), k, d)
    else:
        pixels, _ = cv2.projectPoints(raw_frame, np.zeros(3), np.zeros(3), k, d)
    return pixels.reshape(-1, 2)


def in_view(points: np.ndarray, pixels: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Which of `points` the raw image sees at `pixels`: inside it (`margin` px from its edges) and within the
    radius where the distortion still grows outward (1 in normalized coordinates for D_02, whose image corners lie
    at 0.96): a point beyond it, at a wider angle than the lens takes, would fold back into the image."""
    radius = np.linalg.norm(points[:, :2] / points[:, 2:], axis=1)
    return ((pixels[:, 0] >= margin) & (pixels[:, 0] < RAW[1] - 1 - margin) & (pixels[:, 1] >= margin)
            & (pixels[:, 1] < RAW[0] - 1 - margin) & (radius < 1.0))


def sample(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """`image` (float) bilinearly at sub-pixel `pixels` (N x 2)."""
    maps = pixels.astype(np.float32).reshape(-1, 1, 2)
    return cv2.remap(image.astype(np.float32), maps, None, cv2.INTER_LINEAR).ravel().astype(np.float64)


@pytest.fixture(scope="module")
def calibration(shared_data: Path) -> dict[str, np.ndarray]:
    return kitti_calibration(shared_data)


def position_errors(info: SimpleNamespace, points: np.ndarray, pixels: np.ndarray, shape: tuple[int, int],
                    raw: bool) -> np.ndarray:
    """|point_at - truth| / |truth| for each point seen at `pixels` of a frame of `shape` at its true Z."""
    intrinsics = intrinsics_of(info, shape, raw=raw)
    found = np.array([intrinsics.point_at(u, v, z) for (u, v), z in zip(pixels, points[:, 2])])
    return np.linalg.norm(found - points, axis=1) / np.linalg.norm(points, axis=1)


@pytest.mark.parametrize("monocular", [True, False], ids=["monocular", "kitti-rectified"])
def test_a_detection_seen_in_the_raw_image_is_placed_on_its_undistorted_ray(shared_data: Path, calibration: dict,
                                                                            monocular: bool) -> None:
    """A box centre at a LiDAR point's raw pixel, at its true Z, is placed at that point (the raw image's own size,
    a half-size copy of it, and a region of interest binned 2x2, each undistorted in camera_info's full-size
    pixels); P's straight rays place it metres away."""
    info = raw_camera_info(calibration, monocular)
    points = lidar_points(shared_data, calibration)
    pixels = project_raw(points, info)
    inside = in_view(points, pixels)
    points, pixels = points[inside][::20], pixels[inside][::20]
    sides = np.abs(pixels[:, 0] - RAW[1] / 2) > 0.4 * RAW[1]
    assert sides.sum() > 20, "LiDAR returns at the raw image's sides"
    for shape, scale in ((RAW, 1.0), ((RAW[0] // 2, RAW[1] // 2), 0.5)):
        after = position_errors(info, points, pixels * scale, shape, raw=True)
        assert after.max() < 2e-5, f"{shape}: {after.max():.2e} of the distance off"
    binned = SimpleNamespace(**{**vars(info), "binning_x": 2, "binning_y": 2,
                                "roi": SimpleNamespace(x_offset=100, y_offset=40, width=1200, height=440)})
    after = position_errors(binned, points, (pixels - (100, 40)) / 2, (220, 600), raw=True)
    assert after.max() < 2e-5, f"region of interest, binned: {after.max():.2e} of the distance off"
    before = position_errors(info, points, pixels, RAW, raw=False)
    assert np.median(before[sides]) > 0.05, "the straight rays are off at the sides: the test has teeth"


def road_scene(info: SimpleNamespace) -> tuple[np.ndarray, np.ndarray, Mounting]:
    """A flat road 1.65 m below the camera (KITTI's), pitched 0.02 rad nose down, 4 to 30 m ahead and 10 m either
    side: its points in the rectified frame, their raw pixels, and the mounting."""
    mounting = Mounting(1.65, 0.02)
    x, z_road = np.meshgrid(np.linspace(-10.0, 10.0, 81), np.linspace(4.0, 30.0, 53))
    c, s = math.cos(mounting.pitch), math.sin(mounting.pitch)
    # road (x right, 1.65 m down, z forward) seen by a camera pitched nose down by `pitch` about its x axis
    road = np.stack([x.ravel(), np.full(x.size, mounting.height), z_road.ravel()], axis=1)
    points = np.stack([road[:, 0], c * road[:, 1] - s * road[:, 2], s * road[:, 1] + c * road[:, 2]], axis=1)
    pixels = project_raw(points, info)
    inside = in_view(points, pixels, margin=1.0)
    return points[inside], pixels[inside], mounting


@pytest.mark.parametrize("monocular", [True, False], ids=["monocular", "kitti-rectified"])
def test_the_road_s_distances_and_the_depth_of_a_raw_image_follow_its_undistorted_rays(
        shared_data: Path, calibration: dict, monocular: bool) -> None:
    """ground_range (the road's distance along each ray) and ray_norms (distance / Z: ~/depth's divisor) of the raw
    image, read at where it sees a flat road's points and the LiDAR's, match their true distances."""
    info = raw_camera_info(calibration, monocular)
    points, pixels, mounting = road_scene(info)
    assert len(points) > 1000
    truth = np.linalg.norm(points, axis=1)
    raw, straight = intrinsics_of(info, RAW, raw=True), intrinsics_of(info, RAW)
    after = np.abs(sample(ground_range(RAW, raw, mounting), pixels) / truth - 1)
    before = np.abs(sample(ground_range(RAW, straight, mounting), pixels) / truth - 1)
    assert np.percentile(after, 99) < 2e-3, f"road distances {np.percentile(after, 99):.2%} off"
    assert np.median(before) > 0.01
    lidar = lidar_points(shared_data, calibration)
    seen = project_raw(lidar, info)
    inside = in_view(lidar, seen, margin=1.0)
    lidar, seen = lidar[inside], seen[inside]
    norms = np.linalg.norm(lidar, axis=1) / lidar[:, 2]
    after = np.abs(sample(ray_norms(RAW, raw), seen) / norms - 1)
    before = np.abs(sample(ray_norms(RAW, straight), seen) / norms - 1)
    assert after.max() < 1e-4, f"depth {after.max():.2e} off"
    assert before.max() > 0.01


def true_rays(info: SimpleNamespace) -> tuple[np.ndarray, np.ndarray]:
    """Each raw pixel's ray (x/z, y/z, rectified frame), undistorted to 1e-9 px and checked by projecting it back."""
    v, u = np.indices(RAW, dtype=np.float64)
    pixels = np.stack([u, v], axis=-1).reshape(-1, 1, 2)
    normal = cv2.undistortPoints(pixels, np.asarray(info.k).reshape(3, 3), np.asarray(info.d),
                                 R=np.asarray(info.r).reshape(3, 3),
                                 criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-9)).reshape(-1, 2)
    rays = np.hstack([normal, np.ones((len(normal), 1))])
    back = project_raw(rays, info)
    assert np.abs(back - pixels.reshape(-1, 2)).max() < 1e-3
    return normal[:, 0].reshape(RAW), normal[:, 1].reshape(RAW)


@pytest.mark.parametrize("monocular", [True, False], ids=["monocular", "kitti-rectified"])
def test_the_visibility_measured_on_a_raw_image_of_a_foggy_road_is_the_fog_s(calibration: dict,
                                                                             monocular: bool) -> None:
    """Fog of 60 m over a flat road seen by the raw camera (each pixel's transmission along its true ray): the
    visibility measured through the raw frames' geometry is the fog's."""
    info = raw_camera_info(calibration, monocular)
    mounting = Mounting(1.65, 0.02)
    x, y = true_rays(info)
    fall = y * math.cos(mounting.pitch) + math.sin(mounting.pitch)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.where(fall > 1e-9, mounting.height / fall, np.inf) * np.sqrt(1 + x ** 2 + y ** 2)
    transmission = np.exp(-KOSCHMIEDER / 60.0 * distance).astype(np.float32)
    readings = {raw: VisibilityEstimator(mounting).update(transmission, intrinsics_of(info, RAW, raw=raw), 0.0)
                for raw in (True, False)}
    assert readings[True].visibility == pytest.approx(60.0, rel=1e-3)
    assert abs(readings[False].visibility / 60.0 - 1) > 2e-3, "the straight rays read another visibility"


@pytest.mark.parametrize("monocular", [True, False], ids=["monocular", "kitti-rectified"])
def test_rational_polynomial_and_equidistant_lenses_are_undone_too(shared_data: Path, calibration: dict,
                                                                  monocular: bool) -> None:
    """rational_polynomial (8 coefficients, OpenCV's pinhole model) and equidistant (OpenCV's fisheye model), each
    with R the identity and KITTI's R_rect_02 (a stereo camera's, which the fisheye's rays are turned by as well).
    A monocular camera_info whose R is left zero is taken as the identity."""
    points = lidar_points(shared_data, calibration)[::50]
    for model, d in (("rational_polynomial", np.r_[calibration["D_02"], 0.01, -0.002, 0.0]),
                     ("equidistant", np.array([-0.05, 0.01, -0.002, 0.0005]))):
        info = raw_camera_info(calibration, monocular=monocular, model=model, d=d)
        pixels = project_raw(points, info)
        errors = position_errors(info, points, pixels, RAW, raw=True)
        assert errors.max() < 1e-5, f"{model}: {errors.max():.2e}"
        assert not distortion_note(info, "/camera/image_raw", False)
        if monocular:
            unset = SimpleNamespace(**{**vars(info), "r": np.zeros(9)})
            assert position_errors(unset, points, pixels, RAW, raw=True).max() < 1e-5, f"{model}, R unset"


def test_a_distortion_that_cannot_be_undone_leaves_straight_rays_and_says_why(calibration: dict) -> None:
    info = raw_camera_info(calibration, monocular=True, model="fov")
    assert intrinsics_of(info, RAW, raw=True) == intrinsics_of(info, RAW), "P's straight rays"
    note = distortion_note(info, "/camera/image_raw", False)
    assert "distortion model 'fov' is none that image_geometry undoes" in note and "not undone" in note
    unsaid = distortion_note(info, "/camera/image", None)  # a topic's name that does not say: no false remedy
    assert "distortion model 'fov' is none that image_geometry undoes" in unsaid, unsaid
    assert "distortion is undone" not in unsaid and "set image_rectified to true" in unsaid, unsaid
    info = raw_camera_info(calibration, monocular=True, d=calibration["D_02"][:3])
    assert lens_of(info) == (None, "camera_info's D has 3 coefficients, which plumb_bob does not take "
                                   "(4, 5, 8, 12, 14)")


def test_rectified_frames_keep_p_s_straight_rays_bit_for_bit(calibration: dict) -> None:
    """A rectified image (or one not known raw) with the same camera_info: no lens, the rays of P as before."""
    info = raw_camera_info(calibration, monocular=False)
    intrinsics = intrinsics_of(info, RAW)
    assert intrinsics.lens is None and intrinsics_of(info, RAW, raw=False) == intrinsics
    x = (np.arange(RAW[1], dtype=np.float64) - intrinsics.cx) / intrinsics.fx
    y = (np.arange(RAW[0], dtype=np.float64) - intrinsics.cy) / intrinsics.fy
    norms = np.sqrt(1.0 + x[None, :] ** 2 + y[:, None] ** 2)
    assert np.array_equal(ray_norms(RAW, intrinsics), norms)
    mounting = Mounting(1.65, 0.02)
    fall = y * math.cos(mounting.pitch) + math.sin(mounting.pitch)
    with np.errstate(divide="ignore"):
        z = np.where(fall > 1e-9, mounting.height / np.maximum(fall, 1e-9), np.nan)
    assert np.array_equal(ground_range(RAW, intrinsics, mounting), z[:, None] * norms, equal_nan=True)
    assert intrinsics.point_at(1000.5, 300.5, 12.0) == ((1000.5 - intrinsics.cx) / intrinsics.fx * 12.0,
                                                        (300.5 - intrinsics.cy) / intrinsics.fy * 12.0, 12.0)
    zero = raw_camera_info(calibration, monocular=False, d=np.zeros(5))
    assert intrinsics_of(zero, RAW, raw=True).lens is None, "a D of zeros has nothing to undo (image_geometry)"


def test_the_raw_rays_of_a_calibration_are_computed_once() -> None:
    """Per-pixel rays are cached by the calibration and the frame's size, not recomputed per frame."""
    info = SimpleNamespace(width=640, height=480, distortion_model="plumb_bob", d=[-0.3, 0.1, 0.001, 0.0005, 0.0],
                           k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0], r=[0.0] * 9, p=[0.0] * 12,
                           binning_x=0, binning_y=0, roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0))
    first = pixel_rays((480, 640), intrinsics_of(info, (480, 640), raw=True))
    again = pixel_rays((480, 640), intrinsics_of(info, (480, 640), raw=True))  # the next frame's camera_info
    assert first[0] is again[0] and not first[0].flags.writeable
    assert first[0].shape == (480, 640)


def test_the_distortion_note_of_a_calibration_is_worked_out_once(calibration: dict) -> None:
    """Its callers ask the note of each frame's camera_info: one calibration's (the next frame's an equal copy) is
    the same note, worked out once; another calibration's is its own."""
    first = distortion_note(raw_camera_info(calibration, monocular=True, model="fov"), "/camera/image", None)
    again = distortion_note(raw_camera_info(calibration, monocular=True, model="fov"), "/camera/image", None)
    assert first is again and "distortion model 'fov'" in first
    other = distortion_note(raw_camera_info(calibration, monocular=True), "/camera/image", None)
    assert "(plumb_bob, D not zero)" in other and "set image_rectified to false" in other


@pytest.mark.parametrize("topic, setting, rectified", [
    ("/camera/image_raw", "auto", False), ("/camera/image_color/compressed", "auto", False),
    ("/camera/image_rect_color", "auto", True), ("/camera/image", "auto", None),
    ("/camera/image", "false", False), ("/camera/image_rect", False, False), ("/camera/image_raw", True, True),
])
def test_whether_frames_are_rectified_is_set_or_told_from_the_topic_s_name(topic: str, setting: str | bool,
                                                                          rectified: bool | None) -> None:
    assert frames_rectified(topic, setting) is rectified


@pytest.mark.parametrize("d", [(0.0035, 0.0007, -0.002, 0.0002), (0.05, 0.0, 0.0, 0.0)],
                         ids=["theta_d-below-theta", "theta_d-above-theta"])
def test_a_fisheye_s_pixels_beyond_ninety_degrees_have_no_ray_rather_than_a_wrong_one(d: tuple[float, ...]) -> None:
    """An equidistant lens wider than 180 degrees (512x512, f 191 px: about 195 degrees across, as TUM VI's cameras)
    sees its image circle's rim and corners 90 degrees or more off its axis, where no x/z ray exists: OpenCV gives
    tan(angle) there, whose sign turns, and clamps the distorted angle at 90 degrees, which gave those pixels rays as
    much as 180 degrees off (the opposite side), each with a road distance, a ~/depth and a detection position. Each
    pixel's ray is its true one, or NaN: beyond 90 degrees, or where OpenCV clamps (distorted angle 90 degrees or
    more); so is that of a pixel beyond where a lens's calibration folds back, which OpenCV marks (-1e6, -1e6): a
    ray 1e6 wide, whose ~/depth read 0 m."""
    f, c = 191.0, 255.5
    info = SimpleNamespace(width=512, height=512, distortion_model="equidistant", d=list(d),
                           k=[f, 0, c, 0, f, c, 0, 0, 1], r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                           p=[f, 0, c, 0, 0, f, c, 0, 0, 0, 1, 0], binning_x=0, binning_y=0,
                           roi=SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0))
    intrinsics = intrinsics_of(info, (512, 512), raw=True)
    theta = np.radians(np.arange(5.0, 116.0, 0.25))[:, None]  # off-axis angles of points seen toward the 8 corners
    phi = np.radians(np.arange(0.0, 360.0, 45.0))[None, :] + 0 * theta
    theta = theta + 0 * phi
    theta_d = theta * (1 + d[0] * theta ** 2 + d[1] * theta ** 4 + d[2] * theta ** 6 + d[3] * theta ** 8)
    u, v = c + f * theta_d * np.cos(phi), c + f * theta_d * np.sin(phi)  # the equidistant model's projection
    seen = (u >= 0) & (u <= 511) & (v >= 0) & (v <= 511) & (np.abs(theta - math.pi / 2) > 1e-9)
    theta, theta_d, phi = theta[seen], theta_d[seen], phi[seen]
    assert (theta > math.pi / 2).sum() > 20, "the test's points include rays beyond 90 degrees"
    x, y = intrinsics.lens.rays(u[seen], v[seen])
    found = np.stack([x, y, np.ones_like(x)], axis=-1)
    found /= np.linalg.norm(found, axis=-1, keepdims=True)
    true = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1)
    off = np.degrees(np.arccos(np.clip((found * true).sum(-1), -1.0, 1.0)))
    known = np.isfinite(off)
    assert off[known].max() < 1e-4, f"rays up to {off[known].max():.1f} degrees off"
    assert np.array_equal(known, (theta < math.pi / 2) & (theta_d < math.pi / 2)), "NaN only where no ray is known"
    corner = intrinsics.point_at(0.0, 0.0, 5.0)
    assert all(map(math.isnan, corner)) and np.isnan(ray_norms((512, 512), intrinsics)[0, 0])
    assert np.isnan(ground_range((512, 512), intrinsics, Mounting(1.5, 0.3))[511, 0]), "no road behind the camera"
    folding = dataclasses.replace(intrinsics.lens, d=(-0.5, 0.0, 0.0, 0.0))  # theta_d is at most 0.54 rad
    x, y = folding.rays(np.array([c + 0.5 * f, c + 0.6 * f]), np.array([c, c]))
    assert x[0] == pytest.approx(0.7109, abs=1e-4) and math.isnan(x[1]) and math.isnan(y[1]), "beyond its fold: NaN"


def test_a_raw_image_s_contact_follows_its_undistorted_ray(shared_data: Path) -> None:
    """KITTI's raw camera 2 (K_02, D_02, R_rect_02): the road point seen at a raw pixel is found at its z in the
    rectified frame, where a straight ray through the raw pixel misses it."""
    calibration = kitti_calibration(shared_data)
    info = raw_camera_info(calibration, monocular=False)
    raw = intrinsics_of(info, RAW, raw=True)
    assert raw is not None and raw.lens is not None
    mounting = Mounting(1.65, 0.0)
    for x, forward in ((-4.0, 9.0), (3.0, 12.0), (-6.0, 20.0)):
        point = np.array([x, 1.65, forward])  # on the road of a level camera, in the rectified frame
        raw_frame = point @ calibration["R_rect_02"].reshape(3, 3)  # R^T: the raw camera's frame
        pixels, _ = cv2.projectPoints(raw_frame.reshape(1, 3), np.zeros(3), np.zeros(3),
                                      calibration["K_02"].reshape(3, 3), calibration["D_02"])
        u, v = pixels.reshape(2)
        box = (u - 40.0, v - 60.0, u + 40.0, v)  # a box standing there
        assert ground_contact(box, RAW, raw, mounting).z == pytest.approx(point[2], rel=1e-4)
    straight = intrinsics_of(info, RAW, raw=False)
    assert abs(ground_contact(box, RAW, straight, mounting).z / point[2] - 1.0) > 0.01
