"""Two cameras, two dgdehaze nodes in one process (as a component container or one launch holds them): `front` and
`rear`, both named dgdehaze, in their own namespaces, with different parameters, on one executor over real DDS.
Each keeps to its own namespace, its camera's headers and its own parameters, and one refused, reconfigured or
destroyed leaves the other running."""
from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="needs ROS 2 (pip ros-* wheels or a ROS install)")

from rcl_interfaces.msg import Log  # noqa: E402
from rclpy.exceptions import ParameterException  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

from dgdehaze_core.benchmarks.timing import hazy_test_frame  # noqa: E402
from dgdehaze_ros.conversions import bgr8_to_image  # noqa: E402
from dgdehaze_ros.detection_messages import LABEL_INFO_QOS, VISION_MSGS_AVAILABLE  # noqa: E402
from dgdehaze_ros.node import DehazeNode, create_node  # noqa: E402
from dgdehaze_ros.node_logging import attribute_threads  # noqa: E402

from ros_harness import (GatedLoads, Probe, RosSession, loader_threads, send_and_wait, set_ok,  # noqa: E402
                         stamped_header, wait_until)

if VISION_MSGS_AVAILABLE:
    from vision_msgs.msg import LabelInfo

pytestmark = pytest.mark.ros

CAMERAS = ("front", "rear")


def camera_node(session: RosSession, camera: str, **parameters: object) -> DehazeNode:
    """An active dcp node `/<camera>/dgdehaze` of `session` on /<camera>/image_raw."""
    return session.add(create_node({"model": "dcp", "detection_enabled": False, "diagnostics_period": 0.2,
                                    **parameters}, namespace=camera,
                                   remappings={"image": f"/{camera}/image_raw"}, context=session.context))


def camera_probe(session: RosSession, camera: str) -> Probe:
    """A probe of `/<camera>/dgdehaze` that has had it relay a camera_info."""
    probe = session.add(Probe(session.context, node_path=f"/{camera}/dgdehaze", image_topic=f"/{camera}/image_raw",
                              info_topic=f"/{camera}/camera_info", name=f"probe_{camera}"))
    probe.connect()
    return probe


def test_a_camera_s_node_refused_at_start_or_destroyed_leaves_the_graph_and_the_other_runs(
        session: RosSession) -> None:
    """A node refused as it is made (a read-only parameter outside its choices), or destroyed (a component
    unloaded), stayed in the ROS graph (`ros2 node list`) beside the other nodes of its process until Python's
    garbage collector found it: rclpy's LifecycleNode keeps its state machine, which holds the node, and the node
    is a reference cycle. A corrected /rear/dgdehaze made next was a second one of that name."""
    front = camera_node(session, "front")
    probe = camera_probe(session, "front")

    def rears() -> int:
        return front.get_node_names_and_namespaces().count(("dgdehaze", "/rear"))

    collecting = gc.isenabled()
    gc.disable()  # the nodes lingered until a collection: none may run meanwhile to hide it
    try:
        with pytest.raises(ParameterException, match="image_reliability"):
            DehazeNode(namespace="rear", context=session.context,
                       parameter_overrides=[Parameter("image_reliability", value="besteffort")])
        assert wait_until(lambda: rears() == 0, 5.0), "the refused /rear/dgdehaze stays in the graph"
        rear = camera_node(session, "rear")
        assert wait_until(lambda: rears() == 1, 5.0) and not wait_until(lambda: rears() > 1, 0.5)
        session.remove(rear)
        assert wait_until(lambda: rears() == 0, 5.0), "the destroyed /rear/dgdehaze stays in the graph"
    finally:
        if collecting:
            gc.enable()
    try:
        header = stamped_header(1, "front_camera_optical_frame")
        out = send_and_wait(probe, bgr8_to_image(hazy_test_frame(64, 48), "bgr8", header), ("image_dehazed",))
        assert out["image_dehazed"].header == header
    finally:
        session.remove(probe)
        session.remove(front)


def test_the_threads_of_two_cameras_nodes_of_one_name_say_which_node_they_serve(session: RosSession) -> None:
    """The frame worker and the model loader were named after the node's name alone: both cameras' nodes ran a
    `dgdehaze-worker`, and a frame that failed was logged as `dgdehaze-worker: processing failed` for either."""
    front = camera_node(session, "front")
    rear = GatedLoads("dgdehaze", namespace="rear", context=session.context, parameter_overrides=[
        Parameter("model", value="dcp"), Parameter("backend", value="torch"),
        Parameter("detection_enabled", value=False)])
    try:
        assert rear.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert rear.trigger_activate() == TransitionCallbackReturn.SUCCESS
        names = [thread.name for thread in threading.enumerate()]
        assert {"front.dgdehaze-worker", "rear.dgdehaze-worker"} <= set(names) and "dgdehaze-worker" not in names
        rear.fail = True  # the held load fails once let go: nothing is loaded
        set_ok(rear, model="lite")
        assert rear.loading.wait(30.0), "the change started no background load"
        assert [thread.name for thread in loader_threads("rear.dgdehaze")] == ["rear.dgdehaze-loader"]
    finally:
        rear.gate.set()
        rear.destroy_node()
        session.remove(front)


def test_the_core_s_log_lines_of_two_cameras_nodes_say_which_node_they_come_from_and_reach_its_rosout(
        session: RosSession, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    """The core logs with Python's logging, not the node's rclpy logger: with two cameras' nodes in one process,
    `INFO dgdehaze_core.models: loaded lite model from ...` did not say which node loaded it, and it was neither on
    /rosout (rqt_console) nor in ~/.ros/log. A line logged during a node's transition or on its threads (front's
    configure loads lite on its `-configure` thread, rear's loader after a change to lite) now begins with the
    node's logger name in the process's own handlers, and goes to that node's rclpy logger: on /rosout under the
    node's name, printed once.
    The process's other lines are left as they are."""
    logs: list[Log] = []
    listener = session.listener("core_log", Log, "/rosout", logs.append, QoSProfile(
        depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def on_rosout(node: str) -> list[Log]:
        return [log for log in logs if log.name == node and log.msg.startswith("dgdehaze_core.models: loaded lite")]

    def rear_backend_on_rosout() -> bool:  # logged just after rear's "loaded lite": waited for before unsubscribing
        return any(log.name == "rear.dgdehaze" and log.msg.endswith(": torch backend: lite model on cpu, fp32")
                   for log in logs)

    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        front = camera_node(session, "front", model="lite", backend="torch")
        rear = camera_node(session, "rear", backend="torch")
        try:
            set_ok(rear, model="lite")
            assert wait_until(lambda: rear._pipeline.method == "lite", 60.0), "rear never loaded lite"
            assert wait_until(lambda: on_rosout("front.dgdehaze") and on_rosout("rear.dgdehaze")
                              and rear_backend_on_rosout(), 30.0), [(log.name, log.msg) for log in logs]
            logging.getLogger("dgdehaze_core.models").info("a line of no node")
        finally:
            session.remove(listener)
            session.remove(rear)
            session.remove(front)
    loaded = [(record.threadName, record.getMessage().split(" model from ")[0]) for record in caplog.records
              if record.name == "dgdehaze_core.models"]
    assert loaded == [("front.dgdehaze-configure", "[front.dgdehaze] loaded lite"),
                      ("rear.dgdehaze-loader", "[rear.dgdehaze] loaded lite"), ("MainThread", "a line of no node")]
    assert "[rear.dgdehaze] torch backend: lite" in caplog.text, "the formatted line, in whatever format the " \
        "process set (another test's Ray sets its own)"
    assert {log.level for log in on_rosout("front.dgdehaze") + on_rosout("rear.dgdehaze")} == {Log.INFO}
    # rclpy prints each once (the lines the process's own Python handlers print, if an earlier test set any, are
    # theirs: the executable's own console handler is tested in test_ros_launch.py)
    printed = capfd.readouterr().err.splitlines()
    for node in ("front.dgdehaze", "rear.dgdehaze"):
        assert sum(f"] [{node}]: dgdehaze_core.models: loaded lite" in line for line in printed) == 1, printed


def test_a_node_s_log_line_whose_message_is_no_str_is_formatted_by_the_handlers_not_in_the_log_call(
        caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The record factory prefixed a node's message with the node's name as the record was made, calling `str` on a
    message that is no str (an exception, any object) inside the caller's log call: one whose `str` raises raised
    into the node's worker or transition, where logging defers `str` to its handlers. Such a message is prefixed as
    it is formatted, and reaches the node's rclpy logger as a str message does."""
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    node, thread = "node_logging_test.dgdehaze", "node_logging_test.dgdehaze-worker"
    attribute_threads(node, thread)
    quiet = logging.getLogger("node_logging_test.quiet")  # made, handled by nothing (pytest's handler would raise)
    monkeypatch.setattr(quiet, "propagate", False)
    monkeypatch.setattr(quiet, "handlers", [logging.NullHandler()])
    raised: list[Exception] = []

    def log() -> None:
        try:
            quiet.warning(Unprintable())
            logging.getLogger("dgdehaze_core.test").warning(ValueError("frame 3 did not decode"))
        except Exception as exc:  # noqa: BLE001 - what the log call raised is the finding
            raised.append(exc)

    capfd.readouterr()
    with caplog.at_level(logging.WARNING):
        worker = threading.Thread(target=log, name=thread)
        worker.start()
        worker.join()
    assert raised == []
    assert [record.getMessage() for record in caplog.records if record.name == "dgdehaze_core.test"] == [
        f"[{node}] frame 3 did not decode"]
    assert f"[{node}]: dgdehaze_core.test: frame 3 did not decode" in capfd.readouterr().err


@pytest.mark.skipif(not VISION_MSGS_AVAILABLE, reason="needs vision_msgs for ~/label_info and ~/detections")
def test_two_cameras_nodes_in_one_process_keep_to_their_namespaces_headers_and_parameters(
        session: RosSession) -> None:
    """front (detection, a camera height) and rear (no detection), both dcp, in one process: every output carries
    its own camera's header under its own namespace, each latches its own class map and reports on /diagnostics
    under its full name, a parameter set or refused on one leaves the other's, and one cleaned up leaves the other
    publishing."""
    front = camera_node(session, "front", detection_enabled=True, camera_height=1.5, threshold=0.3)
    rear = camera_node(session, "rear", threshold=0.6)
    labels: dict[str, list[LabelInfo]] = {camera: [] for camera in CAMERAS}
    listeners = [session.listener(f"labels_{camera}", LabelInfo, f"/{camera}/dgdehaze/label_info",
                                  labels[camera].append, LABEL_INFO_QOS) for camera in CAMERAS]
    probes = {camera: camera_probe(session, camera) for camera in CAMERAS}
    topics = ("image_dehazed", "depth_relative", "camera_info", "haze_density")
    try:
        headers = {camera: stamped_header(index + 10, f"{camera}_camera_optical_frame")
                   for index, camera in enumerate(CAMERAS)}
        for camera, header in headers.items():
            out = send_and_wait(probes[camera], bgr8_to_image(hazy_test_frame(160, 120), "bgr8", header),
                                topics + (("detections",) if camera == "front" else ()))
            assert all(message.header == header for message in out.values()), camera
        assert wait_until(lambda: bool(labels["front"]), 10.0), "no latched ~/label_info"
        assert [round(message.threshold, 2) for message in labels["front"]] == [0.3]
        assert labels["rear"] == [], "rear runs no detector"
        reporting = {"/front/dgdehaze: dehazing", "/rear/dgdehaze: dehazing"}
        assert wait_until(lambda: reporting <= {status.name for message in probes["front"].messages("diagnostics")
                                                for status in message.status}, 5.0), "not both on /diagnostics"
        for camera, other in (("front", "rear"), ("rear", "front")):
            crossed = [topic for topic in topics + ("detections",) for message in probes[camera].messages(topic)
                       if message.header.frame_id == headers[other].frame_id]
            assert not crossed, f"{camera} received {other}'s outputs on {crossed}"

        set_ok(front, threshold=0.5)
        assert rear.get_parameter("threshold").value == 0.6
        assert not rear.set_parameters([Parameter("camera_height", value=-1.0)])[0].successful
        assert front.get_parameter("camera_height").value == 1.5
        assert wait_until(lambda: len(labels["front"]) == 2, 10.0) and labels["rear"] == []

        assert rear.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert rear.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        header = stamped_header(20, "front_camera_optical_frame")
        out = send_and_wait(probes["front"], bgr8_to_image(hazy_test_frame(160, 120), "bgr8", header),
                            ("image_dehazed", "detections"))
        assert all(message.header == header for message in out.values())
    finally:
        for node in (*probes.values(), *listeners, rear, front):
            session.remove(node)


@pytest.mark.slow  # two exports of lite to ONNX, about 30 s each on a 2-core machine
def test_two_cameras_nodes_that_export_their_networks_at_once_both_load_them(
        session: RosSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """front (decoder output) and rear (physics output) switched to lite at once, with no export of either in the
    engine cache: their background loads exported at the same time in one process, and torch.export, which keeps
    process-wide state, failed one of them (`ProxyTorchDispatchMode slot already occupied`): that node was put back
    to dcp with an ERROR."""
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(tmp_path / "engines"))
    nodes = {camera: camera_node(session, camera, backend="onnxruntime", output=output, cpu_threads=1)
             for camera, output in (("front", "decoder"), ("rear", "physics"))}
    try:
        for node in nodes.values():
            set_ok(node, model="lite")
        assert wait_until(lambda: all(node._pipeline.method == "lite" or node._reload_problems
                                      for node in nodes.values()), 300.0), "the loads did not end"
        assert {camera: dict(node._reload_problems) for camera, node in nodes.items()} == {"front": {}, "rear": {}}
        assert {camera: node.get_parameter("model").value for camera, node in nodes.items()} == \
            {"front": "lite", "rear": "lite"}
    finally:
        for node in nodes.values():
            session.remove(node)
