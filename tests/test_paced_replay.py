"""Node replay at the recorded rate (`bag-eval --node --rate`): frames sent on the recording's clock, each output of
the node matched to the frame it answers by the header stamp in its CDR bytes, and spooled until it is recorded."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="node replay needs rclpy (ROS 2 from pip or a ROS install)")

from test_bag_eval import _bytes_under, read_all  # noqa: E402
from test_bag_io import PERIOD, START, demo_frames, write_camera_bag  # noqa: E402

from dgdehaze_core.bags import disk_room  # noqa: E402
from dgdehaze_core.bags.io import (CAMERA_INFO_TYPE, IMAGE_TYPE, RANGE_TYPE, BagSource, stamp_ns,  # noqa: E402
                                   typestore)
from dgdehaze_core.cli import main  # noqa: E402
from dgdehaze_core.datasets.paths import REPO_DIR  # noqa: E402
from dgdehaze_ros.tools.paced_replay import (OutputSpool, answers, copied_bytes, header_stamp_ns,  # noqa: E402
                                             pace_shortfall, send_paced, with_header_stamp)

pytestmark = pytest.mark.ros

TYPES = {"image_dehazed": IMAGE_TYPE, "visibility": RANGE_TYPE}


def _range_cdr(stamp: int, metres: float, little_endian: bool = True) -> bytes:
    store = typestore()
    types = store.types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam")
    msg = types[RANGE_TYPE](header=header, radiation_type=1, field_of_view=1.0, min_range=0.0, max_range=1e3,
                            range=metres, variance=0.0)
    return bytes(store.serialize_cdr(msg, RANGE_TYPE, little_endian=little_endian))


def test_the_stamp_is_read_from_the_cdr_bytes_of_any_stamped_message_in_either_byte_order(tmp_path: Path) -> None:
    stamps = write_camera_bag(tmp_path / "in", "mcap", demo_frames(2), "bgr8")
    with BagSource(tmp_path / "in") as source:
        read = {c.msgtype: [] for c in source.connections}
        for connection, _, raw in source.raw_messages():
            full = stamp_ns(source.deserialize(connection, raw).header)
            read[connection.msgtype].append((header_stamp_ns(raw), full))
    for msgtype in (IMAGE_TYPE, CAMERA_INFO_TYPE):
        assert [fast for fast, _ in read[msgtype]] == [full for _, full in read[msgtype]] == stamps, msgtype
    before_1970 = -1_500_000_001  # a simulated clock's negative seconds
    for little in (True, False):
        assert header_stamp_ns(_range_cdr(stamps[1], 40.0, little)) == stamps[1]
        assert header_stamp_ns(_range_cdr(before_1970, 40.0, little)) == before_1970
    for garbage in (b"", b"\x00\x01\x00", b"{\"json\": 1}     "):
        with pytest.raises(ValueError, match="not a CDR"):
            header_stamp_ns(garbage)
    for little in (True, False):  # a stamp set in the bytes reads back, the message otherwise whole
        for stamp in (before_1970, 0, stamps[0]):
            moved = with_header_stamp(_range_cdr(stamps[1], 40.0, little), stamp)
            assert moved == _range_cdr(stamp, 40.0, little) and header_stamp_ns(moved) == stamp


def test_frames_go_out_on_the_recordings_clock_and_each_output_is_spooled_for_the_frame_it_answers(
        tmp_path: Path) -> None:
    """Six frames at 30 Hz sent at half speed. A stand-in for the node answers while the replay spins: frame 0 at
    once, frame 2 late (after frame 3 went out) and twice, frame 4 late (after frame 5 went out), and output with a
    stamp never sent (a warm-up's straggler); frames 1, 3 and 5 are dropped. Frame 5 repeats frame 4's stamp: it
    goes out with its log time, so frame 4's late outputs stay frame 4's (they were taken for frame 5's)."""
    stamps = write_camera_bag(tmp_path / "in", "mcap", demo_frames(6), "bgr8", with_info=False)
    with BagSource(tmp_path / "in") as source:
        messages = list(source.raw_messages())
        copied = copied_bytes(source, "/cam/image_raw", 6)
    repeated = messages[5][2][:4] + messages[4][2][4:12] + messages[5][2][12:]  # frame 5 with frame 4's stamp
    messages[5] = (messages[5][0], messages[5][1], repeated)
    published: list[tuple[int, float]] = []
    due: dict[int, list[tuple[str, bytes]]] = {
        0: [("image_dehazed", messages[0][2]), ("visibility", _range_cdr(stamps[0], 50.0))],
        3: [("visibility", _range_cdr(stamps[2], 60.0)), ("image_dehazed", messages[2][2]),
            ("visibility", _range_cdr(stamps[2], 61.0)), ("visibility", _range_cdr(stamps[0] - PERIOD, 1.0))],
        5: [("image_dehazed", messages[4][2]), ("visibility", _range_cdr(stamps[4], 70.0))]}

    with OutputSpool(tmp_path / "spool", TYPES, copied) as spool:
        def publish(connection, raw: bytes) -> None:
            published.append((header_stamp_ns(raw), time.perf_counter()))

        def spin(seconds: float) -> None:  # the node answers whatever is due once the frame has gone out
            for name, raw in due.pop(len(published) - 1, []):
                spool.receive(name, raw)
            time.sleep(seconds)

        frames, stopped = send_paced(iter(messages), "/cam/image_raw", 6, 0.5, publish, spin, lambda: "", spool,
                                     timeout=5.0, progress=False)
    assert stopped == ""
    assert [f.stamp for f in frames] == [*stamps[:5], stamps[4]]
    assert [s for s, _ in published] == [*stamps[:5], messages[5][1]] == [f.sent_stamp for f in frames]
    sent = [t for _, t in published]
    for index in range(1, 6):  # never before the recording's clock says, at half speed
        assert sent[index] - sent[0] >= index * PERIOD / 1e9 / 0.5 - 1e-4, index
    assert [f.answered for f in frames] == [2, 0, 3, 0, 2, 0], "frame 4's late outputs went to frame 5"
    replies = list(answers(spool, frames))
    assert [frame.index for frame, _ in replies] == [0, 2, 4]
    store = typestore()
    by_frame = {frame.index: outputs for frame, outputs in replies}
    assert store.deserialize_cdr(by_frame[2]["visibility"][1], RANGE_TYPE).range == 60.0, "the first of two kept"
    assert by_frame[2]["image_dehazed"][1] == messages[2][2], "the bytes as received"
    assert by_frame[4]["visibility"][0] > frames[5].sent, "arrival on the clock the send times are on"
    assert sorted(by_frame[0]) == ["image_dehazed", "visibility"]


def test_a_pace_this_process_cannot_keep_is_said_with_the_rate_sent_and_the_rate_asked_for(tmp_path: Path) -> None:
    """Six frames at 30 Hz asked for at 10x (300 Hz) while each publish takes 20 ms: about 50 Hz went out."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(6), "bgr8", with_info=False)
    with BagSource(tmp_path / "in") as source:
        messages = list(source.raw_messages())
        copied = copied_bytes(source, "/cam/image_raw", 6)
    with OutputSpool(tmp_path / "spool", TYPES, copied) as spool:
        slow, _ = send_paced(iter(messages), "/cam/image_raw", 6, 10.0, lambda connection, raw: time.sleep(0.02),
                             time.sleep, lambda: "", spool, timeout=0.1, progress=False)
        kept, _ = send_paced(iter(messages), "/cam/image_raw", 6, 0.5, lambda connection, raw: None, time.sleep,
                             lambda: "", spool, timeout=0.1, progress=False)
    note = pace_shortfall(slow, 10.0)
    assert note.startswith("this process could not send the frames at the pace asked for: ")
    assert "where 10x the recording is 300.0 Hz" in note
    sent_hz = float(note.split(": ")[1].split(" Hz")[0])
    assert 10 < sent_hz < 55, note
    assert pace_shortfall(kept, 0.5) == "", "at half speed the pace is kept"


def test_sending_stops_at_the_frame_before_which_the_node_is_gone(tmp_path: Path) -> None:
    stamps = write_camera_bag(tmp_path / "in", "mcap", demo_frames(6), "bgr8", with_info=False)
    with BagSource(tmp_path / "in") as source:
        messages = list(source.raw_messages())
        copied = copied_bytes(source, "/cam/image_raw", 6)
    published: list[int] = []
    with OutputSpool(tmp_path / "spool", TYPES, copied) as spool:
        frames, stopped = send_paced(
            iter(messages), "/cam/image_raw", 6, 100.0, lambda connection, raw: published.append(header_stamp_ns(raw)),
            time.sleep, lambda: "dgdehaze_node exited with code -9" if len(published) == 3 else "", spool,
            timeout=30.0, progress=False)
    assert stopped == "dgdehaze_node exited with code -9"
    assert published == stamps[:3] and [f.stamp for f in frames] == stamps[:3], "nothing sent after it was gone"


def test_sending_stops_while_the_disk_still_has_room_for_the_output_bag_to_hold_what_was_spooled_and_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool holds the node's raw outputs until they are recorded into the output bag beside it, which holds
    them again and a copy of the frames sent: it asks for the reserve plus both free (it asked for its own size
    only, so the output bag could not hold what was sent, and the recording of the answers stopped part way: the
    node's work on the frames after that was lost). On a disk simulated from the bytes really written under
    tmp_path, with 12 MiB beyond the reserve, sending stops once about a third of that is spooled, and the output
    bag of what was spooled and sent fits in what is left beyond the reserve."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(20, (640, 360)), "bgr8", with_info=False)
    with BagSource(tmp_path / "in") as source:
        messages = list(source.raw_messages())
        copied = copied_bytes(source, "/cam/image_raw", 20)
    room = disk_room.RESERVE_BYTES + _bytes_under(tmp_path) + 12 * 2**20
    monkeypatch.setattr(disk_room, "free_bytes", lambda folder: room - _bytes_under(tmp_path))
    pending: list[bytes] = []
    with OutputSpool(tmp_path / "spool", TYPES, copied) as spool:
        def answer(seconds: float) -> None:  # the node's dehazed frame: here the frame itself, 0.7 MB
            while pending:
                spool.receive("image_dehazed", pending.pop())
            time.sleep(seconds)

        frames, stopped = send_paced(iter(messages), "/cam/image_raw", 20, 1.0,
                                     lambda connection, raw: pending.append(raw), answer, spool.room_problem, spool,
                                     timeout=1.0, progress=False)
    assert stopped.startswith("the disk mounted at ") and "MiB kept for the rest of the output" in stopped
    assert 5 <= len(frames) <= 7 and all(frame.answered == 1 for frame in frames), len(frames)
    sent = sum(len(raw) for _, _, raw in messages[:len(frames)])
    assert spool.bytes + sent <= disk_room.free_bytes(tmp_path) - disk_room.RESERVE_BYTES, (spool.bytes, sent)
    assert len(list(answers(spool, frames))) == len(frames), "what was spooled reads back"


def test_sending_stops_while_the_disk_still_has_room_for_the_other_topics_the_output_bag_copies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spool counted the frames and camera_info sent, but the output bag copies every topic of the window: a
    lidar's 1 MiB clouds beside 43 kB frames were left to the reserve, and sending went on to frame 20 where the
    output bag had room up to frame 6 or so. On a disk simulated from the bytes really written under tmp_path, with
    8 MiB beyond the reserve, sending stops where the output bag of what was spooled and copied, the clouds
    included, still fits beside the reserve."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(20), "bgr8", lidar_bytes=2**20)
    with BagSource(tmp_path / "in") as source:
        messages = list(source.raw_messages())
        copied = copied_bytes(source, "/cam/image_raw", 20)
    frame_ends = [i for i, (connection, _, _) in enumerate(messages) if connection.topic == "/cam/image_raw"]
    assert copied == [sum(len(raw) for _, _, raw in messages[:end + 1]) for end in frame_ends], "every topic counted"
    assert copied[-1] > 19 * 2**20, "the clouds (the last one after the last frame) are most of it"
    room = disk_room.RESERVE_BYTES + _bytes_under(tmp_path) + 8 * 2**20
    monkeypatch.setattr(disk_room, "free_bytes", lambda folder: room - _bytes_under(tmp_path))
    pending: list[bytes] = []
    with OutputSpool(tmp_path / "spool", TYPES, copied) as spool:
        def answer(seconds: float) -> None:  # the node's dehazed frame: here the frame itself
            while pending:
                spool.receive("image_dehazed", pending.pop())
            time.sleep(seconds)

        def publish(connection, raw: bytes) -> None:  # the node answers frames, not camera_info
            if connection.topic == "/cam/image_raw":
                pending.append(raw)

        sent = [message for message in messages if message[0].topic != "/lidar/points"]  # never sent to the node
        frames, stopped = send_paced(iter(sent), "/cam/image_raw", 20, 4.0, publish, answer, spool.room_problem,
                                     spool, timeout=1.0, progress=False)
    assert stopped.startswith("the disk mounted at ") and "MiB kept for the rest of the output" in stopped
    assert 4 <= len(frames) <= 9 and all(frame.answered == 1 for frame in frames), len(frames)
    beyond_reserve = disk_room.free_bytes(tmp_path) - disk_room.RESERVE_BYTES
    last_answer = len(messages[frame_ends[len(frames) - 1]][2])  # came after the check: the reserve's, on disk too
    assert spool.bytes + copied[len(frames) - 1] <= beyond_reserve + 2 * last_answer, (spool.bytes, beyond_reserve)
    assert spool.bytes + copied[len(frames)] > beyond_reserve, "it did not stop while the next frame had room"


def test_a_paced_replay_whose_disk_cannot_hold_the_copy_of_every_topic_is_refused_before_the_node_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Twelve 43 kB frames beside twelve 1 MiB lidar clouds, on a disk simulated from the bytes really written under
    tmp_path with 4 MiB beyond the reserve: the output bag's copy alone (11.5 MiB) cannot fit, which is known before
    any node starts. bag-eval refuses with exit status 2, naming the disk's free space and the room needed, and
    writes nothing (it started the node and ran every frame, the output bag counting on the reserve)."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(12), "bgr8", lidar_bytes=2**20)
    with BagSource(tmp_path / "in") as source:
        messages = list(source.raw_messages())
    last_frame = max(i for i, (connection, _, _) in enumerate(messages) if connection.topic == "/cam/image_raw")
    copy = sum(len(raw) for _, _, raw in messages[:last_frame + 1])  # the cloud after the last frame is the tail's
    room = disk_room.RESERVE_BYTES + _bytes_under(tmp_path) + 4 * 2**20
    monkeypatch.setattr(disk_room, "free_bytes", lambda folder: room - _bytes_under(tmp_path))
    out = tmp_path / "eval"
    began = time.monotonic()
    code = main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw", "--node", "--method", "dcp",
                 "--no-detection", "--rate", "1", "--out", str(out), "--no-progress"])
    assert code == 2 and time.monotonic() - began < 10
    err = capsys.readouterr().err
    assert (f"no room for the copy of the bag a paced replay writes: the disk mounted at "
            f"{disk_room.mount_point(out)} has {(disk_room.RESERVE_BYTES + 4 * 2**20) // 2**20} MiB free, under the "
            f"{-(-(disk_room.RESERVE_BYTES + copy) // 2**20)} MiB kept for the rest of the output") in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("rate", ["0", "-1", "nan", "inf"])
def test_a_rate_that_is_no_pace_is_refused_once_before_any_bag_by_the_replays_own_check(
        tmp_path: Path, rate: str, capsys: pytest.CaptureFixture) -> None:
    """bag-eval asks `replay_bag`'s check before any work: without it, a fleet failed each bag on it in turn, wrote
    its index and exited 1. `replay_bag` refuses it too, before the bag is opened or anything is written."""
    from dgdehaze_ros.tools.bag_replay import replay_bag

    bags = [REPO_DIR / "data" / "demo" / name for name in ("rural_fog_day", "foggy_road_night")]
    out = tmp_path / "eval"
    assert main(["bag-eval", *map(str, bags), "--node", "--rate", rate, "--method", "dcp", "--no-detection",
                 "--out", str(out), "--no-progress"]) == 2
    assert f"--rate must be a positive factor of the recorded pace (1: as recorded), got {float(rate)}" in \
        capsys.readouterr().err
    with pytest.raises(ValueError, match="the rate must be a positive factor of the recorded pace"):
        replay_bag(bags[0], "/camera/image_raw", out, rate=float(rate))
    assert not out.exists()


@pytest.mark.slow
def test_at_a_rate_the_node_cannot_follow_it_drops_frames_and_what_it_answers_is_recorded(tmp_path: Path) -> None:
    """Twelve frames at 40x their 30 Hz (a frame every 0.8 ms): the node's latest-frame worker drops most, answers the
    last, and every frame answered is recorded at its own stamp with its outputs; the report counts the dropped."""
    pytest.importorskip("vision_msgs", reason="the node publishes detections only with vision_msgs")
    stamps = write_camera_bag(tmp_path / "in", "mcap", demo_frames(12, (320, 180)), "bgr8")
    out = tmp_path / "eval"
    code = main(["bag-eval", str(tmp_path / "in"), "--image-topic", "/cam/image_raw", "--node", "--method", "dcp",
                 "--rate", "40", "--out", str(out), "--no-progress", "--timeout", "30"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    answered = summary["per_frame"]["stamp_ns"]
    assert summary["pace"] == "40x recorded rate" and summary["frames_skipped"] == 0
    assert summary["frames_dropped"] >= 1 and summary["frames_dropped"] + len(answered) == 12
    assert answered[-1] == stamps[-1], "the newest frame is always answered"
    assert answered == sorted(set(answered)) and set(answered) <= set(stamps)
    counts = summary["node_frame_counts"]  # the node's own counters tell why the others went unanswered
    assert counts["frames_received"] - counts["frames_dropped"] - counts["frames_failed"] == len(answered), counts
    assert counts["frames_received"] <= 12 and counts["frames_failed"] == 0
    recorded = read_all(out / "bag")
    for topic in ("/dgdehaze/image_dehazed", "/dgdehaze/depth_relative", "/dgdehaze/detections"):
        assert [t for t, _ in recorded[topic]] == answered, topic
        assert [stamp_ns(m.header) for _, m in recorded[topic]] == answered, topic
    assert [t for t, _ in recorded["/cam/image_raw"]] == stamps, "every input frame copied"
    assert summary["figures"]["dehazed"]["frames"] == summary["figures"]["hazy"]["frames"] == len(answered)
    assert 0 < summary["figures"]["dehazed"]["fps"] < 12 / (11 * PERIOD / 1e9 / 40)
    assert not (out / "spool").exists()
    report = (out / "report.html").read_text()
    assert f"{summary['frames_dropped']} dropped by the node" in report and "40x recorded rate" in report
    assert f"its latest-frame worker dropped {counts['frames_dropped']}" in report


@pytest.mark.slow
def test_damaged_frames_are_skipped_at_a_rate_as_in_lockstep_and_the_replay_goes_on(tmp_path: Path) -> None:
    """A frame cut off after its header crashed the paced replay (rclpy could not deserialize it to send it); it is
    now not sent, and both paces list the same frames as not decodable, with the same reasons. A damaged
    camera_info ended the whole run, offline and in lockstep, with nothing written; it is passed over, noted in the
    report at every pace. The first frame is cut off too: the warm-up deserialized its frame itself, beside
    `BagSource.decode_frame`, and a damaged first frame ended the replay (BagError) where any later one is skipped
    (this bag's replays check that, which a replay of a bag of its own did before)."""
    from test_bag_io import camera_info_msg, image_msg

    from dgdehaze_core.bags.evaluation import evaluate_bag
    from dgdehaze_core.bags.writer import BagWriter
    from dgdehaze_ros.tools.bag_replay import replay_bag

    bag = tmp_path / "in"
    with BagWriter(bag, "mcap") as writer:
        for index, frame in enumerate(demo_frames(5)):
            stamp = START + index * PERIOD
            info = bytes(writer.store.serialize_cdr(camera_info_msg(writer, writer.header(stamp, "cam"), frame),
                                                    CAMERA_INFO_TYPE))
            writer.write_raw("/cam/camera_info", CAMERA_INFO_TYPE, stamp - 1, info[:30] if index == 4 else info)
            msg = image_msg(writer, writer.header(stamp, "cam"), frame, "nv12" if index == 2 else "bgr8")
            raw = bytes(writer.store.serialize_cdr(msg, IMAGE_TYPE))
            writer.write_raw("/cam/image_raw", IMAGE_TYPE, stamp, raw[:40] if index in (0, 3) else raw)
    offline = evaluate_bag(bag, "/cam/image_raw", tmp_path / "offline", method="dcp", progress=False)
    assert [r.index for r in offline.records] == [1, 4]
    assert any(note.startswith("a damaged camera_info (first at") for note in offline.notes)
    lockstep = replay_bag(bag, "/cam/image_raw", tmp_path / "lockstep", method="dcp", timeout=30.0, progress=False)
    assert any(note.startswith("a damaged camera_info (first at") for note in lockstep.notes)
    paced = replay_bag(bag, "/cam/image_raw", tmp_path / "paced", method="dcp", timeout=30.0, rate=1.0,
                       progress=False)
    assert any(note.startswith("a damaged camera_info (first at") for note in paced.notes)
    assert [r.index for r in lockstep.records] == [1, 4]
    assert paced.skipped == lockstep.skipped and len(paced.skipped) == 3
    assert "does not deserialize" in paced.skipped[0] and "nv12" in paced.skipped[1]
    assert "does not deserialize" in paced.skipped[2]
    assert {r.index for r in paced.records} <= {1, 4} and paced.records[-1].index == 4, "the newest is answered"
    assert len(paced.records) + paced.frames_dropped == 2


def test_a_rate_is_refused_without_node_replay_or_when_it_is_not_a_positive_factor(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(1), "bgr8")
    for extra, reason in ((["--rate", "1"], "need --node"), (["--node", "--rate", "0"], "positive factor"),
                          (["--node", "--rate", "nan"], "positive factor"),
                          (["--node", "--rate", "-2"], "positive factor")):
        assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--no-detection", *extra]) == 2
        assert reason in capsys.readouterr().err, extra
        assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_fleet_goes_through_the_node_one_bag_after_the_other_and_a_bag_that_fails_stops_no_other(
        tmp_path: Path) -> None:
    """Two drives and a recording without a camera, through a node started for each at 5x their pace: the two are
    reported as a single bag's node replay would be, the third fails alone, and the fleet counts the dropped frames."""
    for name in ("monday", "tuesday"):
        write_camera_bag(tmp_path / name, "mcap", demo_frames(4, (160, 96)), "bgr8")
    write_camera_bag(tmp_path / "no_camera", "mcap", demo_frames(1), "bgr8", topic="/lidar/image")
    out = tmp_path / "fleet"
    bags = [str(tmp_path / name) for name in ("monday", "no_camera", "tuesday")]
    code = main(["bag-eval", *bags, "--image-topic", "/cam/image_raw", "--node", "--method", "dcp", "--no-detection",
                 "--rate", "5", "--out", str(out), "--no-progress", "--timeout", "30"])
    assert code == 1, "a bag failed"
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["runner"] == "sequential" and fleet["failed"] == 1
    outcomes = {Path(o["out_dir"]).name: o for o in fleet["per_bag"]}
    assert not outcomes["no_camera"]["ok"] and "/cam/image_raw" in outcomes["no_camera"]["error"]
    dropped = 0
    for name in ("monday", "tuesday"):
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["mode"] == "node" and summary["pace"] == "5x recorded rate"
        assert outcomes[name]["figures"]["frames"] == summary["frames_evaluated"] >= 1
        assert summary["frames_evaluated"] + summary["frames_dropped"] == 4
        dropped += summary["frames_dropped"]
    assert fleet["all"]["frames_dropped"] == dropped
    assert fleet["all"]["frames"] == sum(outcomes[n]["figures"]["frames"] for n in ("monday", "tuesday"))
