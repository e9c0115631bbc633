"""Fog density, visibility and metric depth from a transmission map on a road of known geometry."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dgdehaze_core.physics.scattering import T_MIN
from scipy.spatial.transform import Rotation

from dgdehaze_core.physics.visibility import (KOSCHMIEDER, BetaMeasurement, Intrinsics, Mounting, VisibilityEstimator,
                                              fog_contrast, ground_range, height_and_pitch, measure_beta, metric_depth,
                                              pitch_words, ray_norms, road_mask)

SHAPE = (480, 640)
CAMERA = Intrinsics(fx=500.0, fy=500.0, cx=320.0, cy=240.0)
MOUNT = Mounting(height=1.5, pitch=0.05)


def road_scene(beta: float, mounting: Mounting = MOUNT) -> tuple[np.ndarray, np.ndarray]:
    """The transmission of a flat road under uniform fog (the sky at the pipeline's floor) and its true Z (m)."""
    distance = ground_range(SHAPE, CAMERA, mounting)
    t = np.where(np.isfinite(distance), np.exp(-beta * np.nan_to_num(distance, nan=0.0)), T_MIN)
    return np.clip(t, T_MIN, 1.0).astype(np.float32), distance / ray_norms(SHAPE, CAMERA)


def test_ground_range_matches_the_flat_road_geometry():
    distance = ground_range(SHAPE, CAMERA, Mounting(height=1.5, pitch=0.0))
    assert np.isnan(distance[:241]).all()  # at and above the horizon (row cy with no pitch)
    row = 240 + 50  # 50 px below the horizon, straight ahead: the road point (0, 1.5, Z = f h / 50)
    assert distance[row, 320] == pytest.approx(math.hypot(500.0 * 1.5 / 50.0, 1.5))
    pitched = ground_range(SHAPE, CAMERA, MOUNT)
    horizon = 240 - 500.0 * math.tan(0.05)  # nose down: the horizon moves up the image
    assert np.isfinite(pitched[int(horizon) + 1, 320]) and np.isnan(pitched[int(horizon) - 1, 320])
    # 200 px right of the centre, 50 below: the road point (X = Z * 200 / 500, 1.5, Z), the ray's full length to it
    z = 500.0 * 1.5 / 50.0
    assert distance[row, 320 + 200] == pytest.approx(math.sqrt((z * 200.0 / 500.0) ** 2 + 1.5 ** 2 + z ** 2))


@pytest.mark.parametrize("visibility", [50.0, 150.0, 400.0])
def test_beta_is_recovered_on_a_synthetic_road(visibility: float):
    beta = KOSCHMIEDER / visibility
    t, _ = road_scene(beta)
    estimator = VisibilityEstimator(MOUNT, time_constant=0.0, max_visibility=1000.0)
    reading = estimator.update(t, CAMERA, stamp=0.0)
    assert reading.measurement.beta == pytest.approx(beta, rel=0.01)
    assert reading.visibility == pytest.approx(visibility, rel=0.01)
    assert reading.reason == ""


def test_a_car_on_the_road_is_left_out_as_an_outlier():
    beta = KOSCHMIEDER / 100.0
    t, _ = road_scene(beta)
    distance = ground_range(SHAPE, CAMERA, MOUNT)
    road = road_mask(SHAPE, MOUNT.road_region) & (distance <= MOUNT.road_max_distance)
    rows, cols = np.nonzero(road)
    car = (rows > np.percentile(rows, 40)) & (cols > np.percentile(cols, 50))  # a quarter of the road, 8 m away
    t[rows[car], cols[car]] = math.exp(-beta * 8.0)
    assert measure_beta(t, distance, road).beta == pytest.approx(beta, rel=0.05)


def test_metric_depth_is_the_true_z_on_the_road_and_nan_in_the_sky_and_without_haze_signal():
    beta = KOSCHMIEDER / 150.0
    t, true_z = road_scene(beta)
    depth = metric_depth(t, beta, ray_norms(SHAPE, CAMERA))
    assert depth.dtype == np.float32
    measured = np.isfinite(depth)
    np.testing.assert_allclose(depth[measured], true_z[measured], rtol=1e-3)
    assert np.isnan(depth[:200]).all()  # sky: t at the floor
    thin, _ = road_scene(KOSCHMIEDER / 400.0)  # the road nearest the camera shows no haze signal in thin fog
    assert (thin >= 0.95).sum() > 1000
    thin_depth = metric_depth(thin, KOSCHMIEDER / 400.0, ray_norms(SHAPE, CAMERA))
    assert np.isnan(thin_depth[thin >= 0.95]).all() and np.isfinite(thin_depth[(thin < 0.9) & (thin > 0.1)]).all()
    assert np.isnan(depth[true_z > 150.0]).all()  # beyond the visibility
    assert np.isnan(metric_depth(t, math.nan, ray_norms(SHAPE, CAMERA))).all()


def test_fog_that_hides_the_road_reads_the_most_its_visibility_can_be_not_no_fog_nor_the_floor_s() -> None:
    """Fog so dense that the whole road in view sits at the method's transmission floor: not NaN (a consumer reads
    that as no fog) but the bound the nearest hidden road gives, marked as such, and no metric depth."""
    from dgdehaze_core.physics.dark_channel import DarkChannelDehazer

    dcp = DarkChannelDehazer()
    assert dcp.dehaze(np.full((32, 48, 3), 200, np.uint8)).transmission_floor == dcp.t0
    distance = ground_range(SHAPE, CAMERA, MOUNT)
    road = road_mask(SHAPE, MOUNT.road_region) & (distance <= MOUNT.road_max_distance)
    nearest = float(np.percentile(distance[road], 5))
    readings = []
    for visibility in (3.0, 4.0):  # DCP clips t at t0: the whole road sits at the floor
        t = np.maximum(road_scene(KOSCHMIEDER / visibility)[0], np.float32(dcp.t0))
        estimator = VisibilityEstimator(MOUNT, time_constant=0.0, max_visibility=10.0)
        reading = estimator.update(t, CAMERA, 0.0, transmission_floor=dcp.t0)
        assert reading.at_most and reading.reason == ""
        assert visibility < reading.visibility == pytest.approx(KOSCHMIEDER * nearest / -math.log(1.2 * dcp.t0))
        assert not np.isfinite(reading.depth).any(), "a bound on beta would put every point too far"
        readings.append(VisibilityEstimator(MOUNT, time_constant=0.0).update(t, CAMERA, 0.0))
    assert not readings[0].at_most and readings[0].visibility == pytest.approx(readings[1].visibility), \
        "without the method's floor, the floor reads as fog: one number for 3 m and 4 m"
    whiteout = VisibilityEstimator(MOUNT, time_constant=0.0).update(np.full(SHAPE, T_MIN, np.float32), CAMERA, 0.0)
    assert whiteout.at_most and whiteout.visibility < 15.0


def test_fog_closing_in_reads_the_frames_own_bound_at_once_not_a_bound_smoothed_with_the_thinner_fog_before() -> None:
    """A road in thin fog, then a frame a thirtieth of a second later where the fog hides it: the smoothed beta
    still held the thin fog, so the "at most" visibility read 448 m, above `max_range` (sensor_msgs/Range readers
    drop such a value), where the frame itself says at most about 7 m."""
    estimator = VisibilityEstimator(MOUNT, time_constant=1.0, max_visibility=200.0)
    assert estimator.update(road_scene(KOSCHMIEDER / 150.0)[0], CAMERA, 0.0).visibility == pytest.approx(150.0, 0.01)
    whiteout = np.full(SHAPE, T_MIN, np.float32)
    reading = estimator.update(whiteout, CAMERA, 1.0 / 30.0)
    alone = VisibilityEstimator(MOUNT, time_constant=1.0, max_visibility=200.0).update(whiteout, CAMERA, 0.0)
    assert reading.at_most and reading.visibility == pytest.approx(alone.visibility) and alone.visibility < 15.0


def test_a_clear_frame_has_no_visibility_rather_than_a_huge_one():
    estimator = VisibilityEstimator(MOUNT, time_constant=0.0, max_visibility=1000.0)
    for t in (np.ones(SHAPE, np.float32), road_scene(KOSCHMIEDER / 5000.0)[0]):
        reading = estimator.update(t, CAMERA, stamp=0.0)
        assert math.isnan(reading.visibility)
        assert reading.reason == "no fog to measure (most of the road in view shows no haze signal)", \
            "not 'beyond max_visibility': fog too thin for the road in view says so"
        assert np.isnan(reading.depth).all()


def test_a_frame_without_road_gives_nan_with_the_reason():
    distance = ground_range(SHAPE, CAMERA, MOUNT)
    road = np.flatnonzero(road_mask(SHAPE, MOUNT.road_region) & (distance <= MOUNT.road_max_distance))
    half = road.size // 2
    mixed = np.full(SHAPE, np.nan, np.float32)  # half the road at the floor, half without haze signal
    mixed.flat[road[:half]], mixed.flat[road[half:2 * half]] = T_MIN, 0.97
    reading = VisibilityEstimator(MOUNT, time_constant=0.0).update(mixed, CAMERA, stamp=0.0)
    assert math.isnan(reading.visibility) and math.isnan(reading.beta) and not reading.at_most
    assert "usable transmission" in reading.reason
    above = Mounting(height=1.5, pitch=0.0, road_region=(0.0, 0.0, 1.0, 0.4))  # a region above the horizon
    reading = VisibilityEstimator(above, time_constant=0.0).update(road_scene(0.02)[0], CAMERA, stamp=0.0)
    assert math.isnan(reading.visibility) and "no road below the horizon" in reading.reason


def test_a_road_region_without_road_near_enough_or_without_pixels_says_which():
    far = Intrinsics(fx=5000.0, fy=5000.0, cx=320.0, cy=240.0)  # a telephoto lens: the road in view is far away
    reading = VisibilityEstimator(Mounting(1.5, 0.0), time_constant=0.0).update(
        np.full(SHAPE, 0.5, np.float32), far, 0.0)
    assert math.isnan(reading.visibility)
    assert reading.reason == "the road region's nearest road is 31 m away, beyond road_max_distance (30 m)"
    thin = Mounting(1.5, 0.0, road_region=(0.3, 0.5, 0.7, 0.501))
    reading = VisibilityEstimator(thin, time_constant=0.0).update(road_scene(0.02, thin)[0], CAMERA, 0.0)
    assert reading.reason == "the road region [0.3, 0.5, 0.7, 0.501] holds no pixel of a 640x480 frame"


def test_a_camera_pitched_up_sees_no_road():
    up = Mounting(height=1.5, pitch=-0.6)  # nose up 34 degrees: the whole image lies above the horizon
    assert np.isnan(ground_range(SHAPE, CAMERA, up)).all()
    reading = VisibilityEstimator(up, time_constant=0.0).update(np.full(SHAPE, 0.5, np.float32), CAMERA, 0.0)
    assert math.isnan(reading.visibility)
    assert reading.reason == "no road below the horizon in the road region"
    assert np.isnan(reading.depth).all()


def test_smoothing_follows_the_frames_stamps_and_forgets_a_stale_value():
    estimator = VisibilityEstimator(MOUNT, time_constant=2.0)
    thin, dense = KOSCHMIEDER / 400.0, KOSCHMIEDER / 50.0
    assert estimator.update(road_scene(thin)[0], CAMERA, stamp=10.0).beta == pytest.approx(thin, rel=0.01)
    after_one_constant = estimator.update(road_scene(dense)[0], CAMERA, stamp=12.0).beta
    assert after_one_constant == pytest.approx(thin + (1 - math.exp(-1)) * (dense - thin), rel=0.02)
    no_road = np.full(SHAPE, np.nan, np.float32)  # a frame that measures nothing
    assert estimator.update(no_road, CAMERA, stamp=13.0).beta == pytest.approx(after_one_constant)  # held
    stale = estimator.update(no_road, CAMERA, stamp=12.0 + 3 * 2.0 + 0.1)
    assert math.isnan(stale.beta) and math.isnan(stale.visibility)


def test_stamps_that_do_not_advance_leave_each_frame_its_own_measurement():
    thin, dense = KOSCHMIEDER / 400.0, KOSCHMIEDER / 50.0
    unstamped = VisibilityEstimator(MOUNT, time_constant=2.0)  # a driver stamping 0 (use_sim_time without /clock)
    unstamped.update(road_scene(dense)[0], CAMERA, stamp=0.0)
    assert unstamped.update(road_scene(thin)[0], CAMERA, stamp=0.0).beta == pytest.approx(thin, rel=0.01)
    looped = VisibilityEstimator(MOUNT, time_constant=2.0)  # a bag played in a loop: the stamps jump back
    looped.update(road_scene(dense)[0], CAMERA, stamp=30.0)
    no_road = np.full(SHAPE, np.nan, np.float32)  # a frame that measures nothing
    assert math.isnan(looped.update(no_road, CAMERA, stamp=1.0).beta), "a held value does not outlive a loop"


def test_a_frame_stamped_a_little_before_the_newest_leaves_the_smoothed_fog_as_it_was():
    thin, dense = KOSCHMIEDER / 400.0, KOSCHMIEDER / 50.0
    estimator = VisibilityEstimator(MOUNT, time_constant=2.0)
    estimator.update(road_scene(thin)[0], CAMERA, stamp=10.0)
    smoothed = estimator.update(road_scene(thin)[0], CAMERA, stamp=10.1).beta
    # a multi-threaded driver publishing two frames out of order: one stamped 10 ms before the newest
    assert estimator.update(road_scene(dense)[0], CAMERA, stamp=10.09).beta == pytest.approx(smoothed)
    no_road = np.full(SHAPE, np.nan, np.float32)
    assert estimator.update(no_road, CAMERA, stamp=10.08).beta == pytest.approx(smoothed), "held, not forgotten"
    later = estimator.update(road_scene(dense)[0], CAMERA, stamp=10.2).beta  # smoothed over 0.1 s from 10.1
    assert later == pytest.approx(smoothed + (1 - math.exp(-0.1 / 2.0)) * (dense - smoothed), rel=0.02)


def test_a_frame_up_to_out_of_order_s_before_the_newest_is_out_of_order_and_one_further_back_starts_again():
    """OUT_OF_ORDER_S (1 s) is the bound: a frame stamped exactly that much before the newest keeps the smoothed
    fog, one stamped a little more is a new stream and stands as its own measurement. An out-of-order frame with
    nothing smoothed (the held value was forgotten) gives its own measurement, not none."""
    thin, dense = KOSCHMIEDER / 400.0, KOSCHMIEDER / 50.0
    estimator = VisibilityEstimator(MOUNT, time_constant=2.0)
    estimator.update(road_scene(thin)[0], CAMERA, stamp=10.0)
    smoothed = estimator.update(road_scene(thin)[0], CAMERA, stamp=11.0).beta
    assert estimator.update(road_scene(dense)[0], CAMERA, stamp=10.0).beta == pytest.approx(smoothed)
    assert estimator.update(road_scene(dense)[0], CAMERA, stamp=9.98).beta == pytest.approx(dense, rel=0.01)
    forgetting = VisibilityEstimator(MOUNT, time_constant=0.1)  # a value is held 1 s
    forgetting.update(road_scene(thin)[0], CAMERA, stamp=10.0)
    assert math.isnan(forgetting.update(np.full(SHAPE, np.nan, np.float32), CAMERA, stamp=11.5).beta)
    assert forgetting.update(road_scene(dense)[0], CAMERA, stamp=9.5).beta == pytest.approx(dense, rel=0.01)


@pytest.mark.parametrize("kwargs, message", [
    ({"height": 0.0, "pitch": 0.0}, "height must be positive"),
    ({"height": 1.5, "pitch": 2.0}, "pitch must lie within"),
    ({"height": 1.5, "pitch": 0.0, "road_region": (0.7, 0.5, 0.3, 1.0)}, "left < right"),
    ({"height": 1.5, "pitch": 0.0, "road_max_distance": 0.0}, "road max distance"),
])
def test_an_impossible_mounting_is_refused_with_the_reason(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        Mounting(**kwargs)


@pytest.mark.parametrize("kwargs", [{"time_constant": -1.0}, {"time_constant": math.nan},
                                    {"time_constant": math.inf}, {"max_visibility": 0.0},
                                    {"max_visibility": math.nan}, {"max_visibility": math.inf}])
def test_impossible_smoothing_or_visibility_limits_are_refused(kwargs: dict):
    """A NaN time constant would make the smoothed fog alternate with NaN frame after frame; an infinite
    max_visibility would divide by a clear frame's beta of 0."""
    with pytest.raises(ValueError, match="time constant must be|max visibility must be"):
        VisibilityEstimator(MOUNT, **kwargs)


def test_intrinsics_need_positive_finite_focal_lengths_and_a_finite_centre():
    assert Intrinsics.from_k([500.0, 0, 320.0, 0, 510.0, 240.0, 0, 0, 1]) == Intrinsics(500.0, 510.0, 320.0, 240.0)
    with pytest.raises(ValueError, match="positive focal lengths"):
        Intrinsics.from_k([0.0] * 9)
    for broken in ([math.inf, 0, 320.0, 0, 510.0, 240.0, 0, 0, 1], [500.0, 0, math.nan, 0, 510.0, 240.0, 0, 0, 1]):
        with pytest.raises(ValueError, match="must be finite"):
            Intrinsics.from_k(broken)


def test_pixels_that_show_only_fog_have_no_metric_depth_whatever_floor_the_method_clips_t_at():
    beta = KOSCHMIEDER / 60.0
    t, _ = road_scene(beta)
    clear = np.random.default_rng(0).uniform(0.1, 0.4, SHAPE + (3,))
    frame = ((clear * t[:, :, None] + 0.9 * (1.0 - t[:, :, None])) * 255.0 + 0.5).astype(np.uint8)
    frame[t <= T_MIN] = round(0.9 * 255)  # the sky: the airlight itself
    floored = np.maximum(t, 0.1)  # a method that never reports t below 0.1 (the dark channel prior's t0)
    contrast = fog_contrast(frame)
    depth = metric_depth(floored, beta, ray_norms(SHAPE, CAMERA), contrast)
    assert np.isnan(depth[contrast < 0.02]).all() and np.isnan(depth[:200]).all()
    assert np.isfinite(metric_depth(floored, beta, ray_norms(SHAPE, CAMERA))[:200]).all()  # without the test
    assert np.isfinite(depth).sum() > 0.2 * depth.size


def test_the_contrast_against_coloured_fog_over_real_depth_is_the_scene_s_own(middlebury_scene):
    """Bluish fog (BGR airlight 0.95, 0.85, 0.7) over Middlebury's true depth under a band of sky (fog alone):
    the contrast against the airlight is |J - A| t / A, the scene's own, and metric depth is left out exactly where
    it falls below Koschmieder's 2 %, faint but real scene included. A grey airlight cannot tell a channel order
    reversed."""
    image, depth = middlebury_scene
    airlight = np.array([0.95, 0.85, 0.7])
    filled = np.where(np.isfinite(depth), depth, np.nanmax(depth))
    filled[:60] = np.inf  # the sky
    t = np.exp(-0.3 * filled)[:, :, None]
    clear = image / 255.0
    frame = np.clip((clear * t + airlight * (1.0 - t)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    true = (np.abs(clear - airlight) * t / airlight).max(axis=2)
    contrast = fog_contrast(frame)
    assert np.percentile(np.abs(contrast - true), 99) < 0.01 and np.percentile(true, 90) > 0.25
    faint = (contrast >= 0.005) & (contrast < 0.02) & (true > 0.004)  # the scene, faint behind the fog
    assert faint.sum() > 50
    transmission = np.clip(t[:, :, 0], 0.2, 0.9).astype(np.float32)  # a method's t: the contrast alone decides
    kept = np.isfinite(metric_depth(transmission, 0.5, np.ones_like(transmission), contrast))
    np.testing.assert_array_equal(kept, contrast >= 0.02)
    assert not kept[faint].any() and not kept[:60].any() and kept[true > 0.05].mean() > 0.99


def test_fog_thinner_than_max_visibility_reads_as_no_fog():
    t, _ = road_scene(KOSCHMIEDER / 300.0)
    reading = VisibilityEstimator(MOUNT, time_constant=0.0).update(t, CAMERA, stamp=0.0)  # default: 200 m
    assert reading.measurement.beta == pytest.approx(KOSCHMIEDER / 300.0, rel=0.01)
    assert math.isnan(reading.visibility) and reading.reason == "no fog to measure (visibility beyond 200 m)"


OPTICAL_IN_BASE = Rotation.from_quat([-0.5, 0.5, -0.5, 0.5])
"""REP-103 optical axes (z forward, x right, y down) in a REP-105 base frame (x forward, y left, z up): a level
camera looking ahead."""


@pytest.mark.parametrize("pitch", [0.0, 0.1, -0.2])
@pytest.mark.parametrize("yaw", [0.0, 1.2])
def test_height_and_pitch_come_from_the_camera_pose_in_a_frame_on_the_road(pitch: float, yaw: float):
    """The pose TF gives for camera -> base_footprint: nose down by `pitch` about the base's y axis (REP-103:
    positive pitch looks down), turned by `yaw`; the camera's yaw on the car does not change its pitch."""
    pose = Rotation.from_euler("ZY", [yaw, pitch]) * OPTICAL_IN_BASE
    height, found = height_and_pitch((0.8, -0.1, 1.45), pose.as_quat())
    assert height == pytest.approx(1.45) and found == pytest.approx(pitch, abs=1e-9)
    t, _ = road_scene(KOSCHMIEDER / 150.0, Mounting(height, found))  # the mounting then measures the fog
    estimator = VisibilityEstimator(Mounting(height, found), time_constant=0.0, max_visibility=1000.0)
    assert estimator.update(t, CAMERA, stamp=0.0).visibility == pytest.approx(150.0, rel=0.01)


@pytest.mark.parametrize("roll", [0.5, -1.0, math.pi])
def test_a_camera_rolled_about_its_optical_axis_is_refused_with_its_roll(roll: float):
    """The flat road's distances assume no roll: a camera mounted upside down (roll pi in TF) read its sky, at the
    transmission's floor, as fog hiding the road, 'at most 5 m' on a clear day; a small roll still measures."""
    rolled = Rotation.from_euler("ZY", [0.3, 0.05]) * OPTICAL_IN_BASE * Rotation.from_euler("z", roll)
    with pytest.raises(ValueError, match=f"rolled {roll:.2f} rad about its optical axis"):
        height_and_pitch((0.0, 0.0, 1.5), rolled.as_quat())
    slight = Rotation.from_euler("ZY", [0.3, 0.05]) * OPTICAL_IN_BASE * Rotation.from_euler("z", 0.1)
    assert height_and_pitch((0.0, 0.0, 1.5), slight.as_quat()) == pytest.approx((1.5, 0.05))


@pytest.mark.parametrize("pitch", [0.0, 0.17, -0.1])
def test_a_body_frame_given_for_the_optical_frame_is_refused_as_such(pitch: float):
    """A driver stamping its images with camera_link (x forward, y left, z up) rather than camera_optical_frame: TF's
    pose is the base's axes, pitched. Taken as an optical frame it looks up 80-90 degrees, or reads as rolled 1.57
    rad (nose down): either message sent the user after a roll or a pitch the camera does not have."""
    body = Rotation.from_euler("ZY", [0.3, pitch])
    with pytest.raises(ValueError, match="body frame .camera_link.*optical frame"):
        height_and_pitch((0.0, 0.0, 1.5), body.as_quat())


@pytest.mark.parametrize("degrees", [2.0, 5.0, 10.0, -1.0, -2.0])
def test_a_static_transform_whose_pitch_is_in_degrees_is_refused_naming_degrees(degrees: float):
    """static_transform_publisher --pitch 5 for 5 degrees on camera_link: TF reads 5 rad, a camera turned over
    past the vertical. It was refused as rolled 3.14 rad or as a body frame, neither of which the mounting was:
    the reason now also asks whether its angles were given in degrees."""
    pose = Rotation.from_euler("y", degrees) * OPTICAL_IN_BASE  # base_footprint -> camera_link -> optical frame
    with pytest.raises(ValueError, match="given in degrees"):
        height_and_pitch((1.2, 0.0, 1.65), pose.as_quat())


def test_a_camera_looking_straight_down_is_refused_for_its_pitch_not_a_roll_it_does_not_have():
    """Looking straight down, roll about the optical axis is undefined: no 'rolled 3.14 rad' for it."""
    down = (math.sqrt(0.5), -math.sqrt(0.5), 0.0, 0.0)  # optical z down, x right, y (the image's down) backward
    with pytest.raises(ValueError, match="camera pitch must lie within"):
        Mounting(*height_and_pitch((0.0, 0.0, 1.5), down))


def test_a_new_mounting_changes_the_road_geometry_and_keeps_the_smoothed_fog():
    estimator = VisibilityEstimator(MOUNT, time_constant=10.0, max_visibility=1000.0)
    estimator.update(road_scene(KOSCHMIEDER / 100.0)[0], CAMERA, stamp=0.0)
    lower = Mounting(height=1.0, pitch=0.05)
    estimator.remount(lower)
    reading = estimator.update(road_scene(KOSCHMIEDER / 100.0, lower)[0], CAMERA, stamp=0.1)
    assert reading.measurement.beta == pytest.approx(KOSCHMIEDER / 100.0, rel=0.01)  # measured on the new geometry
    assert reading.visibility == pytest.approx(100.0, rel=0.01)


def test_a_pose_without_a_rotation_is_refused():
    with pytest.raises(ValueError, match="unit quaternion"):
        height_and_pitch((0.0, 0.0, 1.5), (0.0, 0.0, 0.0, 0.0))


def test_no_metric_depth_lies_under_the_road_plane():
    """A method whose transmission reads a patch of road as fog twice as deep as it is (grey asphalt read as haze)
    put that road's points below the road plane, twice their distance away; each pixel below the horizon reads at
    most the flat road's Z there. Road read right, and the objects standing on it, keep their depth."""
    beta = KOSCHMIEDER / 150.0
    t, true_z = road_scene(beta)
    too_deep = t.copy()
    too_deep[400:, 100:200] = t[400:, 100:200] ** 2
    car = too_deep.copy()
    car[300:330, 300:340] = np.exp(-beta * 5.0)  # a car 5 m away, nearer than the road behind it (7-9 m)
    estimator = VisibilityEstimator(MOUNT, time_constant=0.0, max_visibility=1000.0)
    reading = estimator.update(car, CAMERA, 0.0, objects=BetaMeasurement(beta, 1, source="objects"))
    assert reading.measurement.source == "objects"
    patch, road = reading.depth[400:, 100:200], true_z[400:, 100:200]
    assert np.isfinite(patch).any() and np.allclose(patch[np.isfinite(patch)], road[np.isfinite(patch)], rtol=1e-5)
    near = np.isfinite(reading.depth[300:330, 300:340])
    assert near.any() and np.allclose(reading.depth[300:330, 300:340][near], 5.0 / ray_norms(SHAPE, CAMERA)[
        300:330, 300:340][near], rtol=1e-4)
    assert (reading.depth[np.isfinite(reading.depth)] <= true_z[np.isfinite(reading.depth)] * (1 + 1e-5)).all()


def test_a_pitch_is_said_in_degrees_and_a_level_camera_as_level_whatever_the_sign_of_its_rounding() -> None:
    """The horizon note and the node's TF log said a pitch of 0 as "nose down" and "nose up"."""
    assert [pitch_words(p) for p in (0.0, -0.0, 0.004, -0.004)] == ["level"] * 4
    assert pitch_words(-0.0004, 1) == "level" and pitch_words(0.02, 1) == "1.1 degrees nose down"
    assert pitch_words(1.0) == "57 degrees nose down" and pitch_words(-0.1) == "6 degrees nose up"
