"""Track identities on ~/detections (Detection2D.id) as a planner reads them, over real DDS with the shipped
detector: a camera panning across a real DAWN fog photo. An id is never handed to a second object within a run:
not after a deactivate and activate, a detector reload, or a bag that loops back."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs ROS 2 (pip ros-* wheels or a ROS install)")

from dgdehaze_core.detection.detector import default_detector_weights  # noqa: E402
from dgdehaze_core.io.images import read_image  # noqa: E402
from dgdehaze_ros.conversions import bgr8_to_image  # noqa: E402
from dgdehaze_ros.detection_messages import VISION_MSGS_AVAILABLE  # noqa: E402
from dgdehaze_ros.node import DehazeNode  # noqa: E402

from ros_harness import Probe, camera_node, send_and_wait, set_ok, stamped_header, wait_until  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                                                  reason="needs vision_msgs and the shipped detector weights")]


@pytest.fixture(scope="module")
def node(session):
    """A dcp node that tracks (bytetrack) on the raw frame, on /camera/image."""
    tracking = camera_node(session, tracker="bytetrack", detection_input="raw")
    yield tracking
    session.remove(tracking)


@pytest.fixture(scope="module")
def panning(shared_data: Path) -> list[np.ndarray]:
    """A camera turning right over a DAWN fog road with three vehicles: 480-pixel-wide views, 8 pixels apart."""
    photo = read_image(shared_data / "detection" / "dawn-fog" / "foggy-015.jpg")
    return [np.ascontiguousarray(photo[:, 8 * i:8 * i + 480]) for i in range(20)]


def track_ids(probe: Probe, frame: np.ndarray, index: int) -> list[int]:
    out = send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(index)), ("detections",), 60.0)
    return [int(d.id) for d in out["detections"].detections]


def reactivate(node: DehazeNode, probe: Probe) -> None:
    node.trigger_deactivate()
    node.trigger_activate()
    assert probe.wait_for_subscribers()
    time.sleep(0.5)  # matching is not symmetric: the node may not take samples at once


def test_ids_are_never_reused_after_an_activation_or_a_detector_reload(node: DehazeNode, probe: Probe,
                                                                        panning: list[np.ndarray]) -> None:
    """Each activation and detector load restarted the ids at 1: a planner keeping an object's state by its id
    met id 1 again on another object."""
    first = [i for index, frame in enumerate(panning[:3]) for i in track_ids(probe, frame, 600 + index)]
    assert first, "no vehicle tracked"
    reactivate(node, probe)
    again = track_ids(probe, panning[10], 610)
    assert again and min(again) > max(first), (first, again)
    given = first + again
    loaded = node._detector
    set_ok(node, imgsz=608)  # the detector reloads in the background
    try:
        assert wait_until(lambda: node._detector is not loaded, 60.0)
        reloaded = track_ids(probe, panning[0], 611)
        assert reloaded and min(reloaded) > max(given), (given, reloaded)
    finally:
        set_ok(node, imgsz=640)


def test_a_bag_that_loops_back_starts_new_tracks_and_hands_no_id_to_another_object(
        node: DehazeNode, probe: Probe, panning: list[np.ndarray]) -> None:
    """ros2 bag play --loop sends the first frames' stamps again: the tracker went on from the last frame, whose
    tracks matched the first frame's other vehicles (the second car's id went to the first car)."""
    ids = [track_ids(probe, frame, 700 + index) for index, frame in enumerate(panning)]
    seen = {i for frame_ids in ids for i in frame_ids}
    probe.clear()  # its output for the first loop's first frame
    looped = track_ids(probe, panning[0], 700)  # the first frame again, with its stamp
    assert len(looped) == len(ids[0]) > 0, "the new stream's first frame is confirmed at once"
    assert min(looped) > max(seen), f"an id of the last loop went to an object of the new one: {ids[-1]} -> {looped}"


def test_tracks_start_again_when_detection_is_enabled_again(node: DehazeNode, probe: Probe,
                                                              panning: list[np.ndarray]) -> None:
    """Frames dehazed while detection was off are missing to the tracker, as frames sent while inactive are."""
    before = [track_ids(probe, frame, 800 + index) for index, frame in enumerate(panning[:6])]
    set_ok(node, detection_enabled=False)
    try:
        for index in range(6, 15):
            send_and_wait(probe, bgr8_to_image(panning[index], "bgr8", stamped_header(800 + index)), ("image_dehazed",))
    finally:
        set_ok(node, detection_enabled=True)
    after = track_ids(probe, panning[15], 815)
    seen = {i for frame_ids in before for i in frame_ids}
    assert after and min(after) > max(seen), (before, after)


def test_a_frame_stamped_a_little_before_the_last_keeps_the_tracks(node: DehazeNode, probe: Probe,
                                                                   panning: list[np.ndarray]) -> None:
    """A multi-threaded camera driver can publish a frame just after a later one: that frame, stamped 10 ms before
    the last processed, started a new stream of tracks, every object's identity renewed (a planner keeping state by
    id lost it all). A jump back of over OUT_OF_ORDER_S (a bag played with --loop) still starts one (the
    loop test); the rule's bounds are tests/test_stream_stamps.py's."""
    ids = [track_ids(probe, frame, 900 + index) for index, frame in enumerate(panning[:4])]
    earlier = stamped_header(903)
    earlier.stamp.sec, earlier.stamp.nanosec = earlier.stamp.sec - 1, 990_000_000 + earlier.stamp.nanosec
    out = send_and_wait(probe, bgr8_to_image(panning[4], "bgr8", earlier), ("detections",), 60.0)
    reordered = [int(d.id) for d in out["detections"].detections]
    assert reordered and set(reordered) <= set(ids[-1]), (ids, reordered)
