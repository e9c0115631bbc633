"""The dgdehaze node over real DDS (rclpy from pip): outputs, headers, encodings, detection, bad input, lifecycle
and load (parameters and model reloads: test_ros_node_parameters.py). One node per module (conftest's `node`),
in-process, talking to a probe node through Fast DDS on a private domain."""
from __future__ import annotations

import contextlib
import math
import os
import resource
import threading
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs ROS 2 (pip ros-* wheels or a ROS install)")

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from dgdehaze_core.benchmarks.timing import hazy_test_frame  # noqa: E402
from dgdehaze_core.detection.contrast import local_contrast  # noqa: E402
from dgdehaze_core.detection.detector import Detector, default_detector_weights  # noqa: E402
from dgdehaze_core.io.camera_frames import compressed_to_bgr8  # noqa: E402
from dgdehaze_ros import node as node_module  # noqa: E402
from dgdehaze_ros.conversions import bgr8_to_image, camera_frame, image_to_array  # noqa: E402
from dgdehaze_ros.detection_messages import VISION_MSGS_AVAILABLE  # noqa: E402
from dgdehaze_ros.node import DehazeNode, create_node  # noqa: E402
from dgdehaze_ros.rclpy_compat import publisher_count  # noqa: E402

from ros_harness import (RELIABLE, Probe, RosSession, newest_diagnostics, send_and_wait, set_ok,  # noqa: E402
                         stamped_header, wait_for_outputs, wait_until)

pytestmark = pytest.mark.ros


def outputs_matched(node: DehazeNode, listener: Node, *outputs: str) -> bool:
    """Whether each of the node's `outputs` (keys of its `_outputs`: "image" is ~/image_dehazed) is matched with every
    subscriber `listener` knows of on it, from the node's side, and `listener`'s subscriptions with their publisher,
    from its own: matching is not symmetric, and a message sent before both sides match is lost (or, for an image
    sent only while subscribed, never published)."""
    return all(node._outputs[output].get_subscription_count()
               >= listener.count_subscribers(node._outputs[output].topic_name) > 0 for output in outputs) and \
        all(publisher_count(listener, subscription) > 0 for subscription in listener.subscriptions)


def inputs_matched(node: DehazeNode) -> bool:
    """Whether the node's input subscriptions are matched with every publisher it knows of on their topics, from its
    own side: the probe sees the node's subscription before the node takes the probe's samples."""
    return bool(node._inputs) and all(publisher_count(node, subscription)
                                      >= node.count_publishers(subscription.topic_name) > 0
                                      for subscription in node._inputs)


def test_outputs_keep_the_input_header_with_the_right_encodings_sizes_and_detection_depths(
        node: DehazeNode, probe: Probe) -> None:
    frame = hazy_test_frame(640, 480)
    msg = bgr8_to_image(frame, "bgr8", stamped_header(1))
    topics = ("image_dehazed", "depth_relative", "camera_info") + (("detections",) if VISION_MSGS_AVAILABLE else ())
    out = send_and_wait(probe, msg, topics)
    for name, message in out.items():
        assert message.header.frame_id == "camera_optical_frame", name
    image, depth, info = out["image_dehazed"], out["depth_relative"], out["camera_info"]
    assert (image.encoding, image.width, image.height, image.step) == ("bgr8", 640, 480, 640 * 3)
    assert (depth.encoding, depth.width, depth.height, depth.step) == ("32FC1", 640, 480, 640 * 4)
    assert (info.width, info.height, info.k[0]) == (640, 480, 500.0)
    dehazed, depth_map = image_to_array(image), image_to_array(depth)
    assert np.isfinite(depth_map).mean() > 0.9 and np.nanmin(depth_map) >= 0
    assert dehazed.std() > frame.std(), "dehazing should raise the contrast of a hazy frame"
    if VISION_MSGS_AVAILABLE:  # stamped: a bag or a message filter aligns it with its frame
        haze = send_and_wait(probe, msg, ("haze_density",))["haze_density"]
        assert haze.header.frame_id == "camera_optical_frame"
        (hypothesis,) = haze.results
        assert hypothesis.class_id == "haze_density" and 0.0 < hypothesis.score <= 1.0
    if VISION_MSGS_AVAILABLE and default_detector_weights() is not None:
        detections = out["detections"].detections
        assert detections, "YOLO found nothing on a KITTI road scene"
        for detection in detections:
            hypothesis = detection.results[0]
            assert hypothesis.hypothesis.class_id.isdigit() and 0 < hypothesis.hypothesis.score <= 1
            cx, cy = detection.bbox.center.position.x, detection.bbox.center.position.y
            w, h = detection.bbox.size_x, detection.bbox.size_y
            assert 0 <= cx - w / 2 and cx + w / 2 <= 640 and 0 <= cy - h / 2 and cy + h / 2 <= 480
            position = hypothesis.pose.pose.position  # no camera_height: a relative depth is no position in metres
            assert all(math.isnan(value) for value in (position.x, position.y, position.z))
            assert detection.header == out["detections"].header == msg.header, "each detection: the frame's header"

        set_ok(node, threshold=0.99)
        try:
            strict = send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(2)), ("detections",))
        finally:
            set_ok(node, threshold=0.25)
        assert len(strict["detections"].detections) < len(detections), "threshold change had no effect"


def test_an_unnormalised_input_stamp_comes_out_as_it_came_in(node: DehazeNode, probe: Probe) -> None:
    """nanosec of 1e9 or more (a driver's arithmetic): every output carries the input's header exactly, as bag-eval's
    offline outputs do (test_bag_eval), not the same instant normalised."""
    header = stamped_header(9)
    header.stamp.nanosec = 1_500_000_000
    topics = ("image_dehazed", "depth_relative", "camera_info") + (("haze_density",) if VISION_MSGS_AVAILABLE else ())
    out = send_and_wait(probe, bgr8_to_image(hazy_test_frame(160, 120), "bgr8", header), topics)
    assert all(message.header == header for message in out.values())


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector weights")
def test_the_debug_image_draws_the_detections_on_the_dehazed_frame_for_a_subscriber(
        node: DehazeNode, probe: Probe, session: RosSession) -> None:
    drawn: list[Image] = []
    viewer = session.listener("viewer", Image, "/dgdehaze/debug_image", drawn.append, 10)
    try:
        assert probe.wait_for(lambda: outputs_matched(node, viewer, "debug_image"), 10.0)
        out = send_and_wait(probe, bgr8_to_image(hazy_test_frame(640, 480), "bgr8", stamped_header(4)),
                            ("image_dehazed", "detections"))
        assert probe.wait_for(lambda: any(m.header.stamp == stamped_header(4).stamp for m in drawn), 10.0)
        debug = next(m for m in drawn if m.header.stamp == stamped_header(4).stamp)
        assert (debug.encoding, debug.width, debug.height) == ("bgr8", 640, 480)
        assert debug.header.frame_id == "camera_optical_frame"
        boxes = out["detections"].detections
        assert boxes, "YOLO found nothing on a KITTI road scene"
        box = boxes[0].bbox
        left, top = int(box.center.position.x - box.size_x / 2), int(box.center.position.y - box.size_y / 2)
        dehazed, overlay = image_to_array(out["image_dehazed"]), image_to_array(debug)
        edge = (slice(max(top, 0), max(top, 0) + 2), slice(max(left, 0), int(left + box.size_x)))
        assert np.abs(overlay[edge].astype(int) - dehazed[edge].astype(int)).max() > 50, "no box drawn"
    finally:
        session.remove(viewer)


def test_the_compressed_outputs_go_out_as_image_transport_s_to_a_subscriber_and_follow_their_parameters(
        node: DehazeNode, probe: Probe, session: RosSession) -> None:
    from sensor_msgs.msg import CompressedImage

    from dgdehaze_core.io.compressed_depth import decompress_depth

    topics = {"image_dehazed": "image_dehazed/compressed", "debug_image": "debug_image/compressed",
              "depth_relative": "depth_relative/compressedDepth"}
    received: dict[str, list[CompressedImage]] = {name: [] for name in topics}
    viewers = {name: session.listener(f"viewer_{name}", CompressedImage, f"/dgdehaze/{topic}",
                                      received[name].append, 10) for name, topic in topics.items()}
    try:
        for name, viewer in viewers.items():
            assert probe.wait_for(lambda: outputs_matched(node, viewer, topics[name]), 10.0)
        set_ok(node, detection_enabled=False)
        sent = {}
        for fmt, index in (("jpeg", 160), ("png", 161)):  # stamps no other test of the module sends
            set_ok(node, **{"image_dehazed.compressed.format": fmt})
            header = stamped_header(index)
            out = send_and_wait(probe, bgr8_to_image(hazy_test_frame(160, 120), "rgb8", header),
                                ("image_dehazed", "depth_relative"))
            raw = out["image_dehazed"]
            assert probe.wait_for(lambda: all(any(m.header == header for m in got) for got in received.values()),
                                  10.0), f"no compressed output for the {fmt} frame"
            compressed = {name: next(m for m in got if m.header == header) for name, got in received.items()}
            assert compressed["debug_image"].format == "bgr8; jpeg compressed bgr8"
            assert compressed_to_bgr8(compressed["debug_image"]).shape == (120, 160, 3)
            depth = image_to_array(out["depth_relative"])
            packed = compressed["depth_relative"]
            assert packed.format == "32FC1; compressedDepth png"
            np.testing.assert_allclose(decompress_depth(packed.format, bytes(packed.data)), depth, rtol=1e-2)
            sent[fmt] = compressed["image_dehazed"], camera_frame(raw)[0]
        jpeg, dehazed = sent["jpeg"]
        assert jpeg.format == "rgb8; jpeg compressed bgr8" and cv2.PSNR(compressed_to_bgr8(jpeg), dehazed) > 30.0
        png, dehazed = sent["png"]
        assert png.format == "rgb8; png compressed bgr8"
        np.testing.assert_array_equal(compressed_to_bgr8(png), dehazed)
        for name, value in (("image_dehazed.compressed.format", "webp"), ("debug_image.compressed.jpeg_quality", 0),
                            ("image_dehazed.compressed.png_level", 10)):
            assert not node.set_parameters([Parameter(name, value=value)])[0].successful, name
    finally:
        set_ok(node, detection_enabled=True, **{"image_dehazed.compressed.format": "jpeg"})
        for viewer in viewers.values():
            session.remove(viewer)


def test_a_depth_image_too_wide_for_png_leaves_out_its_compressed_depth_only(node: DehazeNode, probe: Probe,
                                                                           session: RosSession) -> None:
    """A frame more than a million pixels wide (a 1 MB mono8 message) has a depth image libpng will not encode: with
    a compressedDepth subscriber (`ros2 bag record -a` is one) the frame failed with a traceback after its image and
    depth, and its camera_info, visibility, haze density and detections were never published. Its compressedDepth
    is now left out with a warning, as a compressed image that does not encode is; the next frame has all of it."""
    from sensor_msgs.msg import CompressedImage

    packed: list[CompressedImage] = []
    viewer = session.listener("depth_viewer", CompressedImage, "/dgdehaze/depth_relative/compressedDepth",
                              packed.append, 10)
    try:
        assert probe.wait_for(lambda: node._subscribed("depth_relative/compressedDepth"), 10.0)
        set_ok(node, detection_enabled=False)
        failed = node.worker.counts().failed
        width = 1_000_001
        wide = Image(header=stamped_header(170), encoding="mono8", width=width, height=1, step=width,
                     data=np.resize(hazy_test_frame(160, 120)[60, :, 1], width).tobytes())
        out = send_and_wait(probe, wide, ("image_dehazed", "depth_relative", "camera_info"))
        assert out["depth_relative"].width == width and node.worker.counts().failed == failed
        good = bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(171))
        send_and_wait(probe, good, ("camera_info",))
        assert probe.wait_for(lambda: any(m.header == good.header for m in packed), 10.0)
        assert not [m for m in packed if m.header == wide.header]
    finally:
        set_ok(node, detection_enabled=True)
        session.remove(viewer)


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector weights")
@pytest.mark.skipif(not VISION_MSGS_AVAILABLE, reason="needs vision_msgs")
def test_the_label_map_keeps_each_class_id_and_detections_pair_with_their_positions() -> None:
    """A detector restricted to some classes, or a custom one, has ids that are not 0..n-1: the label map keeps
    each id with its name; detections and positions of different counts are refused, not cut to the shorter."""
    from dgdehaze_core.detection.detector import Detection
    from dgdehaze_ros.detection_messages import detections_to_msg, label_info_msg

    labels = label_info_msg({7: "truck", 2: "car", 0: "person"}, 0.3, stamped_header(1))
    assert [(c.class_id, c.class_name) for c in labels.class_map] == [(0, "person"), (2, "car"), (7, "truck")]
    detections = [Detection(2, "car", 0.9, (10.0, 20.0, 50.0, 80.0))]
    with pytest.raises(ValueError, match="1 detections but 0 positions"):
        detections_to_msg(detections, [], stamped_header(1))


def test_a_late_subscriber_gets_the_latched_label_map_of_every_class_id_and_the_threshold(
        node: DehazeNode, probe: Probe, session: RosSession) -> None:
    from vision_msgs.msg import LabelInfo

    from dgdehaze_ros.detection_messages import LABEL_INFO_QOS

    labels: list[LabelInfo] = []
    late = session.listener("late", LabelInfo, "/dgdehaze/label_info", labels.append, LABEL_INFO_QOS)
    try:
        assert probe.wait_for(lambda: bool(labels), 10.0), "no latched LabelInfo for a subscriber joining late"
        names = {c.class_id: c.class_name for c in labels[-1].class_map}
        assert names == Detector().names and labels[-1].threshold == pytest.approx(0.25)
        out = send_and_wait(probe, bgr8_to_image(hazy_test_frame(640, 480), "bgr8", stamped_header(3)),
                            ("detections",))
        ids = [int(d.results[0].hypothesis.class_id) for d in out["detections"].detections]
        assert ids and set(ids) <= set(names)
        set_ok(node, threshold=0.5)
        assert probe.wait_for(lambda: labels[-1].threshold == pytest.approx(0.5), 10.0)
    finally:
        set_ok(node, threshold=0.25)
        session.remove(late)


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector weights")
def test_the_label_map_is_published_on_activation_not_while_the_node_is_inactive(session: RosSession) -> None:
    """A lifecycle node publishes nothing while inactive; what changed meanwhile goes out when it activates."""
    from vision_msgs.msg import LabelInfo

    from dgdehaze_ros.detection_messages import LABEL_INFO_QOS

    node = create_node({"model": "dcp"}, name="labels_dgdehaze", context=session.context, activate=False)
    session.add(node)
    labels: list[LabelInfo] = []
    listener = session.listener("labels_listener", LabelInfo, "/labels_dgdehaze/label_info", labels.append,
                                LABEL_INFO_QOS)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert wait_until(lambda: listener.count_publishers("/labels_dgdehaze/label_info") > 0, 10.0)
        time.sleep(1.0)
        assert not labels, "the configured but inactive node published ~/label_info"
        node.trigger_activate()
        assert wait_until(lambda: bool(labels), 10.0), "no ~/label_info on activation"
        assert labels[-1].threshold == pytest.approx(0.25) and labels[-1].class_map
        node.trigger_deactivate()
        set_ok(node, threshold=0.6)
        time.sleep(1.0)
        assert len(labels) == 1, "the inactive node published ~/label_info"
        node.trigger_activate()
        assert wait_until(lambda: len(labels) == 2, 10.0), "no ~/label_info on reactivation"
        assert labels[-1].threshold == pytest.approx(0.6)
    finally:
        session.remove(listener)
        session.remove(node)


ROOT = Path(__file__).resolve().parents[1]
NODE_PLUMBING = {"/rosout", "/parameter_events", "transition_event"}
"""Topics every (lifecycle) node has, which the topic tables leave out."""


def documented_topics(document: str, section: str) -> dict[str, tuple[str, str]]:
    """{topic: (type, direction)} of the topic table in `section` of `document` (README.md or docs/ROS.md): a row
    per topic or per list of topics; the type is the cell's first word, the direction `in` or `out` (the README's
    table lists outputs only)."""
    text = (ROOT / document).read_text().split(f"\n## {section}\n")[1].split("\n## ")[0]
    topics = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) < 3 or not cells[0].startswith("`") or "/" not in cells[1]:
            continue
        direction = cells[2] if cells[2] in ("in", "out") else "out"
        topics.update({name.strip().strip("`"): (cells[1].split()[0].strip("`"), direction)
                       for name in cells[0].split(",")})
    return topics


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE, reason="without vision_msgs the node makes no detection topics")
@pytest.mark.parametrize("document, section", [("docs/ROS.md", "Topics"), ("README.md", "The node")])
def test_the_documented_topic_tables_are_the_topics_the_node_makes_with_their_types(
        node: DehazeNode, document: str, section: str) -> None:
    """Every output the node publishes and every input it subscribes to (raw transport), by name and type, and
    nothing the node does not make; `~/` resolves under the node, an input under its remapping."""
    documented = documented_topics(document, section)

    def resolved(kind: str) -> dict[str, str]:
        names_and_types = (node.get_publisher_names_and_types_by_node if kind == "out" else
                           node.get_subscriber_names_and_types_by_node)(node.get_name(), node.get_namespace())
        return {topic: types[0].replace("/msg/", "/") for topic, types in names_and_types
                if topic.rpartition("/")[2] not in NODE_PLUMBING and topic not in NODE_PLUMBING}

    expected = {node.resolve_topic_name(topic): message for topic, (message, direction) in documented.items()
                if direction == "out"}
    assert wait_until(lambda: resolved("out") == expected, 5.0), \
        f"{document}: documented {sorted(expected.items())}, the node publishes {sorted(resolved('out').items())}"
    inputs = {topic: message for topic, (message, direction) in documented.items() if direction == "in"}
    if inputs:  # the fixture's node reads raw frames: `image`, not `image/compressed`
        assert inputs.get("image/compressed") == "sensor_msgs/CompressedImage"
        expected_in = {node.resolve_topic_name(topic): inputs[topic] for topic in ("image", "camera_info")}
        assert set(inputs) == {"image", "image/compressed", "camera_info"}
        assert resolved("in") == expected_in


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "mono16", "bgra8", "yuyv"])
def test_the_dehazed_image_has_the_input_encoding(node: DehazeNode, probe: Probe, encoding: str) -> None:
    set_ok(node, detection_enabled=False)
    index = 10 + ["rgb8", "mono8", "mono16", "bgra8", "yuyv"].index(encoding)
    msg = bgr8_to_image(hazy_test_frame(160, 120), encoding, stamped_header(index))
    out = send_and_wait(probe, msg, ("image_dehazed", "depth_relative"))
    image = out["image_dehazed"]
    assert (image.encoding, image.width, image.height, image.step) == (encoding, 160, 120, msg.step)


def test_input_bits_reads_a_12_bit_mono16_camera_and_publishes_on_its_range(node: DehazeNode, probe: Probe) -> None:
    from dgdehaze_ros.conversions import array_to_image

    set_ok(node, detection_enabled=False)
    gray = hazy_test_frame(160, 120)[:, :, 1]
    twelve_bit = np.rint(gray.astype(np.float64) * 4095 / 255).astype(np.uint16)
    outputs = {}
    for bits, index in ((16, 17), (12, 18)):
        set_ok(node, input_bits=bits)
        out = send_and_wait(probe, array_to_image(twelve_bit, "mono16", stamped_header(index)), ("image_dehazed",))
        outputs[bits] = image_to_array(out["image_dehazed"])
    set_ok(node, input_bits=16)
    assert outputs[12].dtype == np.uint16 and 2000 < outputs[12].max() <= 4095  # dehazed on the camera's range
    levels = {bits: len(np.unique(image)) for bits, image in outputs.items()}
    assert levels[16] < 30 < 100 < levels[12], levels  # read as full range, 0..4095 is 17 grey levels
    assert not node.set_parameters([Parameter("input_bits", value=20)])[0].successful


@pytest.mark.parametrize("encoding", ["rgb16", "bgr16", "rgba16", "bgra16"])
def test_a_12_bit_colour_camera_s_16_bit_frames_are_dehazed_on_input_bits_range_in_their_own_encoding(
        node: DehazeNode, probe: Probe, shared_data: Path, encoding: str) -> None:
    """16-bit colour frames were refused as an unsupported encoding (a 16-bit PNG of the same camera was read): a
    real foggy photo as a 12-bit colour camera's frame (samples 0..4095, read with input_bits 12) is dehazed as its
    bgr8 frame is and comes back in its own encoding, channel order and range, its alpha kept."""
    from dgdehaze_core.io.images import uint16_to_uint8
    from dgdehaze_ros.conversions import array_to_image

    photo = cv2.resize(cv2.imread(str(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")), (160, 120),
                       interpolation=cv2.INTER_AREA)
    index = 500 + 2 * ["rgb16", "bgr16", "rgba16", "bgra16"].index(encoding)
    set_ok(node, detection_enabled=False, input_bits=12)
    try:
        eight = image_to_array(send_and_wait(probe, bgr8_to_image(photo, "bgr8", stamped_header(index)),
                                             ("image_dehazed",))["image_dehazed"])
        twelve = np.rint(photo.astype(np.float64) * 4095 / 255).astype(np.uint16)
        colour = twelve[:, :, ::-1] if encoding.startswith("rgb") else twelve
        alpha = np.linspace(0, 4095, photo.shape[1]).astype(np.uint16)[None, :].repeat(photo.shape[0], 0)
        pixels = np.dstack([colour, alpha]) if encoding.endswith("a16") else colour
        out = send_and_wait(probe, array_to_image(pixels, encoding, stamped_header(index + 1)),
                            ("image_dehazed",))["image_dehazed"]
    finally:
        set_ok(node, input_bits=16)
    dehazed = image_to_array(out)
    assert (out.encoding, out.step, dehazed.dtype) == (encoding, out.width * pixels.shape[2] * 2, np.uint16)
    assert 2000 < dehazed[:, :, :3].max() <= 4095  # on the camera's range
    if encoding.endswith("a16"):
        assert np.array_equal(dehazed[:, :, 3], alpha)
    bgr = dehazed[:, :, 2::-1] if encoding.startswith("rgb") else dehazed[:, :, :3]
    difference = np.abs(uint16_to_uint8(bgr, 12).astype(int) - eight.astype(int))
    assert difference.mean() < 1.0 and difference.max() <= 3, (difference.mean(), difference.max())


def test_input_bits_reads_a_12_bit_camera_s_16_bit_png_as_its_8_bit_png(session: RosSession) -> None:
    """image_transport's compressed PNG of a mono16 camera keeps its 16-bit samples ("mono16; png compressed")."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    from ros_harness import RELIABLE

    node = create_node({"model": "dcp", "detection_enabled": False, "input_transport": "compressed",
                        "image_reliability": "reliable", "input_bits": 12},
                       name="png_dgdehaze", remappings={"image": "/png_camera/image"}, context=session.context)
    session.add(node)
    camera = rclpy.create_node(f"png_camera_{os.getpid()}", context=session.context)
    frames = camera.create_publisher(CompressedImage, "/png_camera/image/compressed", RELIABLE)
    dehazed: list[Image] = []
    camera.create_subscription(Image, "/png_dgdehaze/image_dehazed", dehazed.append, RELIABLE)
    session.add(camera)
    gray = hazy_test_frame(160, 120)[:, :, 1]
    twelve_bit = np.rint(gray.astype(np.float64) * 4095 / 255).astype(np.uint16)
    outputs = {}
    try:
        for index, (fmt, samples) in enumerate((("mono8; png compressed", gray),
                                                ("mono16; png compressed", twelve_bit))):
            msg = CompressedImage(header=stamped_header(200 + index), format=fmt,
                                  data=cv2.imencode(".png", samples)[1].tobytes())
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline and not any(m.header.stamp == msg.header.stamp for m in dehazed):
                frames.publish(msg)  # again until the node has matched the camera: one sent before is not received
                time.sleep(0.5)
            image = next((m for m in dehazed if m.header.stamp == msg.header.stamp), None)
            assert image is not None and image.encoding == "bgr8", f"no dehazed image of the {fmt} frame"
            outputs[fmt] = image_to_array(image).astype(int)
    finally:
        session.remove(camera)
        session.remove(node)
    eight, sixteen = outputs.values()
    assert np.abs(sixteen - eight).mean() < 2, "the 12-bit PNG was not read on input_bits' range"


def test_a_12_bit_camera_read_with_input_bits_16_is_warned_once_per_activation_and_on_diagnostics_while_it_holds(
        session: RosSession, foggy_road: np.ndarray) -> None:
    """A real photo as a 12-bit mono16 camera's frames (samples 0..4095): read with the default 16 bits they are
    dehazed as nearly black images, which the log says once per activation (naming the parameter) and /diagnostics
    warns of while it holds; a full-range mono16 frame, or input_bits: 12, is no such thing."""
    import cv2
    from rcl_interfaces.msg import Log

    from dgdehaze_ros.conversions import array_to_image
    from ros_harness import RELIABLE

    gray = cv2.cvtColor(cv2.resize(foggy_road, (320, 240), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    twelve_bit = ((gray.astype(np.uint32) * 4095 + 127) // 255).astype(np.uint16)
    warnings: list[str] = []
    logs = session.listener("bits_log", Log, "/rosout", lambda m: m.name.endswith("bits_dgdehaze") and
                            "input_bits: 12" in m.msg and warnings.append(m.msg), RELIABLE)
    node, probe = overhead_node(session, "bits_dgdehaze", diagnostics_period=0.1)

    def reports() -> list[DiagnosticStatus]:  # this node's, not the module's node's
        return [s for d in probe.messages("diagnostics") for s in d.status if s.name.startswith("/bits_dgdehaze:")]

    def send(samples: np.ndarray, index: int) -> bool:
        """Whether a diagnostics report of the node from the frame's sending to the first after it was processed
        warns of a 12-bit camera (the one of the period the frame was published in: the others, without a frame,
        warn that none was processed)."""
        before = len(reports())
        send_and_wait(probe, array_to_image(samples, "mono16", stamped_header(index)), ("image_dehazed",))
        assert node.worker.wait_idle(10.0)
        after = len(reports())
        assert probe.wait_for(lambda: len(reports()) > after, 5.0)
        return any(s.level == DiagnosticStatus.WARN and "input_bits: 12" in s.message
                   for s in reports()[before:])

    def reactivate() -> None:
        node.trigger_deactivate()
        node.trigger_activate()
        assert probe.wait_for_subscribers()
        assert probe.wait_for(lambda: inputs_matched(node), 10.0)

    try:
        assert not send(gray.astype(np.uint16) * 257, 400) and not warnings  # a 16-bit camera's full range
        reactivate()  # an activation's first frame is tested, then every NARROW_TEST_EVERY-th
        assert all(send(twelve_bit, index) for index in (401, 402, 403))
        assert wait_until(lambda: len(warnings) == 1, 5.0) and len(warnings) == 1, warnings
        assert "/bits_dgdehaze_camera/image" in warnings[0] and "none above 4095" in warnings[0]
        set_ok(node, input_bits=12)
        assert not send(twelve_bit, 404)
        set_ok(node, input_bits=16)
        reactivate()
        assert send(twelve_bit, 405)
        assert wait_until(lambda: len(warnings) == 2, 5.0), "a new activation is not warned again"
    finally:
        session.remove(probe)
        session.remove(node)
        session.remove(logs)


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector weights")
def test_with_a_tracker_each_fused_detection_carries_its_track_id(node: DehazeNode, probe: Probe) -> None:
    set_ok(node, tracker="bytetrack", detection_enabled=True, detection_input="fused")
    try:  # the detector reloads in the background; diagnostics name the one running
        assert probe.wait_for(lambda: "bytetrack" in newest_diagnostics(probe)[2].get("detector", ""), 60.0)
        frame = hazy_test_frame(640, 480)
        ids: list[list[str]] = []
        for index in range(12):  # the tracker confirms an object over its first frames
            out = send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(130 + index)), ("detections",),
                                60.0)
            ids.append([d.id for d in out["detections"].detections])
            if index >= 3 and ids[-1] and ids[-1] == ids[-2] == ids[-3]:
                break
        # the same still scene keeps its identities (a busy machine once gave one frame no track: tolerated)
        assert ids[-1] and all(i.isdigit() for i in ids[-1]) and ids[-1] == ids[-2] == ids[-3], ids
    finally:
        set_ok(node, tracker="", detection_input="dehazed")  # the detector reloads in the background: wait for it
        assert probe.wait_for(lambda: "bytetrack" not in newest_diagnostics(probe)[2].get("detector", "bytetrack"),
                              60.0)


def test_detection_interval_publishes_detections_for_every_nth_frame_only(node: DehazeNode, probe: Probe) -> None:
    set_ok(node, detection_enabled=True, detection_interval=3)
    frame = hazy_test_frame(160, 120)
    indices = range(50, 58)
    try:
        for index in indices:  # one at a time, so the worker drops none and the schedule sees every frame
            send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(index)),
                          ("image_dehazed", "depth_relative"))
        time.sleep(0.3)
    finally:
        set_ok(node, detection_interval=1)
    sent = {stamped_header(i).stamp.sec: i for i in indices}
    detected = sorted(sent[m.header.stamp.sec] for m in probe.messages("detections") if m.header.stamp.sec in sent)
    assert len(detected) >= 2 and all(b - a == 3 for a, b in zip(detected, detected[1:])), detected
    send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(58)), ("detections",))  # interval 1 again
    send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(59)), ("detections",))
    result = node.set_parameters([Parameter("detection_interval", value=101)])[0]
    assert not result.successful and node.get_parameter("detection_interval").value == 1


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector weights")
def test_settings_changed_while_the_detector_reloads_hold_for_the_reloaded_detector(node: DehazeNode,
                                                                                   probe: Probe) -> None:
    frame = hazy_test_frame(640, 480)  # on the raw frame the detector finds one object, scored about 0.55
    set_ok(node, detection_enabled=True, detection_input="raw", threshold=0.6)
    try:  # the interval and the threshold change while the tracker's detector loads in the background
        set_ok(node, tracker="bytetrack")
        time.sleep(0.05)  # the loader has read the settings it loads with; the load takes longer
        set_ok(node, detection_interval=3, threshold=0.25)
        assert probe.wait_for(lambda: "bytetrack" in newest_diagnostics(probe)[2].get("detector", ""), 60.0)
        indices = range(140, 147)
        for index in indices:
            send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(index)), ("image_dehazed",))
        time.sleep(0.3)
    finally:
        set_ok(node, tracker="", detection_interval=1, detection_input="dehazed")
        assert probe.wait_for(lambda: "bytetrack" not in newest_diagnostics(probe)[2].get("detector", "bytetrack"),
                              60.0)
    sent = {stamped_header(i).stamp.sec: i for i in indices}
    published = [m for m in probe.messages("detections") if m.header.stamp.sec in sent]
    detected = sorted(sent[m.header.stamp.sec] for m in published)
    assert len(detected) >= 2 and all(b - a == 3 for a, b in zip(detected, detected[1:])), detected
    assert any(m.detections for m in published), "the reloaded detector kept the threshold of before the change"


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector weights")
def test_detection_input_runs_the_detector_on_the_raw_frame_or_on_both_fused(node: DehazeNode, probe: Probe) -> None:
    set_ok(node, detection_enabled=True)
    frame = hazy_test_frame(640, 480)
    found = {}
    try:
        for index, mode in enumerate(("dehazed", "raw", "fused")):
            set_ok(node, detection_input=mode)
            out = send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(70 + index)), ("detections",))
            found[mode] = out["detections"].detections
    finally:
        set_ok(node, detection_input="dehazed")
    assert len(found["raw"]) == len(Detector()(frame))
    assert len(found["fused"]) >= max(len(found["raw"]), len(found["dehazed"])) > 0
    refused = node.set_parameters([Parameter("detection_input", value="both")])[0]
    assert not refused.successful and "detection_input must be one of" in refused.reason
    assert node.get_parameter("detection_input").value == "dehazed"


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE or default_detector_weights() is None,
                    reason="needs vision_msgs and the shipped detector weights")
def test_detection_contrast_makes_the_detector_read_equalised_frames(node: DehazeNode, probe: Probe,
                                                                     foggy_road: np.ndarray,
                                                                     detector: Detector) -> None:
    set_ok(node, detection_enabled=True)
    try:
        set_ok(node, detection_input="raw", detection_contrast=True)
        out = send_and_wait(probe, bgr8_to_image(foggy_road, "bgr8", stamped_header(75)), ("detections",))
    finally:
        set_ok(node, detection_input="dehazed", detection_contrast=False)
    assert len(out["detections"].detections) == len(detector(local_contrast(foggy_road))) != len(detector(foggy_road))
    refused = node.set_parameters([Parameter("detection_contrast", value="yes")])[0]
    assert not refused.successful and node.get_parameter("detection_contrast").value is False


def test_bad_input_is_logged_and_skipped_and_the_node_keeps_running(node: DehazeNode, probe: Probe) -> None:
    set_ok(node, detection_enabled=False)

    def bad(encoding: str, width: int, height: int, step: int, size: int, index: int) -> Image:
        msg = Image(header=stamped_header(index), encoding=encoding, width=width, height=height, step=step)
        msg.data = bytes(size)
        return msg

    cases = [bad("nv12", 64, 48, 64, 64 * 48, 30),            # unsupported encoding
             bad("bgr8", 64, 48, 100, 100 * 48, 31),          # step shorter than a row
             bad("bgr8", 64, 48, 192, 192 * 40, 32),          # truncated data
             bad("bgr8", 0, 0, 0, 0, 33),                     # 0x0
             bad("bgr8", 100_000, 80_000, 300_000, 64, 34)]   # huge
    assert node.worker.wait_idle(10.0)  # an earlier frame still in progress would count after this
    processed = node.worker.counts().processed
    for msg in cases:
        skipped = node.stats.skipped
        probe.publish(msg)
        assert probe.wait_for(lambda: node.stats.skipped == skipped + 1, 10.0), f"not skipped: {msg.encoding}"
    out = send_and_wait(probe, bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(35)),
                        ("image_dehazed",))
    assert out["image_dehazed"].width == 160
    assert probe.wait_for(lambda: newest_diagnostics(probe)[2].get("frames_processed") == str(processed + 1), 5.0), \
        f"frames_processed counts skipped frames: {newest_diagnostics(probe)[2].get('frames_processed')} after " \
        f"{processed} and one good frame"
    bad_stamps = {stamped_header(i).stamp.sec for i in range(30, 35)}
    assert not [m for m in probe.messages("image_dehazed") if m.header.stamp.sec in bad_stamps]
    assert probe.wait_for(lambda: any(s.level == DiagnosticStatus.WARN and "skipped" in s.message
                                      for d in probe.messages("diagnostics") for s in d.status), 5.0)


def test_deactivate_stops_outputs_and_activate_resumes_them(node: DehazeNode, probe: Probe) -> None:
    set_ok(node, detection_enabled=False)
    gaps = node.stats.gaps
    node.trigger_deactivate()
    try:
        assert probe.wait_for(lambda: probe.image_pub.get_subscription_count() == 0, 5.0)
        probe.publish(bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(40)))
        time.sleep(0.5)
        assert not [m for m in probe.messages("image_dehazed") if m.header.stamp.sec == stamped_header(40).stamp.sec]
    finally:
        node.trigger_activate()
    assert probe.wait_for_subscribers()
    send_and_wait(probe, bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(41)), ("image_dehazed",))
    assert node.stats.gaps == gaps, "a frame sent while the node was inactive is not a frame lost in transport"


def test_an_activate_while_a_frame_the_deactivate_gave_up_on_still_runs_fails_at_once_and_a_later_one_succeeds(
        session: RosSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame stuck past the deactivate's wait (a driver, a GPU hang) made the next activate wait for it without
    limit: `ros2 lifecycle set ... activate` hung, and the executor with it."""
    monkeypatch.setattr(node_module, "FRAME_WAIT_S", 0.2)

    class StuckFrame(DehazeNode):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            self.stuck, self.gate = threading.Event(), threading.Event()
            super().__init__(*args, **kwargs)

        def _process(self, frame):  # type: ignore[no-untyped-def]
            self.stuck.set()
            self.gate.wait(10.0)
            return super()._process(frame)

    node = StuckFrame("stuck_dgdehaze", context=session.context, parameter_overrides=[
        Parameter("model", value="dcp"), Parameter("detection_enabled", value=False)])
    session.add(node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        node._on_image(bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(410)), {})
        assert node.stuck.wait(5.0)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS  # gave up waiting for the frame
        started = time.monotonic()
        assert node.trigger_activate() == TransitionCallbackReturn.FAILURE
        assert time.monotonic() - started < 2.0, "the activate waited for the stuck frame"
        assert node._state_machine.current_state[1] == "inactive" and not node._inputs
        node.gate.set()
        assert wait_until(lambda: not node.worker.running, 10.0)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert [t.name for t in threading.enumerate()].count("stuck_dgdehaze-worker") == 1
    finally:
        node.gate.set()
        session.remove(node)


class NetworkStuck(DehazeNode):
    """A node whose dehazing of a frame waits, once `stuck` is set, until the test opens `gate` (a GPU hang)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self.stuck, self.gate = threading.Event(), threading.Event()
        super().__init__(*args, **kwargs)

    def _load_pipeline(self, settings):  # type: ignore[no-untyped-def]
        pipeline = super()._load_pipeline(settings)
        node = self

        class Stuck:
            method, backend, weights_summary = pipeline.method, pipeline.backend, pipeline.weights_summary

            def __call__(self, frame):  # type: ignore[no-untyped-def]
                node.stuck.set()
                node.gate.wait(10.0)
                return pipeline(frame)

        return Stuck()


@contextlib.contextmanager
def _a_frame_stuck(session: RosSession, name: str, stamp: int) -> Iterator[NetworkStuck]:
    """An active dcp node `name` whose frame stamped `stamp` is stuck in its network until `node.gate` is set (at the
    block's end at the latest)."""
    node = NetworkStuck(name, context=session.context, parameter_overrides=[
        Parameter("model", value="dcp"), Parameter("detection_enabled", value=False)])
    session.add(node)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        node._on_image(bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(stamp)), {})
        assert node.stuck.wait(5.0)
        yield node
    finally:
        node.gate.set()
        session.remove(node)


def test_a_frame_that_outlives_the_cleanup_of_its_node_is_skipped_not_failed(session: RosSession,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame stuck in its network past the deactivate's and the cleanup's waits went on, once freed, into the
    outputs the cleanup had destroyed: 'processing failed' with a KeyError traceback and frames_failed, a fault in
    the node by its own account, for an orderly cleanup."""
    monkeypatch.setattr(node_module, "FRAME_WAIT_S", 0.2)
    with _a_frame_stuck(session, "outlived_dgdehaze", 415) as node:
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS  # gave up waiting for the frame
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS  # gave up too, and released the outputs
        node.gate.set()
        assert wait_until(lambda: not node.worker.running, 10.0)
        counts = node.worker.counts()
        assert (counts.failed, counts.skipped) == (0, 1), counts


def test_a_shutdown_waits_for_a_stuck_frame_once(session: RosSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ros2 lifecycle set ... shutdown` with a frame stuck in its network (a GPU hang) waited for it twice, 5 s in
    on_shutdown and 5 s more in the release after it, blocking the lifecycle service and the executor 10 s."""
    monkeypatch.setattr(node_module, "FRAME_WAIT_S", 0.2)
    with _a_frame_stuck(session, "stuck_shutdown_dgdehaze", 416) as node:
        started = time.monotonic()
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        assert time.monotonic() - started < 2.0, "the shutdown waited more than once for the stuck frame"
        assert node._pipeline is None and not node._inputs


def test_a_transition_that_raises_leaves_the_node_unconfigured_holding_nothing_and_a_new_configure_runs_clean(
        session: RosSession) -> None:
    """rclpy's LifecycleNode turns an exception in a transition callback into ERROR and, with no on_error of the
    node's, unconfigured: the models, the enabled publishers and the diagnostics timer stayed, and the next
    configure made a second set of publishers beside them (two publishers of every output). rclpy logs nothing of
    the exception: the node logs it with its traceback."""
    from rcl_interfaces.msg import Log

    from ros_harness import RELIABLE

    class RaisesOnce(DehazeNode):
        fail = True

        def _publish_labels(self) -> None:  # called by on_activate once the publishers are enabled
            if self.fail:
                self.fail = False
                raise RuntimeError("a fault inside on_activate")
            super()._publish_labels()

    node = RaisesOnce("raising_dgdehaze", context=session.context, parameter_overrides=[
        Parameter("model", value="dcp"), Parameter("detection_enabled", value=False)])
    session.add(node)
    topic = "/raising_dgdehaze/image_dehazed"
    logged: list[str] = []
    logs = session.listener("raising_log", Log, "/rosout", lambda m: m.name.endswith("raising_dgdehaze") and
                            logged.append(m.msg), RELIABLE)
    try:
        assert wait_until(lambda: logs.count_publishers("/rosout") > 0 and node.count_subscribers("/rosout") > 0, 5.0)
        time.sleep(0.5)  # matching is not symmetric: the node's log publisher may not see the listener yet
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.ERROR
        assert wait_until(lambda: any("a fault inside on_activate" in m and "Traceback" in m and "_publish_labels" in m
                                      for m in logged), 5.0), logged
        assert node._state_machine.current_state[1] == "unconfigured"
        assert node._pipeline is None and not node.worker.running and not node._inputs
        assert wait_until(lambda: node.count_publishers(topic) == 0, 5.0), "the outputs outlived the error"
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert len([p for p in node.publishers if p.topic_name == topic]) == 1
        node._on_image(bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(420)), {})
        assert node.worker.wait_idle(10.0) and node.worker.counts().processed == 1
    finally:
        session.remove(logs)
        session.remove(node)


def test_a_frame_that_fails_in_processing_makes_the_next_diagnostics_an_error(session: RosSession) -> None:
    """A fault while a frame was processed (a compressedDepth that would not encode did it) was logged with its
    traceback and counted in `frames_failed`, but /diagnostics said `running` where other frames went through, or
    `no frames processed` alone: a monitor saw no fault while the frame's later outputs went missing. The report after
    such a frame is an ERROR saying so; the one after a good frame is not."""
    from diagnostic_msgs.msg import DiagnosticArray

    from ros_harness import RELIABLE

    class FailsOnce(DehazeNode):
        fail = True

        def _publish_frame(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            if self.fail:
                self.fail = False
                raise RuntimeError("a fault after the image went out")
            return super()._publish_frame(*args, **kwargs)

    node = FailsOnce("failing_dgdehaze", context=session.context, parameter_overrides=[
        Parameter("model", value="dcp"), Parameter("detection_enabled", value=False),
        Parameter("diagnostics_period", value=0.1)])
    session.add(node)
    reports: list[DiagnosticStatus] = []
    listener = session.listener("failing_diagnostics", DiagnosticArray, "/diagnostics", lambda m: reports.extend(
        s for s in m.status if s.name.startswith("/failing_dgdehaze")), RELIABLE)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        frame = bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(430))
        node._on_image(frame, {})
        assert node.worker.wait_idle(10.0) and node.worker.counts().failed == 1
        assert wait_until(lambda: any(s.level == DiagnosticStatus.ERROR and "1 frames failed in processing" in s.message
                                      for s in reports), 5.0), [s.message for s in reports]
        node._on_image(frame, {})
        assert node.worker.wait_idle(10.0) and node.worker.counts().processed == 1
        seen = len(reports)
        assert wait_until(lambda: len(reports) > seen + 1, 5.0)
        assert reports[-1].level != DiagnosticStatus.ERROR, reports[-1].message
    finally:
        session.remove(listener)
        session.remove(node)


def test_the_latency_is_measured_when_the_dehazed_image_goes_out_not_after_the_fog_and_the_other_outputs(
        node: DehazeNode, probe: Probe, session: RosSession) -> None:
    """At 1920x1080 the fog measurement and the depth messages after the image take tens of milliseconds: a latency
    taken after them would end later than the image reached its subscriber."""
    from ros_harness import RELIABLE

    set_ok(node, detection_enabled=False, camera_height=1.5)
    arrivals: dict[tuple[int, int], int] = {}
    viewer = session.listener("latency_viewer", Image, "/dgdehaze/image_dehazed", lambda m: arrivals.setdefault(
        (m.header.stamp.sec, m.header.stamp.nanosec), time.time_ns()), RELIABLE)
    frame = hazy_test_frame(1920, 1080)
    late_ms = []
    try:
        assert probe.wait_for(lambda: outputs_matched(node, viewer, "image"), 10.0)
        for _ in range(4):
            header = Header(frame_id="camera_optical_frame", stamp=node.get_clock().now().to_msg())  # as latency
            published = node.stats.published
            send_and_wait(probe, bgr8_to_image(frame, "bgr8", header), ("image_dehazed", "depth_relative"))
            assert probe.wait_for(lambda: node.stats.published > published and
                                  (header.stamp.sec, header.stamp.nanosec) in arrivals, 10.0)
            sent_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
            late_ms.append(sent_ns / 1e6 + node.stats.latency_ms[-1] - arrivals[header.stamp.sec,
                                                                                 header.stamp.nanosec] / 1e6)
    finally:
        set_ok(node, camera_height=0.0)
        session.remove(viewer)
    assert probe.messages("visibility"), "no fog was measured after the image"
    assert np.median(late_ms) < 15.0, f"latency ended {late_ms} ms after the image had arrived"


def overhead_node(session: RosSession, name: str, **parameters: object) -> tuple[DehazeNode, Probe]:
    """A fresh node `name` (its diagnostics window holds only the test's frames) on its own camera topics, and a
    probe for it whose subscriptions the node has matched."""
    node = create_node({"model": "dcp", "detection_enabled": False, "image_reliability": "reliable",
                        "publish_depth": False, **parameters}, name=name,
                       remappings={"image": f"/{name}_camera/image"}, context=session.context)
    session.add(node)
    probe = Probe(session.context, node_path=f"/{name}", image_topic=f"/{name}_camera/image",
                  info_topic=f"/{name}_camera/camera_info", name=f"{name}_probe")
    session.add(probe)
    assert probe.wait_for_subscribers()
    assert probe.wait_for(lambda: inputs_matched(node), 10.0)
    return node, probe


def test_the_overhead_leaves_out_the_first_frame_s_wait_for_camera_info(session: RosSession) -> None:
    """A camera_info publisher that sends none makes the activation's first frame wait FIRST_CAMERA_INFO_WAIT_S:
    that is no work of the node's, nor is it the time the worker needs per frame. The frame's ~/image_dehazed goes
    out before the wait (only the outputs that need a camera_info wait), so the round trip is taken to the frame's
    count, which comes after its last output."""
    from dgdehaze_ros.node import FIRST_CAMERA_INFO_WAIT_S

    node, probe = overhead_node(session, "wait_dgdehaze")
    try:
        msg = bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(300))
        sent = time.monotonic()
        probe.publish(msg)  # no camera_info: the node waits for one
        wait_for_outputs(probe, msg.header, ("image_dehazed",))
        assert probe.wait_for(lambda: node.stats.published == 1, 10.0)
        elapsed_ms = (time.monotonic() - sent) * 1000
        assert elapsed_ms >= FIRST_CAMERA_INFO_WAIT_S * 1000, "the frame did not wait for a camera_info"
        summary = node.stats.summary()
    finally:
        session.remove(probe)
        session.remove(node)
    assert summary["frames_published"] == 1
    # the frame's round trip holds the wait and the node's work: what the node counts fits in what is left
    work_ms = elapsed_ms - FIRST_CAMERA_INFO_WAIT_S * 1000
    assert summary["node_ms_max"] <= work_ms, (summary, elapsed_ms)
    assert summary["overhead_ms_median"] <= work_ms, (summary, elapsed_ms)


def test_the_overhead_leaves_out_the_fog_measurement_which_is_timed_on_its_own(session: RosSession) -> None:
    """The same 1920x1080 frames without and with a camera_height: the fog measurement shows as fog_ms, and the
    overhead grows by well under it (counted in it, it would grow by all of it; a loaded host moves both, and
    moved the overhead by 17 ms once, so the bound is the fog's own time, not a fixed one)."""
    frame = hazy_test_frame(1920, 1080)
    summaries = {}
    for camera_height in (0.0, 1.5):
        node, probe = overhead_node(session, f"fog{int(camera_height)}_dgdehaze", camera_height=camera_height)
        try:
            for index in range(6):
                send_and_wait(probe, bgr8_to_image(frame, "bgr8", stamped_header(310 + index)), ("image_dehazed",))
            assert probe.wait_for(lambda: node.stats.published == 6, 10.0)
            if camera_height:
                assert probe.messages("visibility"), "no fog was measured"
            summaries[camera_height] = node.stats.summary()
        finally:
            session.remove(probe)
            session.remove(node)
    without, with_fog = summaries[0.0], summaries[1.5]
    assert without["fog_ms_median"] < 1.0 and with_fog["fog_ms_median"] > 10.0, (without, with_fog)
    assert with_fog["overhead_ms_median"] - without["overhead_ms_median"] < with_fog["fog_ms_median"] / 2, \
        (without, with_fog)


def test_a_frame_that_arrives_as_activation_subscribes_has_its_outputs_published(session: RosSession) -> None:
    """A camera already publishing can deliver a frame the moment the image subscription exists, before
    on_activate returns. The node below hands itself such a frame right then and lets the worker finish it before
    activation goes on (the widest that window can be); its dehazed image must still go out."""
    from ros_harness import RELIABLE

    header = stamped_header(400)

    class FrameOnSubscribe(DehazeNode):
        def create_subscription(self, msg_type, topic, callback, *args, **kwargs):  # type: ignore[no-untyped-def]
            subscription = super().create_subscription(msg_type, topic, callback, *args, **kwargs)
            if msg_type is Image:
                self._on_image(bgr8_to_image(hazy_test_frame(160, 120), "bgr8", header), {})
                assert self.worker.wait_idle(10.0)
            return subscription

    node = FrameOnSubscribe("early_dgdehaze", context=session.context, cli_args=["--ros-args", "-r",
                                                                                 "image:=/early_camera/image"],
                            parameter_overrides=[Parameter("model", value="dcp"),
                                                 Parameter("detection_enabled", value=False)])
    session.add(node)
    dehazed: list[Image] = []
    viewer = session.listener("early_viewer", Image, "/early_dgdehaze/image_dehazed", dehazed.append, RELIABLE)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert wait_until(lambda: outputs_matched(node, viewer, "image"), 10.0)
        node.trigger_activate()
        assert node.worker.counts().processed == 1
        assert wait_until(lambda: any(m.header.stamp == header.stamp for m in dehazed), 5.0), \
            "the frame was processed while the publishers were still disabled: its outputs were dropped"
    finally:
        session.remove(viewer)
        session.remove(node)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


HAND_OVER_MS = 50.0
"""Slack between the worker finishing a frame and starting the next (thread switch and GIL on 2 loaded cores)."""


@pytest.mark.slow
def test_30hz_input_faster_than_inference_keeps_no_backlog_and_processes_the_newest_frame(
        node: DehazeNode, probe: Probe) -> None:
    """About 5 s of the load check (the 60 s version is `run_node_benchmark`, docs/ROS.md): 1 s to warm up at
    1280x720, then 4 s measured, frames sent at 30 Hz or, where the host runs DCP faster than the 33 ms frame
    period, at twice the rate it processes a frame. No backlog: the mailbox never holds more than one frame, and a
    typical frame waits less than one frame's processing (a frame arriving during a run waits for its rest; a queue
    would make it wait for several runs)."""
    set_ok(node, detection_enabled=False)
    frame = bgr8_to_image(hazy_test_frame(1280, 720), "bgr8", stamped_header(97))
    send_and_wait(probe, frame, ("image_dehazed",))
    frame.header = stamped_header(98)
    send_and_wait(probe, frame, ("image_dehazed",))
    period = min(1 / 30.0, node.stats.node_ms[-1] / 1000.0 / 2)
    pending_seen: list[int] = []
    rss: list[float] = []
    index, start = 100, time.monotonic()
    before = None
    while time.monotonic() - start < 5.0:
        if before is None and time.monotonic() - start >= 1.0:
            before = node.worker.counts()
            published_before = node.stats.published
            first_measured = index
        frame.header = stamped_header(index)
        probe.publish(frame)
        pending_seen.append(node.worker.counts().pending)
        if index % 15 == 0:
            probe.clear()  # the probe records every output; keep its memory out of the node's
            if before is not None:
                rss.append(rss_mb())
        index += 1
        time.sleep(max(0.0, start + (index - 100) * period - time.monotonic()))
    last = stamped_header(index - 1).stamp
    assert probe.wait_for(lambda: any(m.header.stamp == last for m in probe.messages("image_dehazed")), 10.0), \
        "the newest frame was not processed"
    after = node.worker.counts()
    assert before is not None
    sent = index - first_measured
    assert max(pending_seen) <= 1, "more than one frame waited for the worker"
    assert after.dropped > before.dropped, "inference was slower than the input, yet nothing was dropped"
    assert 0 < after.processed - before.processed < sent
    # this test's frames only (the window also holds earlier tests'); medians, since one frame in this process can
    # wait a second for a reason no queue explains (1032 ms behind a 116 ms frame in one CI run: the GIL or the
    # collector, with the probe and the camera in the same process)
    measured = node.stats.published - published_before
    assert 0 < measured <= len(node.stats.wait_ms)
    waits, took = list(node.stats.wait_ms)[-measured:], list(node.stats.node_ms)[-measured:]
    assert np.median(waits) <= np.median(took) + HAND_OVER_MS, \
        f"frames waited {np.median(waits):.0f} ms (median) for a worker taking {np.median(took):.0f} ms: queued"
    assert max(rss) - rss[0] < 100.0, f"memory grew from {rss[0]:.0f} to {max(rss):.0f} MB under load"


def test_with_use_sim_time_the_latency_is_unknown_until_a_clock_comes_then_measured_against_it(
        session: RosSession) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock

    from ros_harness import RELIABLE

    sim = create_node({"model": "dcp", "use_sim_time": True, "detection_enabled": False, "image_reliability":
                       "reliable", "diagnostics_period": 0.2}, name="sim_dgdehaze",
                      remappings={"image": "/sim/image", "camera_info": "/sim/camera_info"}, context=session.context)
    player = rclpy.create_node(f"player_{os.getpid()}", context=session.context)
    clock = player.create_publisher(Clock, "/clock", 10)
    frames = player.create_publisher(Image, "/sim/image", RELIABLE)
    reports: list[DiagnosticArray] = []
    player.create_subscription(DiagnosticArray, "/diagnostics", reports.append, 10)
    session.add(sim)
    session.add(player)

    def busy() -> list[tuple[DiagnosticStatus, dict[str, str]]]:
        """The node's reports of periods it processed frames in, with their values."""
        values = [(s, {kv.key: kv.value for kv in s.values}) for r in list(reports) for s in r.status
                  if "sim_dgdehaze" in s.name]
        return [(s, v) for s, v in values if v.get("fps", "0") != "0"]

    def latency() -> float:
        return float(busy()[-1][1]["latency_ms_median"]) if busy() else math.nan

    try:
        frame = bgr8_to_image(hazy_test_frame(160, 120), "bgr8", stamped_header(0))  # a bag played without --clock
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and not busy():
            frames.publish(frame)
            time.sleep(0.1)
        status, values = busy()[-1]
        assert values["latency_ms_median"] == "nan", "with no /clock the node's time reads 0: now - stamp is no latency"
        assert status.level == DiagnosticStatus.WARN and "no /clock" in status.message, status.message
        header = stamped_header(0)
        header.stamp.sec, header.stamp.nanosec = 1000, 0  # the bag's time: 500 ms before the clock below
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline and not math.isfinite(latency()):
            clock.publish(Clock(clock=Time(sec=1000, nanosec=500_000_000)))
            frames.publish(bgr8_to_image(hazy_test_frame(160, 120), "bgr8", header))
            time.sleep(0.1)
        assert latency() == pytest.approx(500.0, abs=1.0), "latency should follow /clock, not the wall clock"
        assert "no /clock" not in busy()[-1][0].message
    finally:
        session.remove(player)
        session.remove(sim)


def test_qos_overrides_apply_and_the_compressed_input_follows_the_image_remap(session: RosSession) -> None:
    from rclpy.qos import ReliabilityPolicy

    node = create_node({"model": "dcp", "detection_enabled": False, "input_transport": "compressed",
                        "qos_overrides./front/image_raw/compressed.subscription.reliability": "best_effort",
                        "qos_overrides./qos_dgdehaze/image_dehazed.publisher.reliability": "best_effort",
                        "qos_overrides./diagnostics.publisher.depth": 50},
                       name="qos_dgdehaze", remappings={"image": "/front/image_raw"}, context=session.context)
    session.add(node)
    try:  # image_transport's naming: the compressed topic of the remapped image, not /image/compressed
        (subscription,) = node.get_subscriptions_info_by_topic("/front/image_raw/compressed")
        assert subscription.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        assert not node.get_subscriptions_info_by_topic("/image/compressed")
        # and CameraSubscriber's: camera_info beside the remapped image, not /camera_info
        assert node.get_subscriptions_info_by_topic("/front/camera_info")
        assert not node.get_subscriptions_info_by_topic("/camera_info")
        (dehazed,) = node.get_publishers_info_by_topic("/qos_dgdehaze/image_dehazed")
        (depth,) = node.get_publishers_info_by_topic("/qos_dgdehaze/depth_relative")
        assert dehazed.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        assert depth.qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert node.get_parameter("qos_overrides./qos_dgdehaze/depth_relative.publisher.depth").value == 5
        assert node.get_parameter("qos_overrides./diagnostics.publisher.depth").value == 50, "/diagnostics too"
    finally:
        session.remove(node)


def test_every_frame_sent_is_either_received_or_counted_missing_by_sequence(node: DehazeNode, probe: Probe) -> None:
    def counters() -> dict[str, float]:
        return {k: float(v) for k, v in newest_diagnostics(probe)[2].items()
                if k in ("frames_received", "frames_missing_in_sequence")}

    frame = bgr8_to_image(hazy_test_frame(640, 480), "bgr8", stamped_header(70))
    send_and_wait(probe, frame, ("image_dehazed",))  # the publisher's sequence is known to the node from here
    time.sleep(0.5)
    before = counters()
    burst = [bgr8_to_image(hazy_test_frame(1920, 1080), "bgr8", stamped_header(71 + i)) for i in range(2)]
    for index in range(40):  # a burst of large frames: the histories (writer 10, reader 1) overwrite some
        probe.publish(burst[index % 2])
    time.sleep(1.0)
    send_and_wait(probe, bgr8_to_image(hazy_test_frame(640, 480), "bgr8", stamped_header(120)), ("image_dehazed",))
    time.sleep(0.5)
    assert probe.wait_for(lambda: counters()["frames_received"] >= before["frames_received"] + 1, 5.0)
    after = counters()
    received = after["frames_received"] - before["frames_received"]
    missing = after["frames_missing_in_sequence"] - before["frames_missing_in_sequence"]
    assert missing > 0, "the burst was meant to overflow the histories"
    # the counters come from periodic /diagnostics snapshots, which a frame in flight may straddle by one
    assert abs(received + missing - 41) <= 1, (received, missing)




def test_a_probe_that_cannot_connect_says_which_step_did_not_happen_and_what_it_heard(session: RosSession) -> None:
    """A module's probe that never connected failed every test of its module with one line that named neither the
    step nor anything the node said (a CI run's 76 set-up errors, their cause not in its log): `connect` now names
    the step, what the probe received and the newest /diagnostics."""
    from sensor_msgs.msg import CameraInfo

    probe = session.add(Probe(session.context, node_path="/nobody", image_topic="/cam/image",
                              info_topic="/cam/camera_info", name="lonely_probe"))
    takers = []
    try:
        with pytest.raises(AssertionError, match="nothing subscribed to /cam/image and /cam/camera_info "
                                                 "within 0.5 s; received .*, the newest /diagnostics: "):
            probe.connect(0.5)
        takers = [session.listener("silent_image", Image, "/cam/image", lambda msg: None, 1),
                  session.listener("silent_info", CameraInfo, "/cam/camera_info", lambda msg: None, 1)]
        with pytest.raises(AssertionError, match=r"/nobody/camera_info relayed none of [1-9]\d* frames with "
                                                 r"camera_info within 2 s; received .*, the newest /diagnostics: "):
            probe.connect(2.0)
    finally:
        for node in [probe, *takers]:
            session.remove(node)


def test_the_session_spins_on_when_a_subscription_s_event_handler_is_destroyed_under_its_executor(
        session: RosSession) -> None:
    """A test that destroys a subscription from its own thread (trigger_deactivate, `RosSession.remove`) can do so
    after the executor collected the subscription's event handler for its next wait set and before it entered it:
    rclpy then raises InvalidHandle out of `spin` (ros2/rclpy#1284). The session stopped spinning there, silently,
    and every later test of the module waited out its timeouts (16 failures of one run under load). Here the
    handler is destroyed while still among the node's waitables, the state that race leaves for one wait set."""
    from std_msgs.msg import String

    from dgdehaze_ros.rclpy_compat import SubscriptionEventCallbacks

    heard: list[String] = []
    listener = session.listener("spin_on", String, "/spin_on", heard.append, RELIABLE)
    doomed = listener.create_subscription(String, "/spin_on_doomed", lambda msg: None, RELIABLE,
                                          event_callbacks=SubscriptionEventCallbacks(message_lost=lambda info: None))
    talker = session.add(rclpy.create_node(f"spin_on_talker_{os.getpid()}", context=session.context))
    try:
        for handler in doomed.event_handlers:  # deferred while the executor waits on them: done as the wait ends
            handler.destroy()
        publisher = talker.create_publisher(String, "/spin_on", RELIABLE)
        assert wait_until(lambda: publisher.get_subscription_count() > 0, 10.0)
        raised = session.invalid_handles
        publisher.publish(String(data="wakes the executor, which then builds a wait set with the destroyed handler"))
        assert wait_until(lambda: session.invalid_handles > raised, 10.0)
        listener.destroy_subscription(doomed)  # the rest of the race: the handler leaves the node's waitables
        assert wait_until(lambda: (publisher.publish(String(data="after")), any(m.data == "after" for m in heard))[1],
                          10.0), "the session stopped delivering"
    finally:
        for node in (listener, talker):
            session.remove(node)
