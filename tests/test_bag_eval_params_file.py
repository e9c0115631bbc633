"""`dgdehaze bag-eval --params-file`: a bag evaluated with the settings a user's node parameters file gives, offline
(one bag and a fleet) and through a node started with the file; an option given on the command line wins."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

pytest.importorskip("rclpy", reason="--params-file is read as the node reads it, with rclpy")

from test_bag_eval import read_all  # noqa: E402
from test_bag_io import demo_frames, write_camera_bag  # noqa: E402

from dgdehaze_core.bags.evaluation import FrameProcessor  # noqa: E402
from dgdehaze_core.cli import build_parser, main  # noqa: E402
from dgdehaze_core.commands.bag_eval import image_settings  # noqa: E402
from dgdehaze_core.commands.params_file_option import take_params_file  # noqa: E402

pytestmark = pytest.mark.ros

DEMO_BAG = Path(__file__).resolve().parents[1] / "data" / "demo" / "rural_fog_day"


def _params_file(path: Path, **parameters: object) -> Path:
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
    return path


def _taken(*options: str) -> tuple[object, list[str]]:
    args = build_parser().parse_args(["bag-eval", "in.mcap", "--out", "out", *options])
    return args, take_params_file(args)


def test_the_file_fills_the_options_not_given_and_names_what_offline_runs_without(tmp_path: Path) -> None:
    params = _params_file(tmp_path / "robot.yaml", model="lite", radiance_floor=0.1, threshold=0.4, imgsz=320,
                          max_det=3, classes=["car"], camera_height=1.5, image_rectified=True, input_bits=12,
                          detection_enabled=False, output="decoder", tracker="bytetrack", working_height=240,
                          detection_input="fused", max_visibility=150.0, detection_interval=3)
    args, notes = _taken("--params-file", str(params), "--conf", "0.3", "--input-bits", "16")
    assert (args.method, args.radiance_floor, args.working_size, args.network_output) == ("lite", 0.1, (0, 240),
                                                                                          "decoder")
    assert (args.conf, args.imgsz, args.input_bits) == (0.3, 320, 16), "an option given wins over the file"
    assert args.detector_extras == {"max_det": 3, "classes": ["car"]}
    assert args.frame_settings == {"detection_input": "fused", "max_visibility": 150.0, "detection_interval": 3,
                                   "tracker": "bytetrack"}
    assert (args.camera_height, args.camera_pitch, args.image_rectified, args.no_detection) == (1.5, 0.0, "true", True)
    assert notes == [
        f"evaluated with {params}'s working_height 240, radiance_floor 0.1, output decoder, camera_height 1.5, "
        "image_rectified True, max_visibility 150.0, detection_enabled False, detection_input fused, "
        "tracker bytetrack, detection_interval 3, imgsz 320, max_det 3, classes ['car'] (its parameters for "
        "/dgdehaze; an option given wins over it)"], \
        "the report says which of the file's settings ran: not its threshold and input_bits, given as options"
    args, notes = _taken("--params-file", str(params), "--method", "dcp", "--node")
    assert (args.method, args.radiance_floor, args.network_output, notes) == ("dcp", None, None, []), \
        "dcp has no network settings to take, and a node takes the whole file"
    args, _ = _taken("--params-file", str(_params_file(tmp_path / "dcp.yaml", model="dcp")), "--max-detail-gain", "0")
    with pytest.raises(ValueError, match=rf"--max-detail-gain set how a network makes its image, and dcp \(the "
                                         rf"method of --params-file {tmp_path / 'dcp.yaml'}\) has none"):
        image_settings(args)
    args, _ = _taken("--params-file", str(_params_file(tmp_path / "decoder.yaml", output="decoder")))
    assert image_settings(args) == {"output": "decoder"}, "the file's output alone reaches the offline network"
    with pytest.raises(ValueError, match="base_frame: not a frame-chain setting"):
        FrameProcessor(None, None, settings={"base_frame": "base_link"})
    args, notes = _taken()
    assert (args.method, args.conf, args.imgsz, args.input_bits, args.image_rectified, notes) == (
        None, 0.25, 640, 16, "auto", []), "without a file: the options' own defaults"


def test_a_base_frame_is_named_as_not_reproduced_offline(tmp_path: Path) -> None:
    """TF is not read offline: a file's base_frame runs at the node's default there, and the report says so."""
    pytest.importorskip("tf2_ros", reason="the node takes a base_frame only with the Python tf2_ros")
    params = _params_file(tmp_path / "robot.yaml", base_frame="base_link")
    _, notes = _taken("--params-file", str(params))
    assert notes[-1] == f"{params}'s base_frame base_link not reproduced offline (bag-eval --node runs the node " \
                        "with them)", notes


def test_offline_each_row_is_tracked_as_its_own_stream_and_a_frame_stamped_back_starts_a_new_one() -> None:
    """A file's tracker ran only in the node: offline its figures were of untracked boxes (objects the node's
    tracker has not confirmed yet counted), and one tracker for both rows would have followed two streams as one.
    Each row has its own, and a frame stamped back in time (two drives in one bag, a camera's clock set back) starts
    a new stream, as in the node: detected at once whatever the interval, its objects confirmed with new ids."""
    from test_bag_io import DEMO_BAG as NIGHT_DRIVE, DEMO_TOPIC

    from dgdehaze_core.bags.io import BagSource
    from dgdehaze_core.detection.detector import Detector
    from dgdehaze_core.inference.pipeline import load_pipeline

    with BagSource(NIGHT_DRIVE) as source:  # a car in its frames 0 and 1, a train in 3
        frames = list(source.frames(DEMO_TOPIC, max_frames=4))

    def stamped(index: int, tenths: int):  # frame `index` of the drive at its first frame's stamp + tenths of a second
        ns = frames[0].stamp_ns + tenths * 100_000_000
        return dataclasses.replace(frames[index], header=SimpleNamespace(
            stamp=SimpleNamespace(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id="camera"))

    detector = Detector()
    for interval in (1, 3):
        processor = FrameProcessor(load_pipeline("dcp"), detector, settings={
            "tracker": "bytetrack", "detection_interval": interval, "detection_input": "raw"})
        records = [processor(stamped(index, tenths))[0] for index, tenths in ((0, 0), (1, 1), (3, -100))]
        assert [r.detected for r in records] == [True, interval == 1, True], "a new stream is detected at once"
        for row in ("hazy_detections", "dehazed_detections"):  # the raw frame in both: the same boxes, tracked apart
            ids = [[d.track_id for d in getattr(r, row)] for r in records]
            assert ids == ([[1], [1], [2]] if interval == 1 else [[1], [], [2]]), (interval, row, ids)


def test_an_option_of_zero_wins_over_the_file(tmp_path: Path) -> None:
    """--max-detail-gain 0 (the exact inversion) and --radiance-floor 0 read as unset (0 == False), so the file's
    gain and floor ran instead of the options given."""
    params = _params_file(tmp_path / "robot.yaml", max_detail_gain=3.0, radiance_floor=0.1)
    args, _ = _taken("--params-file", str(params), "--max-detail-gain", "0", "--radiance-floor", "0")
    assert (args.max_detail_gain, args.radiance_floor) == (0.0, 0.0)


def test_a_file_s_half_on_the_cpu_runs_fp32_as_the_node_does(tmp_path: Path) -> None:
    """The node ignores half on the CPU (fp16 is for GPUs); offline, the file's `half: true` became --half, which
    was refused with '--half runs the networks in fp16 on a GPU: add --device cuda', an option the user never gave."""
    args, _ = _taken("--params-file", str(_params_file(tmp_path / "robot.yaml", half=True, radiance_floor=0.1)))
    assert (args.half, image_settings(args)) == (False, {"radiance_floor": 0.1})


def test_a_file_s_weights_under_the_home_folder_load_offline_and_in_the_node(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`weights: ~/lite.pt`, which the node's check takes (it expands ~), failed offline with 'no such checkpoint:
    ~/lite.pt', and the node's own load failed at configure with the same words."""
    from dgdehaze_core.models import shipped_weights_path
    from dgdehaze_ros.params_file import read_params_file

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(shipped_weights_path("lite"), tmp_path / "lite.pt")
    params = _params_file(tmp_path / "robot.yaml", weights="~/lite.pt", detection_enabled=False)
    assert read_params_file(params).pipeline_args()[0] == str(tmp_path / "lite.pt"), "the node's load"
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(1), "bgr8")
    assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--params-file", str(params),
                 "--backend", "torch", "--output-images", "none", "--no-progress"]) == 0


def test_a_file_s_network_and_detector_settings_reach_one_bag_and_a_fleet_as_the_same_options_do(
        tmp_path: Path) -> None:
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(2), "bgr8")
    write_camera_bag(tmp_path / "in2", "mcap", demo_frames(1), "bgr8")
    common = ["--output-images", "raw", "--no-progress"]
    assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "options"), "--method", "lite",
                 "--max-detail-gain", "0", "--working-size", "96x64", "--no-detection", *common]) == 0
    params = _params_file(tmp_path / "robot.yaml", max_detail_gain=0.0, working_width=96, working_height=64,
                          detection_enabled=False, detection_input="fused", camera_height=1.5,
                          road_max_distance=20.0)
    assert main(["bag-eval", str(tmp_path / "in"), str(tmp_path / "in2"), "--out", str(tmp_path / "fleet"),
                 "--workers", "1", "--params-file", str(params), *common]) == 0
    frames = {name: [m.data for _, m in read_all(tmp_path / name / "bag")["/dgdehaze/image_dehazed"]]
              for name in ("options", "fleet/in")}
    assert len(frames["options"]) == 2 and all(np.array_equal(a, b) for a, b in zip(*frames.values()))
    summary = json.loads((tmp_path / "fleet" / "in" / "summary.json").read_text())
    assert summary["detector"] is None, "the file's detection_enabled false"
    # its detection_input changes nothing without a detector: the chain's note leaves it out
    assert summary["notes"] == [
        "the network ran with the exact inversion (max_detail_gain 0), working size 96x64",
        "the frame chain ran with road_max_distance 20.0",
        f"evaluated with {params}'s working_width 96, working_height 64, max_detail_gain 0.0, camera_height 1.5, "
        "road_max_distance 20.0, detection_enabled False, detection_input fused (its parameters for /dgdehaze; an "
        "option given wins over it)"]


def test_a_file_the_node_would_refuse_or_an_attached_node_is_refused_before_any_work(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_camera_bag(tmp_path / "in", "mcap", demo_frames(1), "bgr8")
    for options, message in (
            (["--params-file", str(_params_file(tmp_path / "bad.yaml", imgsz=500))], "imgsz must be in 32..4096"),
            (["--node", "--attach", "--params-file", str(tmp_path / "bad.yaml")],
             "--node-param and --params-file set parameters of a node started here"),
            (["--node", "--node-name", "robot/front-camera", "--params-file", str(_params_file(tmp_path / "ok.yaml"))],
             "--node-name 'robot/front-camera': the node bag-eval starts takes a name of letters")):  # rcl refuses
        assert main(["bag-eval", str(tmp_path / "in"), "--out", str(tmp_path / "out"), *options]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_node_replay_starts_the_node_with_the_file_and_offline_the_chain_and_detector_take_its_settings(
        tmp_path: Path) -> None:
    """The tracker is the node's alone: track ids in its detections say that it read the file. Offline, the file's
    detection_input (raw: the dehazed row detects on the raw frame) reaches the frame chain, and its classes (no
    option has them) the detector of both rows."""
    pytest.importorskip("vision_msgs", reason="the node publishes detections only with vision_msgs")
    params = _params_file(tmp_path / "robot.yaml", tracker="bytetrack", camera_height=1.3)
    window = ["--camera-info-topic", "/camera/camera_info", "--start", "0.4", "--duration", "0.3", "--no-progress"]
    assert main(["bag-eval", str(DEMO_BAG), "--node", "--params-file", str(params), "--out", str(tmp_path / "node"),
                 *window]) == 0
    detections = [message.detections for _, message in read_all(tmp_path / "node" / "bag")["/dgdehaze/detections"]]
    assert any(d.id for frame in detections for d in frame), "no track ids: the node ran without the file's tracker"
    said = [note for note in _summary(tmp_path / "node")["notes"] if note.startswith("the node started with")]
    assert said and said[0].startswith(f"the node started with --params-file {params}, camera_height:=1.3"), said

    # frames 7 to 10: each row has a detection on a frame every_2nd skips (the dehazed row's 8, the hazy row's 10)
    window = ["--camera-info-topic", "/camera/camera_info", "--start", "0.7", "--duration", "0.35", "--no-progress"]
    raw = _params_file(tmp_path / "raw.yaml", detection_input="raw", camera_height=1.3, road_max_distance=20.0)
    bicycles = _params_file(tmp_path / "bicycles.yaml", classes=["bicycle"])
    every_2nd = _params_file(tmp_path / "every_2nd.yaml", detection_interval=2)
    for name, options in (("default", []), ("raw", ["--params-file", str(raw)]),
                          ("bicycles", ["--params-file", str(bicycles)]),
                          ("every_2nd", ["--params-file", str(every_2nd)])):
        assert main(["bag-eval", str(DEMO_BAG), "--out", str(tmp_path / name), *options, *window]) == 0
    counts = {name: (_summary(tmp_path / name)["per_frame"]["detections_hazy"],
                     _summary(tmp_path / name)["per_frame"]["detections_dehazed"]) for name in ("default", "raw")}
    assert counts["default"][0] != counts["default"][1] and sum(counts["default"][0]) > 0, counts
    assert counts["raw"][1] == counts["raw"][0] == counts["default"][0], "the dehazed row not detected on the raw frame"
    summary = _summary(tmp_path / "raw")
    assert "the frame chain ran with detection_input raw, road_max_distance 20.0" in summary["notes"]
    assert all(v is not None and not math.isnan(v) for v in summary["per_frame"]["visibility_m"]), \
        "no fog measured: the file's camera_height did not reach the offline run"
    per_frame = _summary(tmp_path / "bicycles")["per_frame"]
    assert sum(per_frame["detections_hazy"]) == sum(per_frame["detections_dehazed"]) == 0, "the file's classes"
    summary = _summary(tmp_path / "every_2nd")
    frames = len(counts["default"][0])
    assert summary["per_frame"]["detected"] == [index % 2 == 0 for index in range(frames)]
    for row, column in (("hazy", 0), ("dehazed", 1)):  # both rows on the frames the node would detect, and only on them
        assert summary["per_frame"][f"detections_{row}"] == [count if index % 2 == 0 else 0 for index, count
                                                             in enumerate(counts["default"][column])]
        assert summary["figures"][row]["frames_detected"] == (frames + 1) // 2
    assert len(read_all(tmp_path / "every_2nd" / "bag")["/dgdehaze/detections"]) == (frames + 1) // 2
    captions = {name: (tmp_path / name / "report.html").read_text() for name in ("default", "every_2nd")}
    assert "a frame between two detected ones" in captions["every_2nd"], "a sample's panel read as 0 detections"
    assert "a frame between two detected ones" not in captions["default"]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_with_node_a_node_param_wins_over_the_file(tmp_path: Path) -> None:
    """The file's camera_height, image_rectified and radiance_floor, filled into the options, were passed to the
    started node after --node-param's: the node ran the file's values over those the user gave it."""
    from dgdehaze_core.commands.bag_eval import run

    params = _params_file(tmp_path / "robot.yaml", camera_height=1.3, image_rectified=False, radiance_floor=0.1,
                          working_width=96)
    user = ["camera_height:=2.0", "image_rectified:=true", "radiance_floor:=0.3", "working_width:=128"]
    args = build_parser().parse_args(["bag-eval", str(tmp_path / "missing"), "--out", str(tmp_path / "out"),
                                      "--node", "--params-file", str(params),
                                      *[option for param in user for option in ("--node-param", param)]])
    with pytest.raises(FileNotFoundError, match="no such bag"):  # after the node's parameters are made
        run(args)
    started = dict(param.split(":=", 1) for param in args.node_param)  # the last of a name wins, as with -p
    assert {name: started[name] for name in ("camera_height", "image_rectified", "radiance_floor",
                                             "working_width")} == dict(param.split(":=") for param in user)
