"""`dgdehaze bag-eval` offline: output bag at the original stamps, the report and its figures, clean failures."""
from __future__ import annotations

import hashlib
import html
import io
import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_bag_io import (CUSTOM_TYPE, DEMO_BAG, DEMO_TOPIC, PERIOD, POINT_CLOUD_TYPE, START, camera_info_msg,
                         demo_frames, image_msg, write_camera_bag, write_humble_bag)

from dgdehaze_core.bags import disk_room
from dgdehaze_core.bags.fleet import BagJob, run_fleet
from dgdehaze_core.bags.evaluation import evaluate_bag
from dgdehaze_core.bags.io import CAMERA_INFO_TYPE, HAZE_TYPE, IMAGE_TYPE, BagSource
from dgdehaze_core.bags.writer import BagWriter
from dgdehaze_core.bags.report import FIGURES, answered_rate, rolling_mean
from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.camera_frames import compressed_to_bgr8
from dgdehaze_core.io.compressed_depth import decompress_depth
from dgdehaze_core.models import shipped_weights_path
from dgdehaze_core.physics.visibility import Mounting, ground_range, intrinsics_of, ray_norms

OUTPUTS = {"/dgdehaze/image_dehazed": IMAGE_TYPE, "/dgdehaze/depth_relative": IMAGE_TYPE,
           "/dgdehaze/haze_density": HAZE_TYPE, "/dgdehaze/camera_info": CAMERA_INFO_TYPE}
"""The outputs of a run without a detector (no ~/detections, as the node with detection off)."""


def read_all(bag: Path) -> dict[str, list[tuple[int, object]]]:
    """{topic: [(log time, message)]} of a whole bag."""
    out: dict[str, list[tuple[int, object]]] = {}
    with BagSource(bag) as source:
        for connection, log_time, raw in source.raw_messages():
            out.setdefault(connection.topic, []).append((log_time, source.deserialize(connection, raw)))
    return out


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_the_output_images_are_compressed_as_image_transport_s_topics_where_asked_or_where_the_camera_is(
        tmp_path: Path) -> None:
    """A raw camera's bag written compressed (--output-images compressed) and the compressed demo drive written raw:
    the same frames, on image_transport's topic names, decoding to what the evaluation dehazed."""
    frames = demo_frames(3)
    write_camera_bag(tmp_path / "in", "mcap", frames, "rgb8")
    packed = evaluate_bag(tmp_path / "in", "/cam/image_raw", tmp_path / "packed", camera_info_topic="/cam/camera_info",
                          method="dcp", image_transport="compressed", progress=False)
    topics = read_all(tmp_path / "packed" / "bag")
    assert {"/dgdehaze/image_dehazed", "/dgdehaze/depth_relative"}.isdisjoint(topics)
    images, depths = topics["/dgdehaze/image_dehazed/compressed"], topics["/dgdehaze/depth_relative/compressedDepth"]
    assert json.loads((tmp_path / "packed" / "summary.json").read_text())["output_images"] == "compressed"
    assert len(images) == len(depths) == 3
    assert {m.format for _, m in images} == {"bgr8; jpeg compressed bgr8"}
    sample = packed.samples[0]
    (_, first_image), (_, first_depth) = images[sample.index], depths[sample.index]
    assert cv2.PSNR(compressed_to_bgr8(first_image), sample.dehazed) > 30.0
    np.testing.assert_allclose(decompress_depth(first_depth.format, bytes(first_depth.data)), sample.depth, rtol=1e-2)
    demo = REPO_DIR / "data" / "demo" / "rural_fog_day"
    evaluate_bag(demo, DEMO_TOPIC, tmp_path / "raw", method="dcp", max_frames=2, image_transport="raw",
                 progress=False)
    raw = read_all(tmp_path / "raw" / "bag")
    assert [m.encoding for _, m in raw["/dgdehaze/image_dehazed"]] == ["bgr8", "bgr8"]
    assert "/dgdehaze/image_dehazed/compressed" not in raw
    evaluate_bag(demo, DEMO_TOPIC, tmp_path / "lean", method="dcp", max_frames=2, image_transport="none",
                 progress=False)
    lean = read_all(tmp_path / "lean" / "bag")  # the figures' outputs only: a fleet's bags at their input's size
    assert not [topic for topic in lean if "image_dehazed" in topic or "depth" in topic]
    assert len(lean["/dgdehaze/haze_density"]) == 2
    assert "/dgdehaze/detections" not in lean and "/dgdehaze/label_info" not in lean, "no detector: as the node"
    with pytest.raises(ValueError, match="auto, raw, compressed"):
        evaluate_bag(demo, DEMO_TOPIC, tmp_path / "bad", method="dcp", image_transport="jpeg", progress=False)
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_output_bag_carries_inputs_and_outputs_at_the_original_stamps(tmp_path: Path, storage: str) -> None:
    frames = demo_frames(4)
    stamps = write_camera_bag(tmp_path / "in", storage, frames, "rgb8")
    out = tmp_path / "eval"
    evaluation = evaluate_bag(tmp_path / "in", "/cam/image_raw", out, camera_info_topic="/cam/camera_info",
                              method="dcp", progress=False)
    assert evaluation.method == "dcp" and len(evaluation.records) == 4
    with BagSource(out / "bag") as source:
        assert source.storage == storage
    topics = read_all(out / "bag")
    assert set(topics) == {"/cam/image_raw", "/cam/camera_info", *OUTPUTS}
    for topic in ("/cam/image_raw", "/cam/camera_info", *OUTPUTS):
        assert [t for t, _ in topics[topic]] == stamps, topic
        assert [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in topics[topic]
                if hasattr(m, "header")] in ([], stamps)
    assert {m.encoding for _, m in topics["/cam/image_raw"]} == {"rgb8"}
    for (_, dehazed), (_, depth), frame in zip(topics["/dgdehaze/image_dehazed"], topics["/dgdehaze/depth_relative"],
                                               frames):
        assert (dehazed.encoding, dehazed.height, dehazed.width) == ("bgr8", 90, 160)
        assert dehazed.header.frame_id == "camera_optical_frame"
        assert (depth.encoding, depth.step) == ("32FC1", 160 * 4)
        values = np.frombuffer(depth.data.tobytes(), "<f4")
        assert np.isfinite(values).mean() > 0.9 and np.nanmin(values) >= 0
        image = np.frombuffer(dehazed.data.tobytes(), np.uint8).reshape(90, 160, 3)
        assert not np.array_equal(image, frame)
    densities = [m.results[0].score for _, m in topics["/dgdehaze/haze_density"]]
    assert {m.results[0].class_id for _, m in topics["/dgdehaze/haze_density"]} == {"haze_density"}
    assert densities == pytest.approx([r.haze_density_hazy for r in evaluation.records], abs=1e-6)
    assert all(m.k[0] == 100.0 for _, m in topics["/dgdehaze/camera_info"])
    assert leftovers(tmp_path) == []


def test_every_output_carries_its_frame_s_header_exactly_an_unnormalised_stamp_included(tmp_path: Path) -> None:
    """The outputs' headers were rebuilt from the stamp in nanoseconds: a driver's stamp with nanosec >= 1e9 came out
    normalised (sec + 1), a header no consumer matching by stamp finds."""
    frames = demo_frames(2)
    headers = []
    with BagWriter(tmp_path / "in", "mcap") as writer:
        time_type, header_type = writer.types["builtin_interfaces/msg/Time"], writer.types["std_msgs/msg/Header"]
        for index, frame in enumerate(frames):
            header = header_type(stamp=time_type(sec=1_700_000_000 + index, nanosec=1_500_000_000 + index),
                                 frame_id="camera_optical_frame")
            writer.write("/cam/camera_info", CAMERA_INFO_TYPE, START + index, camera_info_msg(writer, header, frame))
            writer.write("/cam/image_raw", IMAGE_TYPE, START + index, image_msg(writer, header, frame, "bgr8"))
            headers.append((header.stamp.sec, header.stamp.nanosec, header.frame_id))
    evaluate_bag(tmp_path / "in", "/cam/image_raw", tmp_path / "out", camera_info_topic="/cam/camera_info",
                 method="dcp", progress=False)
    topics = read_all(tmp_path / "out" / "bag")
    for topic in OUTPUTS:
        assert [(m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for _, m in topics[topic]] == headers, \
            topic


def test_report_names_every_figure_and_summary_matches(tmp_path: Path) -> None:
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(3), "bgr8")
    out = tmp_path / "eval"
    evaluation = evaluate_bag(tmp_path / "in", "/cam/image_raw", out, method="dcp", progress=False)
    report = (out / "report.html").read_text()
    for name in FIGURES:
        assert f"figures/{name}.png" in report and (out / "figures" / f"{name}.png").stat().st_size > 1000
    samples = sorted(p.name for p in (out / "figures").glob("sample_*.png"))
    assert samples == ["sample_000000.png", "sample_000001.png", "sample_000002.png"]
    assert all(f"figures/{name}" in report for name in samples)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_evaluated"] == 3 and summary["method"] == "dcp" and summary["weights"] == "none"
    assert summary["frames_in_bag"] == 3 and summary["frames_in_window"] is None, "no window: the whole bag"
    assert "3 evaluated of 3 in the bag, 0 skipped" in report
    assert set(summary["figures"]) == {"hazy", "dehazed"} and summary["output_latency_ms"] == {}, "no DDS offline"
    assert summary["figures"]["dehazed"]["haze_density"] < summary["figures"]["hazy"]["haze_density"]
    assert "outputs (ms from sending" not in report
    assert summary["per_frame"]["stamp_ns"] == [r.stamp_ns for r in evaluation.records]
    assert len(read_all(out / "bag")["/dgdehaze/camera_info"]) == 3, "the bag's only camera_info, relayed unasked"


def test_the_report_names_the_trained_weights_it_ran(tmp_path: Path) -> None:
    """The report named the method ("lite") but not its weights: two reports of one bag before and after an update
    of the weights file read alike."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(1), "bgr8")
    out = tmp_path / "eval"
    evaluate_bag(tmp_path / "in", "/cam/image_raw", out, method="lite", progress=False)
    lite = shipped_weights_path("lite")
    named = f"{lite.name} (sha256 {hashlib.sha256(lite.read_bytes()).hexdigest()[:12]}, "
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights"].startswith(named) and "training iterations of recipe lite" in summary["weights"]
    assert f"<th>weights</th><td style='text-align:left'>{html.escape(named)}" in (out / "report.html").read_text()


def test_the_node_s_image_settings_reach_the_offline_network_and_the_report_names_them(tmp_path: Path) -> None:
    """bag-eval offline ran the network with the node's defaults only: a user whose node runs the exact inversion
    or a working size of its own had no offline figures of it. --max-detail-gain and --working-size (the node's
    max_detail_gain and working_width/height) change the dehazed frames, and the report says what ran."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(2), "bgr8")
    dehazed = {}
    for name, options in (("default", []), ("exact", ["--max-detail-gain", "0", "--working-size", "96x64"])):
        out = tmp_path / name
        assert main(["bag-eval", str(tmp_path / "in"), "--method", "lite", "--no-detection", "--output-images",
                     "raw", "--out", str(out), "--no-progress", *options]) == 0
        dehazed[name] = [message.data for _, message in read_all(out / "bag")["/dgdehaze/image_dehazed"]]
        notes = json.loads((out / "summary.json").read_text())["notes"]
        said = [note for note in notes if note.startswith("the network ran with")]
        assert said == ([] if name == "default" else
                        ["the network ran with the exact inversion (max_detail_gain 0), working size 96x64"]), notes
    assert len(dehazed["exact"]) == 2 and all(not np.array_equal(a, b) for a, b in zip(*dehazed.values()))
    write_camera_bag(tmp_path / "in2", "mcap", demo_frames(1), "bgr8")  # a fleet's bags run with them too
    assert main(["bag-eval", str(tmp_path / "in"), str(tmp_path / "in2"), "--method", "lite", "--no-detection",
                 "--output-images", "none", "--out", str(tmp_path / "fleet"), "--workers", "1", "--no-progress",
                 "--max-detail-gain", "0", "--working-size", "96x64"]) == 0
    for name in ("in", "in2"):
        notes = json.loads((tmp_path / "fleet" / name / "summary.json").read_text())["notes"]
        assert "the network ran with the exact inversion (max_detail_gain 0), working size 96x64" in notes, notes


def test_the_node_s_image_settings_become_a_started_node_s_parameters_and_are_refused_where_they_cannot_apply(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """With --node they are the started node's parameters (as --camera-height is); an attached node's are set with
    ros2 param, dcp has no network, and the node has no setting without the boundary constraint."""
    from dgdehaze_core.cli import build_parser
    from dgdehaze_core.commands.bag_eval import image_settings

    args = build_parser().parse_args(["bag-eval", "in", "--out", "out", "--node", "--max-detail-gain", "0",
                                      "--working-size", "320x240", "--radiance-floor", "0.05", "--backend",
                                      "onnxruntime"])
    assert image_settings(args) == {}
    assert args.node_param == ["backend:=onnxruntime", "radiance_floor:=0.05", "max_detail_gain:=0.0",
                               "working_width:=320", "working_height:=240"]
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(1), "bgr8")
    for options, message in ((["--method", "dcp", "--max-detail-gain", "0"],
                              "--max-detail-gain set how a network makes its image, and dcp has none"),
                             (["--node", "--attach", "--working-size", "320x240"],
                              "--working-size set a started node's parameters; set an attached node's with ros2 param"),
                             (["--node", "--radiance-floor", "none"], "--radiance-floor none is for offline runs")):
        assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *options]) == 2, options
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_one_bag_reads_its_method_s_weights_once(tmp_path: Path, opened: list[str]) -> None:
    """bag-eval --method read and checked the weights before the detector loaded, then the offline pipeline read
    them again: the pipeline is built from the check's read, for a .pt given and for a configuration's shipped
    weights, which the report still names by their file."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(1))
    weights = tmp_path / "net.pt"
    shutil.copy(shipped_weights_path("lite"), weights)
    common = ["--image-topic", "/cam/image_raw", "--no-detection", "--no-progress"]
    opened.clear()  # the copy's
    assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "file"), "--method", str(weights),
                 *common]) == 0
    assert opened.count("net.pt") == 1, opened
    assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "lite"), "--method", "lite", *common]) == 0
    assert opened.count("dgdehaze_lite.pt") == 1, opened
    for out, name in (("file", "net.pt"), ("lite", "dgdehaze_lite.pt")):
        assert json.loads((tmp_path / out / "summary.json").read_text())["weights"].startswith(f"{name} (sha256 ")


def test_the_reports_time_runs_by_recording_time_where_header_stamps_run_backwards(tmp_path: Path) -> None:
    frames = demo_frames(4)
    with BagWriter(tmp_path / "in", "mcap") as writer:  # a camera whose clock was set back mid-recording
        for index, frame in enumerate(frames):
            header = writer.header(START - index * 10**9, "camera_optical_frame")
            writer.write("/cam/image_raw", IMAGE_TYPE, START + index * PERIOD, image_msg(writer, header, frame, "bgr8"))
    evaluation = evaluate_bag(tmp_path / "in", "/cam/image_raw", tmp_path / "eval", method="dcp", progress=False)
    assert evaluation.seconds_in_bag() == pytest.approx([index * PERIOD / 1e9 for index in range(4)])
    per_frame = json.loads((tmp_path / "eval" / "summary.json").read_text())["per_frame"]
    assert per_frame["stamp_ns"] == [START - index * 10**9 for index in range(4)]
    assert per_frame["log_time_ns"] == [START + index * PERIOD for index in range(4)]


def test_undecodable_frames_are_skipped_and_listed_and_what_follows_the_last_frame_is_kept(tmp_path: Path) -> None:
    frames = demo_frames(4)
    bag = tmp_path / "in"
    with BagWriter(bag, "mcap") as writer:
        for index, frame in enumerate(frames):
            encoding = "nv12" if index == 1 else "bgr8"
            msg = image_msg(writer, writer.header(10 + index, "cam"), frame, encoding)
            raw = writer.store.serialize_cdr(msg, IMAGE_TYPE)
            writer.write_raw("/cam/image_raw", IMAGE_TYPE, 10 + index, raw[:40] if index == 2 else raw)  # damaged
        for index in range(3):  # a recording goes on after the camera's last frame (lidar, tf, logs)
            writer.write("/log", "std_msgs/msg/String", 20 + index, writer.types["std_msgs/msg/String"](data="x"))
    evaluation = evaluate_bag(bag, "/cam/image_raw", tmp_path / "eval", method="dcp", progress=False)
    assert [r.index for r in evaluation.records] == [0, 3]
    assert len(evaluation.skipped) == 2 and "nv12" in evaluation.skipped[0]
    assert "does not deserialize" in evaluation.skipped[1]
    assert "nv12" in (tmp_path / "eval" / "report.html").read_text()
    with BagSource(tmp_path / "eval" / "bag") as output:  # the damaged frame is copied as it is: count, not read
        assert output.topics()["/log"][1] == 3, "every topic of the input, to its end"
    shortened = evaluate_bag(bag, "/cam/image_raw", tmp_path / "first", method="dcp", max_frames=1, progress=False)
    with BagSource(tmp_path / "first" / "bag") as output:
        assert len(shortened.records) == 1 and "/log" not in output.topics(), \
            "--max-frames ends the output bag with the last frame evaluated"


def test_a_bag_of_frames_that_do_not_decode_names_a_few_in_the_log_and_every_one_in_the_report(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A bag in an encoding nothing reads logged one warning per frame: thousands of lines for a drive."""
    frames = demo_frames(8)
    bag = tmp_path / "in"
    with BagWriter(bag, "mcap") as writer:
        for index, frame in enumerate(frames):
            encoding = "nv12" if index < 7 else "bgr8"
            writer.write("/cam/image_raw", IMAGE_TYPE, 10 + index,
                         image_msg(writer, writer.header(10 + index, "cam"), frame, encoding))
    with caplog.at_level(logging.WARNING, logger="dgdehaze_core.bags.evaluation"):
        evaluation = evaluate_bag(bag, "/cam/image_raw", tmp_path / "eval", method="dcp", progress=False)
    said = [record.getMessage() for record in caplog.records if record.getMessage().startswith("skipped:")]
    assert len(said) == 3 and said[-1].endswith("further frames that do not decode are listed in the report, "
                                                "not here"), said
    assert len(evaluation.skipped) == 7 and [r.index for r in evaluation.records] == [7]
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["frames_skipped"] == 7


def test_without_a_detector_the_hazy_row_has_no_latency_not_zero(tmp_path: Path) -> None:
    """The hazy row's latency is the detector's on the raw frame: with --no-detection it read 0.0000 ms, a time that
    was never measured."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(2), "bgr8")
    assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "eval"), "--method", "dcp",
                 "--no-detection", "--image-topic", "/cam/image_raw", "--no-progress"]) == 0
    figures = json.loads((tmp_path / "eval" / "summary.json").read_text())["figures"]
    assert (figures["hazy"]["latency_ms_median"], figures["hazy"]["fps"]) == (None, None)
    assert figures["dehazed"]["latency_ms_median"] > 0


def test_bag_eval_exits_1_when_frames_could_not_be_decoded_alone_and_in_a_fleet(tmp_path: Path) -> None:
    bag, good = tmp_path / "damaged", tmp_path / "good"
    with BagWriter(bag, "mcap") as writer:
        for index, frame in enumerate(demo_frames(3)):
            msg = image_msg(writer, writer.header(10 + index, "cam"), frame, "nv12" if index == 1 else "bgr8")
            writer.write("/cam/image_raw", IMAGE_TYPE, 10 + index, msg)
    write_camera_bag(good, "mcap", demo_frames(2), "bgr8")
    common = ["--method", "dcp", "--no-detection", "--image-topic", "/cam/image_raw", "--no-progress"]
    assert main(["bag-eval", str(good), "--out", str(tmp_path / "good-eval"), *common]) == 0
    assert main(["bag-eval", str(bag), "--out", str(tmp_path / "one"), *common]) == 1
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert (summary["frames_evaluated"], summary["frames_skipped"]) == (2, 1), "the frames that decoded are written"
    figures = tmp_path / "fleet.json"
    assert main(["bag-eval", str(good), str(bag), "--out", str(tmp_path / "fleet"), "--workers", "1", *common,
                 "--json", str(figures)]) == 1
    table = json.loads(figures.read_text())
    assert (table["good"]["frames_skipped"], table["damaged"]["frames_skipped"], table["all"]["frames_skipped"]) \
        == (0, 1, 1)
    assert table["all"]["status"] == "2/2 ok", "a bag that skipped frames is still evaluated"


def _bytes_under(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def test_a_disk_running_short_of_room_stops_the_evaluation_with_a_report_of_the_frames_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        caplog: pytest.LogCaptureFixture) -> None:
    """An output bag of raw images grows by megabytes a frame, and a write that failed for want of room ended the
    run with nothing written (the output is moved in place only once complete). On a disk simulated from the bytes
    really written under tmp_path, with room for the reserve and a few frames' outputs (each 640x360 frame adds about
    2.3 MB), the evaluation stops before the frame that would not fit: its report and a readable output bag cover the
    frames before, and the exit status is 1. A disk already short is refused before any work."""
    bag = tmp_path / "in"
    write_camera_bag(bag, "mcap", demo_frames(10, (640, 360)), "bgr8")
    room = disk_room.RESERVE_BYTES + _bytes_under(bag) + 8 * 2**20
    monkeypatch.setattr(disk_room, "free_bytes", lambda folder: room - _bytes_under(tmp_path))
    out = tmp_path / "eval"
    common = ["--method", "dcp", "--no-detection", "--image-topic", "/cam/image_raw", "--output-images", "raw",
              "--no-progress"]
    assert main(["bag-eval", str(bag), "--out", str(out), *common]) == 1
    summary = json.loads((out / "summary.json").read_text())
    evaluated = summary["frames_evaluated"]
    assert 0 < evaluated < 10 and summary["frames_not_sent"] == 10 - evaluated, summary
    assert summary["stopped"].startswith(f"the disk mounted at {disk_room.mount_point(out)} has ")
    assert " MiB free, under the 1024 MiB kept for the rest of the output" in summary["stopped"]
    assert f"at frame {evaluated}: the {10 - evaluated} frames from there on were not evaluated" in summary["stopped"]
    assert (out / "report.html").read_text().count("stopped early") == 1, "shown once, in the report's settings"
    outputs = read_all(out / "bag")
    assert len(outputs["/dgdehaze/image_dehazed"]) == len(outputs["/cam/image_raw"]) == evaluated
    assert "stopped early" in caplog.text
    room = disk_room.RESERVE_BYTES - 1 + _bytes_under(tmp_path)
    assert main(["bag-eval", str(bag), "--out", str(tmp_path / "none"), *common]) == 2
    error = capsys.readouterr().err
    assert "no room for an evaluation's output: the disk mounted at" in error
    assert "has 1023 MiB free, under the 1024 MiB kept" in error, "a byte short read '1024 MiB free, under 1024'"
    assert not (tmp_path / "none").exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("images, advice", [("compressed", "--output-images none shrinks its bag"),
                                             ("none", "")])
def test_a_disk_stop_advises_only_output_images_that_shrink_the_bag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: str, advice: str) -> None:
    """A long drive evaluated with --output-images compressed (or none) that stopped for want of room advised
    '--output-images compressed or none shrinks its bag': the setting it already ran with. The advice now names only
    what would shrink the bag (none after compressed; nothing after none), and the other ways out stay."""
    bag = tmp_path / "in"
    write_camera_bag(bag, "mcap", demo_frames(10, (640, 360)), "bgr8")
    room = disk_room.RESERVE_BYTES + _bytes_under(bag) + 3 * 2**20
    monkeypatch.setattr(disk_room, "free_bytes", lambda folder: room - _bytes_under(tmp_path))
    evaluation = evaluate_bag(bag, "/cam/image_raw", tmp_path / "eval", method="dcp", image_transport=images,
                              progress=False)
    assert 0 < len(evaluation.records) < 10, evaluation.stopped
    assert "--duration or --max-frames shortens the run" in evaluation.stopped
    assert "give an output folder on a larger disk" in evaluation.stopped
    assert "--output-images compressed" not in evaluation.stopped, evaluation.stopped
    assert (advice in evaluation.stopped) if advice else "--output-images" not in evaluation.stopped


def test_the_copy_of_a_long_recording_after_the_cameras_last_frame_stops_short_of_filling_the_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording may go on long after its camera stopped: the rest of the bag, copied into the output bag after the
    last frame, was copied without asking the disk's room, into the reserve and on until a write failed and the
    whole evaluation was lost. On a disk simulated from the bytes really written under tmp_path, with 4 MiB beyond
    the reserve, the copy of a 28 MB tail stops within a check's worth of bytes, every frame evaluated, and the report
    says where the output bag's copy ends."""
    bag = tmp_path / "in"
    big = demo_frames(1, (640, 360))[0]  # 0.7 MB a message
    with BagWriter(bag, "mcap") as writer:
        for index, frame in enumerate(demo_frames(3)):
            stamp = START + index * PERIOD
            writer.write("/cam/image_raw", IMAGE_TYPE, stamp, image_msg(writer, writer.header(stamp, "c"), frame,
                                                                        "bgr8"))
        for index in range(3, 43):
            stamp = START + index * PERIOD
            writer.write("/cam2/image_raw", IMAGE_TYPE, stamp, image_msg(writer, writer.header(stamp, "c2"), big,
                                                                         "bgr8"))
    room = disk_room.RESERVE_BYTES + _bytes_under(tmp_path) + 4 * 2**20
    monkeypatch.setattr(disk_room, "free_bytes", lambda folder: room - _bytes_under(tmp_path))
    evaluation = evaluate_bag(bag, "/cam/image_raw", tmp_path / "eval", method="dcp", progress=False)
    assert len(evaluation.records) == 3 and not evaluation.stopped
    assert room - _bytes_under(tmp_path) > disk_room.RESERVE_BYTES - 6 * 2**20, "not far into the reserve"
    copied = read_all(tmp_path / "eval" / "bag")["/cam2/image_raw"]
    assert 0 < len(copied) < 40
    note = next(note for note in json.loads((tmp_path / "eval" / "summary.json").read_text())["notes"]
                if note.startswith("the output bag holds what the bag recorded after its last frame only up to "))
    assert f"up to {START + (3 + len(copied)) * PERIOD} ns: the disk mounted at " in note, note


@pytest.mark.parametrize("mode", [[], pytest.param(["--node"], marks=pytest.mark.ros)], ids=["offline", "lockstep"])
def test_the_copy_of_other_topics_between_two_frames_stops_short_of_filling_the_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: list[str]) -> None:
    """The offline and lockstep node evaluations asked the disk's room only before each frame, so what the bag
    recorded between two frames (a lidar's clouds while the camera dropped out) was copied into the reserve, and on
    until a write failed where the gap outgrew it. Two frames, 24 clouds of 1 MiB, two frames more, on a disk
    simulated from the bytes really written under tmp_path with 4 MiB beyond the reserve: the copy stops within a
    check's worth of bytes inside the gap, the evaluation stopped at frame 2 with a report of the two before."""
    bag = tmp_path / "in"
    with BagWriter(bag, "mcap") as writer:
        for index, frame in enumerate(demo_frames(4)):
            stamp = START + index * PERIOD
            if index == 2:
                for cloud in range(24):
                    at = stamp - PERIOD + 1 + cloud
                    writer.write("/lidar/points", POINT_CLOUD_TYPE, at, writer.types[POINT_CLOUD_TYPE](
                        header=writer.header(at, "lidar"), height=1, width=2**16, fields=[], is_bigendian=False,
                        point_step=16, row_step=2**20, data=np.full(2**20, 3, np.uint8), is_dense=True))
            writer.write("/cam/image_raw", IMAGE_TYPE, stamp, image_msg(writer, writer.header(stamp, "c"), frame,
                                                                        "bgr8"))
    room = disk_room.RESERVE_BYTES + _bytes_under(tmp_path) + 4 * 2**20
    monkeypatch.setattr(disk_room, "free_bytes", lambda folder: room - _bytes_under(tmp_path))
    out = tmp_path / "eval"
    assert main(["bag-eval", str(bag), "--out", str(out), "--image-topic", "/cam/image_raw", "--method", "dcp",
                 "--no-detection", "--no-progress", *mode]) == 1
    assert room - _bytes_under(tmp_path) > disk_room.RESERVE_BYTES - 10 * 2**20, "not far into the reserve"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames_evaluated"], summary["frames_not_sent"]) == (2, 2), summary
    assert "at frame 2: the 2 frames from there on were not evaluated" in summary["stopped"], summary["stopped"]
    copied = read_all(out / "bag")
    assert len(copied["/cam/image_raw"]) == 2 and 0 < len(copied["/lidar/points"]) < 20


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_an_output_bag_write_that_fails_ends_with_one_line_and_keeps_the_earlier_output(tmp_path: Path,
                                                                                       storage: str) -> None:
    """A write the disk refuses part way (here a file size limit, which the disk-room check cannot see coming, as it
    cannot see another program filling the disk) ends bag-eval with one line and exit status 2 and leaves the
    earlier output as it was, for either storage: sqlite3's "disk I/O error" or "database or disk is full" came out
    as a traceback."""
    bag = tmp_path / "in"
    write_camera_bag(bag, "mcap", demo_frames(8), "bgr8")
    out = tmp_path / "eval"
    arguments = ["bag-eval", str(bag), "--out", str(out), "--method", "dcp", "--no-detection", "--no-progress",
                 "--output-images", "raw", "--storage", storage]
    assert main(arguments) == 0  # the earlier output: in this process, the file size limit is the child's alone
    earlier = (out / "summary.json").read_bytes()

    def limit_file_size() -> None:  # in the child: a write past 300 kB fails with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    failed = subprocess.run([sys.executable, "-m", "dgdehaze_core.cli", *arguments], cwd=REPO_DIR, capture_output=True,
                            text=True, preexec_fn=limit_file_size)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr, failed.stderr
    assert failed.stderr.strip().splitlines()[-1].startswith("dgdehaze bag-eval: error: "), failed.stderr
    assert (out / "summary.json").read_bytes() == earlier and not leftovers(tmp_path)


def test_a_fleet_run_again_keeps_a_bags_folder_that_holds_the_users_own_files(tmp_path: Path) -> None:
    """A bag whose earlier output also holds a file of the user's fails (replacing the folder would delete it), and
    the fleet then removed that earlier output, the user's file with it, as it removes a failed bag's stale report."""
    for name in ("drive1", "drive2"):
        write_camera_bag(tmp_path / name, "mcap", demo_frames(2), "bgr8")
    fleet = ["bag-eval", str(tmp_path / "drive1"), str(tmp_path / "drive2"), "--out", str(tmp_path / "fleet"),
             "--workers", "1", "--method", "dcp", "--no-detection", "--image-topic", "/cam/image_raw", "--no-progress"]
    assert main(fleet) == 0
    notes = tmp_path / "fleet" / "drive1" / "my_notes.txt"
    notes.write_text("the fog lifted at 14:02")
    assert main(fleet) == 1, "drive1 is refused: its folder holds a file an evaluation would delete"
    assert notes.read_text() == "the fog lifted at 14:02" and (notes.parent / "summary.json").is_file()
    assert (tmp_path / "fleet" / "drive2" / "summary.json").is_file()
    notes.unlink()
    detecting = [arg for arg in fleet if arg != "--no-detection"]
    for bad in (["--conf", "25"], ["--method", str(tmp_path / "absent.pt")]):  # refused before any bag, not in each
        assert main([*detecting, *bad]) == 2, bad
        assert all((tmp_path / "fleet" / name / "summary.json").is_file() for name in ("drive1", "drive2")), bad


def test_an_earlier_evaluation_holding_other_files_is_not_replaced(tmp_path: Path, capsys) -> None:
    """An earlier evaluation's folder was replaced whole, and with it what the user had put there since (notes, an
    analysis, a copied recording), without a word."""
    bag, out = tmp_path / "bag", tmp_path / "eval"
    write_camera_bag(bag, "mcap", demo_frames(2), "bgr8")
    common = ["--method", "dcp", "--no-detection", "--image-topic", "/cam/image_raw", "--no-progress"]
    assert main(["bag-eval", str(bag), "--out", str(out), *common]) == 0
    (out / "notes.md").write_text("frame 1: the truck is missed")
    (out / "analysis").mkdir()
    summary = (out / "summary.json").read_bytes()
    assert main(["bag-eval", str(bag), "--out", str(out), *common]) == 2
    assert f"output folder {out}, an earlier evaluation, also holds analysis, notes.md, which replacing it would " \
           "delete" in capsys.readouterr().err
    assert (out / "notes.md").read_text() == "frame 1: the truck is missed" and \
        (out / "summary.json").read_bytes() == summary
    (out / "notes.md").unlink()
    (out / "analysis").rmdir()
    assert main(["bag-eval", str(bag), "--out", str(out), *common]) == 0, "an earlier evaluation alone is replaced"


def test_cli_with_detector_writes_vision_msgs_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out, table = tmp_path / "eval", tmp_path / "table.json"
    code = main(["bag-eval", str(DEMO_BAG), "--camera-info-topic", "/camera/camera_info", "--out", str(out),
                 "--method", "dcp", "--max-frames", "3", "--json", str(table), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    figures = json.loads(table.read_text())
    assert set(figures) == {"hazy", "dehazed"}
    for column in ("frames", "detections", "mean_confidence", "haze_density", "fps", "latency_ms_median"):
        assert column in printed and column in figures["dehazed"]
    assert figures["dehazed"]["frames"] == 3
    topics = read_all(out / "bag")
    assert len(topics[DEMO_TOPIC]) == 3
    arrays = [m for _, m in topics["/dgdehaze/detections"]]
    assert [(a.header.stamp.sec, a.header.stamp.nanosec, a.header.frame_id) for a in arrays] == [
        (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) for _, m in topics[DEMO_TOPIC]]
    detections = [d for array in arrays for d in array.detections]
    assert len(detections) == figures["dehazed"]["detections"] > 0
    scores = [d.results[0].hypothesis.score for d in detections]
    assert np.mean(scores) == pytest.approx(figures["dehazed"]["mean_confidence"])
    (_, labels), = topics["/dgdehaze/label_info"]  # one class map, as the node latches it
    names = {c.class_id: c.class_name for c in labels.class_map}
    assert names[2] == "car" and len(names) == 80 and labels.threshold == pytest.approx(0.25)
    for detection in detections:
        assert names[int(detection.results[0].hypothesis.class_id)] in ("car", "truck", "bus", "train", "person")
        assert 0 <= detection.bbox.center.position.x <= 640 and 0 < detection.bbox.size_x <= 640
        position = detection.results[0].pose.pose.position  # no mounting: no metres, so no position
        assert all(math.isnan(value) for value in (position.x, position.y, position.z))


def test_outputs_never_replace_inputs_and_bad_paths_fail_before_any_work(tmp_path: Path, capsys) -> None:
    """--json naming the input bag's .mcap replaced the bag with the figures; --json naming --out failed after the
    whole evaluation; the same bag twice was evaluated and counted twice; a NaN camera height passed as none, and a
    pitch without a height went unused without a word; a height in centimetres (165) ran, which the node refuses."""
    bag = tmp_path / "bagA"
    write_camera_bag(bag, "mcap", demo_frames(2))
    (recording,) = bag.glob("*.mcap")
    before = recording.read_bytes()
    out = tmp_path / "eval"
    options = ["--no-detection", "--out", str(out)]
    refusals = {"exists and holds no JSON": [str(bag), *options, "--json", str(recording)],
                f"would overwrite --out {out}": [str(bag), *options, "--json", str(out)],
                "lies in --out": [str(bag), *options, "--json", str(out / "report.html")],
                "a bag is given twice": [str(bag), f"{bag}/", *options],
                "--camera-height must be a finite height": [str(bag), *options, "--camera-height", "nan"],
                "--camera-pitch must be a finite angle": [str(bag), *options, "--camera-height", "1.3",
                                                          "--camera-pitch", "inf"],
                "--camera-pitch needs --camera-height": [str(bag), *options, "--camera-pitch", "0.05"],
                "m above the road, at most 20; 0: none), got 165.0": [str(bag), *options, "--camera-height", "165"],
                "within +-1.5), got 3.0": [str(bag), *options, "--camera-height", "1.3", "--camera-pitch", "3"],
                "--out /proc/eval cannot be written": [str(bag), *options, "--out", "/proc/eval"]}  # was: a .lock
    for message, args in refusals.items():
        assert main(["bag-eval", *args]) == 2, message
        assert message in capsys.readouterr().err
        assert not out.exists(), f"{message}: work was done"
    assert recording.read_bytes() == before
    figures = tmp_path / "figures.json"
    figures.write_text("{}")  # an earlier run's figures: replaced
    assert main(["bag-eval", str(bag), *options, "--json", str(figures)]) == 0
    assert "dehazed" in json.loads(figures.read_text())


def test_a_link_to_a_read_only_disk_is_refused_as_the_place_written_before_any_work(
        tmp_path: Path, read_only_folder: Path, capsys: pytest.CaptureFixture) -> None:
    """An atomic write follows a link (218a815), so its files go beside what the link points at; the up-front check
    still tried the link's own folder: --json LINK to a read-only disk passed it, the whole evaluation ran and was
    written, and then the figures failed with a bare '[Errno 30] Read-only file system' on a .lock file."""
    bag = tmp_path / "bagA"
    write_camera_bag(bag, "mcap", demo_frames(2))
    link = tmp_path / "figures.json"
    link.symlink_to(read_only_folder / "figures.json")
    out = tmp_path / "eval"
    assert main(["bag-eval", str(bag), "--method", "dcp", "--no-detection", "--out", str(out), "--json", str(link),
                 "--no-progress"]) == 2
    assert f"--json {link} cannot be written: Read-only file system in {read_only_folder}" in capsys.readouterr().err
    assert not out.exists(), "work was done"


def test_fog_that_hides_the_road_is_marked_as_the_most_the_visibility_can_be(tmp_path: Path) -> None:
    """A white-out (no road in view) reads the visibility's upper bound: the report plotted and the summary kept it
    as a measurement, beside the frames of the real fog drive."""
    frames = demo_frames(3, (640, 360))
    frames[1:1] = [np.full_like(frames[0], 225)] * 2  # two frames of fog so dense nothing shows
    write_camera_bag(tmp_path / "in", "mcap", frames)
    out = tmp_path / "eval"
    evaluation = evaluate_bag(tmp_path / "in", "/cam/image_raw", out, method="dcp", detector=None, progress=False,
                              mounting=Mounting(height=1.3, pitch=0.0))
    bounds = [r.visibility_at_most for r in evaluation.records]
    assert bounds == [False, True, True, False, False], [(r.visibility_m, r.visibility_at_most)
                                                         for r in evaluation.records]
    assert all(math.isfinite(r.visibility_m) for r in evaluation.records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_frame"]["visibility_at_most"] == bounds
    assert "open triangles: fog hides the road" in (out / "report.html").read_text()
    assert (out / "figures" / "visibility.png").stat().st_size > 0


def test_offline_with_a_camera_mounting_the_fog_is_measured_as_the_node_measures_it(tmp_path: Path) -> None:
    """The daytime demo drive with the mounting `make demo` gives the node: the visibility per frame, ~/depth in
    metres and ~/visibility in the output bag, and detections that carry metres."""
    from dgdehaze_core.detection.detector import Detector

    bag, out = REPO_DIR / "data" / "demo" / "rural_fog_day", tmp_path / "eval"
    evaluation = evaluate_bag(bag, DEMO_TOPIC, out, camera_info_topic="/camera/camera_info", method="dcp",
                              mounting=Mounting(height=1.3, pitch=0.0), max_frames=6, detector=Detector(conf=0.1),
                              progress=False)
    visibility = [r.visibility_m for r in evaluation.records]
    assert sum(math.isfinite(v) for v in visibility) >= 5
    assert all(10.0 < v < 200.0 for v in visibility if math.isfinite(v)), visibility  # fog, not a clear road
    topics = read_all(out / "bag")
    ranges = [m.range for _, m in topics["/dgdehaze/visibility"]]
    assert ranges == pytest.approx(visibility, nan_ok=True)
    assert "/dgdehaze/depth" not in topics and "/dgdehaze/image_dehazed" not in topics  # compressed, as the camera
    _, depth_msg = topics["/dgdehaze/depth/compressedDepth"][-1]
    depth = decompress_depth(depth_msg.format, bytes(depth_msg.data))
    assert depth.shape == (540, 960) and np.nanmedian(depth) > 1.0  # metres on the road ahead
    summary = json.loads((out / "summary.json").read_text())
    assert summary["per_frame"]["visibility_m"] == pytest.approx(visibility, nan_ok=True)
    (_, info), *_ = topics["/dgdehaze/camera_info"]
    fx, _, ox, _, fy, oy = info.k[:6]
    located = 0
    for (_, array), record in zip(topics["/dgdehaze/detections"], evaluation.records):
        for detection, z in zip(array.detections, record.detection_depths):  # metres: the box centre's ray at z
            cx, cy = detection.bbox.center.position.x, detection.bbox.center.position.y
            position = detection.results[0].pose.pose.position
            assert (position.x, position.y, position.z) == pytest.approx(
                ((cx - ox) / fx * z, (cy - oy) / fy * z, z), rel=1e-4, abs=1e-6, nan_ok=True)
            located += math.isfinite(position.z)
    assert located > 0, "no detection got a position in metres"


def test_a_camera_pitch_that_puts_the_horizon_above_the_frames_is_noted_once_as_perhaps_degrees(
        tmp_path: Path) -> None:
    """--camera-pitch 1.0 meant as 1 degree is a camera 57 degrees nose down: every pixel taken as road a few metres
    away, and the report's visibility and distances far too short, said nowhere. It is warned of once and noted in
    the report, as the node says it; an ordinary pitch notes nothing."""
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(2, (320, 180)))
    for pitch, noted in ((0.02, 0), (1.0, 1)):
        evaluation = evaluate_bag(tmp_path / "in", "/cam/image_raw", tmp_path / f"eval{pitch}", method="dcp",
                                  detector=None, progress=False, mounting=Mounting(height=1.3, pitch=pitch))
        notes = [note for note in evaluation.notes if "horizon" in note]
        assert len(notes) == noted, evaluation.notes
    assert "57 degrees nose down" in notes[0] and "given in degrees" in notes[0], notes[0]


def test_the_fog_is_smoothed_over_the_camera_s_stamps_not_the_times_the_recorder_logged_the_frames(
        tmp_path: Path) -> None:
    """The node smooths the fog over its frames' header stamps: bag-eval must too. Real fog frames stamped a camera
    period apart give the same visibility per frame whether the recorder logged them as they came or in one burst
    (all within 5 microseconds, as a recorder flushing a queue does), where over the log times the burst's readings
    would be held at the first frame's."""
    frames = demo_frames(6)
    readings = {}
    for name, log_times in (("as they came", [START + i * PERIOD for i in range(6)]),
                            ("in a burst", [START + 10 * PERIOD + i * 1000 for i in range(6)])):
        bag = tmp_path / name.replace(" ", "-")
        with BagWriter(bag, "mcap") as writer:
            for index, (frame, log_time) in enumerate(zip(frames, log_times)):
                header = writer.header(START + index * PERIOD, "cam")
                writer.write("/cam/camera_info", CAMERA_INFO_TYPE, log_time, camera_info_msg(writer, header, frame))
                writer.write("/cam/image_raw", IMAGE_TYPE, log_time, image_msg(writer, header, frame, "bgr8"))
        evaluation = evaluate_bag(bag, "/cam/image_raw", tmp_path / f"{bag.name}-out", method="dcp",
                                  camera_info_topic="/cam/camera_info", mounting=Mounting(height=1.3, pitch=0.0),
                                  progress=False)
        readings[name] = [record.visibility_m for record in evaluation.records]
    assert all(math.isfinite(v) for v in readings["as they came"]) and len(set(readings["as they came"])) == 6
    assert readings["in a burst"] == pytest.approx(readings["as they came"], rel=1e-9)


def broken_bags(tmp_path: Path) -> dict[str, tuple[Path, list[str], str]]:
    """name -> (bag, extra CLI args, expected error text)."""
    frames = demo_frames(2)
    good = tmp_path / "good"
    write_camera_bag(good, "mcap", frames)
    truncated = tmp_path / "truncated"
    write_camera_bag(truncated, "mcap", frames)
    data = truncated / "truncated.mcap"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    empty = tmp_path / "empty"
    with BagWriter(empty, "sqlite3") as writer:
        writer._writer.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=writer.store)
    undecodable = tmp_path / "undecodable"
    with BagWriter(undecodable, "mcap") as writer:
        writer.write("/cam/image_raw", IMAGE_TYPE, 1, image_msg(writer, writer.header(1, "c"), frames[0], "nv12"))
    undescribed = tmp_path / "undescribed"
    write_humble_bag(undescribed, "sqlite3", frames, definitions=False)
    return {
        "truncated": (truncated, ["--image-topic", "/cam/image_raw"], "corrupt, truncated"),
        "custom type undescribed": (undescribed, [], f"{CUSTOM_TYPE}, which the bag stores no definition of"),
        "missing topic": (good, ["--image-topic", "/front/image"], "no topic '/front/image'"),
        "empty": (empty, ["--image-topic", "/cam/image_raw"], "has no messages"),
        "no frame decodes": (undecodable, ["--image-topic", "/cam/image_raw"], "could be decoded"),
        "absent": (tmp_path / "absent", [], "no such bag"),
    }


def test_cli_broken_bags_exit_2_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bags = broken_bags(tmp_path / "bags")
    results = tmp_path / "results"
    results.mkdir()
    for name, (bag, args, message) in bags.items():
        out = results / name.replace(" ", "_")
        code = main(["bag-eval", str(bag), "--out", str(out), "--method", "dcp", "--no-detection", "--no-progress",
                     "--json", str(results / "t.json"), *args])
        error = capsys.readouterr().err
        assert code == 2, name
        assert error.startswith("dgdehaze bag-eval: error:") and message in error, (name, error)
        assert not out.exists(), name
    assert sorted(p.name for p in results.iterdir()) == []


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_a_bag_recorded_before_jazzy_with_a_custom_type_is_evaluated_and_the_type_copied(tmp_path: Path,
                                                                                        storage: str) -> None:
    write_humble_bag(tmp_path / "in", storage, demo_frames(2))
    evaluation = evaluate_bag(tmp_path / "in", "/cam/image_raw", tmp_path / "out", method="dcp", progress=False)
    assert len(evaluation.records) == 2
    with BagSource(tmp_path / "out" / "bag") as output:
        assert output.topics()["/wiper"] == (CUSTOM_TYPE, 2)
        wiper = next(c for c in output.connections if c.topic == "/wiper")
        assert wiper.digest.startswith("RIHS01_")
        assert {output.deserialize(wiper, raw).speed for _, _, raw in output.raw_messages([wiper])} == {2}


def test_image_topic_is_picked_when_unique(tmp_path: Path) -> None:
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(2))
    assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "eval"), "--method", "dcp",
                 "--no-detection", "--no-progress"]) == 0
    assert (tmp_path / "eval" / "report.html").is_file()
    with BagWriter(tmp_path / "two", "mcap") as writer:
        for topic in ("/left/image", "/right/image"):
            writer.write(topic, IMAGE_TYPE, 1, image_msg(writer, writer.header(1, "c"), demo_frames(1)[0], "bgr8"))
    assert main(["bag-eval", str(tmp_path / "two"), "--out", str(tmp_path / "eval2"), "--no-progress"]) == 2
    assert not (tmp_path / "eval2").exists()


def test_the_default_method_is_found_in_an_installed_package_through_the_ament_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ament_index_python")
    from dgdehaze_core.bags import evaluation as bag_evaluation

    prefix = tmp_path / "install" / "dgdehaze"  # a colcon install space, as ament_python installs the package
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "dgdehaze").write_text("")
    (prefix / "share" / "dgdehaze" / "config").mkdir(parents=True)
    (prefix / "share" / "dgdehaze" / "config" / "dgdehaze.yaml").write_text(
        "/**:\n  ros__parameters:\n    model: dcp\n")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    monkeypatch.setattr(bag_evaluation, "REPO_DIR", tmp_path / "not-a-source-tree")
    assert bag_evaluation.config_folders()[1] == prefix / "share" / "dgdehaze" / "config"
    assert bag_evaluation.node_default_method() == "dcp"
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "empty"))
    assert bag_evaluation.node_default_method() == "lite"  # the node's own default when nothing sets one
    # a configuration file that is no UTF-8 (a copy saved in Latin-1) is skipped as one that is no YAML, not the end
    # of every bag-eval with the decoder's error, naming no file
    (prefix / "share" / "dgdehaze" / "config" / "a_robot.yaml").write_bytes(
        "# K\u00f6ln\n/**:\n  ros__parameters:\n    model: base\n".encode("latin-1"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert bag_evaluation.node_default_method() == "dcp"


def test_a_node_replay_checks_its_method_s_weights_without_building_a_runtime_and_falls_back_as_offline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The method a replay starts its node with: lite's weights read here, but nothing exported or built (the
    node makes its own); a default whose weights are missing gives dcp, saying so, as the offline path does; an
    explicit method that does not load is refused."""
    from dgdehaze_core.bags.evaluation import node_method

    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(tmp_path / "engines"))
    assert node_method("lite") == "lite"
    assert not (tmp_path / "engines").exists(), "an export or engine was made in the replay's own process"
    with caplog.at_level("WARNING"):
        assert node_method(None, default=str(tmp_path / "missing.pt")) == "dcp"
    assert "falling back to dcp" in caplog.text
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    for method, error in ((str(tmp_path / "missing.pt"), FileNotFoundError), (str(tmp_path / "broken.pt"), ValueError),
                          ("lite2", ValueError), (str(tmp_path / "missing.onnx"), FileNotFoundError)):
        with pytest.raises(error):
            node_method(method)


def test_input_bits_reads_a_12_bit_camera_as_the_node_does_and_a_node_param_of_it_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frames = demo_frames(2)
    write_camera_bag(tmp_path / "mono12", "mcap", frames, "mono12")
    write_camera_bag(tmp_path / "mono8", "mcap", frames, "mono8")
    common = ["--method", "dcp", "--no-detection", "--no-progress"]
    figures = {}
    for name, extra in (("mono12", ["--input-bits", "12"]), ("mono8", [])):
        assert main(["bag-eval", str(tmp_path / name), "--out", str(tmp_path / f"eval-{name}"), *common,
                     *extra]) == 0
        summary = json.loads((tmp_path / f"eval-{name}" / "summary.json").read_text())
        figures[name] = summary["figures"]["hazy"]["haze_density"]
        assert summary["input_bits"] == (12 if name == "mono12" else 16)
    assert figures["mono12"] == pytest.approx(figures["mono8"], abs=0.01)
    capsys.readouterr()
    assert main(["bag-eval", str(tmp_path / "mono12"), "--out", str(tmp_path / "refused"), *common, "--node",
                 "--node-param", "input_bits:=12"]) == 2
    assert "give the node's input_bits as --input-bits" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_a_node_param_of_the_method_is_refused_for_method_which_the_report_names(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--node --node-param weights:=mine.pt ran mine.pt in the node, but the report, its title and summary.json's
    method said 'lite' (the default method the node was started with before the --node-param replaced it)."""
    write_camera_bag(tmp_path / "bag", "mcap", demo_frames(1))
    weights = shipped_weights_path("lite")
    for param in (f"weights:={weights}", "model:=dcp"):
        assert main(["bag-eval", str(tmp_path / "bag"), "--out", str(tmp_path / "refused"), "--no-detection",
                     "--no-progress", "--node", "--node-param", param]) == 2
        assert "give the started node's model or weights as --method" in capsys.readouterr().err, param
    assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("encoding", ["mono12", "png12"])
def test_a_12_bit_camera_s_bag_read_with_16_bits_is_warned_once_naming_input_bits(
        tmp_path: Path, foggy_road: np.ndarray, caplog: pytest.LogCaptureFixture, encoding: str) -> None:
    """A real photo as a 12-bit camera's frames (mono16 samples 0..4095, raw or image_transport's 16-bit PNG): read
    with the default 16 bits they are evaluated as nearly black images, which bag-eval says once for the bag."""
    import cv2

    photo = cv2.resize(foggy_road, (160, 90), interpolation=cv2.INTER_AREA)
    write_camera_bag(tmp_path / "drive", "mcap", [photo] * 3, encoding)
    common = ["bag-eval", str(tmp_path / "drive"), "--method", "dcp", "--no-detection", "--no-progress"]
    with caplog.at_level("WARNING"):
        assert main([*common, "--out", str(tmp_path / "sixteen")]) == 0
        warnings = [r.getMessage() for r in caplog.records if "none above 4095" in r.getMessage()]
        assert len(warnings) == 1 and "--input-bits 12" in warnings[0] and str(tmp_path / "drive") in warnings[0]
        caplog.clear()
        assert main([*common, "--out", str(tmp_path / "twelve"), "--input-bits", "12"]) == 0
        assert not [r for r in caplog.records if "none above 4095" in r.getMessage()]
    write_camera_bag(tmp_path / "full", "mcap", [photo] * 2, "mono16")  # a 16-bit camera on the full range
    with caplog.at_level("WARNING"):
        assert main(["bag-eval", str(tmp_path / "full"), *common[2:], "--out", str(tmp_path / "full-eval")]) == 0
        assert not [r for r in caplog.records if "none above 4095" in r.getMessage()]


def test_an_output_folder_that_would_lose_data_is_refused_before_any_work(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    bag = tmp_path / "drives" / "drive"
    write_camera_bag(bag, "mcap", demo_frames(2))
    (tmp_path / "drives" / "notes.txt").write_text("kept")
    (tmp_path / "afile").write_text("kept")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "plan.txt").write_text("kept")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone")  # was evaluated, then failed to rename over the link
    before = sorted(p for p in tmp_path.rglob("*"))
    common = ["--method", "dcp", "--no-detection", "--no-progress"]
    for out, message in ((bag, "would replace the input bag"), (tmp_path / "drives", "would replace the input bag"),
                         (bag / "eval", "would replace the input bag"), (tmp_path / "afile", "is a file"),
                         (tmp_path / "mine", "not an earlier evaluation's"),
                         (tmp_path / "dangling", f"is a link to {tmp_path / 'gone'}, which does not exist")):
        assert main(["bag-eval", str(bag), "--out", str(out), *common]) == 2, out
        assert message in capsys.readouterr().err, out
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert main(["bag-eval", str(bag), "--out", str(tmp_path / "eval"), *common]) == 0
    assert main(["bag-eval", str(bag), "--out", str(tmp_path / "eval"), *common]) == 0, "an earlier output is replaced"


def test_an_output_folder_holding_the_current_folder_is_refused_before_any_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """`--out .` from inside an earlier output was evaluated whole, then failed renaming the current folder ("Device
    or resource busy") and left a hidden folder in it, which the next run refused as a file of the user's."""
    bag = tmp_path / "drive"
    write_camera_bag(bag, "mcap", demo_frames(1))
    common = ["--method", "dcp", "--no-detection", "--no-progress"]
    assert main(["bag-eval", str(bag), "--out", str(tmp_path / "eval"), *common]) == 0
    before = sorted(p.name for p in (tmp_path / "eval").rglob("*"))
    for inside, out in (("eval", "."), ("eval/figures", "..")):
        monkeypatch.chdir(tmp_path / inside)
        assert main(["bag-eval", str(bag), "--out", out, *common]) == 2, out
        assert f"output folder {out} holds the current folder" in capsys.readouterr().err, out
    assert sorted(p.name for p in (tmp_path / "eval").rglob("*")) == before


def test_a_bag_whose_name_is_no_utf8_is_reported_alone_and_in_a_fleet(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """A recording copied with a Latin-1 name (an old camera's, held with surrogates): the evaluation ran, then failed
    writing report.html (exit 2, nothing written); printing its title failed on a strict UTF-8 stdout, and a fleet
    failed linking it in index.html."""
    name = os.fsdecode(b"caf\xe9")
    write_camera_bag(tmp_path / "drive", "mcap", demo_frames(1))
    shutil.copytree(tmp_path / "drive", tmp_path / name)
    common = ["--method", "dcp", "--no-detection", "--no-progress"]
    assert main(["bag-eval", str(tmp_path / name), "--out", str(tmp_path / "eval"), *common]) == 0
    assert "caf\\udce9 (offline, dcp, 1 frames)" in capsys.readouterr().out
    assert "caf\\udce9</h1>" in (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    fleet = tmp_path / "fleet"
    assert main(["bag-eval", str(tmp_path / name), str(tmp_path / "drive"), "--out", str(fleet), "--workers", "1",
                 *common]) == 0
    assert 'href="caf%E9/report.html"' in (fleet / "index.html").read_text(encoding="utf-8")
    assert (fleet / name / "report.html").is_file()


def test_a_bag_name_stdout_cannot_encode_is_printed_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bag with a CJK name evaluated with a Latin-1 stdout (a Latin-1 locale's): the figures table's title failed
    to print after the output was written (exit 2), as the escape kept for a name that is no UTF-8 escaped only what
    UTF-8 cannot encode."""
    write_camera_bag(tmp_path / "東京", "mcap", demo_frames(1))
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["bag-eval", str(tmp_path / "東京"), "--out", str(tmp_path / "eval"), "--method", "dcp",
                 "--no-detection", "--no-progress"]) == 0
    stdout.flush()
    assert "\\u6771\\u4eac (offline, dcp, 1 frames)" in stdout.buffer.getvalue().decode("latin-1")


def test_an_output_folder_naming_the_input_is_refused_before_the_detector_loads(tmp_path: Path,
                                                                               capsys: pytest.CaptureFixture) -> None:
    """README: --out naming an input is refused before any work; the detector (whose float rebuild a first run
    builds) is work, so a detector that cannot load must not be what the user hears of first."""
    bag = tmp_path / "drives" / "drive"
    write_camera_bag(bag, "mcap", demo_frames(2))
    write_camera_bag(tmp_path / "drives" / "other", "mcap", demo_frames(2))
    detector = ["--detector", str(tmp_path / "missing.onnx"), "--method", "dcp", "--no-progress"]
    assert main(["bag-eval", str(bag), "--out", str(bag), *detector]) == 2
    assert "would replace the input bag" in capsys.readouterr().err
    assert main(["bag-eval", str(bag), str(tmp_path / "drives" / "other"), "--out", str(tmp_path / "drives"),
                 "--workers", "1", *detector]) == 2
    assert "would replace the input bag" in capsys.readouterr().err


def test_a_bad_bag_or_topic_is_refused_before_the_detector_loads(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """docs/BAGS.md: bad input is refused before any work starts. With --image-topic given, the detector (seconds to
    load, and a float rebuild on a first run) loaded before the bag was opened, so a missing detector was named
    instead of the missing topic: what the bag's metadata tells (it opens, its topics, the window) comes first, in
    either mode, and a fleet still refuses a missing bag before its detector; a missing --method file too. A window
    between two frames was found empty only by the full read, after the detector."""
    truncated = tmp_path / "truncated"
    write_camera_bag(truncated, "mcap", demo_frames(2))
    data = truncated / "truncated.mcap"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    write_camera_bag(tmp_path / "gap", "mcap", demo_frames(2))  # a window between its two frames
    between = ["--image-topic", "/cam/image_raw", "--start", f"{PERIOD / 4e9:.9f}", "--duration", f"{PERIOD / 2e9:.9f}"]
    demo = REPO_DIR / "data" / "demo" / "rural_fog_day"
    detector = ["--detector", str(tmp_path / "missing.onnx"), "--method", "dcp", "--no-progress"]
    cases = [([str(demo), "--image-topic", "/nope"], "no topic '/nope'"),
             ([str(demo), "--image-topic", "/camera/camera_info"], "not sensor_msgs/msg/Image"),
             ([str(demo), "--camera-info-topic", "/nope"], "its camera info topics: /camera/camera_info"),
             ([str(demo), "--start", "60"], "nothing was recorded 60 s into it"),
             ([str(tmp_path / "gap"), *between], "no frame in the time window"),
             ([str(tmp_path / "gap"), *between, "--node"], "no frame in the time window"),
             ([str(DEMO_BAG), "--camera-height", "1.5", "--camera-info-topic", DEMO_TOPIC], "not sensor_msgs/msg/Cam"),
             ([str(truncated), "--image-topic", "/cam/image_raw"], "corrupt, truncated"),
             ([str(demo), "--image-topic", "/nope", "--node"], "no topic '/nope'"),
             ([str(demo), str(tmp_path / "absent"), "--workers", "1"], "no such bag"),
             ([str(demo), "--method", str(tmp_path / "nope.onnx")], "nope.onnx"),
             ([str(demo), str(DEMO_BAG), "--method", str(tmp_path / "nope.pt"), "--workers", "1"], "nope.pt")]
    for args, message in cases:  # a case's own --method comes last, where argparse takes it
        assert main(["bag-eval", *detector, *args, "--out", str(tmp_path / "out")]) == 2, args
        error = capsys.readouterr().err
        assert message in error and "missing.onnx" not in error, (args, error)
        assert not (tmp_path / "out").exists(), args


def test_a_fleets_bad_bag_or_topic_fails_as_that_bag_before_its_detector_loads(tmp_path: Path) -> None:
    """Each bag of a fleet built its detector before opening the bag, so a truncated bag or one without the topic
    failed only after the detector's load (seconds a bag), and with a detector that cannot load it was reported as
    the detector's failure. With a detector path that does not exist, the good bag fails on the detector (its load
    was tried), while the truncated bag and the bag without the topic fail as themselves, the detector unnamed."""
    truncated = tmp_path / "truncated"
    write_camera_bag(truncated, "mcap", demo_frames(2))
    data = truncated / "truncated.mcap"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    good = tmp_path / "good"
    write_camera_bag(good, "mcap", demo_frames(2))
    missing = tmp_path / "missing.onnx"
    bags = [good, truncated, REPO_DIR / "data" / "demo" / "rural_fog_day"]
    jobs = [BagJob(str(bag), str(tmp_path / "out" / bag.name), image_topic="/cam/image_raw", method="dcp",
                   detector={"weights": str(missing)}) for bag in bags]
    outcomes = {Path(o["input_bag"]).name: o for o in run_fleet(jobs, tmp_path / "out", workers=1,
                                                                 progress=False)["per_bag"]}
    assert not any(o["ok"] for o in outcomes.values()), outcomes
    assert "missing.onnx" in outcomes["good"]["error"], outcomes["good"]
    assert "corrupt, truncated" in outcomes["truncated"]["error"], outcomes["truncated"]
    assert "no topic '/cam/image_raw'" in outcomes["rural_fog_day"]["error"], outcomes["rural_fog_day"]
    assert not any("missing.onnx" in outcomes[name]["error"] for name in ("truncated", "rural_fog_day")), outcomes


def test_a_bag_that_already_holds_the_outputs_topics_asks_for_another_prefix(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["bag-eval", str(DEMO_BAG), "--out", str(tmp_path / "first"), "--method", "dcp", "--no-detection",
                 "--max-frames", "2", "--no-progress"]) == 0
    recorded = tmp_path / "first" / "bag"  # the input's topics and /dgdehaze/..., as a robot running the node records
    common = ["--method", "dcp", "--no-detection", "--max-frames", "2", "--no-progress", "--image-topic", DEMO_TOPIC]
    assert main(["bag-eval", str(recorded), "--out", str(tmp_path / "again"), *common]) == 2
    assert "already holds /dgdehaze/" in capsys.readouterr().err and not (tmp_path / "again").exists()
    assert main(["bag-eval", str(recorded), "--out", str(tmp_path / "bad"), *common,
                 "--output-prefix", "bad topic!"]) == 2
    assert "not a ROS namespace" in capsys.readouterr().err
    assert main(["bag-eval", str(recorded), "--out", str(tmp_path / "again"), *common,
                 "--output-prefix", "/offline_eval"]) == 0
    with BagSource(tmp_path / "again" / "bag") as source:
        topics = source.topics()
    assert topics["/offline_eval/image_dehazed/compressed"][1] == 2  # the input's kept beside it:
    assert topics["/dgdehaze/image_dehazed/compressed"][1] >= 1


def test_errors_print_one_line_and_a_json_folder_is_refused_before_the_run(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  version: [\n")
    common = ["--method", "dcp", "--no-detection", "--no-progress"]
    assert main(["bag-eval", str(broken), "--out", str(tmp_path / "o"), *common]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "cannot open bag" in error and "run with -v" in error
    write_camera_bag(tmp_path / "good", "mcap", demo_frames(1))
    (tmp_path / "figures").mkdir()
    assert main(["bag-eval", str(tmp_path / "good"), "--out", str(tmp_path / "o"), *common,
                 "--json", str(tmp_path / "figures")]) == 2
    assert "is a folder" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_a_bag_whose_only_camera_info_topic_holds_no_message_is_evaluated_without_one(tmp_path: Path) -> None:
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(2), with_info=False, declared_info=["/cam/camera_info"])
    evaluation = evaluate_bag(tmp_path / "in", "/cam/image_raw", tmp_path / "out", method="dcp", progress=False)
    assert len(evaluation.records) == 2 and evaluation.camera_info_topic is None


def test_a_camera_height_takes_the_bags_only_camera_info_and_without_one_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_camera_bag(tmp_path / "with_info", "mcap", demo_frames(2))
    write_camera_bag(tmp_path / "without", "mcap", demo_frames(2), with_info=False)
    common = ["--method", "dcp", "--no-detection", "--no-progress", "--camera-height", "1.5"]
    assert main(["bag-eval", str(tmp_path / "with_info"), "--out", str(tmp_path / "a"), *common]) == 0
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["camera_info_topic"] == "/cam/camera_info"
    capsys.readouterr()
    assert main(["bag-eval", str(tmp_path / "without"), "--out", str(tmp_path / "b"), *common]) == 2
    assert "holds no camera info topic" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_a_camera_mounting_without_usable_camera_info_says_why_the_fog_is_not_measured(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With --camera-height, a frame before any camera_info and frames whose camera_info is another camera's (another
    aspect ratio) have no fog measured: said once per reason in the log and the report's notes, as the node says it,
    not left as a plot that is silently missing."""
    with BagWriter(tmp_path / "in", "mcap") as writer:
        for index, frame in enumerate(demo_frames(3)):  # 160x90
            stamp = START + index * PERIOD
            header = writer.header(stamp, "camera_optical_frame")
            if index:
                writer.write("/cam/camera_info", CAMERA_INFO_TYPE, stamp,
                             camera_info_msg(writer, header, np.zeros((480, 640, 3), np.uint8)))
            writer.write("/cam/image_raw", IMAGE_TYPE, stamp, image_msg(writer, header, frame, "bgr8"))
    evaluation = evaluate_bag(tmp_path / "in", "/cam/image_raw", tmp_path / "out", method="dcp",
                              mounting=Mounting(1.5, 0.0), progress=False)
    assert [math.isnan(r.visibility_m) for r in evaluation.records] == [True] * 3
    prefix = "no visibility, depth in metres or detection distance where "
    notes = json.loads((tmp_path / "out" / "summary.json").read_text())["notes"]
    assert notes == [f"{prefix}no camera_info has arrived (first at frame 0)",
                     f"{prefix}camera_info describes a 640x480 image but the frames are 160x90, of another aspect "
                     "ratio (a crop its region of interest does not declare?) (first at frame 1)"], notes
    assert caplog.text.count(prefix) == 2, "once per reason, not once per frame"
    assert html.escape(notes[1], quote=False) in (tmp_path / "out" / "report.html").read_text()



def test_the_camera_info_of_frames_resized_from_its_image_is_written_scaled_as_the_fog_read_it(tmp_path: Path) -> None:
    """Frames resized from the image their camera_info describes: the fog reads its K scaled to them, so the output
    bag's ~/camera_info carries that K and the frames' size, the pair depth_image_proc takes with ~/depth."""
    with BagWriter(tmp_path / "in", "mcap") as writer:
        for index, frame in enumerate(demo_frames(2)):  # 160x90 frames of the real foggy drive
            stamp = START + index * PERIOD
            header = writer.header(stamp, "camera_optical_frame")
            writer.write("/cam/camera_info", CAMERA_INFO_TYPE, stamp,  # f 100, centre (80, 45) at 320x180
                         camera_info_msg(writer, header, np.zeros((180, 320, 3), np.uint8)))
            writer.write("/cam/image_raw", IMAGE_TYPE, stamp, image_msg(writer, header, frame, "bgr8"))
    evaluate_bag(tmp_path / "in", "/cam/image_raw", tmp_path / "out", method="dcp", mounting=Mounting(1.5, 0.0),
                 progress=False)
    relayed = read_all(tmp_path / "out" / "bag")["/dgdehaze/camera_info"]
    assert len(relayed) == 2
    for _, info in relayed:
        assert (info.width, info.height) == (160, 90)
        assert info.k.tolist() == [50.0, 0.0, 40.0, 0.0, 50.0, 22.5, 0.0, 0.0, 1.0]


KITTI_RAW_D = [-0.3691481, 0.1968681, 0.001353473, 0.0005677587, -0.06770705]
"""The lens distortion of KITTI's raw colour camera 2 (calib_cam_to_cam.txt D_02)."""


def test_the_lens_distortion_of_raw_frames_is_undone_and_one_on_a_topic_that_does_not_say_is_noted_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """--image-rectified as the node's image_rectified: false undoes the camera_info's distortion (the depth in
    metres follows the undistorted rays: depth * |ray| / visibility, -ln(t) / 3.912, is the same pixel by pixel
    as through P's straight rays where neither is held at the road plane's depth, the depth itself not); auto on a
    topic whose name does not say is taken as rectified and noted once in the log and the report."""
    with BagWriter(tmp_path / "in", "mcap") as writer:
        for index, frame in enumerate(demo_frames(3)):  # 160x90 frames of the real foggy drive
            stamp = START + index * PERIOD
            header = writer.header(stamp, "camera_optical_frame")
            info = camera_info_msg(writer, header, frame)
            info.d[:] = KITTI_RAW_D
            writer.write("/cam/camera_info", CAMERA_INFO_TYPE, stamp, info)
            writer.write("/cam/image", IMAGE_TYPE, stamp, image_msg(writer, header, frame, "bgr8"))
    scaled = {}
    for setting in ("auto", "false", "true"):
        caplog.clear()
        out = tmp_path / f"out-{setting}"
        evaluation = evaluate_bag(tmp_path / "in", "/cam/image", out, method="dcp", mounting=Mounting(1.5, 0.0),
                                  progress=False, image_rectified=setting)
        said = [note for note in json.loads((out / "summary.json").read_text())["notes"] if "lens distortion" in note]
        if setting == "auto":
            assert len(said) == 1 and said[0].startswith("camera_info gives lens distortion (plumb_bob, D not zero) "
                                                         "and the frames on /cam/image are taken as rectified"), said
            assert "--image-rectified false" in said[0] and said[0].endswith("(first at frame 0)"), said
            assert caplog.text.count("lens distortion") == 1
            continue
        assert not said and "lens distortion" not in caplog.text
        _, depth_msg = read_all(out / "bag")["/dgdehaze/depth"][0]
        depth = np.frombuffer(depth_msg.data.tobytes(), "<f4").reshape(90, 160)
        intrinsics = intrinsics_of(info, (90, 160), raw=setting == "false")
        norms = ray_norms((90, 160), intrinsics)
        road_z = ground_range((90, 160), intrinsics, Mounting(1.5, 0.0)) / norms  # the depth's bound
        with np.errstate(invalid="ignore"):
            free = ~(depth >= road_z * (1 - 1e-5))  # not held at the road plane's depth
        scaled[setting] = (depth, depth * norms / evaluation.records[0].visibility_m, free)
    (raw, raw_scaled, raw_free), (rectified, rectified_scaled, rectified_free) = scaled["false"], scaled["true"]
    both = np.isfinite(raw) & np.isfinite(rectified) & raw_free & rectified_free
    assert both.sum() > 1000
    assert raw_scaled[both] == pytest.approx(rectified_scaled[both], rel=1e-4)
    assert np.abs(raw[both] / rectified[both] - 1).max() > 0.01, "the raw frames' depth is another"


def test_a_time_window_evaluates_and_copies_that_part_of_the_drive_with_the_camera_info_from_before_it(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--start and --duration as ros2 bag play's offset and duration: the frames recorded in the window, the output
    bag holding that part (and the CameraInfo that came before it), and a window outside the bag refused. The report
    and summary.json count the window's frames and the bag's (frames_in_bag counted the window's alone)."""
    from rosbags.highlevel import AnyReader

    with AnyReader([DEMO_BAG]) as reader:
        first = reader.start_time
        frames = [t for c, t, _ in reader.messages() if c.topic == DEMO_TOPIC]
    start, stop = first + 2_500_000_000, first + 4_000_000_000
    inside = [t for t in frames if start <= t < stop]
    assert 0 < len(inside) < len(frames)
    common = ["--method", "dcp", "--no-detection", "--no-progress"]
    assert main(["bag-eval", str(DEMO_BAG), "--out", str(tmp_path / "part"), "--start", "2.5", "--duration", "1.5",
                 *common]) == 0
    summary = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert summary["frames_evaluated"] == len(inside) and summary["per_frame"]["log_time_ns"] == inside
    assert (summary["frames_in_window"], summary["frames_in_bag"]) == (len(inside), len(frames))
    report = (tmp_path / "part" / "report.html").read_text()
    assert f"{len(inside)} evaluated of {len(inside)} in the window ({len(frames)} in the bag)" in report
    assert any("2.5 to 4.0 s" in note for note in summary["notes"])
    topics = read_all(tmp_path / "part" / "bag")
    assert [t for t, _ in topics[DEMO_TOPIC]] == inside
    infos = [t for t, _ in topics["/camera/camera_info"]]
    assert infos[0] < start <= infos[1] and all(t < stop for t in infos), "the CameraInfo from before it, then its own"
    gap = (frames[1] - frames[0]) / 1e9  # a window between two frames holds none
    between = ["--start", f"{(frames[0] - first) / 1e9 + gap / 4:.9f}", "--duration", f"{gap / 2:.9f}"]
    for args, message in ((["--start", "-1"], "0 or more seconds"), (["--duration", "0"], "positive number"),
                          (["--start", "60"], "nothing was recorded 60 s into it"),
                          (between, "no frame in the time window")):
        assert main(["bag-eval", str(DEMO_BAG), "--out", str(tmp_path / "bad"), *args, *common]) == 2, args
        assert message in capsys.readouterr().err, args
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("duration", ["1e10", "1e300"])
def test_a_duration_past_the_bags_end_evaluates_to_its_end(tmp_path: Path, duration: str) -> None:
    """A window's end was start + duration in ns: past int64 (1e10 s) sqlite3 refused it and the bag was called
    corrupt, and 1e300 s made an OverflowError traceback; a window past the end runs to the end, as a player's."""
    write_camera_bag(tmp_path / "in", "sqlite3", demo_frames(2))
    assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--start", "0.01", "--duration",
                 duration, "--method", "dcp", "--no-detection", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["frames_evaluated"], summary["frames_in_window"], summary["frames_in_bag"]) == (1, 1, 2)
    # the bag's two frames a period (1/30 s) apart, its end 1 ns after the last: not "0.01 to 0.0 s of the bag's 0.0 s"
    assert any("0.01 to 0.033 s of the bag's 0.033 s" in note for note in summary["notes"]), summary["notes"]


def test_a_time_window_of_a_bag_without_camera_info_starts_at_its_first_frame(tmp_path: Path) -> None:
    """What a player needs from before a window is each CameraInfo's last message and /tf_static; with none in the
    bag rosbags was asked for no topic, which reads every one: the frame before the window and a status topic came
    first, so node replay at a rate sent that frame as the window's first and each record got the frame before's
    outputs."""
    bag = tmp_path / "in"
    stamps = [START + index * PERIOD for index in range(6)]
    with BagWriter(bag, "mcap") as writer:
        for stamp, frame in zip(stamps, demo_frames(6)):
            writer.write("/cam/image_raw", IMAGE_TYPE, stamp, image_msg(writer, writer.header(stamp, "cam"), frame,
                                                                         "bgr8"))
            writer.write("/status", "std_msgs/msg/String", stamp + 1, writer.types["std_msgs/msg/String"](data="ok"))
    with BagSource(bag) as source:
        source.select_window(2.5 * PERIOD / 1e9, None)
        frames = [c for c in source.connections if c.topic == "/cam/image_raw"]
        sent = [(c.topic, t) for c, t, _ in source.raw_messages(frames)]
        assert sent == [("/cam/image_raw", stamp) for stamp in stamps[3:]], sent
        assert [frame.log_time_ns for frame in source.frames("/cam/image_raw")] == stamps[3:]


def test_at_a_replay_rate_the_report_plots_the_frames_answered_per_second_of_replay() -> None:
    """Answered frames 0.2 s of recording apart, sent at twice the recorded pace: ten a second of replay; the rate of
    a frame is over the last `window` answered before it."""
    seconds = np.array([0.0, 0.2, 0.4, 0.5, 0.9])
    rates = answered_rate(seconds, 2.0, window=2)
    assert math.isnan(rates[0])
    assert rates[1:] == pytest.approx([10.0, 10.0, 2 / 0.15, 8.0])


def test_the_reports_rolling_frame_rate_is_the_mean_of_the_finite_values_in_each_window() -> None:
    """The report's 10-frame FPS mean (frames without a latency are NaN) against its definition, position by
    position: the running sums that replaced a per-frame loop (seconds of a long drive's report) give it."""
    values = np.random.default_rng(0).uniform(1.0, 30.0, 500)
    values[[0, 1, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 300]] = np.nan
    values[42] = np.inf
    expected = []
    for index in range(values.size):
        window = values[max(0, index - 9):index + 1]
        window = window[np.isfinite(window)]
        expected.append(window.mean() if window.size else np.nan)
    np.testing.assert_allclose(rolling_mean(values, 10), expected, rtol=1e-12, atol=1e-9)
    assert np.isnan(rolling_mean(values, 10)[[0, 1]]).all() and np.isnan(rolling_mean(np.array([]), 10)).size == 0


def test_json_dash_gives_bag_eval_s_figures_on_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    """`bag-eval BAG --out OUT --json -` wrote a file named `-` in the current folder beside the table on stdout;
    now the figures are stdout's JSON document alone, the table on stderr."""
    write_camera_bag(tmp_path / "drive", "mcap", demo_frames(2), "mono8")
    monkeypatch.chdir(tmp_path)
    assert main(["bag-eval", "drive", "--out", "eval", "--method", "dcp", "--no-detection", "--no-progress",
                 "--json", "-"]) == 0
    out, err = capsys.readouterr()
    assert "hazy" in json.loads(out) and "haze_density" in err
    assert not (tmp_path / "-").exists()
