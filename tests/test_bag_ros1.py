"""ROS 1 bags as bag-eval input: real fog frames in a ROS 1 bag written with ROS 1 Noetic's own message definitions
(a CameraInfo's `K`, a Header's `seq`) are evaluated as the same frames in a ROS 2 bag are, and the output bag holds
ROS 2 messages that read back; a damaged ROS 1 bag fails before any output, leaving no temporary copy behind."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag1 import Writer
from rosbags.typesys import Stores, get_typestore
from test_bag_eval import read_all
from test_bag_io import PERIOD, START, demo_frames, write_camera_bag

from dgdehaze_core.bags.evaluation import evaluate_bag
from dgdehaze_core.bags.io import BagError, BagSource, pick_image_topic
from dgdehaze_core.bags.ros1 import is_ros1_bag
from dgdehaze_core.cli import main

K = [100.0, 0.0, 80.0, 0.0, 100.0, 45.0, 0.0, 0.0, 1.0]


def write_ros1_bag(path: Path, frames: list[np.ndarray], sonar: bool = False) -> None:
    """`frames` as bgr8 sensor_msgs/Image on /cam/image_raw with a CameraInfo on /cam/camera_info, stamped and
    timed as tests/test_bag_io.py's ROS 2 bags, in ROS 1 Noetic's message definitions and serialization; with
    `sonar`, a sensor_msgs/Range on /sonar with each frame (a type whose ROS 1 and ROS 2 wire formats differ)."""
    store = get_typestore(Stores.ROS1_NOETIC)
    types = store.types
    with Writer(path) as writer:
        info_topic = writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=store)
        image_topic = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=store)
        sonar_topic = writer.add_connection("/sonar", "sensor_msgs/msg/Range", typestore=store) if sonar else None
        for index, frame in enumerate(frames):
            stamp = START + index * PERIOD
            header = types["std_msgs/msg/Header"](seq=index, frame_id="camera_optical_frame",
                                                  stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                                             nanosec=stamp % 10**9))
            roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                             do_rectify=False)
            info = types["sensor_msgs/msg/CameraInfo"](
                header=header, height=frame.shape[0], width=frame.shape[1], distortion_model="plumb_bob",
                D=np.zeros(5), K=np.array(K), R=np.eye(3).ravel(), P=np.zeros(12), binning_x=0, binning_y=0, roi=roi)
            image = types["sensor_msgs/msg/Image"](header=header, height=frame.shape[0], width=frame.shape[1],
                                                   encoding="bgr8", is_bigendian=0, step=frame.shape[1] * 3,
                                                   data=frame.ravel().copy())
            writer.write(info_topic, stamp, store.serialize_ros1(info, "sensor_msgs/msg/CameraInfo"))
            writer.write(image_topic, stamp, store.serialize_ros1(image, "sensor_msgs/msg/Image"))
            if sonar_topic is not None:
                echo = types["sensor_msgs/msg/Range"](header=header, radiation_type=0, field_of_view=0.1,
                                                      min_range=0.1, max_range=5.0, range=1.0 + index)
                writer.write(sonar_topic, stamp, store.serialize_ros1(echo, "sensor_msgs/msg/Range"))


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own, where the ROS 2 copy of a ROS 1 bag goes: empty again after every run."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr("tempfile.tempdir", None)
    return folder


def copies(folder: Path) -> list[str]:
    """The ROS 2 copies of ROS 1 bags left in `folder` (torch keeps its own caches there too)."""
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("dgdehaze-ros1-"))


def test_a_ros1_bag_is_evaluated_as_the_same_frames_in_a_ros2_bag(tmp_path: Path, private_tmp: Path) -> None:
    frames = demo_frames(4)
    write_ros1_bag(tmp_path / "drive.bag", frames)
    write_camera_bag(tmp_path / "drive2", "mcap", frames)
    assert is_ros1_bag(tmp_path / "drive.bag") and not is_ros1_bag(tmp_path / "drive2" / "drive2_0.mcap")
    runs = {name: evaluate_bag(tmp_path / bag, "/cam/image_raw", tmp_path / f"out-{name}", method="dcp",
                               camera_info_topic="/cam/camera_info", progress=False)
            for name, bag in (("ros1", "drive.bag"), ("ros2", "drive2"))}
    assert copies(private_tmp) == [], "the ROS 2 copy is removed"
    ros1, ros2 = (read_all(tmp_path / f"out-{name}" / "bag") for name in ("ros1", "ros2"))
    assert set(ros1) == set(ros2)
    for topic in ros2:
        assert [t for t, _ in ros1[topic]] == [t for t, _ in ros2[topic]], topic
    assert [list(m.k) for _, m in ros1["/cam/camera_info"]] == [K] * 4, "ROS 1's K is ROS 2's k in the output"
    for (_, mine), (_, theirs) in zip(ros1["/dgdehaze/image_dehazed"], ros2["/dgdehaze/image_dehazed"]):
        assert mine.header.frame_id == "camera_optical_frame" and np.array_equal(mine.data, theirs.data)
    assert [r.haze_density_hazy for r in runs["ros1"].records] == [r.haze_density_hazy for r in runs["ros2"].records]
    with BagSource(tmp_path / "out-ros1" / "bag") as output:
        assert output.storage == "mcap" and not output.ros1


def test_what_the_ros1_converter_says_is_logged_and_leaves_the_figures_table_alone_on_stdout(
        tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    """rosbags' converter prints a line to stdout for each type it migrates (a Range, whose ROS 1 and ROS 2 wire
    formats differ): it came before the figures table, which is bag-eval's output on stdout. It is logged instead,
    and the Range messages reach the output bag converted."""
    write_ros1_bag(tmp_path / "drive.bag", demo_frames(3), sonar=True)
    with caplog.at_level("INFO"):
        assert main(["bag-eval", str(tmp_path / "drive.bag"), "--image-topic", "/cam/image_raw", "--method", "dcp",
                     "--no-detection", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dgdehaze bag-eval: drive.bag (offline, dcp, 3 frames)\n"), out
    assert "Msgtype will be migrated: sensor_msgs/msg/Range" in caplog.text
    assert [m.range for _, m in read_all(tmp_path / "out" / "bag")["/sonar"]] == [1.0, 2.0, 3.0]


def test_a_truncated_ros1_bag_fails_naming_it_and_leaves_nothing(tmp_path: Path, private_tmp: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    write_ros1_bag(tmp_path / "drive.bag", demo_frames(3))
    data = (tmp_path / "drive.bag").read_bytes()
    (tmp_path / "cut.bag").write_bytes(data[:len(data) // 2])
    assert main(["bag-eval", str(tmp_path / "cut.bag"), "--image-topic", "/cam/image_raw", "--method", "dcp",
                 "--no-detection", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "cut.bag" in error and "rosbag reindex" in error
    assert not (tmp_path / "out").exists() and copies(private_tmp) == []


def test_a_ros1_bag_whose_message_disagrees_with_its_index_fails_saying_how(tmp_path: Path, private_tmp: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """A message record whose time is not its index entry's: rosbags fails on it with a bare AssertionError, whose
    empty text left the error with no reason after its colon."""
    write_ros1_bag(tmp_path / "drive.bag", demo_frames(2))
    data = bytearray((tmp_path / "drive.bag").read_bytes())
    first = data.index(b"time=", data.index(b"op=\x02")) + len(b"time=") + 4  # its nanoseconds
    data[first] ^= 1
    (tmp_path / "drive.bag").write_bytes(bytes(data))
    assert main(["bag-eval", str(tmp_path / "drive.bag"), "--image-topic", "/cam/image_raw", "--method", "dcp",
                 "--no-detection", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    reason = error.split("(corrupt or truncated?): ", 1)[1].split(" (a recording cut off", 1)[0]
    assert reason.strip(), error
    assert not (tmp_path / "out").exists() and copies(private_tmp) == []


HOLD_A_COPY = """
import os, signal, sys
from dgdehaze_core.bags.io import BagSource
source = BagSource(sys.argv[1])
print("open", flush=True)
if sys.argv[2] == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
sys.stdin.read()
source.close()
"""
"""Open a ROS 1 bag (its ROS 2 copy made in TMPDIR), then be killed outright, or wait for stdin and close it."""


def test_the_copy_a_run_killed_outright_left_is_removed_by_the_next_and_one_in_use_is_kept(
        tmp_path: Path, private_tmp: Path) -> None:
    """A ROS 2 copy is the size of its bag: one left in TMPDIR by each run killed outright (SIGKILL, out of memory)
    or interrupted while removing it stayed there for good."""
    write_ros1_bag(tmp_path / "drive.bag", demo_frames(2))
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    holders = []
    for how in ("in use", "killed"):  # one after the other: a conversion removes the copies of runs already gone
        holders.append(subprocess.Popen([sys.executable, "-c", HOLD_A_COPY, str(tmp_path / "drive.bag"), how],
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        assert holders[-1].stdout.readline() == "open\n"
    holders[1].wait(timeout=60)
    in_use = copies(private_tmp)
    assert len(in_use) == 4, in_use  # each copy's folder and its lock file
    try:
        assert main(["bag-eval", str(tmp_path / "drive.bag"), "--image-topic", "/cam/image_raw", "--method", "dcp",
                     "--no-detection", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
        kept = copies(private_tmp)
        assert len(kept) == 2 and set(kept) < set(in_use), "the killed run's copy is removed, the one in use kept"
    finally:
        holders[0].communicate("", timeout=60)
    assert copies(private_tmp) == []


LOCK_LATE = """
import fcntl, sys
locking = fcntl.flock
def paused(fd, operation):  # the pause between making the copy's lock file and locking it, stretched
    if operation == fcntl.LOCK_EX:
        print("made", flush=True)
        sys.stdin.readline()
    locking(fd, operation)
fcntl.flock = paused
""" + HOLD_A_COPY
"""HOLD_A_COPY, killed, whose process pauses (until a line on stdin) between making its lock file and locking it."""


def test_a_copy_whose_lock_file_was_just_made_is_not_taken_for_a_dead_run_s(tmp_path: Path,
                                                                            private_tmp: Path) -> None:
    """Between making a copy's lock file and locking it, another run's conversion found the lock free, took the copy
    for a killed run's and unlinked the lock file: the copy, in use, was then without one, so once its own run was
    killed no later run found it, and it stayed in TMPDIR for good."""
    from dgdehaze_core.bags.ros1 import remove_stale_copies

    write_ros1_bag(tmp_path / "drive.bag", demo_frames(2))
    holder = subprocess.Popen([sys.executable, "-c", LOCK_LATE, str(tmp_path / "drive.bag"), "killed"],
                              env={**os.environ, "TMPDIR": str(private_tmp)}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "made\n"
        remove_stale_copies()  # what another run's conversion does first
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "open\n"
    finally:
        holder.kill()
        holder.communicate()
    assert len(copies(private_tmp)) == 2, "the killed run's copy and its lock file"
    remove_stale_copies()
    assert copies(private_tmp) == [], "the next run removes it"


def test_a_ros1_bag_whose_copy_does_not_fit_in_tmpdir_says_so_not_that_the_bag_is_damaged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A TMPDIR too small for the ROS 2 copy (the usual failure for a large bag) is named as such, with TMPDIR as the
    way out; it was "corrupt or truncated?", with `rosbag reindex` as the repair, which could not help."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        monkeypatch.setenv("TMPDIR", str(small))
        monkeypatch.setattr("tempfile.tempdir", None)
        write_ros1_bag(tmp_path / "drive.bag", demo_frames(4, (640, 360)))
        assert main(["bag-eval", str(tmp_path / "drive.bag"), "--image-topic", "/cam/image_raw", "--method", "dcp",
                     "--no-detection", "--out", str(tmp_path / "out"), "--no-progress"]) == 2
        error = capsys.readouterr().err
        assert f"cannot write the ROS 2 copy of ROS 1 bag {tmp_path / 'drive.bag'} in {small}" in error, error
        assert "No space left on device (TMPDIR chooses where the copy goes" in error, error
        assert "corrupt" not in error and "reindex" not in error, error
        assert not (tmp_path / "out").exists() and copies(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


@pytest.mark.ros
@pytest.mark.slow
def test_a_ros1_bag_replayed_through_the_node_reaches_it_as_ros2_messages(tmp_path: Path, private_tmp: Path) -> None:
    """The node gets rclpy's ROS 2 messages from the ROS 2 copy: frames, and a CameraInfo whose `k` measures the
    fog (`camera_height`), all at the bag's stamps."""
    pytest.importorskip("rclpy", reason="node replay needs rclpy (ROS 2 from pip or a ROS install)")
    write_ros1_bag(tmp_path / "drive.bag", demo_frames(3, (320, 180)))
    out = tmp_path / "eval"
    assert main(["bag-eval", str(tmp_path / "drive.bag"), "--image-topic", "/cam/image_raw", "--camera-info-topic",
                 "/cam/camera_info", "--node", "--method", "dcp", "--no-detection", "--out", str(out),
                 "--node-param", "camera_height:=1.5", "--no-progress", "--timeout", "30"]) == 0
    messages = read_all(out / "bag")
    stamps = [START + index * PERIOD for index in range(3)]
    for name in ("image_dehazed", "camera_info", "visibility"):
        assert [t for t, _ in messages[f"/dgdehaze/{name}"]] == stamps, name
    assert [list(m.k) for _, m in messages["/dgdehaze/camera_info"]] == [K] * 3
    assert copies(private_tmp) == []


def test_a_window_of_a_ros1_bag_without_a_frame_is_found_from_its_index(tmp_path: Path) -> None:
    """`pick_image_topic` reads a ROS 1 bag as it is: a window between two frames is found from its index."""
    write_ros1_bag(tmp_path / "drive.bag", demo_frames(3))
    with pytest.raises(BagError, match="has no frame in the time window selected"):
        pick_image_topic(tmp_path / "drive.bag", None, None, 1.25 * PERIOD / 1e9, 0.5 * PERIOD / 1e9)
    assert pick_image_topic(tmp_path / "drive.bag", None, None, 0.5 * PERIOD / 1e9, PERIOD / 1e9) == "/cam/image_raw"
