"""`dgdehaze bag-eval --node`: a bag replayed through the real dgdehaze_node over DDS, its outputs recorded."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="node replay needs rclpy (ROS 2 from pip or a ROS install)")

from test_bag_eval import read_all  # noqa: E402
from ros_harness import any_room  # noqa: E402
from test_bag_io import CUSTOM_TYPE, demo_frames, write_camera_bag, write_humble_bag  # noqa: E402

from dgdehaze_core.bags.io import COMPRESSED_IMAGE_TYPE, DETECTIONS_TYPE, BagSource  # noqa: E402
from dgdehaze_core.cli import main  # noqa: E402
from dgdehaze_core.datasets.paths import REPO_DIR  # noqa: E402
from dgdehaze_core.io.camera_frames import compressed_to_bgr8  # noqa: E402
from dgdehaze_core.io.compressed_depth import decompress_depth  # noqa: E402
from dgdehaze_ros.fastdds_profile import (FASTDDS_SETTINGS, large_image_environment,  # noqa: E402
                                          transport_summary)

pytestmark = pytest.mark.ros


@pytest.mark.slow
def test_replay_through_the_node_records_its_outputs_at_the_original_stamps(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("vision_msgs", reason="the node publishes detections only with vision_msgs")
    for name in (*FASTDDS_SETTINGS, "RMW_IMPLEMENTATION"):  # Fast DDS at its defaults, as on a fresh machine
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE")  # the default, not the tests' LOCALHOST (conftest)
    frames = demo_frames(3, (320, 180))
    stamps = write_camera_bag(tmp_path / "in", "sqlite3", frames, "jpeg", info_after_last=2)
    out = tmp_path / "eval"
    code = main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw",
                 "--camera-info-topic", "/cam/camera_info", "--node", "--method", "dcp", "--out", str(out),
                 "--node-param", "camera_height:=1.5", "--no-progress", "--timeout", "30"])
    assert code == 0, (out.parent / "eval.log")
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ, \
        "the replay's localhost-only discovery stayed in the caller's environment, for every ROS context after it"
    assert not set(FASTDDS_SETTINGS) & set(os.environ), "the replay's Fast DDS profile stayed in the caller's env"
    with BagSource(out / "bag") as source:
        topics = source.topics()
    assert topics["/dgdehaze/image_dehazed/compressed"] == (COMPRESSED_IMAGE_TYPE, 3)  # as the camera's frames
    assert topics["/dgdehaze/depth_relative/compressedDepth"] == (COMPRESSED_IMAGE_TYPE, 3)
    assert topics["/dgdehaze/depth/compressedDepth"] == (COMPRESSED_IMAGE_TYPE, 3), "the node's metres, as offline"
    assert "/dgdehaze/image_dehazed" not in topics and "/dgdehaze/depth_relative" not in topics
    assert topics["/dgdehaze/detections"] == (DETECTIONS_TYPE, 3)
    assert topics["/cam/camera_info"][1] == 5, "every message of the input, those after the last frame too"
    messages = read_all(out / "bag")
    for name in ("image_dehazed/compressed", "depth_relative/compressedDepth", "detections", "camera_info",
                 "haze_density", "visibility"):
        recorded = messages[f"/dgdehaze/{name}"]
        assert [t for t, _ in recorded] == stamps, name
        assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in recorded] == stamps, name
        assert {m.header.frame_id for _, m in recorded} == {"camera_optical_frame"}
    assert all(0 < m.results[0].score <= 1 for _, m in messages["/dgdehaze/haze_density"])
    (_, labels), = messages["/dgdehaze/label_info"]  # the node's latched class map, recorded once
    names = {c.class_id: c.class_name for c in labels.class_map}
    assert names[0] == "person" and len(names) == 80
    for _, array in messages["/dgdehaze/detections"]:
        assert all(int(d.results[0].hypothesis.class_id) in names for d in array.detections)
    dehazed = messages["/dgdehaze/image_dehazed/compressed"][0][1]
    assert dehazed.format == "bgr8; jpeg compressed bgr8" and compressed_to_bgr8(dehazed).shape == (180, 320, 3)
    depth = messages["/dgdehaze/depth_relative/compressedDepth"][0][1]
    depth_map = decompress_depth(depth.format, bytes(depth.data))
    assert depth_map.shape == (180, 320) and np.isfinite(depth_map).any()
    assert len(json.loads((out / "summary.json").read_text())["per_frame"]["visibility_m"]) == 3
    summary = (out / "summary.json").read_text()
    assert '"mode": "node"' in summary and json.loads(summary)["weights"] == "none", "dcp runs no weights"
    started = [note for note in json.loads(summary)["notes"] if note.startswith("the node started with ")]
    assert len(started) == 1 and "camera_height:=1.5" in started[0] and "input_bits:=16" in started[0], started
    assert (out / "report.html").is_file() and (out / "node.log").is_file()
    assert "no camera_info has arrived" not in (out / "node.log").read_text(), \
        "the warm-up frame went without the bag's camera_info: the node's log said the bag had none"
    # the node's depth (4 bytes a pixel) crosses whole, not as UDP fragments whose repair adds seconds to latencies;
    # on a machine whose /dev/shm has no room for the profile, both stay on Fast DDS defaults and the report says so
    # (with the room free when the node looked, which the tests beside this one change)
    profile = large_image_environment()
    reported = transport_summary({**os.environ, **profile})
    assert f"transport: {any_room(reported)}" in any_room((out / "node.log").read_text())
    outputs = json.loads(summary)["output_latency_ms"]  # each output's arrival, so a late one shows by name
    assert {"image_dehazed", "depth_relative", "depth", "detections", "visibility"} <= set(outputs), outputs
    dehazed_latency = json.loads(summary)["figures"]["dehazed"]["latency_ms_median"]
    assert all(0 < row["median"] <= row["p95"] <= row["max"] for row in outputs.values()), outputs
    assert max(row["median"] for row in outputs.values()) <= dehazed_latency, "a frame's latency is its last output"
    assert "Latency to each of the node's outputs" in (out / "report.html").read_text()
    assert any_room(json.loads(summary)["notes"][-1]).endswith(f"as the node reports it: {any_room(reported)}")


@pytest.mark.slow
def test_where_the_node_tracks_the_hazy_row_is_tracked_too(tmp_path: Path) -> None:
    """The node's dehazed row counts only the objects its tracker has confirmed (an object seen first is not yet
    one), while the hazy row counted every box: with a tracker, the dehazer read as losing objects. Detecting on the
    raw frame (detection_input raw), the node's row sees what the hazy row sees, and tracked alike they count
    alike."""
    pytest.importorskip("vision_msgs", reason="the node publishes detections only with vision_msgs")
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(8, (640, 360)), "bgr8")
    out = tmp_path / "eval"
    assert main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw", "--node", "--method", "dcp",
                 "--out", str(out), "--node-param", "tracker:=bytetrack", "--node-param", "detection_input:=raw",
                 "--no-progress", "--timeout", "30"]) == 0
    per_frame = json.loads((out / "summary.json").read_text())["per_frame"]
    assert per_frame["detections_hazy"] == per_frame["detections_dehazed"], per_frame
    ids = [[d.id for d in message.detections] for _, message in read_all(out / "bag")["/dgdehaze/detections"]]
    assert all(all(ids) for ids in ids) and any(ids), ids


@pytest.mark.slow
@pytest.mark.parametrize("pace", [["--timeout", "0.1"], ["--timeout", "5", "--rate", "4"]], ids=["lockstep", "paced"])
def test_frames_of_an_unstamped_camera_get_the_node_s_outputs_for_them_not_for_the_frame_before(
        tmp_path: Path, shared_data: Path, pace: list[str]) -> None:
    """Every frame stamped 0 (an unstamped camera), each a width of its own, the node slower than the replay waits
    (large frames among small ones; lockstep: their outputs miss the timeout; paced: 4x the recorded rate): outputs
    were matched to frames by stamp alone, so the node's late answer to one frame was recorded as a later frame's."""
    from dgdehaze_core.bags.io import CAMERA_INFO_TYPE, IMAGE_TYPE
    from dgdehaze_core.bags.writer import BagWriter
    from test_bag_io import PERIOD, START, camera_info_msg, image_msg

    photos = sorted((shared_data / "detection" / "dawn-fog").glob("*.jpg"))[:8]
    widths = [(2400 if index in (1, 5) else 160) + 16 * index for index in range(8)]
    frames = [cv2.resize(cv2.imread(str(path)), (width, width * 9 // 16)) for width, path in zip(widths, photos)]
    with BagWriter(tmp_path / "in", "mcap") as writer:
        for index, frame in enumerate(frames):
            header = writer.header(0, "camera_optical_frame")
            writer.write("/cam/camera_info", CAMERA_INFO_TYPE, START + index * PERIOD,
                         camera_info_msg(writer, header, frame))
            writer.write("/cam/image_raw", IMAGE_TYPE, START + index * PERIOD, image_msg(writer, header, frame, "bgr8"))
    out = tmp_path / "eval"
    code = main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw", "--camera-info-topic",
                 "/cam/camera_info", "--node", "--method", "dcp", "--no-detection", "--out", str(out),
                 "--no-progress", *pace])
    assert code in (0, 1), (out / "node.log")  # 1: frames the node did not answer in time are listed as skipped
    recorded = read_all(out / "bag")["/dgdehaze/image_dehazed"]
    assert recorded, "the node answered no frame"
    assert [widths.index(m.width) for _, m in recorded] == [(t - START) // PERIOD for t, _ in recorded]
    assert {(m.header.stamp.sec, m.header.stamp.nanosec) for _, m in recorded} == {(0, 0)}, "the bag's stamp"
    assert any("7 frames repeat an earlier frame's header stamp" in note
               for note in json.loads((out / "summary.json").read_text())["notes"])


def test_a_bag_that_cannot_be_copied_is_refused_before_any_node_is_asked(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """A custom type the bag stores no definition of (Humble's sqlite3) fails at once, not after the node ran."""
    write_humble_bag(tmp_path / "in", "sqlite3", demo_frames(1), definitions=False)
    out = tmp_path / "eval"
    code = main(["bag-eval", str(tmp_path / "in"), "--node", "--attach", "--node-name", "no_such_dgdehaze_node",
                 "--no-detection", "--timeout", "1.5", "--out", str(out), "--no-progress"])
    assert code == 2
    assert f"{CUSTOM_TYPE}, which the bag stores no definition of" in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in"]


def test_attach_without_a_running_node_fails_clearly_and_writes_nothing(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(1))
    out = tmp_path / "eval"
    code = main(["bag-eval", str(tmp_path / "in"), "--node", "--attach", "--node-name", "no_such_dgdehaze_node",
                 "--no-detection", "--timeout", "1.5", "--out", str(out), "--no-progress"])
    assert code == 2
    assert "node /no_such_dgdehaze_node was not ready" in capsys.readouterr().err
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["in"]


def test_a_started_node_gets_the_detector_of_the_hazy_row_unless_a_node_param_says_otherwise() -> None:
    from argparse import Namespace

    from dgdehaze_core.commands.bag_eval import node_detector_params

    args = Namespace(node_param=["threshold:=0.4"], imgsz=480, detector_precision="file", conf=0.25, detector=None)
    assert node_detector_params(args) == ["imgsz:=480", "detector_precision:=file"]
    args = Namespace(node_param=[], imgsz=640, detector_precision="auto", conf=0.3, detector="/models/yolo.engine")
    assert node_detector_params(args) == ["imgsz:=640", "detector_precision:=auto", "threshold:=0.3",
                                          "detector_weights:=/models/yolo.engine"]


def test_the_plan_waits_only_for_what_the_node_publishes_for_each_frame() -> None:
    from dgdehaze_ros.tools.node_outputs import OutputPlan

    offered = ["image_dehazed", "depth_relative", "detections", "haze_density", "visibility", "camera_info", "depth"]
    started = OutputPlan.from_parameters({"detection_interval": 3, "camera_height": 0.0}, offered, True, True)
    assert [("detections" in started.required(n)) for n in range(7)] == [True, False, False, True, False, False, True]
    assert started.optional(1) == ["camera_info", "haze_density"], "no mounting: no ~/visibility to wait for"
    attached = OutputPlan.from_parameters({"detection_interval": 3, "camera_height": 1.4}, offered, False, False)
    assert all("detections" in attached.required(n) for n in range(3)), "count unknown: waited for, to learn it"
    assert attached.optional(0) == ["haze_density", "visibility", "depth"], "metres where the fog is measured"
    learnt = attached.answered(0, ["image_dehazed"]).answered(1, ["image_dehazed", "detections"])
    assert [("detections" in learnt.required(n)) for n in range(2, 8)] == [False, False, True, False, False, True]
    resynced = started.answered(2, ["image_dehazed", "detections"])  # the node's count went another way
    assert [("detections" in resynced.required(n)) for n in range(3, 6)] == [False, False, True]
    quiet = OutputPlan.from_parameters({"detection_enabled": False, "publish_depth": False}, offered, True, True)
    assert quiet.required(0) == ["image_dehazed"] and "detections" not in quiet.optional(0)
    assert OutputPlan.from_parameters({}, offered, True, False).required(5) == [
        "image_dehazed", "depth_relative", "detections"], "without an answer: the node's defaults"
    assert OutputPlan.from_parameters({}, offered[:2], True, False).required(0) == offered[:2]  # no vision_msgs
    assert "detections" not in started.without_detections().required(0)


@pytest.mark.slow
def test_frames_between_detections_are_not_held_back_and_the_bags_camera_info_reaches_the_node(
        tmp_path: Path) -> None:
    import time

    pytest.importorskip("vision_msgs", reason="the node publishes detections only with vision_msgs")
    stamps = write_camera_bag(tmp_path / "in", "mcap", demo_frames(4, (320, 180)), "bgr8")
    out = tmp_path / "eval"
    began = time.monotonic()
    code = main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw", "--node", "--method", "dcp",
                 "--out", str(out), "--node-param", "detection_interval:=2", "--no-progress", "--timeout", "30"])
    took = time.monotonic() - began
    assert code == 0
    recorded = read_all(out / "bag")
    detected = [t for t, _ in recorded["/dgdehaze/detections"]]
    assert detected == stamps[1::2], "the node detects on its frames 0 (the warm-up), 2, 4: the bag's 1 and 3"
    assert [t for t, _ in recorded["/dgdehaze/camera_info"]] == stamps, "no --camera-info-topic: the bag's only one"
    assert took < 55, f"{took:.0f} s: the frames without detections each waited out the 30 s timeout"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_frame"]["detected"] == [False, True, False, True]
    for row in ("hazy", "dehazed"):  # the hazy row detected every frame, which read as the dehazer losing half
        assert summary["figures"][row]["frames_detected"] == 2
        assert summary["figures"][row]["detections"] == sum(summary["per_frame"][f"detections_{row}"][1::2])
    assert summary["per_frame"]["detections_hazy"][0::2] == [0, 0]


def test_a_replay_attached_to_a_running_node_names_the_weights_it_runs(tmp_path: Path, session,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An attached replay's report said the weights were "unknown", and a started node's named a load of the
    replay's own: both name what the node says it runs on /diagnostics, a file replaced after it loaded not."""
    import hashlib
    import shutil

    from dgdehaze_core.models import shipped_weights_path
    from dgdehaze_ros.node import create_node
    from dgdehaze_ros.tools.bag_replay import replay_bag
    from ros_harness import DOMAIN_ID

    mine = tmp_path / "mine.pt"
    shutil.copyfile(shipped_weights_path("lite"), mine)
    loaded = hashlib.sha256(mine.read_bytes()).hexdigest()[:12]
    node = create_node({"weights": str(mine), "backend": "torch", "detection_enabled": False,
                        "image_reliability": "reliable", "diagnostics_period": 0.2}, name="attached_dgdehaze",
                       remappings={"image": "/cam/image_raw"}, context=session.context)
    session.add(node)
    try:
        shutil.copyfile(shipped_weights_path("lite_no_depth"), mine)  # an update lands; the node runs on
        write_camera_bag(tmp_path / "in", "mcap", demo_frames(2, (160, 96)), "bgr8")
        monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN_ID))  # an attached replay joins the environment's domain
        evaluation = replay_bag(tmp_path / "in", "/cam/image_raw", tmp_path / "eval", node_name="attached_dgdehaze",
                                attach=True, timeout=30.0, progress=False)
    finally:
        session.remove(node)
    assert evaluation.weights.startswith(f"mine.pt (sha256 {loaded}, "), evaluation.weights
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["weights"] == evaluation.weights
    assert evaluation.notes[-1].endswith(f"as the node reports it: {node.transport}"), \
        "an attached node's transport is its own (here: this process's), and the report says what it is"


@pytest.mark.slow
def test_with_a_mounting_node_replay_gives_each_detection_the_distance_in_metres_offline_evaluation_gives_it(
        tmp_path: Path) -> None:
    """Node replay took the boxes' median depth from the relative depth where offline evaluation takes the node's
    depth in metres: the same stretch of drive read 0.7 and 11 "m" by mode. The stretch is a time window of the
    drive, and the node is sent that part of it only."""
    from rosbags.highlevel import AnyReader

    bag = Path(__file__).resolve().parents[1] / "data" / "demo" / "rural_fog_day"
    with AnyReader([bag]) as reader:
        first = reader.start_time
        inside = [t for c, t, _ in reader.messages() if c.topic == "/camera/image_raw/compressed"
                  and first + 400_000_000 <= t < first + 900_000_000]
    assert len(inside) >= 2
    common = ["--camera-height", "1.3", "--camera-info-topic", "/camera/camera_info", "--start", "0.4",
              "--duration", "0.5", "--no-progress"]  # frames 4 to 8, where lite finds cars
    assert main(["bag-eval", str(bag), "--out", str(tmp_path / "offline"), *common]) == 0
    assert main(["bag-eval", str(bag), "--node", "--out", str(tmp_path / "node"), *common]) == 0
    offline, node = (json.loads((tmp_path / mode / "summary.json").read_text()) for mode in ("offline", "node"))
    assert node["mode"] == "node" and node["per_frame"]["log_time_ns"] == inside, "the window's frames alone"
    assert [t for t, _ in read_all(tmp_path / "node" / "bag")["/dgdehaze/image_dehazed/compressed"]] == inside
    assert node["method"] == offline["method"] == "lite"
    assert offline["detection_median_depth"] > 3.0, "metres to the cars ahead, not a relative depth"
    assert node["detection_median_depth"] == pytest.approx(offline["detection_median_depth"], rel=1e-3)


@pytest.mark.slow
def test_a_node_that_dies_part_way_ends_the_replay_at_once_and_the_frames_before_it_are_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each remaining frame waited out the whole timeout for a node that had exited: an hour's drive would have taken
    days to fail. The node is killed after the 20th recorded frame; the replay notices within a frame and writes the
    report of the 20, saying where and why it stopped, and exits 1."""
    import signal
    import time

    import psutil

    from dgdehaze_ros.tools import bag_replay

    def kill_the_node() -> None:
        for child in psutil.Process().children(recursive=True):
            if "dgdehaze_ros.executable" in " ".join(child.cmdline()):
                child.send_signal(signal.SIGKILL)

    record = bag_replay.record_frame

    def recording_then_killing(evaluation, *args, **kwargs) -> None:
        record(evaluation, *args, **kwargs)
        if len(evaluation.records) == 20:
            kill_the_node()

    monkeypatch.setattr(bag_replay, "record_frame", recording_then_killing)
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(10, (160, 96)) * 10, "bgr8")
    out = tmp_path / "eval"
    began = time.monotonic()
    code = main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw", "--node", "--method", "dcp",
                 "--no-detection", "--out", str(out), "--no-progress", "--timeout", "30"])
    took = time.monotonic() - began
    assert code == 1
    assert took < 60, f"{took:.0f} s: the frames after the node's death waited for it"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_evaluated"] == 20 and summary["frames_not_sent"] == 80
    assert summary["stopped"].startswith("dgdehaze_node exited with code -9, at frame 20"), summary
    assert "stopped early" in (out / "report.html").read_text()
    assert len(read_all(out / "bag")["/cam/image_raw"]) == 21, "the input up to the frame the node did not answer"


def test_an_attached_node_is_gone_when_nothing_subscribes_to_the_frames_any_more(session) -> None:
    """The replay's test for an attached node it did not start: present while a subscriber takes its frames."""
    import time

    from sensor_msgs.msg import Image

    from dgdehaze_ros.tools.bag_replay import NodeReplay
    from ros_harness import DOMAIN_ID

    replay = NodeReplay("attached_gone_probe", "/gone_probe/image_raw", False, None, DOMAIN_ID)
    try:
        assert replay.gone() == "node /attached_gone_probe no longer subscribes to the frames (stopped or deactivated)"
        taker = session.listener("gone_probe_taker", Image, "/gone_probe/image_raw", lambda msg: None, 1)
        deadline = time.monotonic() + 10
        while replay.gone() and time.monotonic() < deadline:
            replay.spin(0.05)
        assert replay.gone() == "", "a subscriber to the frames: the node is there"
        session.remove(taker)
        deadline = time.monotonic() + 10
        while not replay.gone() and time.monotonic() < deadline:
            replay.spin(0.05)
        assert replay.gone().endswith("no longer subscribes to the frames (stopped or deactivated)")
    finally:
        replay.close()


HUMBLE_REPLAY = """
import json, sys, time
sys.modules["rclpy.parameter_client"] = None  # Humble's rclpy: no parameter client (Iron and later),
from rclpy.subscription import Subscription
del Subscription.get_publisher_count  # and no subscription counts the publishers it is matched with
from rclpy.node import Node
from sensor_msgs.msg import Image
from dgdehaze_ros.tools.bag_replay import NodeReplay
from dgdehaze_ros.tools.node_outputs import TRACKER_PARAMETER, read_parameters
replay = NodeReplay("humble_probe", "/humble_probe/image_raw", False, None, int(sys.argv[1]))
node = Node("humble_probe", context=replay.context)  # in the node's place: its parameters, one output
for name, value in {"publish_depth": False, "detection_enabled": True, "detection_interval": 3, "camera_height": 1.5,
                    "base_frame": ""}.items():
    node.declare_parameter(name, value)
node.create_publisher(Image, "/humble_probe/image_dehazed", 10)
replay.executor.add_node(node)
deadline = time.monotonic() + 10
while "image_dehazed" not in replay.recorder.connected() and time.monotonic() < deadline:
    replay.spin(0.05)
print(json.dumps([replay.recorder.connected(), read_parameters(replay.node, "/humble_probe", replay.spin, 10.0),
                  read_parameters(replay.node, "/humble_probe", replay.spin, 10.0, TRACKER_PARAMETER)]))
node.destroy_node()
replay.close()
"""


def test_the_replay_reads_the_nodes_outputs_and_parameters_with_humbles_rclpy() -> None:
    """`bag-eval --node` imported rclpy.parameter_client and counted an output's publishers with
    Subscription.get_publisher_count, both Iron and later: on Humble it failed at import. Run here with the two
    taken out of rclpy, as Humble's lacks them."""
    import subprocess
    import sys

    from ros_harness import DOMAIN_ID

    run = subprocess.run([sys.executable, "-c", HUMBLE_REPLAY, str(DOMAIN_ID)], cwd=REPO_DIR, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    connected, parameters, tracker = json.loads(run.stdout.strip().splitlines()[-1])
    assert connected == ["image_dehazed"]
    assert parameters == {"publish_depth": False, "detection_enabled": True, "detection_interval": 3,
                          "camera_height": 1.5, "base_frame": ""}, "a node without a tracker still gives its plan"
    assert tracker == {}, "a node without a tracker parameter (one from before it had one): none"



@pytest.mark.slow
def test_an_attached_node_that_crashes_is_noticed_within_seconds_and_the_frames_before_it_are_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node the user started, killed (SIGKILL, as the kernel's out-of-memory killer does) after the 5th recorded
    frame: it says no goodbye, and its subscription to the frames stays in the graph until its DDS lease expires
    (20 s with Fast DDS's defaults; its name stays as long), so the replay waited out --timeout for a frame and
    then stopped on the subscriber count, 20 s later, naming a stop or deactivation. Its unanswered lifecycle
    state requests end the replay SILENCE_S (3.5 s) after the kill, with the report of the 5 frames, saying which node
    stopped answering, and exit status 1."""
    import signal
    import subprocess
    import time

    from dgdehaze_ros.tools import bag_replay
    from dgdehaze_ros.tools.environment import reserve_domain

    environment = {"ROS_DOMAIN_ID": str(reserve_domain()), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    for name, value in environment.items():  # an attached replay joins the environment's graph
        monkeypatch.setenv(name, value)
    command = bag_replay._node_command("crashing_dgdehaze", "/cam/image_raw", False, None, "dcp", False)
    node = subprocess.Popen(command, env={**os.environ, **environment}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed: list[float] = []
    record = bag_replay.record_frame

    def recording_then_killing(evaluation, *args, **kwargs) -> None:
        record(evaluation, *args, **kwargs)
        if len(evaluation.records) == 5:
            node.send_signal(signal.SIGKILL)
            node.wait()
            killed.append(time.monotonic())

    monkeypatch.setattr(bag_replay, "record_frame", recording_then_killing)
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(10, (160, 96)) * 2, "bgr8")
    out = tmp_path / "eval"
    try:
        code = main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw", "--node", "--attach",
                     "--node-name", "crashing_dgdehaze", "--no-detection", "--out", str(out), "--no-progress",
                     "--timeout", "30"])
    finally:
        node.kill()
        node.wait()
    took = time.monotonic() - killed[0]
    assert code == 1
    # SILENCE_S of listening, then the report: about 4 s here; the bound leaves a loaded machine room and still
    # tells the replay's own check from the 20 s DDS lease that ended it before (or the 30 s --timeout)
    assert took < 15, f"{took:.0f} s from the kill to the end of the replay"
    summary = json.loads((out / "summary.json").read_text())
    prefix = "node /crashing_dgdehaze stopped answering: its lifecycle state went unanswered for "
    assert summary["stopped"].startswith(prefix), summary["stopped"]
    assert float(summary["stopped"][len(prefix):].split(" s")[0]) >= bag_replay.SILENCE_S
    assert summary["stopped"].endswith("at frame 5: the 15 frames from there on were not evaluated")
    assert summary["frames_evaluated"] == 5 and summary["frames_not_sent"] == 15
    assert "stopped early" in (out / "report.html").read_text()


def test_a_started_node_is_given_a_pth_or_upper_case_weights_file_as_its_weights(session, tmp_path: Path) -> None:
    """bag-eval --node --method net.pth (or NET.PT), which offline evaluation runs, started the node with
    `model:=net.pth`: the node stayed unconfigured ("model must be one of dcp, lite, base") and the replay failed
    after waiting its 120 s for it to become active."""
    import shutil

    from dgdehaze_core.models import shipped_weights_path
    from dgdehaze_ros.node import create_node
    from dgdehaze_ros.tools.bag_replay import _node_command

    for name in ("lite.pth", "LITE.PT"):
        weights = tmp_path / name
        shutil.copy(shipped_weights_path("lite"), weights)
        command = _node_command("pth_dgdehaze", "/pth/image_raw", False, None, str(weights), False)
        given = dict(arg.split(":=", 1) for flag, arg in zip(command, command[1:]) if flag == "-p")
        assert given.get("weights") == str(weights) and "model" not in given
        node = create_node({"weights": given["weights"], "backend": "torch", "detection_enabled": False},
                           name="pth_dgdehaze", context=session.context)  # raises unless configured and active
        try:
            assert node._pipeline.weights_summary
        finally:
            node.destroy_node()


def test_replays_beside_each_other_never_share_a_dds_domain() -> None:
    """bag-eval --node drew its node's DDS domain from `random`, which a training run seeds: two test workers seeded
    alike drew the same domain, and one replay recorded the other's node's outputs (a 90-row image beside its own
    180-row frame). A domain is now reserved by a lock no other process on the machine can take meanwhile."""
    import subprocess
    import sys

    from dgdehaze_ros.tools.environment import PRIVATE_DOMAINS, reserve_domain

    held = reserve_domain()
    seeded = ("import random; random.seed(0); from dgdehaze_ros.tools.environment import reserve_domain; "
              "print(reserve_domain())")
    others = {int(subprocess.run([sys.executable, "-c", seeded], capture_output=True, text=True, check=True,
                                 cwd=REPO_DIR, timeout=60).stdout) for _ in range(3)}
    assert held in PRIVATE_DOMAINS and others <= set(PRIVATE_DOMAINS) and held not in others
    assert reserve_domain() in PRIVATE_DOMAINS  # a second reservation lets the first go


def test_a_test_process_holds_its_domain_while_it_reserves_tools_domains() -> None:
    """A test worker's domain came from its parent's pid: another test session beside it (a second clone's
    `make test`) could draw the same one and take its node's outputs. It is now held as the tools' are, and a
    tool's reservation in the same process (a replay) does not let it go."""
    import subprocess
    import sys

    from ros_harness import DOMAIN_ID, TEST_DOMAINS

    from dgdehaze_ros.tools.environment import PRIVATE_DOMAINS, reserve_domain

    assert DOMAIN_ID in TEST_DOMAINS and reserve_domain() in PRIVATE_DOMAINS
    other = ("import sys; from dgdehaze_ros.tools.environment import reserve_domain; "
             f"reserve_domain(range({DOMAIN_ID}, {DOMAIN_ID + 1}))")
    run = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, cwd=REPO_DIR, timeout=60)
    assert run.returncode == 1 and f"every ROS domain {DOMAIN_ID}..{DOMAIN_ID} is held" in run.stderr, run.stderr


@pytest.mark.slow
def test_a_replay_reads_its_method_s_weights_once_in_this_process(tmp_path: Path, opened: list[str]) -> None:
    """bag-eval --node --method FILE read and checked the weights before the detector loaded, then replay_bag read
    them again to check them before it started the node (which reads them itself, in its own process): the check's
    read is handed on, and the node still runs those weights."""
    import shutil

    from dgdehaze_core.models import shipped_weights_path

    write_camera_bag(tmp_path / "in", "mcap", demo_frames(1))
    weights = tmp_path / "net.pt"
    shutil.copy(shipped_weights_path("lite"), weights)
    opened.clear()  # the copy's
    out = tmp_path / "eval"
    assert main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw", "--node", "--method",
                 str(weights), "--no-detection", "--out", str(out), "--no-progress", "--timeout", "30"]) == 0
    assert opened.count("net.pt") == 1, opened
    assert json.loads((out / "summary.json").read_text())["weights"].startswith("net.pt (sha256 ")
