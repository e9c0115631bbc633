"""The node's fog outputs over real DDS: ~/visibility (sensor_msgs/Range) with the frame's header, ~/depth in metres
with NaN where untrustworthy, ~/depth_relative, and what it publishes without a camera mounting."""
from __future__ import annotations

import math
import os
import threading
import time
from typing import Iterator

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs ROS 2 (pip ros-* wheels or a ROS install)")

from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, Range  # noqa: E402

from dgdehaze_core.benchmarks.timing import hazy_test_frame  # noqa: E402
from dgdehaze_core.detection.detector import default_detector_weights  # noqa: E402
from dgdehaze_core.evaluation.depth_datasets import load_kitti  # noqa: E402
from dgdehaze_core.evaluation.depth_eval import dense_depth  # noqa: E402
from dgdehaze_core.evaluation.visibility_eval import SKY_DISTANCE, kitti_intrinsics, synthesize_fog  # noqa: E402
from dgdehaze_core.physics.lens import distortion_note  # noqa: E402
from dgdehaze_core.physics.visibility import (KOSCHMIEDER, Intrinsics, Mounting, field_of_view,  # noqa: E402
                                              VisibilityEstimator, ground_range, intrinsics_of, ray_norms,
                                              resized_calibration, size_mismatch)
from dgdehaze_ros.conversions import bgr8_to_image, image_to_array  # noqa: E402
from dgdehaze_ros.detection_messages import VISION_MSGS_AVAILABLE  # noqa: E402
from dgdehaze_ros.mounting_tf import TF_AVAILABLE, MountingUnavailable, on_jump_back  # noqa: E402
from dgdehaze_ros import node as node_module  # noqa: E402
from dgdehaze_ros.node import DehazeNode, create_node  # noqa: E402
from dgdehaze_ros.rclpy_compat import publisher_count  # noqa: E402

from ros_harness import (Probe, RosSession, camera_info, send_and_wait, stamped_header, wait_until,  # noqa: E402
                         stamped_outputs, wait_for_outputs)

pytestmark = pytest.mark.ros

NAME = "dgdehaze_fog"
WIDTH, HEIGHT = 320, 240
HEIGHT_M = 1.5
CAMERA = Intrinsics(500.0, 500.0, WIDTH / 2, HEIGHT / 2)  # what ros_harness.camera_info sends


def foggy_road(visibility: float) -> tuple[np.ndarray, np.ndarray]:
    """A grey textured road under fog of `visibility` (m) seen by CAMERA 1.5 m up, level, the sky white fog; and
    the road's true Z (m, NaN above the horizon)."""
    distance = ground_range((HEIGHT, WIDTH), CAMERA, Mounting(HEIGHT_M, 0.0))
    clear = np.full((HEIGHT, WIDTH, 3), (0.25, 0.27, 0.3)) + np.random.default_rng(0).uniform(-0.08, 0.08,
                                                                                              (HEIGHT, WIDTH, 1))
    t = np.exp(-(KOSCHMIEDER / visibility) * np.nan_to_num(distance, nan=1e4))[:, :, None]
    hazy = np.clip(clear * t + 0.9 * (1.0 - t), 0.0, 1.0)
    return (hazy * 255.0 + 0.5).astype(np.uint8), distance / ray_norms((HEIGHT, WIDTH), CAMERA)


@pytest.fixture(scope="module")
def node(session: RosSession) -> Iterator[DehazeNode]:
    dgdehaze = create_node({"model": "dcp", "detection_enabled": False, "diagnostics_period": 0.2,
                            "camera_height": HEIGHT_M, "camera_pitch": 0.0, "visibility_smoothing": 0.0},
                           name=NAME, remappings={"image": "/camera/image", "camera_info": "/camera/camera_info"},
                           context=session.context)
    session.add(dgdehaze)
    yield dgdehaze
    session.remove(dgdehaze)


@pytest.fixture(scope="module")
def probe(session: RosSession, node: DehazeNode) -> Probe:
    probe = Probe(session.context, node_path=f"/{NAME}")
    session.add(probe)
    probe.connect()
    return probe


def outputs_for(probe: Probe, msg: Image, topics: tuple[str, ...], timeout: float = 20.0) -> dict[str, object]:
    """`send_and_wait`, then also each fog output the frame brought (None for one it did not)."""
    send_and_wait(probe, msg, topics, timeout)
    time.sleep(0.2)  # whatever else the frame brought has arrived too
    return {t: (stamped_outputs(probe, t, msg.header) or [None])[0]
            for t in ("depth", "depth_relative", "visibility", *topics)}


def diagnostic_values(probe: Probe) -> dict[str, str]:
    for array in reversed(probe.messages("diagnostics")):
        for status in array.status:
            if NAME in status.name:
                return {kv.key: kv.value for kv in status.values}
    return {}


def test_visibility_is_a_range_in_metres_with_the_frames_header_and_depth_is_metric_with_nan_in_the_sky(
        node: DehazeNode, probe: Probe) -> None:
    frame, true_z = foggy_road(visibility=60.0)
    msg = bgr8_to_image(frame, "bgr8", stamped_header(301))
    out = outputs_for(probe, msg, ("visibility", "depth", "depth_relative"))
    visibility, depth = out["visibility"], out["depth"]
    assert isinstance(visibility, Range)
    for message in (visibility, depth, out["depth_relative"]):
        assert message.header == msg.header
    assert 30.0 < visibility.range < 120.0, "the road under 60 m fog, as the dark channel prior sees it"
    assert visibility.max_range == pytest.approx(200.0) and visibility.field_of_view == pytest.approx(
        2 * math.atan(WIDTH / 1000.0))
    metres = image_to_array(depth)
    assert depth.encoding == "32FC1" and metres.shape == (HEIGHT, WIDTH)
    assert np.isnan(metres[: HEIGHT // 2]).all(), "the sky (white fog above the horizon) has no depth"
    near_road = np.isfinite(metres) & (true_z < 30.0)
    assert near_road.sum() > 1000
    ratio = np.median(metres[near_road] / true_z[near_road])
    assert 0.5 < ratio < 2.0, f"metric depth on the road is {ratio:.2f} x the truth"
    assert probe.wait_for(lambda: "visibility_m" in diagnostic_values(probe), 5.0)
    assert float(diagnostic_values(probe)["fog_road_pixels"]) > 0


def test_without_a_mounting_only_the_relative_depth_is_published(node: DehazeNode, probe: Probe) -> None:
    frame, _ = foggy_road(visibility=60.0)
    result = node.set_parameters([Parameter("camera_height", value=0.0)])[0]
    assert result.successful, result.reason
    try:
        out = outputs_for(probe, bgr8_to_image(frame, "bgr8", stamped_header(302)), ("depth_relative",))
        assert out["depth"] is None and out["visibility"] is None
        assert probe.wait_for(lambda: diagnostic_values(probe).get("visibility") == "off: no camera_height", 5.0)
    finally:
        assert node.set_parameters([Parameter("camera_height", value=HEIGHT_M)])[0].successful
    out = outputs_for(probe, bgr8_to_image(frame, "bgr8", stamped_header(303)), ("depth", "visibility"))
    assert math.isfinite(out["visibility"].range)


def test_the_first_frame_gets_the_camera_info_sent_just_after_it(session: RosSession) -> None:
    """image_transport's CameraPublisher sends each frame before its camera_info: the first frame after activation
    waits for it briefly, so it too has ~/depth and ~/visibility."""
    name = "dgdehaze_first_info"
    first = create_node({"model": "dcp", "detection_enabled": False, "camera_height": HEIGHT_M,
                         "camera_pitch": 0.0}, name=name,
                        remappings={"image": "/first/image"},  # camera_info beside it, as CameraSubscriber
                        context=session.context)
    session.add(first)
    camera = Probe(session.context, node_path=f"/{name}", image_topic="/first/image",
                   info_topic="/first/camera_info", name="first_camera")
    session.add(camera)
    try:
        # matched on both sides: a camera_info the node has not yet accepted the publisher of would be dropped
        inputs = [s for s in first.subscriptions if s.topic_name.startswith("/first/")]
        assert len(inputs) == 2 and camera.wait_for_subscribers()
        assert camera.wait_for(lambda: all(publisher_count(first, s) > 0 for s in inputs), 10.0)
        frame, _ = foggy_road(visibility=60.0)
        msg = bgr8_to_image(frame, "bgr8", stamped_header(310))
        info = camera_info(WIDTH, HEIGHT)
        info.header = msg.header
        camera.image_pub.publish(msg)
        time.sleep(0.1)  # longer than dehazing this frame takes: the node must wait, not win a race
        camera.info_pub.publish(info)
        out = wait_for_outputs(camera, msg.header, ("depth", "visibility"))  # none without its camera_info
        assert math.isfinite(out["visibility"].range)
    finally:
        session.remove(camera)
        session.remove(first)


@pytest.mark.parametrize("name, value, reason", [
    ("camera_height", 25.0, "camera_height"),
    ("camera_pitch", -2.0, "camera_pitch"),
    ("road_region", [0.2, 0.5, 0.8], "road_region must be"),
    ("road_region", [0.2, 0.9, 0.8, 0.5], "top < bottom"),
    ("max_visibility", 5.0, "max_visibility"),
    ("base_frame", "/base_footprint", "no leading slash"),
    ("image_rectified", "maybe", "image_rectified must be one of auto, true, false"),
])
def test_fog_parameters_out_of_range_are_refused_with_the_reason(node: DehazeNode, name: str, value: object,
                                                                 reason: str) -> None:
    before = node.get_parameter(name).value
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful and reason in result.reason, result.reason
    assert node.get_parameter(name).value == before


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector")
def test_detections_carry_the_road_depth_under_their_box_else_its_median_metric_depth(node: DehazeNode,
                                                                                      probe: Probe) -> None:
    """A box whose bottom stands on the road in view (not cut off by the frame, within road_max_distance) is at the
    road's z there, from the camera's height alone; any other at the median of ~/depth in it."""
    assert node.set_parameters([Parameter("detection_enabled", value=True)])[0].successful
    try:
        assert probe.wait_for(lambda: diagnostic_values(probe).get("detector", "off") != "off", 60.0), \
            "the detector never loaded"
        frame = hazy_test_frame(640, 480)  # a KITTI road with cars under haze
        msg = bgr8_to_image(frame, "bgr8", stamped_header(304))
        out = outputs_for(probe, msg, ("depth", "detections", "camera_info"), timeout=60.0)
    finally:
        assert node.set_parameters([Parameter("detection_enabled", value=False)])[0].successful
    metres = image_to_array(out["depth"])
    fx, _, ox, _, fy, oy = out["camera_info"].k[:6]
    detections = out["detections"].detections
    assert detections, "YOLO found nothing on a KITTI road scene"
    on_road = 0
    for detection in detections:  # the object's position in metres in the optical frame (vision_msgs, REP-103)
        cx, cy = detection.bbox.center.position.x, detection.bbox.center.position.y
        w, h = detection.bbox.size_x, detection.bbox.size_y
        bottom = cy + h / 2
        contact = HEIGHT_M / ((bottom - oy) / fy) if bottom > oy else math.inf  # level camera: z = height / y
        if bottom < 0.98 * 480 and contact * math.hypot(1.0, (cx - ox) / fx, (bottom - oy) / fy) <= 30.0:
            z = contact
            on_road += 1
        else:
            box = metres[max(0, math.floor(cy - h / 2)):math.ceil(bottom),
                         max(0, math.floor(cx - w / 2)):math.ceil(cx + w / 2)]
            z = float(np.nanmedian(box)) if np.isfinite(box).any() else math.nan
        position = detection.results[0].pose.pose.position
        assert (position.x, position.y, position.z) == pytest.approx(
            ((cx - ox) / fx * z, (cy - oy) / fy * z, z), rel=1e-4, abs=1e-6, nan_ok=True)
    assert any(math.isfinite(d.results[0].pose.pose.position.z) for d in detections), "no box has a metric depth"
    assert any(abs(d.results[0].pose.pose.position.x) > 0.1 for d in detections), "objects off the optical axis"
    assert on_road, "no box stands on the road in view"


def test_fog_that_hides_the_road_is_reported_as_the_most_the_visibility_can_be() -> None:
    """A white-out: /diagnostics and the debug banner say the visibility is a bound, not a measurement."""
    from dgdehaze_ros.visibility_messages import fog_banner, fog_diagnostics

    camera = Intrinsics(500.0, 500.0, 320.0, 240.0)
    estimator = VisibilityEstimator(Mounting(1.5, 0.0), time_constant=0.0)
    reading = estimator.update(np.full((480, 640), 0.05, np.float32), camera, 0.0)
    values = fog_diagnostics(estimator, reading)
    assert values["visibility"] == "at most visibility_m: fog hides the road in view"
    assert 0.0 < float(values["visibility_m"]) < 15.0
    assert f"visibility at most {reading.visibility:.0f} m" in fog_banner(reading, 0.9)


def test_camera_info_of_another_resolution_is_scaled_to_the_frame() -> None:
    info = camera_info(640, 480)  # K for 640x480: f 500, centre (320, 240)
    assert intrinsics_of(info, (240, 320)) == Intrinsics(250.0, 250.0, 160.0, 120.0)
    assert intrinsics_of(info, (480, 640)) == Intrinsics(500.0, 500.0, 320.0, 240.0)
    assert intrinsics_of(info, (360, 640)) is None, "a 4:3 calibration does not describe 16:9 frames"
    assert "another aspect ratio" in size_mismatch(info, (360, 640)) and not size_mismatch(info, (240, 320))
    info.k = [0.0] * 9
    assert intrinsics_of(info, (480, 640)) is None


def test_a_rectified_camera_s_intrinsics_come_from_p_not_from_the_raw_image_s_k() -> None:
    info = camera_info(1242, 375)  # KITTI's camera 2 as kitti2bag publishes it: K of the raw image, P rectified
    info.k = [959.8, 0.0, 696.0, 0.0, 956.9, 224.2, 0.0, 0.0, 1.0]
    info.p = [721.5, 0.0, 609.6, 44.9, 0.0, 721.5, 172.9, 0.2, 0.0, 0.0, 1.0, 0.003]
    assert intrinsics_of(info, (375, 1242)) == Intrinsics(721.5, 721.5, 609.6, 172.9)
    info.p = [0.0] * 12  # an uncalibrated rectification: K
    assert intrinsics_of(info, (375, 1242)) == Intrinsics(959.8, 956.9, 696.0, 224.2)


def test_camera_info_with_a_region_of_interest_and_binning_describes_that_image() -> None:
    info = camera_info(640, 480)  # calibrated at 640x480: f 500, centre (320, 240)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 0, 240, 640, 240  # the lower half
    assert intrinsics_of(info, (240, 640)) == Intrinsics(500.0, 500.0, 320.0, 0.0)
    full_width = 2 * math.atan(640 / (2 * 500.0))
    assert field_of_view(info) == pytest.approx(full_width)  # the lower half spans the calibration's width
    info.binning_x = info.binning_y = 2  # the lower half, binned 2x2: a 320x120 image
    assert intrinsics_of(info, (120, 320)) == Intrinsics(250.0, 250.0, 160.0, 0.0)
    assert field_of_view(info) == pytest.approx(full_width), "binning changes no angle (rviz's cone)"
    info.roi.x_offset, info.roi.width = 160, 320  # the centre half of the width, binned
    assert field_of_view(info) == pytest.approx(2 * math.atan(320 / (2 * 500.0)))
    assert field_of_view(info, (240, 320)) == pytest.approx(field_of_view(info)), "a frame scaled alike: one angle"


def test_the_field_of_view_of_a_camera_info_without_an_image_size_is_the_frame_s() -> None:
    info = camera_info(0, 0)  # a driver that fills K alone
    info.k = [500.0, 0.0, 160.0, 0.0, 500.0, 120.0, 0.0, 0.0, 1.0]
    assert field_of_view(info, (240, 320)) == pytest.approx(2 * math.atan(320 / (2 * 500.0)))
    assert field_of_view(info) == 0.0, "no size and no frame: unknown"
    assert field_of_view(camera_info(640, 480), (480, 320)) == 0.0, "another aspect ratio: not this frame's camera"


@pytest.mark.skipif(TF_AVAILABLE, reason="tf2_ros is installed: base_frame is accepted")
def test_without_tf2_ros_a_base_frame_is_refused_with_what_to_do_instead(node: DehazeNode) -> None:
    result = node.set_parameters([Parameter("base_frame", value="base_footprint")])[0]
    assert not result.successful and "tf2_ros" in result.reason and "camera_height" in result.reason
    assert node.get_parameter("base_frame").value == ""


class AwaitingTransform:
    """What `TfMounting` answers while TF has no transform from the road frame to the camera (tf2_ros, which is
    not on PyPI, is not here to give one)."""

    base_frame = "base_footprint"

    def height_and_pitch(self, frame_id: str) -> tuple[float, float]:
        raise MountingUnavailable(f'"{self.base_frame}" passed to lookupTransform does not exist')

    def close(self) -> None:
        pass


def test_while_tf_has_not_placed_the_camera_detections_carry_nan_and_diagnostics_say_why(node: DehazeNode) -> None:
    from dgdehaze_core.inference.frame_chain import FrameChain
    from dgdehaze_core.inference.pipeline import load_pipeline
    from dgdehaze_ros.fog_measurement import FogMeasurement
    from dgdehaze_ros.parameters import read_settings

    fog = FogMeasurement(node)
    fog._settings, fog.tf = read_settings(node), AwaitingTransform()
    chain = FrameChain(load_pipeline("dcp"), fog=fog.estimator_for_frame("camera_optical_frame"))
    dehazed = chain.dehaze(foggy_road(40.0)[0])
    assert fog.measure(chain, dehazed, camera_info(640, 480), stamped_header(300)) is None
    assert np.isnan(fog.distance_map(chain, dehazed, None)).all(), "a relative depth would read as metres"
    assert fog.diagnostics()["visibility"].startswith("off: no transform from base_frame base_footprint")


def test_diagnostics_read_while_a_frame_is_measured_keep_the_last_reading(node: DehazeNode) -> None:
    """/diagnostics runs on the executor while the frame worker measures the next frame: what it reads then is the
    last frame's reading, not 'waiting for a frame with camera_info' without any visibility."""
    from dgdehaze_core.inference.frame_chain import FrameChain
    from dgdehaze_core.inference.pipeline import load_pipeline
    from dgdehaze_ros.fog_measurement import FogMeasurement
    from dgdehaze_ros.parameters import read_settings

    fog = FogMeasurement(node)
    fog.restart(read_settings(node))
    read_meanwhile = []

    class DiagnosedChain(FrameChain):
        def measure_fog(self, *args, **kwargs):  # the diagnostics timer firing while this frame is measured
            read_meanwhile.append(dict(fog.diagnostics()))
            return super().measure_fog(*args, **kwargs)

    chain = DiagnosedChain(load_pipeline("dcp"), fog=fog.estimator_for_frame("camera_optical_frame"))
    dehazed = chain.dehaze(foggy_road(40.0)[0])
    for index in range(3):
        assert fog.measure(chain, dehazed, camera_info(WIDTH, HEIGHT), stamped_header(310 + index)) is not None
    assert [values.get("visibility") for values in read_meanwhile[1:]] == ["measured"] * 2, read_meanwhile
    assert float(read_meanwhile[-1]["visibility_m"]) == pytest.approx(fog.reading.visibility, abs=0.05)


def test_the_tf_mounting_is_cleared_when_a_looping_bag_sets_the_clock_back(session: RosSession) -> None:
    """`TfMounting` clears its tf2 buffer on `on_jump_back` (tf2_ros, not on PyPI, is not here to hold transforms):
    it fires when a bag played with --loop sets /clock back to its start, not while the clock runs on or pauses."""
    import rclpy
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    sim = rclpy.create_node(f"looped_{os.getpid()}", context=session.context,
                            parameter_overrides=[Parameter("use_sim_time", value=True)])
    player = rclpy.create_node(f"bag_player_{os.getpid()}", context=session.context)
    clock = player.create_publisher(Clock, "/clock", 10)
    cleared: list[int] = []
    jumps = on_jump_back(sim, lambda: cleared.append(sim.get_clock().now().nanoseconds))
    session.add(sim)
    session.add(player)

    def play(sec: int) -> None:
        assert wait_until(lambda: clock.publish(Clock(clock=Time(sec=sec))) or
                          sim.get_clock().now().nanoseconds == sec * 10**9, 10.0), f"/clock {sec} never came"

    try:
        for sec in (1000, 1005, 1005, 1020):  # the first loop, paused a moment
            play(sec)
        assert cleared == []
        play(1000)  # the loop starts again
        assert cleared == [1000 * 10**9], "the old loop's transforms were kept"
        jumps.unregister()  # closed: base_frame changed, or the node cleaned up
        play(1020)
        play(1000)
        assert cleared == [1000 * 10**9]
    finally:
        session.remove(player)
        session.remove(sim)


class SinkingTransform:
    """TF placing the camera below base_frame's plane, lower each frame: a base_frame whose z is not the road's
    (odom or map on a vehicle going downhill)."""

    base_frame = "odom"

    def __init__(self) -> None:
        self.height = -0.3

    def height_and_pitch(self, frame_id: str) -> tuple[float, float]:
        self.height -= 0.001
        return self.height, 0.05


def test_a_mounting_tf_refuses_each_frame_is_warned_of_once(node: DehazeNode, capfd: pytest.CaptureFixture) -> None:
    from dgdehaze_ros.fog_measurement import FogMeasurement
    from dgdehaze_ros.parameters import read_settings

    fog = FogMeasurement(node)
    fog._settings, fog.tf = read_settings(node), SinkingTransform()
    capfd.readouterr()
    for _ in range(20):
        assert fog.estimator_for_frame("camera_optical_frame") is None
    warned = [line for line in capfd.readouterr().err.splitlines() if "camera height must be positive" in line]
    assert len(warned) == 1, warned
    assert fog.diagnostics()["visibility"].endswith(f"got {fog.tf.height}"), "/diagnostics has the latest reason"


@pytest.mark.parametrize("pitch", [1.0, -1.0])
def test_a_camera_pitch_that_puts_the_horizon_outside_the_frame_is_warned_of_once_as_perhaps_degrees(
        node: DehazeNode, capfd: pytest.CaptureFixture, pitch: float) -> None:
    """camera_pitch 1.0 meant as 1 degree is a camera 57 degrees nose down: every pixel of a road camera's frame, its
    sky included, was taken as road within a few metres, and ~/visibility read 14 m in 80 m fog on kitti-seq, ~/depth
    and detection distances a fifth of the LiDAR's, without a word. The node now says once that the horizon lies
    above the frame (or below it, nose up: no road in view) and that the pitch is in radians; an ordinary pitch says
    nothing."""
    from dgdehaze_core.inference.frame_chain import FrameChain
    from dgdehaze_core.inference.pipeline import load_pipeline
    from dgdehaze_ros.fog_measurement import FogMeasurement
    from dgdehaze_ros.parameters import NodeSettings, read_settings

    dehazed = None
    for camera_pitch, said in ((0.05, 0), (pitch, 1)):
        fog = FogMeasurement(node)
        fog.restart(NodeSettings({**read_settings(node).values, "camera_height": HEIGHT_M,
                                  "camera_pitch": camera_pitch}))
        chain = FrameChain(load_pipeline("dcp"), fog=fog.estimator_for_frame("camera_optical_frame"))
        dehazed = dehazed or chain.dehaze(foggy_road(60.0)[0])
        capfd.readouterr()
        for index in range(3):
            fog.measure(chain, dehazed, camera_info(WIDTH, HEIGHT), stamped_header(500 + index))
        warned = [line for line in capfd.readouterr().err.splitlines() if "horizon" in line]
        assert len(warned) == said, warned
    assert ("above" if pitch > 0 else "below") in warned[0] and "57 degrees" in warned[0], warned[0]
    assert "is in radians" in warned[0] and "1 degree is 0.017 rad" in warned[0], warned[0]


class StaticTransform:
    """TF placing the camera as a static transform from base_link does on a vehicle whose base_link sits 0.3 m above
    the road: 1.35 m up where the camera is 1.65 m above the road, pitched 0.02 rad nose down."""

    base_frame = "base_link"

    def height_and_pitch(self, frame_id: str) -> tuple[float, float]:
        return 1.35, 0.02

    def close(self) -> None:
        pass


def test_the_mounting_tf_gives_is_said_once_and_on_diagnostics(node: DehazeNode, capfd: pytest.CaptureFixture) -> None:
    """With a base_frame nothing said what height and pitch TF gave: a base_frame above the road (base_link), or a
    pitch lost in a static transform, shortened or stretched every distance unseen. The first mounting TF gives is
    logged once, and /diagnostics carries the mounting in use, the parameters' too."""
    from dgdehaze_core.inference.frame_chain import FrameChain
    from dgdehaze_core.inference.pipeline import load_pipeline
    from dgdehaze_ros.fog_measurement import FogMeasurement
    from dgdehaze_ros.parameters import NodeSettings, read_settings

    fog = FogMeasurement(node)
    fog._settings, fog.tf = NodeSettings({**read_settings(node).values, "base_frame": "base_link"}), StaticTransform()
    capfd.readouterr()
    chain = FrameChain(load_pipeline("dcp"), fog=fog.estimator_for_frame("camera_optical_frame"))
    dehazed = chain.dehaze(foggy_road(60.0)[0])
    for index in range(3):
        chain.fog = fog.estimator_for_frame("camera_optical_frame")
        fog.measure(chain, dehazed, camera_info(WIDTH, HEIGHT), stamped_header(600 + index))
    captured = capfd.readouterr()
    said = [line for line in (captured.out + captured.err).splitlines() if "TF places the camera" in line]
    assert len(said) == 1, said
    assert "1.35 m above the road" in said[0] and "0.020 rad (1.1 degrees nose down)" in said[0], said[0]
    assert "camera_optical_frame" in said[0] and "base_link" in said[0], said[0]
    values = fog.diagnostics()
    assert (values["camera_height_m"], values["camera_pitch_rad"]) == ("1.350", "0.0200"), values
    fog.tf = None
    fog.restart(NodeSettings({**read_settings(node).values, "camera_height": HEIGHT_M, "camera_pitch": -0.01}))
    assert (fog.diagnostics()["camera_height_m"], fog.diagnostics()["camera_pitch_rad"]) == ("1.500", "-0.0100")


def test_camera_info_notes_that_change_every_frame_are_kept_to_a_bound_and_throttled(
        node: DehazeNode, capfd: pytest.CaptureFixture) -> None:
    """A camera_info whose distortion model is another text in every message (with D not zero) logged a warning a
    frame and grew the node's set of notes said without limit."""
    import string

    from dgdehaze_core.inference.frame_chain import FrameChain
    from dgdehaze_core.inference.pipeline import load_pipeline
    from dgdehaze_ros.fog_measurement import SAID_REASONS, FogMeasurement
    from dgdehaze_ros.parameters import read_settings

    fog = FogMeasurement(node)
    fog.restart(read_settings(node))
    chain = FrameChain(load_pipeline("dcp"), fog=fog.estimator_for_frame("camera_optical_frame"))
    dehazed = chain.dehaze(foggy_road(40.0)[0])
    capfd.readouterr()
    frames = 3 * SAID_REASONS
    for index in range(frames):
        info = camera_info(WIDTH, HEIGHT)
        info.distortion_model = "lens_" + "".join(string.ascii_lowercase[int(digit)] for digit in f"{index:04d}")
        info.d = [0.1, 0.0, 0.0, 0.0, 0.0]
        fog.measure(chain, dehazed, info, stamped_header(400 + index), "/camera/image", None)
    warned = [line for line in capfd.readouterr().err.splitlines() if "camera_info gives lens distortion" in line]
    assert SAID_REASONS <= len(warned) < SAID_REASONS + 5, len(warned)
    assert len(fog._said) == SAID_REASONS


def test_a_parameter_change_while_tf_places_the_camera_is_not_undone_by_that_frame(node: DehazeNode) -> None:
    """The first frame TF places builds the estimator from the settings it read; a parameter change arriving on the
    executor meanwhile (its restart) was then overwritten by that frame's estimator of the old settings, whose
    max_visibility and smoothing stayed until the next change."""
    from dgdehaze_ros.fog_measurement import FogMeasurement
    from dgdehaze_ros.parameters import NodeSettings, read_settings

    before = NodeSettings({**read_settings(node).values, "base_frame": "base_footprint", "max_visibility": 200.0})
    after = NodeSettings({**before.values, "max_visibility": 500.0})
    fog = FogMeasurement(node)

    class ChangedDuringLookup:
        base_frame = "base_footprint"

        def height_and_pitch(self, frame_id: str) -> tuple[float, float]:
            fog.restart(after)  # the executor's parameter callback, while the frame worker waits for TF
            return HEIGHT_M, 0.0

        def close(self) -> None:
            pass

    fog.tf = ChangedDuringLookup()
    fog._settings = before
    assert fog.estimator_for_frame("camera_optical_frame").max_visibility == 200.0  # this frame: what it read
    assert fog.estimator is None or fog.estimator.max_visibility == 500.0
    fog.tf.height_and_pitch = lambda frame_id: (HEIGHT_M, 0.0)
    assert fog.estimator_for_frame("camera_optical_frame").max_visibility == 500.0


def test_camera_info_for_a_resized_image_is_relayed_scaled_as_the_node_reads_it(
        node: DehazeNode, probe: Probe, capfd: pytest.CaptureFixture) -> None:
    """A frame resized from the image its camera_info describes: the node scales the intrinsics to it, so
    ~/camera_info must carry them scaled, the size of ~/depth, or depth_image_proc projects ~/depth with the full
    size's K (and places points where the node's detection positions are not); the scaling is said once."""
    frame = hazy_test_frame(WIDTH, HEIGHT)  # a real KITTI road under haze, 320x240
    capfd.readouterr()
    for index in (320, 321):
        msg = bgr8_to_image(frame, "bgr8", stamped_header(index))
        probe.publish(msg, camera_info(2 * WIDTH, 2 * HEIGHT))  # calibrated at 640x480: f 500, centre (320, 240)
        out = wait_for_outputs(probe, msg.header, ("depth", "camera_info"))
        depth, relay = out["depth"], out["camera_info"]
        assert relay.header == depth.header == msg.header
        assert (relay.width, relay.height) == (depth.width, depth.height) == (WIDTH, HEIGHT)
        assert list(relay.k) == [250.0, 0.0, 160.0, 0.0, 250.0, 120.0, 0.0, 0.0, 1.0]
        assert list(relay.p) == [0.0] * 12, "an unset P stays unset"
        assert list(relay.d) == [0.0] * 5 and relay.binning_x == relay.roi.width == 0
    time.sleep(0.2)
    said = [line for line in capfd.readouterr().err.splitlines() if "describes a 640x480 image" in line]
    assert len(said) == 1 and "frames are 320x240" in said[0] and "scaled" in said[0], said
    probe.publish(bgr8_to_image(frame, "bgr8", stamped_header(322)), camera_info(WIDTH, HEIGHT))
    relay = wait_for_outputs(probe, stamped_header(322), ("camera_info",))["camera_info"]
    assert (relay.width, relay.height) == (WIDTH, HEIGHT) and relay.k[0] == 500.0, "one of the frame's size as sent"


def test_a_camera_that_changes_mode_has_each_frame_relayed_with_its_own_size_s_camera_info_never_another_mode_s(
        node: DehazeNode, probe: Probe, capfd: pytest.CaptureFixture) -> None:
    """A driver switching mode sends frames of the new size while the newest camera_info still describes the old:
    the node scaled that one onto them as if the frames were a resized copy (f 250 for a 160x120 mode whose own
    camera_info says 500; a crop or binning mode is no resize), in ~/camera_info, ~/depth and ~/visibility. Each
    frame now takes the camera_info of its stamp, else the newest of its size, else none (said once); the first
    frame of a new size waits for its camera_info, sent just after it as image_transport's CameraPublisher does."""
    road, _ = foggy_road(visibility=60.0)

    def frame(width: int, index: int) -> Image:
        return bgr8_to_image(cv2.resize(road, (width, width * 3 // 4), interpolation=cv2.INTER_AREA), "bgr8",
                             stamped_header(index))

    def relayed(msg: Image) -> tuple[int, int, list[float]]:
        relay = wait_for_outputs(probe, msg.header, ("camera_info",))["camera_info"]
        return relay.width, relay.height, list(relay.k[:6])

    capfd.readouterr()
    first = frame(WIDTH, 340)
    probe.publish(first, camera_info(WIDTH, HEIGHT))  # the old mode: f 500, centre (160, 120)
    assert relayed(first) == (WIDTH, HEIGHT, [500.0, 0.0, 160.0, 0.0, 500.0, 120.0])
    switched = frame(160, 341)
    probe.image_pub.publish(switched)  # the new mode's first frame, its camera_info just after it
    time.sleep(0.1)
    info = camera_info(160, 120)  # f 500, centre (80, 60): the mode's own calibration, not a resize's
    info.header = switched.header
    probe.info_pub.publish(info)
    assert relayed(switched) == (160, 120, [500.0, 0.0, 80.0, 0.0, 500.0, 60.0])
    back = frame(WIDTH, 342)  # the old mode again, before its camera_info: the newest of its size
    probe.image_pub.publish(back)
    assert relayed(back) == (WIDTH, HEIGHT, [500.0, 0.0, 160.0, 0.0, 500.0, 120.0])
    assert wait_for_outputs(probe, back.header, ("depth", "visibility"))
    unknown = frame(80, 343)  # a mode whose camera_info never comes: none fits
    probe.image_pub.publish(unknown)
    wait_for_outputs(probe, unknown.header, ("depth_relative",))
    time.sleep(0.2)  # whatever else the frame brought has arrived too
    assert not any(stamped_outputs(probe, topic, unknown.header) for topic in ("camera_info", "depth", "visibility"))
    said = [line for line in capfd.readouterr().err.splitlines() if "as earlier frames were" in line]
    assert said and "describes 160x120 images" in said[0] and "a frame is 80x60" in said[0], said
    source = camera_info(480, 360)  # the source of a resized copy, whose own size no frame had: scaled
    source.header = stamped_header(344)
    probe.info_pub.publish(source)
    resized = frame(240, 345)
    time.sleep(0.1)
    probe.image_pub.publish(resized)
    assert relayed(resized) == (240, 180, [250.0, 0.0, 120.0, 0.0, 250.0, 90.0])


def test_a_frame_s_dehazed_image_goes_out_before_its_wait_for_a_camera_info_that_follows_it(
        node: DehazeNode, probe: Probe, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first frame of a size waits for the camera_info sent after it (image_transport's order); the node waited
    before publishing anything, so that frame's ~/image_dehazed, which needs no camera_info, came up to the wait
    (0.5 s) late. The image goes out first; the frame still gets its camera_info (here the wait is 30 s, so that a
    slow host cannot tell the orders apart by chance)."""
    monkeypatch.setattr(node_module, "FIRST_CAMERA_INFO_WAIT_S", 30.0)
    node._camera_infos.restart_waits()  # as an activation does: an earlier test's frame had a wait go unanswered
    road, _ = foggy_road(visibility=60.0)
    first = bgr8_to_image(road, "bgr8", stamped_header(350))
    probe.publish(first, camera_info(WIDTH, HEIGHT))  # the newest camera_info is of a size frames had
    wait_for_outputs(probe, first.header, ("camera_info",))
    msg = bgr8_to_image(cv2.resize(road, (224, 168), interpolation=cv2.INTER_AREA), "bgr8", stamped_header(351))
    probe.image_pub.publish(msg)  # a size no frame had, which no camera_info describes: its own is awaited
    wait_for_outputs(probe, msg.header, ("image_dehazed",), timeout=15.0)
    info = camera_info(224, 168)
    info.header = msg.header
    probe.info_pub.publish(info)
    relay = wait_for_outputs(probe, msg.header, ("camera_info",))["camera_info"]
    assert (relay.width, relay.height, relay.k[0]) == (224, 168, 500.0)


def test_what_camera_infos_holds_stays_bounded_whatever_frame_sizes_and_camera_infos_come() -> None:
    """Bad input, frames of ever new sizes (and camera_info of ever new sizes beside them), grew the record of the
    sizes that had had their wait for a camera_info by one entry a size until the next activation, while every
    other record is kept to KEPT entries."""
    from collections import deque

    from dgdehaze_ros.camera_info import KEPT, CameraInfos

    infos = CameraInfos()

    def held() -> int:
        return sum(len(kept) for kept in vars(infos).values() if isinstance(kept, (deque, dict, set)))

    for side in range(1, 20 * KEPT):
        infos.for_frame(stamped_header(side), (side, side))  # none fits (another mode's): each size has its wait
        info = camera_info(side, side)  # the size this frame had, sent after it with another stamp
        info.header = stamped_header(100_000 + side)
        infos.add(info)
    assert held() <= 4 * KEPT, {name: len(kept) for name, kept in vars(infos).items() if hasattr(kept, "__len__")}


def test_after_waits_for_camera_infos_that_never_came_new_frame_sizes_wait_no_more() -> None:
    """Each new frame size waited up to the wait for its camera_info while the topic had a publisher: frames of ever
    new sizes (bad input), or a publisher sending none for them, cost a wait a frame (0.5 s: 2 frames a second).
    After UNANSWERED_WAITS waits end without their camera_info, later sizes take what there is at once, until the
    next activation; one that came in time ends its wait as before."""
    from dgdehaze_ros.camera_info import UNANSWERED_WAITS, CameraInfos

    infos = CameraInfos()
    infos.add(camera_info(WIDTH, HEIGHT))
    infos.for_frame(stamped_header(1), (HEIGHT, WIDTH))  # the camera's mode: its own camera_info
    for side in range(50, 50 + UNANSWERED_WAITS):
        started = time.monotonic()
        assert infos.for_frame(stamped_header(side), (side, side), wait_s=0.3)[0] is None, "another mode's only"
        assert time.monotonic() - started >= 0.3, "a new size waits"
    for side in (100, 120, 140):
        started = time.monotonic()
        assert infos.for_frame(stamped_header(side), (side, side), wait_s=1.0)[0] is None
        assert time.monotonic() - started < 0.5, "no more waits"
    infos.restart_waits()  # an activation: the first frame of a size waits again (a size that waited before
    later = camera_info(50, 50)  # too), and gets what comes in time
    later.header = stamped_header(3)
    threading.Timer(0.1, infos.add, (later,)).start()
    assert infos.for_frame(stamped_header(3), (50, 50), wait_s=10.0)[0] is later


def test_a_camera_that_changes_mode_after_a_camera_info_that_never_came_still_gets_the_new_mode_s() -> None:
    """After one wait for a camera_info ended without it (one lost in transport), no frame waited again until the
    next activation: a camera that switched mode later had its first frame of the new size go without
    ~/camera_info, ~/depth and ~/visibility, its camera_info coming just after it, as image_transport's
    CameraPublisher sends them."""
    from dgdehaze_ros.camera_info import CameraInfos

    infos = CameraInfos()
    infos.add(camera_info(WIDTH, HEIGHT))
    infos.for_frame(stamped_header(1), (HEIGHT, WIDTH))
    assert infos.for_frame(stamped_header(2), (150, 200), wait_s=0.2)[0] is None  # its camera_info never came
    switched = camera_info(2 * WIDTH, 2 * HEIGHT)
    switched.header = stamped_header(3)
    threading.Timer(0.05, infos.add, (switched,)).start()
    assert infos.for_frame(stamped_header(3), (2 * HEIGHT, 2 * WIDTH), wait_s=10.0)[0] is switched


def test_waits_answered_in_time_do_not_count_towards_unanswered_waits() -> None:
    """A camera switching between more modes than UNANSWERED_WAITS has each mode's first frame wait for the
    camera_info sent just after it: only waits that ended without one stop later waits."""
    from dgdehaze_ros.camera_info import UNANSWERED_WAITS, CameraInfos

    infos = CameraInfos()
    for index, side in enumerate(range(40, 40 + 20 * (UNANSWERED_WAITS + 1), 20)):
        info = camera_info(side, side)
        info.header = stamped_header(index + 1)
        threading.Timer(0.1, infos.add, (info,)).start()
        assert infos.for_frame(stamped_header(index + 1), (side, side), wait_s=10.0)[0] is info, side


def test_a_frame_does_not_wait_for_a_camera_info_that_cannot_come() -> None:
    """With no camera_info publisher (`may_come` false) the first frame of a size takes what there is at once."""
    from dgdehaze_ros.camera_info import CameraInfos

    infos = CameraInfos()
    started = time.monotonic()
    assert infos.for_frame(stamped_header(1), (HEIGHT, WIDTH), wait_s=2.0, may_come=lambda: False)[0] is None
    assert time.monotonic() - started < 0.5, "no wait"

def test_a_calibration_for_a_resized_copy_of_a_binned_region_of_interest_maps_k_and_p_to_the_frame() -> None:
    info = camera_info(1280, 960)  # full resolution: f 500, centre (640, 480); P: a stereo right camera's
    info.p = [500.0, 0.0, 640.0, -60.0, 0.0, 500.0, 480.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 320, 480, 640, 480
    info.binning_x = info.binning_y = 2  # the image described: 320x240, f 250, centre (160, 0)
    assert resized_calibration(info, (240, 320)) is None, "it describes the frame itself"
    k, p = resized_calibration(info, (120, 160))  # that image resized to half
    assert k == [125.0, 0.0, 80.0, 0.0, 125.0, 0.0, 0.0, 0.0, 1.0]
    assert p == [125.0, 0.0, 80.0, -15.0, 0.0, 125.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert Intrinsics(k[0], k[4], k[2], k[5]) == intrinsics_of(info, (120, 160))
    assert resized_calibration(info, (120, 320)) is None, "another aspect ratio: no resized copy"


@pytest.mark.parametrize("width, height", [(640, 192), (416, 128), (1024, 320)])
def test_kitti_s_calibration_for_a_frame_resized_unevenly_scales_x_and_y_apart_and_binning_per_axis(
        width: int, height: int) -> None:
    """KITTI's 1242x375 camera resized to a depth network's input size (640x192 changes the aspect by 0.6 %,
    416x128 by 1.9 %, 1024x320 by 3.5 %) scales K's and P's x row by the one and the y row by the other, as
    image_proc's resize does, and the relayed camera_info says so (the two larger sizes were refused as another
    aspect ratio, over a 1 % tolerance: no fog outputs); frames cut by 6 % in height are an undeclared crop, not a
    resize; a camera binned 2x1 describes a 621x375 image, its x halved and its y kept."""
    from dgdehaze_ros.camera_info import relayed_camera_info

    info = camera_info(1242, 375)
    info.k = [721.5377, 0.0, 609.5593, 0.0, 721.5377, 172.854, 0.0, 0.0, 1.0]
    info.p = [721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0, 1.0, 0.002745884]
    sx, sy = width / 1242, height / 375
    k, p = resized_calibration(info, (height, width))
    np.testing.assert_allclose(k, [721.5377 * sx, 0, 609.5593 * sx, 0, 721.5377 * sy, 172.854 * sy, 0, 0, 1])
    np.testing.assert_allclose(p, [721.5377 * sx, 0, 609.5593 * sx, 44.85728 * sx, 0, 721.5377 * sy, 172.854 * sy,
                                   0.2163791 * sy, 0, 0, 1, 0.002745884])
    relay, note = relayed_camera_info(info, stamped_header(7), (height, width))
    assert relay.header == stamped_header(7) and (relay.width, relay.height) == (width, height) and "1242x375" in note
    assert np.allclose(relay.k, k) and np.allclose(relay.p, p) and list(relay.d) == list(info.d)
    assert size_mismatch(info, (352, 1242)), "the bonnet's 23 rows cut off, undeclared: 6 % of the height, no resize"
    info.binning_x = 2
    assert intrinsics_of(info, (375, 621)) == pytest.approx(Intrinsics(721.5377 / 2, 721.5377, 609.5593 / 2, 172.854))
    assert resized_calibration(info, (375, 621)) is None, "it describes the frame itself"


KITTI_RAW_D = [-0.3691481, 0.1968681, 0.001353473, 0.0005677587, -0.06770705]
"""The lens distortion of KITTI's raw colour camera 2 (calib_cam_to_cam.txt D_02)."""


def test_lens_distortion_the_frames_still_hold_is_said_once(node: DehazeNode, probe: Probe,
                                                            capfd: pytest.CaptureFixture) -> None:
    """With image_rectified auto, frames on a topic whose name says neither rectified nor raw (here /camera/image)
    are taken as rectified (P's straight rays): a camera_info with a non-zero D is said once, with what to set."""
    frame = hazy_test_frame(WIDTH, HEIGHT)  # a real KITTI road under haze
    capfd.readouterr()
    for index in (330, 331):
        msg = bgr8_to_image(frame, "bgr8", stamped_header(index))
        info = camera_info(WIDTH, HEIGHT)
        info.d = KITTI_RAW_D
        probe.publish(msg, info)
        wait_for_outputs(probe, msg.header, ("depth",))  # the intrinsics were used
    time.sleep(0.2)
    said = [line for line in capfd.readouterr().err.splitlines() if "lens distortion" in line]
    assert len(said) == 1 and "/camera/image are taken as rectified" in said[0], said
    assert "set image_rectified to false" in said[0]
    assert not distortion_note(info, "/camera/image_rect_color/compressed", True), "a rectified image"
    assert not distortion_note(info, "/camera/image_raw", False), "raw frames undistorted"
    info.d = [0.0] * 5
    assert not distortion_note(info, "/camera/image", None), "no distortion to undo"


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector")
def test_raw_frames_detections_lie_on_their_undistorted_rays(node: DehazeNode, probe: Probe) -> None:
    """image_rectified false (a boolean, as YAML and `-p image_rectified:=false` give it) and a camera_info with
    KITTI's raw lens distortion: each object's position is its box centre's ray undistorted with K and D (as
    image_geometry's rectifyPoint), at its depth, not P's straight ray."""
    assert all(r.successful for r in node.set_parameters([Parameter("image_rectified", value=False),
                                                           Parameter("detection_enabled", value=True)]))
    try:
        assert probe.wait_for(lambda: diagnostic_values(probe).get("detector", "off") != "off", 60.0), \
            "the detector never loaded"
        frame = hazy_test_frame(640, 480)  # a KITTI road with cars under haze
        msg = bgr8_to_image(frame, "bgr8", stamped_header(340))
        info = camera_info(640, 480)
        info.d = KITTI_RAW_D
        probe.publish(msg, info)
        out = wait_for_outputs(probe, msg.header, ("depth", "detections"), timeout=60.0)
    finally:
        assert all(r.successful for r in node.set_parameters([Parameter("image_rectified", value="auto"),
                                                               Parameter("detection_enabled", value=False)]))
    k = np.array(info.k).reshape(3, 3)
    placed = 0
    for detection in out["detections"].detections:
        cx, cy = detection.bbox.center.position.x, detection.bbox.center.position.y
        position = detection.results[0].pose.pose.position
        z = position.z
        if not math.isfinite(z):
            continue
        x, y = cv2.undistortPoints(np.array([[[cx, cy]]]), k, np.array(KITTI_RAW_D),
                                   criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-9)).ravel()
        assert (position.x, position.y) == pytest.approx((x * z, y * z), rel=1e-4, abs=1e-6)
        straight = (cx - k[0, 2]) / k[0, 0]
        placed += abs(straight - x) > 0.01 * abs(x)
    assert placed, "no box off the optical axis has a metric depth"


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector")
def test_the_node_measures_the_fog_on_the_road_users_its_detector_last_found(node: DehazeNode, probe: Probe,
                                                                            shared_data) -> None:
    """A kitti-seq frame of its traffic queue in 150 m fog, twice: the first is measured on the road (no detection
    yet), the second on the cars the first one's detector found (docs/ROS.md, "Fog" item 2), as /diagnostics says."""
    folder = shared_data / "depth" / "kitti-seq"
    depth_set = load_kitti(folder)
    sample = [f for f in depth_set.frames if "/image_02/" in f.name][40].read()
    camera = kitti_intrinsics(folder, sample.name)
    frame = synthesize_fog(sample, dense_depth(sample.depth, SKY_DISTANCE, True),
                           ray_norms(sample.depth.shape, camera), 150.0)
    info = camera_info(frame.shape[1], frame.shape[0])
    info.k = [camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0]
    assert node.set_parameters([Parameter("detection_enabled", value=True)])[0].successful
    try:
        assert probe.wait_for(lambda: diagnostic_values(probe).get("detector", "off") != "off", 60.0), \
            "the detector never loaded"
        sources = []
        for stamp in (350, 351):
            msg = bgr8_to_image(frame, "bgr8", stamped_header(stamp))
            probe.publish(msg, info)
            wait_for_outputs(probe, msg.header, ("visibility", "detections"), timeout=60.0)
            assert probe.wait_for(lambda: diagnostic_values(probe).get("fog_measured_on") is not None, 5.0)
            time.sleep(0.5)  # a diagnostics period after the frame
            sources.append(diagnostic_values(probe)["fog_measured_on"])
    finally:
        assert node.set_parameters([Parameter("detection_enabled", value=False)])[0].successful
    assert sources == ["road", "objects"]
    assert int(diagnostic_values(probe)["fog_objects"]) >= 1


def test_the_fog_parameters_reach_the_estimator(node: DehazeNode) -> None:
    """visibility_smoothing is the estimator's time constant and max_visibility its thinnest fog measured."""
    from dgdehaze_ros.parameters import NodeSettings, read_settings
    from dgdehaze_ros.visibility_messages import estimator_for

    settings = NodeSettings({**read_settings(node).values, "camera_height": 1.5, "base_frame": "",
                             "visibility_smoothing": 0.0, "max_visibility": 150.0})
    estimator = estimator_for(settings)
    assert (estimator.time_constant, estimator.max_visibility, estimator.mounting.height) == (0.0, 150.0, 1.5)
    assert estimator_for(NodeSettings({**settings.values, "camera_height": 0.0})) is None


def test_a_camera_info_that_fits_the_frame_is_relayed_with_the_frames_header_and_left_as_received() -> None:
    """The camera_info's own stamp (it arrives apart from the frame) is not the outputs': the relay carries the
    frame's header, and the received message is not changed (the node keeps it for the next frames)."""
    from dgdehaze_ros.camera_info import relayed_camera_info

    info = camera_info(640, 480)
    info.header = stamped_header(3)
    header = stamped_header(9)
    relay, note = relayed_camera_info(info, header, (480, 640))
    assert note == "" and relay.header == header and list(relay.k) == list(info.k)
    assert info.header == stamped_header(3), "the received camera_info is left as it came"


def test_the_tf_mounting_is_cleared_when_the_clock_changes_source(session: RosSession) -> None:
    """use_sim_time switched on (a bag's /clock replacing the system clock) changes the clock's source: the
    buffer's transforms, stamped by the old clock, must go, as tf2_ros's C++ Buffer drops them."""
    import rclpy

    live = rclpy.create_node(f"live_then_sim_{os.getpid()}", context=session.context)
    cleared: list[bool] = []
    jumps = on_jump_back(live, lambda: cleared.append(True))
    session.add(live)
    try:
        live.set_parameters([Parameter("use_sim_time", value=True)])
        assert wait_until(lambda: bool(cleared), 10.0), "the clock changed source and TF was kept"
    finally:
        jumps.unregister()
        session.remove(live)
