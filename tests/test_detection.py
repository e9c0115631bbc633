"""The detector wrapper on the shipped offline YOLOv8n int8 ONNX and real hazy photos (RTTS human boxes)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.detection.detector import Detection, Detector, DetectorUnavailable, median_depth
from dgdehaze_core.io.images import read_image


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


def rtts_boxes(xml_path: Path, width: int, height: int) -> list[tuple[str, tuple[float, ...]]]:
    """The human boxes of an RTTS annotation, scaled from the XML's image size to (width, height)."""
    root = ElementTree.parse(xml_path).getroot()
    sx = width / float(root.findtext("size/width"))
    sy = height / float(root.findtext("size/height"))
    boxes = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((obj.findtext("name"), (x1 * sx, y1 * sy, x2 * sx, y2 * sy)))
    return boxes


def test_finds_the_labelled_people_in_a_real_hazy_photo(detector: Detector, shared_data: Path) -> None:
    photo = shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png"
    frame = read_image(photo)
    truth = rtts_boxes(shared_data / "hazy-real" / "urhi" / "labels-voc" / "YST_Bing_667.xml", frame.shape[1],
                       frame.shape[0])
    found = detector(frame)
    persons = [d for d in found if d.class_name == "person"]
    assert persons and all(0.25 <= d.score <= 1.0 for d in found)
    for d in found:
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= frame.shape[1] + 1 and 0 <= y1 < y2 <= frame.shape[0] + 1
    matched = [d for d in persons if max(iou(d.box, box) for _, box in truth) >= 0.5]
    assert len(matched) >= 2, f"{len(persons)} persons found, {len(matched)} on the 9 labelled people"


def test_class_filter_and_confidence_are_applied(shared_data: Path) -> None:
    frame = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    cars = Detector(classes=["car"])
    assert all(d.class_name == "car" for d in cars(frame))
    with pytest.raises(ValueError, match="unknown class '²'"):  # a digit to str.isdigit, not to int()
        cars.class_ids(["²"])
    strict = Detector(conf=0.6)(frame)
    loose = Detector(conf=0.1)(frame)
    assert all(d.score >= 0.6 for d in strict) and len(loose) > len(strict)


def test_bad_settings_and_missing_weights_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="imgsz"):
        Detector(imgsz=100)
    with pytest.raises(ValueError, match="conf"):
        Detector(conf=1.5)
    with pytest.raises(ValueError, match="unknown class 'unicorn'"):
        Detector(classes=["unicorn"])
    with pytest.raises(DetectorUnavailable, match="no such detector weights file: .*absent.onnx; nothing is "
                                                  "downloaded"):
        Detector(tmp_path / "absent.onnx")
    (tmp_path / "folder.pt").mkdir()  # was 'not found', as was a link to nothing
    with pytest.raises(DetectorUnavailable, match="folder.pt is a folder, not a detector weights file"):
        Detector(tmp_path / "folder.pt")
    (tmp_path / "empty.onnx").write_bytes(b"")  # an interrupted copy: was 'list index out of range'
    with pytest.raises(DetectorUnavailable, match="empty.onnx is empty \\(0 bytes\\): no detector weights in it"):
        Detector(tmp_path / "empty.onnx")
    with pytest.raises(DetectorUnavailable, match="must be one of"):
        Detector(tmp_path / "weights.txt")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(DetectorUnavailable, match="broken.onnx is not a readable ONNX detector"):
        Detector(broken)


def test_median_depth_reads_only_valid_depth_inside_the_box() -> None:
    depth = np.full((100, 200), np.nan, np.float32)
    depth[20:60, 50:100] = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    box = Detection(0, "person", 0.9, (50.0, 20.0, 100.0, 60.0))
    assert median_depth(box, depth) == pytest.approx(np.median(np.arange(40 * 50)))
    wider = Detection(0, "person", 0.9, (0.0, 0.0, 200.0, 100.0))
    assert median_depth(wider, depth) == pytest.approx(np.median(np.arange(40 * 50)))
    assert np.isnan(median_depth(Detection(0, "person", 0.9, (150.0, 70.0, 190.0, 95.0)), depth))
    assert np.isnan(median_depth(Detection(0, "person", 0.9, (300.0, 0.0, 400.0, 50.0)), depth))
    for broken in ((math.nan, 20.0, 100.0, 60.0), (50.0, 20.0, math.inf, 60.0)):
        assert np.isnan(median_depth(Detection(0, "person", 0.9, broken), depth)), "not a ValueError"


def demo_drive(count: int) -> list[np.ndarray]:
    """The first `count` frames of the demo bag's night drive (29 fps: objects move a little between frames)."""
    from dgdehaze_core.bags.io import BagSource, decode_image
    from dgdehaze_core.datasets.paths import REPO_DIR

    frames = []
    with BagSource(REPO_DIR / "data" / "demo" / "foggy_road_night") as bag:
        for connection, _, raw in bag.raw_messages():
            if connection.topic.endswith("/compressed") and len(frames) < count:
                frames.append(decode_image(bag.deserialize(connection, raw), connection.msgtype))
    return frames


def test_a_tracker_keeps_an_object_s_identity_across_consecutive_frames(shared_data: Path, detector: Detector) -> None:
    with pytest.raises(ValueError, match="unknown tracker"):
        Detector(tracker="sort")
    frames = demo_drive(14)
    tracked = Detector(tracker="bytetrack")
    per_frame = [tracked(frame) for frame in frames]
    ids = [[d.track_id for d in detections] for detections in per_frame]
    assert all(isinstance(i, int) for frame_ids in ids for i in frame_ids)
    assert all(len(set(frame_ids)) == len(frame_ids) for frame_ids in ids), "one identity per object in a frame"
    seen: dict[int, int] = {}
    for frame_ids in ids:
        for track in frame_ids:
            seen[track] = seen.get(track, 0) + 1
    assert seen and max(seen.values()) >= 5, f"no object kept its identity over consecutive frames: {ids}"
    assert all(d.track_id is None for d in detector(frames[0]))
    tracked(np.zeros_like(frames[0]))  # a warm-up (as the node's) or another stream's frames, then a new stream
    tracked.reset_tracks()
    first = tracked(frames[0])
    assert len(first) == len(per_frame[0]) > 0, "the new stream's first frame is the tracker's first: confirmed"
    assert min(d.track_id for d in first) > max(seen), "no identity is given to a second object"


def test_a_detector_loaded_while_another_tracks_numbers_its_tracks_above_the_ids_given_meanwhile(
        foggy_road: np.ndarray) -> None:
    """A node loads the detector of a reload while the one it replaces goes on tracking the camera: the new one
    took its first id at its load, and gave the ids the old one gave meanwhile to other objects."""
    from dgdehaze_core.detection.tracking import TrackIds

    width = foggy_road.shape[1]
    frames = [np.ascontiguousarray(foggy_road[:, 3 * i:width - 30 + 3 * i]) for i in range(3)]  # a camera turning
    ids = TrackIds()
    running = Detector(tracker="bytetrack", track_ids=ids)
    loaded = Detector(tracker="bytetrack", track_ids=ids)
    loaded.reset_tracks()
    given = [d.track_id for frame in frames[:2] for d in running(frame)]
    taken = [d.track_id for d in loaded(frames[2])]
    assert given and taken and min(taken) > max(given), (given, taken)


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_a_frame_size_change_starts_new_tracks(kind: str, foggy_road: np.ndarray) -> None:
    """A camera that changes resolution: the old tracks' boxes (in the old pixels) hid the first resized frame's
    objects as unconfirmed, and botsort's motion compensation failed on every frame after."""
    tracked = Detector(tracker=kind)
    before = [i for frame in (foggy_road, foggy_road) for i in (d.track_id for d in tracked(frame))]
    half = cv2.resize(foggy_road, (foggy_road.shape[1] // 2, foggy_road.shape[0] // 2))
    after = [d.track_id for d in tracked(half)]
    assert before and after, "the resized frame's objects are confirmed at once"
    assert min(after) > max(before)


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_tracking_gives_what_ultralytics_track_mode_gives_and_follows_fused_boxes(kind: str,
                                                                                 foggy_road: np.ndarray) -> None:
    from dgdehaze_core.detection.fusion import FrameDetector
    from dgdehaze_core.inference.pipeline import load_pipeline

    frames = demo_drive(10)
    ours = Detector(tracker=kind)
    reference = Detector()  # Ultralytics' own track mode on the same detector file and options
    options = {"imgsz": 640, "conf": reference.conf, "iou": reference.iou, "max_det": reference.max_det,
               "verbose": False}
    for frame in frames:
        expected = reference.model.track(frame, persist=True, tracker=f"{kind}.yaml", **options)[0].boxes
        got = ours(frame)
        assert [d.track_id for d in got] == ([] if expected.id is None else expected.id.int().tolist())
        assert np.allclose(np.reshape([d.box for d in got], (-1, 4)), expected.xyxy.numpy().reshape(-1, 4), atol=1e-3)
    width = foggy_road.shape[1]
    panning = [np.ascontiguousarray(foggy_road[:, 3 * i:width - 30 + 3 * i]) for i in range(8)]  # a camera turning
    fused = FrameDetector(ours.detect, "fused", track=ours.track)
    ours.reset_tracks()
    results = load_pipeline("dcp").process_batch(panning)
    per_frame = [fused(result.image, frame) for result, frame in zip(results, panning)]
    ids = [[d.track_id for d in found] for found in per_frame]
    assert all(isinstance(i, int) for found in ids for i in found) and all(len(set(f)) == len(f) for f in ids)
    untracked = FrameDetector(ours.detect, "fused")(results[0].image, panning[0])
    assert len(per_frame[0]) == len(untracked) > 0, "the first frame's fused objects are confirmed at once"
    assert set(ids[0]).intersection(*ids[1:]), f"no fused object kept its identity as the camera turned: {ids}"


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_a_tracked_box_stays_inside_the_frame_as_its_object_leaves_it(kind: str, foggy_road: np.ndarray) -> None:
    """The camera turns right and the car leaves at the left edge: the Kalman filter's velocity carries the track's
    box past the edge, which Ultralytics' track mode clips (a box outside the image reached ~/detections)."""
    tracked = Detector(tracker=kind)
    panning = [np.ascontiguousarray(foggy_road[:, 20 * i:300 + 20 * i]) for i in range(17)]
    boxes = np.reshape([d.box for frame in panning for d in tracked(frame)], (-1, 4))
    assert len(boxes) >= 12 and np.isfinite(boxes).all()
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= 300).all() and (boxes[:, [1, 3]] <= foggy_road.shape[0]).all()
    assert (boxes[:, 0] == 0).any(), "the car was tracked to the frame's edge"


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_a_vehicle_seen_as_car_and_truck_keeps_one_identity(kind: str, shared_data: Path) -> None:
    """The detector's NMS is per class, so in fog one vehicle often comes as a car and a truck box in one frame (6
    of 40 DAWN photos): the second box started a second track, two ids for one vehicle. A class that changes from
    frame to frame keeps the id."""
    from dgdehaze_core.detection.tracking import BoxTracker

    frame = np.zeros((480, 640, 3), np.uint8)
    seen = [[("car", 0.8)], [("car", 0.7), ("truck", 0.5)], [("car", 0.6), ("truck", 0.7)], [("truck", 0.6)],
            [("car", 0.6)]]
    tracker = BoxTracker(kind)
    tracked = [tracker([Detection(2 if name == "car" else 7, name, score, (100.0 + 3 * i, 100.0, 200.0 + 3 * i,
                                                                          180.0 + j))
                        for j, (name, score) in enumerate(found)], frame) for i, found in enumerate(seen)]
    assert [[(d.class_name, d.track_id) for d in found] for found in tracked] == [
        [("car", 1)], [("car", 1)], [("truck", 1)], [("truck", 1)], [("car", 1)]]
    rider = [Detection(0, "person", 0.8, (100.0, 100.0, 140.0, 200.0)),
             Detection(1, "bicycle", 0.7, (95.0, 150.0, 150.0, 210.0))]
    assert len(BoxTracker(kind)(rider, frame)) == 2, "a rider and their bicycle are two objects"
    photo = read_image(shared_data / "detection" / "dawn-fog" / "haze-111.jpg")  # a car also seen as a truck
    panning = [np.ascontiguousarray(photo[:, 3 * i:photo.shape[1] - 30 + 3 * i]) for i in range(4)]
    detector = Detector(tracker=kind)
    ids = [[d.track_id for d in detector(part) if d.box[0] < 200 and d.box[3] > 380] for part in panning]
    assert ids[0] == [ids[0][0]] and all(found == ids[0] for found in ids), ids


def test_one_object_named_twice_keeps_the_higher_scored_class_and_the_detections_keep_their_order() -> None:
    """A box overlapping one of another class scored higher by SAME_OBJECT_IOU (0.8) or more is the same object; one
    of the same class (two cars, one behind the other, kept by a detector run with a looser NMS) or overlapping
    less is another. What is kept stays in the order given (the fused detections' order, not by score)."""
    from dgdehaze_core.detection.tracking import one_box_per_object

    def found(*boxes: tuple[int, str, float, tuple[float, float, float, float]]) -> list[tuple[str, float]]:
        kept = one_box_per_object([Detection(class_id, name, score, box) for class_id, name, score, box in boxes])
        return [(d.class_name, d.score) for d in kept]

    car, person = (2, "car", 0.6, (100.0, 100.0, 200.0, 200.0)), (0, "person", 0.9, (300.0, 100.0, 340.0, 200.0))
    assert found(car, (7, "truck", 0.7, (100.0, 100.0, 200.0, 180.0)), person) == [("truck", 0.7), ("person", 0.9)]
    assert len(found(car, (7, "truck", 0.7, (100.0, 100.0, 200.0, 179.0)), person)) == 3, "IoU 0.79: two objects"
    assert len(found(car, (2, "car", 0.7, (100.0, 100.0, 200.0, 185.0)))) == 2, "IoU 0.85, one class: two cars"


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_a_tracked_box_leaving_at_the_right_edge_of_a_wide_frame_is_clipped_to_its_width(kind: str) -> None:
    """A car driving out at the right of a 640x480 frame, the detector's boxes cut at the edge: the tracker's boxes
    end at x = 640 (not at the frame's height) and move right with the car (its filter lags the cut boxes' centres)."""
    from dgdehaze_core.detection.tracking import BoxTracker

    frame = np.zeros((480, 640, 3), np.uint8)
    tracker = BoxTracker(kind)
    lefts = [460.0 + 25 * i for i in range(6)]
    tracked = [tracker([Detection(2, "car", 0.8, (left, 200.0, min(left + 120, 640.0), 280.0))], frame)
               for left in lefts]
    boxes = np.array([found[0].box for found in tracked])
    assert [found[0].track_id for found in tracked] == [1] * 6
    assert (boxes[4:, 2] == 640.0).all() and (boxes[:, 2] <= 640).all(), boxes
    assert (np.diff(boxes[:, 0]) > 10).all() and boxes[-1, 0] > 540, boxes


def test_the_shipped_int8_file_runs_as_its_float_rebuild_by_default_on_x86(shared_data: Path,
                                                                           detector: Detector) -> None:
    import platform

    from dgdehaze_core.detection.detector import DEFAULT_DETECTOR
    from dgdehaze_core.detection.precision import X86_MACHINES, is_dynamically_quantized

    as_given, default = Detector(precision="file"), detector
    assert as_given.runtime_file == DEFAULT_DETECTOR and as_given.label == "yolov8n_int8.onnx"
    if platform.machine().lower() not in X86_MACHINES:
        pytest.skip("auto keeps the int8 file on CPUs other than x86")
    assert default.runtime_file != DEFAULT_DETECTOR and not is_dynamically_quantized(default.runtime_file)
    assert default.label == "yolov8n_int8.onnx (float rebuild)" and default.names == as_given.names
    frame = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    reference, found = as_given(frame), default(frame)
    same = [r for r in reference if any(f.class_id == r.class_id and iou(f.box, r.box) >= 0.5 for f in found)]
    assert len(reference) >= 4 and len(same) >= 0.75 * len(reference), "the rebuild finds what the file finds"
    assert Detector(precision="float").runtime_file == default.runtime_file, "one cached rebuild"


def test_precision_choices_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgdehaze_core.detection import precision
    from dgdehaze_core.detection.detector import DEFAULT_DETECTOR

    with pytest.raises(ValueError, match="precision must be one of auto, file, float"):
        Detector(precision="half")
    float_file = Detector(precision="float").runtime_file
    with pytest.raises(DetectorUnavailable, match="is not one"):
        Detector(float_file, precision="float")
    assert Detector(float_file).runtime_file == float_file, "a float file runs as given"
    monkeypatch.setattr(precision.platform, "machine", lambda: "aarch64")
    assert not precision.runs_float_rebuild(DEFAULT_DETECTOR, "auto", "cpu"), "ARM CPUs keep the int8 kernels"
    assert precision.runs_float_rebuild(DEFAULT_DETECTOR, "auto", "cuda:0"), "no ConvInteger on GPUs"
    assert precision.runs_float_rebuild(DEFAULT_DETECTOR, "float", "cpu")
    assert not precision.runs_float_rebuild(tmp_path / "yolo.pt", "auto", "cpu")


def test_a_rebuild_that_cannot_be_made_leaves_the_file_under_auto_and_is_refused_under_float(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from dgdehaze_core.detection import precision
    from dgdehaze_core.detection.detector import DEFAULT_DETECTOR

    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")  # as a read-only or full disk would refuse it
    monkeypatch.setenv("DGDEHAZE_ENGINE_CACHE", str(blocked))
    with caplog.at_level("WARNING"):
        detector = Detector()
    assert detector.runtime_file == DEFAULT_DETECTOR and "could not be made" in caplog.text
    assert detector(read_image(Path(__file__).parent / "data" / "paper" / "hazy_96x64.png")) is not None
    with pytest.raises(DetectorUnavailable, match="could not rebuild"):
        Detector(precision="float")


def test_the_detector_s_onnx_runtime_threads_do_not_spin_between_frames_tracked_or_not(detector: Detector) -> None:
    def spinning(detector: Detector) -> str:
        options = detector.model.predictor.model.backend.session.get_session_options()
        return options.get_session_config_entry("session.intra_op.allow_spinning")

    frame = np.zeros((240, 320, 3), np.uint8)
    plain, tracked = detector, Detector(tracker="bytetrack")
    plain(frame)
    tracked(frame)
    assert spinning(plain) == "0" and spinning(tracked) == "0"


FRESH_DETECTOR = """
import json, os, sys
import cv2, torch
torch.set_num_threads(2)
cv2.setNumThreads(2)
os.environ.pop("OMP_NUM_THREADS", None)
from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.io.images import read_image
found = Detector()(read_image(sys.argv[1]))
import ultralytics.utils as utils, ultralytics.utils.checks as checks
with open(sys.argv[2], "w") as record:
    json.dump({"found": len(found), "threads": [torch.get_num_threads(), cv2.getNumThreads(),
                                                 os.environ.get("OMP_NUM_THREADS")],
               "online": utils.ONLINE, "autoinstall": checks.AUTOINSTALL}, record)
"""
"""The shipped detector loaded in a fresh interpreter (Ultralytics is imported once a process) on torch's and
OpenCV's two threads and no OMP_NUM_THREADS, run on the photo its first argument names; what the tests below read
is written to the file its second names, leaving standard output to the detector's libraries."""


@pytest.fixture(scope="module")
def fresh_detector(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess,
                                                                                          dict]:
    """FRESH_DETECTOR run once for the three tests below, with no YOLO_ variable in its environment (which the
    detector sets itself: the offline test needs them unset): its process and its record."""
    record = tmp_path_factory.mktemp("fresh_detector") / "record.json"
    photo = shared_data / "detection" / "dawn-fog" / "foggy-001.jpg"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    run = subprocess.run([sys.executable, "-c", FRESH_DETECTOR, str(photo), str(record)], capture_output=True,
                         text=True, env=environment, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run, json.loads(record.read_text())


def test_the_detector_loads_ultralytics_offline_so_it_never_downloads_or_pip_installs(
        fresh_detector: tuple[subprocess.CompletedProcess, dict]) -> None:
    _, record = fresh_detector
    assert (record["online"], record["autoinstall"]) == (False, False), record


def test_an_ultralytics_older_than_the_floor_is_refused_naming_its_version_and_the_floor(monkeypatch) -> None:
    """An Ultralytics below ULTRALYTICS_FLOOR (8.4.174: its trackers drew their ids from one count per process, so
    another tracker shifted a stream's ids) is refused when the detector loads, naming the installed release and the
    floor, instead of running with wrong ids or failing deep inside Ultralytics (8.4.126: "type object 'BaseBackend'
    has no attribute 'read_metadata'"). Releases are compared by number (8.10 is newer than 8.4), and the floor is
    what requirements-ros.txt installs."""
    import re

    import ultralytics

    from dgdehaze_core.detection.offline import ULTRALYTICS_FLOOR, offline_ultralytics

    monkeypatch.setattr(ultralytics, "__version__", "8.4.174")
    floor = re.escape(ULTRALYTICS_FLOOR)
    with pytest.raises(DetectorUnavailable, match=rf"^Ultralytics 8\.4\.174 is installed, older than {floor}, .*"
                                                  rf"pip install -U 'ultralytics>={floor}'"):
        Detector(tracker="bytetrack")
    for newer in (ULTRALYTICS_FLOOR, "8.10.0", "9.0.0.dev0"):
        monkeypatch.setattr(ultralytics, "__version__", newer)
        assert offline_ultralytics() is ultralytics
    requirements = (Path(__file__).parents[1] / "requirements-ros.txt").read_text().split()
    assert f"ultralytics>={ULTRALYTICS_FLOOR}" in requirements


def test_the_detector_s_library_logs_to_standard_error_not_before_a_command_s_table(
        fresh_detector: tuple[subprocess.CompletedProcess, dict]) -> None:
    """Ultralytics logs to standard output: its "Loading ... for ONNX Runtime inference" lines came before the table
    `eval`, `bench` and `bag-eval` print there, into the file a user wrote the table to (`> figures.md`)."""
    run, _ = fresh_detector
    assert run.stdout == "" and "for ONNX Runtime inference" in run.stderr, (run.stdout, run.stderr)


def _export_onnx(yolo, folder: Path, imgsz: int) -> Path:
    yolo.model.pt_path = str(folder / "model.pt")  # Ultralytics writes the export beside this path
    return Path(yolo.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False, device="cpu", verbose=False))


@pytest.mark.slow
def test_a_segmentation_export_gives_its_boxes_and_a_model_without_boxes_is_refused(foggy_road: np.ndarray,
                                                                                    tmp_path: Path,
                                                                                    detector: Detector) -> None:
    """A YOLOv8n segmentation model holding the shipped detector's weights in every layer the two share (so its
    boxes and class scores are the shipped detector's) exported to ONNX detects what the shipped detector detects:
    read as a detector, its 32 mask coefficients were taken for class scores (boxes of classes 80 to 111)."""
    from dgdehaze_core.detection.offline import offline_ultralytics
    from dgdehaze_core.detection.rebuild import rebuild_float_detector

    YOLO = offline_ultralytics().YOLO
    shipped = rebuild_float_detector()
    segmentation = YOLO("yolov8n-seg.yaml", task="segment")
    segmentation.model.fuse(verbose=False)
    own = segmentation.model.state_dict()
    shared = {k: v for k, v in shipped.model.state_dict().items() if k in own and own[k].shape == v.shape}
    assert sum("model.22.cv3." in k for k in shared) == 18, "every class score layer is the shipped one's"
    segmentation.model.load_state_dict(shared, strict=False)
    segmentation.model.names = shipped.model.names
    segmentation.model.eval()
    (tmp_path / "seg").mkdir()
    found = Detector(_export_onnx(segmentation, tmp_path / "seg", 640))(foggy_road)
    expected = detector(foggy_road)
    assert expected and [(d.class_id, d.class_name) for d in found] == [(d.class_id, d.class_name) for d in expected]
    assert all(iou(f.box, e.box) > 0.99 for f, e in zip(found, expected))
    (tmp_path / "cls").mkdir()
    with pytest.raises(DetectorUnavailable, match="is an Ultralytics classify model, whose results hold no boxes"):
        Detector(_export_onnx(YOLO("yolov8n-cls.yaml"), tmp_path / "cls", 224))


@pytest.mark.slow
def test_a_diverged_detector_s_non_finite_boxes_are_dropped(shared_data: Path, tmp_path: Path,
                                                            detector: Detector) -> None:
    """YOLOv8n whose stride-8 box head diverged (NaN in one weight: every box of that level has a NaN corner) gave
    its NaN boxes among the others; the tracker kept them NaN and the node's debug image raised ("cannot convert
    float NaN to integer"). The detector now drops them and keeps the boxes of the levels that are sound."""
    import torch

    from dgdehaze_core.benchmarks.detectors import kept
    from dgdehaze_core.detection.rebuild import rebuild_float_detector
    from dgdehaze_core.visualize import draw_detections

    yolo = rebuild_float_detector()
    with torch.no_grad():
        yolo.model.model[-1].cv2[0][2].bias[0] = math.nan
    yolo.save(str(tmp_path / "diverged.pt"))
    frame = read_image(shared_data / "detection" / "dawn-fog" / "foggy-025.jpg")
    found = Detector(tmp_path / "diverged.pt")(frame)
    assert found and np.isfinite([d.box for d in found]).all()
    assert kept(found, detector(frame)) == len(found), "what is left is what the sound detector finds"
    tracked = Detector(tmp_path / "diverged.pt", tracker="bytetrack")
    for _ in range(3):
        boxes = tracked(frame)
        assert boxes and np.isfinite([d.box for d in boxes]).all()
    assert draw_detections(frame, boxes).shape == frame.shape


@pytest.mark.slow
def test_every_detector_s_boxes_lie_inside_the_frame(foggy_road: np.ndarray, tmp_path: Path) -> None:
    """Ultralytics clips a YOLO's boxes to the frame but not an RT-DETR's: an RT-DETR whose boxes are wide (its last
    box layer's width and height raised) gave boxes from x1 < 0 to x2 > the frame's width."""
    import torch

    from dgdehaze_core.detection.offline import offline_ultralytics

    torch.manual_seed(0)
    rtdetr = offline_ultralytics().RTDETR("rtdetr-l.yaml")
    with torch.no_grad():
        rtdetr.model.model[-1].dec_bbox_head[-1].layers[-1].bias[2:] += 6.0
    rtdetr.save(str(tmp_path / "rtdetr.pt"))
    height, width = foggy_road.shape[:2]
    boxes = np.array([d.box for d in Detector(tmp_path / "rtdetr.pt", imgsz=320, conf=0.0)(foggy_road)])
    assert len(boxes) == 100 and (boxes >= 0).all() and (boxes[:, [0, 2]] <= width).all()
    assert (boxes[:, [1, 3]] <= height).all() and (boxes[:, [2, 3]] > boxes[:, [0, 1]]).all()
    assert (boxes[:, 0] == 0).any() and (boxes[:, 2] == width).any(), "the wide boxes reach both edges"


def test_a_dehazer_given_as_the_detector_is_refused_naming_the_user_s_file_and_its_outputs(tmp_path: Path) -> None:
    """The dehazer's own weights given as the detector were refused naming the private copy Ultralytics read
    (/tmp/dgdehaze-detector-*/dgdehaze_lite.pt); its ONNX export was taken for a detector and failed at the warm-up
    ("amax(): Expected reduction dim 1 to have non-zero size")."""
    import torch

    from dgdehaze_core.datasets.paths import WEIGHTS_DIR
    from dgdehaze_core.inference.export.to_onnx import export_onnx
    from dgdehaze_core.models import build_model

    weights = WEIGHTS_DIR / "dgdehaze_lite.pt"
    with pytest.raises(DetectorUnavailable) as refused:
        Detector(weights)
    assert str(refused.value).count(str(weights)) == 2 and "dgdehaze-detector-" not in str(refused.value)
    torch.manual_seed(0)
    dehazer = export_onnx(build_model("lite").eval(), tmp_path / "lite.onnx", dynamic=False, example_size=(64, 64))
    with pytest.raises(DetectorUnavailable, match=r"lite.onnx is not a detector: its outputs are clear \(1, 3, 64, "
                                                  r"64\), transmission \(1, 1, 64, 64\), airlight"):
        Detector(dehazer)


def test_the_drawn_label_of_a_tracked_object_gives_its_id(foggy_road: np.ndarray) -> None:
    """~/debug_image drew class and score only: a tracked object's id, which a planner reads on ~/detections, could
    not be seen in rviz."""
    import dataclasses

    from dgdehaze_core.visualize import BOX_COLOR, draw_detections

    tracked = Detector(tracker="bytetrack")(foggy_road)
    assert tracked
    untracked = [dataclasses.replace(d, track_id=None) for d in tracked]
    labelled = [np.all(draw_detections(foggy_road, found) == BOX_COLOR, axis=2).sum() for found in (tracked, untracked)]
    assert labelled[0] > labelled[1], "no id in the labels"
    renamed = [dataclasses.replace(d, class_name=f"id:{d.track_id} {d.class_name}", track_id=None) for d in tracked]
    assert np.array_equal(draw_detections(foggy_road, tracked), draw_detections(foggy_road, renamed))


def test_the_detector_leaves_the_process_s_thread_settings_as_they_were(
        fresh_detector: tuple[subprocess.CompletedProcess, dict]) -> None:
    """Ultralytics' import set OpenCV to no threads and OMP_NUM_THREADS=1 (inherited by every child process), and its
    first predict set torch to the cores less one, for the whole process: after the node or `eval` loaded the
    detector, the dehazer and DCP ran on those, and in the tests every later test of an xdist worker did. Checked in
    a fresh interpreter: Ultralytics is imported once a process."""
    _, record = fresh_detector
    assert record["found"] > 0 and record["threads"] == [2, 2, None], record
