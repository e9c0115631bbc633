"""ROS 2 bag reading and writing with rosbags (sqlite3 and mcap): real bags round-trip, broken bags fail clearly."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg

from dgdehaze_core.bags.io import (CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, VISION_MSGS, BagError,
                                   BagSource, decode_image, pick_image_topic, typestore)
from dgdehaze_core.bags.writer import BagWriter
from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.images import ImageError

DEMO_BAG = REPO_DIR / "data" / "demo" / "foggy_road_night"
DEMO_TOPIC = "/camera/image_raw/compressed"
POINT_CLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
START = 1_700_000_000_000_000_000
PERIOD = 33_333_333


def demo_frames(count: int, size: tuple[int, int] = (160, 90)) -> list[np.ndarray]:
    """The first frames of the committed demo bag (real fog), downscaled."""
    with BagSource(DEMO_BAG) as source:
        frames = [f for f in source.frames(DEMO_TOPIC, max_frames=count)]
    return [cv2.resize(f.image, size, interpolation=cv2.INTER_AREA) for f in frames]


def image_msg(writer: BagWriter, header, pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False):
    """A sensor_msgs/Image with `pad` bytes of row padding."""
    height, width = pixels.shape[:2]
    if bigendian:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">"))
    rows = pixels.reshape(height, -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((height, pad), 7, np.uint8)], axis=1)
    return writer.types[IMAGE_TYPE](header=header, height=height, width=width, encoding=encoding,
                                    is_bigendian=int(bigendian), step=rows.shape[1], data=rows.ravel().copy())


def camera_info_msg(writer: BagWriter, header, frame: np.ndarray):
    """A plumb-bob CameraInfo for `frame` (fx = fy = 100)."""
    return writer.types[CAMERA_INFO_TYPE](
        header=header, height=frame.shape[0], width=frame.shape[1], distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([100.0, 0, 80, 0, 100, 45, 0, 0, 1]), r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0,
        binning_y=0, roi=writer.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                                         do_rectify=False))


def write_camera_bag(path: Path, storage: str, frames: list[np.ndarray], encoding: str = "bgr8",
                     topic: str = "/cam/image_raw", pad: int = 0, with_info: bool = True,
                     info_after_last: int = 0, declared_info: Sequence[str] = (),
                     declared_images: Sequence[str] = (), lidar_bytes: int = 0) -> list[int]:
    """A bag of `frames` on `topic` in `encoding` plus CameraInfo (and `info_after_last` more CameraInfo after the
    last frame, as a recording goes on after a camera stops; `declared_info` and `declared_images`: CameraInfo and
    Image topics recorded without a message, as for a camera that never published; `lidar_bytes`: a PointCloud2 of
    that many data bytes on /lidar/points just after each frame, a topic other than the camera's); returns the
    frames' header stamps."""
    stamps = []
    with BagWriter(path, storage) as writer:
        for declared, kind in [*((t, CAMERA_INFO_TYPE) for t in declared_info),
                               *((t, IMAGE_TYPE) for t in declared_images)]:
            writer._writer.add_connection(declared, kind, typestore=writer.store)
        for index, frame in enumerate(frames):
            stamp = START + index * PERIOD
            header = writer.header(stamp, "camera_optical_frame")
            if with_info:
                writer.write("/cam/camera_info", CAMERA_INFO_TYPE, stamp, camera_info_msg(writer, header, frame))
            if encoding in ("jpeg", "png12"):  # png12: image_transport's 16-bit PNG of a 12-bit camera
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                fmt, encoded = ("jpeg", cv2.imencode(".jpg", frame)[1]) if encoding == "jpeg" else \
                    ("mono16; png compressed", cv2.imencode(".png", np.rint(gray * (4095 / 255)).astype(np.uint16))[1])
                writer.write(topic, COMPRESSED_IMAGE_TYPE, stamp, writer.types[COMPRESSED_IMAGE_TYPE](
                    header=header, format=fmt, data=np.frombuffer(encoded.tobytes(), np.uint8)))
            else:
                gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                pixels = {"bgr8": frame, "rgb8": frame[:, :, ::-1], "mono8": gray,
                          "mono16": gray.astype(np.uint16) * 257,
                          "mono12": np.rint(gray * (4095 / 255)).astype(np.uint16)}[encoding]
                writer.write(topic, IMAGE_TYPE, stamp,
                             image_msg(writer, header, np.ascontiguousarray(pixels),
                                       "mono16" if encoding == "mono12" else encoding, pad,
                                       bigendian=encoding == "mono16"))
            if lidar_bytes:
                writer.write("/lidar/points", POINT_CLOUD_TYPE, stamp + 1, writer.types[POINT_CLOUD_TYPE](
                    header=writer.header(stamp + 1, "lidar"), height=1, width=lidar_bytes // 16, fields=[],
                    is_bigendian=False, point_step=16, row_step=lidar_bytes, data=np.full(lidar_bytes, 3, np.uint8),
                    is_dense=True))
            stamps.append(stamp)
        for index in range(len(frames), len(frames) + info_after_last):
            stamp = START + index * PERIOD
            writer.write("/cam/camera_info", CAMERA_INFO_TYPE, stamp,
                         camera_info_msg(writer, writer.header(stamp, "camera_optical_frame"), frames[-1]))
    return stamps


CUSTOM_TYPE = "wiper_msgs/msg/WiperState"
CUSTOM_DEFINITION = "std_msgs/Header header\nuint8 speed\nfloat32 angle\n"


def write_humble_bag(path: Path, storage: str, frames: list[np.ndarray], definitions: bool = True,
                     wiper_messages: bool = True) -> None:
    """A camera bag that also records a custom type (`CUSTOM_TYPE`, on /wiper) with no type description hash, as
    rosbag2 before Jazzy records; `definitions`: the message definitions are stored (else none, as Humble's
    sqlite3 storage; sqlite3 only: mcap always stores them); `wiper_messages`: /wiper holds a message per frame
    (else it is declared and empty, a publisher that never sent)."""
    assert definitions or storage == "sqlite3", "mcap always stores the message definitions"
    store = typestore()
    store.register(get_types_from_msg(CUSTOM_DEFINITION, CUSTOM_TYPE))
    types = store.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        camera = writer.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=store)
        wiper = writer.add_connection("/wiper", CUSTOM_TYPE, typestore=store)
        for index, frame in enumerate(frames):
            stamp = START + index * PERIOD
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                frame_id="camera_optical_frame")
            if wiper_messages:
                writer.write(wiper, stamp, store.serialize_cdr(types[CUSTOM_TYPE](header=header, speed=2,
                                                                                  angle=0.5), CUSTOM_TYPE))
            height, width = frame.shape[:2]
            image = types[IMAGE_TYPE](header=header, height=height, width=width, encoding="bgr8", is_bigendian=0,
                                      step=width * 3, data=frame.ravel().copy())
            writer.write(camera, stamp, store.serialize_cdr(image, IMAGE_TYPE))
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())
    for topic in metadata["rosbag2_bagfile_information"]["topics_with_message_count"]:
        topic["topic_metadata"]["type_description_hash"] = ""
    (path / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    for database in path.glob("*.db3"):
        with sqlite3.connect(database) as db:
            db.execute("UPDATE topics SET type_description_hash = ''")
            db.execute("UPDATE message_definitions SET type_description_hash = ''")
            if not definitions:
                db.execute("DELETE FROM message_definitions")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return demo_frames(4)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "mono8", "mono16", "jpeg"])
def test_bag_round_trip(tmp_path: Path, frames: list[np.ndarray], storage: str, encoding: str) -> None:
    bag = tmp_path / "drive"
    stamps = write_camera_bag(bag, storage, frames, encoding, pad=4 if encoding != "jpeg" else 0)
    with BagSource(bag) as source:
        assert source.storage == storage
        assert source.verify("/cam/image_raw", "/cam/camera_info") == len(frames)
        read = list(source.frames("/cam/image_raw", "/cam/camera_info"))
    assert [f.stamp_ns for f in read] == stamps
    assert [f.log_time_ns for f in read] == stamps
    assert {f.source_encoding for f in read} == {encoding}
    assert all(f.header.frame_id == "camera_optical_frame" for f in read)
    assert all(f.camera_info is not None and f.camera_info.header.stamp == f.header.stamp for f in read)
    for original, frame in zip(frames, read):
        assert frame.image.shape == original.shape and frame.image.dtype == np.uint8
        expected = original if encoding in ("bgr8", "rgb8") else cv2.cvtColor(
            cv2.cvtColor(original, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        tolerance = 12 if encoding == "jpeg" else 0
        assert np.abs(frame.image.astype(int) - expected.astype(int)).mean() <= tolerance


@pytest.mark.parametrize("encoding", ["mono12", "png12"])
def test_a_bag_of_12_bit_mono16_frames_reads_on_the_range_it_is_given(tmp_path: Path, frames: list[np.ndarray],
                                                                       encoding: str) -> None:
    write_camera_bag(tmp_path / "b", "mcap", frames[:2], encoding)
    gray = [cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) for frame in frames[:2]]
    with BagSource(tmp_path / "b", input_bits=12) as source:
        read = [frame.image[:, :, 0] for frame in source.frames("/cam/image_raw")]
    assert all(np.abs(image.astype(int) - expected).max() <= 1 for image, expected in zip(read, gray))
    with BagSource(tmp_path / "b") as source:
        assert max(frame.image.max() for frame in source.frames("/cam/image_raw")) <= 16  # full range: dark
    with pytest.raises(ValueError, match="8..16"):
        BagSource(tmp_path / "b", input_bits=20)


def test_demo_bag_is_the_documented_sample() -> None:
    with BagSource(DEMO_BAG) as source:
        topics = source.topics()
        assert topics[DEMO_TOPIC] == (COMPRESSED_IMAGE_TYPE, 120)
        assert topics["/camera/camera_info"] == (CAMERA_INFO_TYPE, 120)
        first = next(source.frames(DEMO_TOPIC, "/camera/camera_info"))
    assert first.image.shape == (360, 640, 3)
    assert first.header.frame_id == "camera_optical_frame"
    k = first.camera_info.k.reshape(3, 3)
    assert 400 < k[0, 0] < 700 and k[0, 0] == k[1, 1] and abs(k[0, 2] - 319.5) < 1e-9
    assert sum(p.stat().st_size for p in DEMO_BAG.iterdir()) < 10e6


def test_decode_rejects_bad_messages(tmp_path: Path, frames: list[np.ndarray]) -> None:
    with BagWriter(tmp_path / "b", "mcap") as writer:
        header = writer.header(START, "cam")
        short = image_msg(writer, header, frames[0], "bgr8")
        short.data = short.data[:-10]
        with pytest.raises(ImageError, match="step"):
            decode_image(short, IMAGE_TYPE)
        with pytest.raises(ImageError, match="unsupported encoding"):
            decode_image(image_msg(writer, header, frames[0], "nv12"), IMAGE_TYPE)
        with pytest.raises(ImageError, match="depth"):
            decode_image(image_msg(writer, header, np.zeros((4, 4), np.float32), "32FC1"), IMAGE_TYPE)
        broken = writer.types[COMPRESSED_IMAGE_TYPE](header=header, format="jpeg", data=np.arange(50, dtype=np.uint8))
        with pytest.raises(ImageError, match="header does not read"):
            decode_image(broken, COMPRESSED_IMAGE_TYPE)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_and_corrupt_bags_fail_clearly(tmp_path: Path, frames: list[np.ndarray], storage: str) -> None:
    bag = tmp_path / "drive"
    write_camera_bag(bag, storage, frames)
    data_file = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    truncated = tmp_path / "truncated"
    shutil.copytree(bag, truncated)
    with open(truncated / data_file.name, "r+b") as handle:
        handle.truncate(data_file.stat().st_size * 2 // 3)
    repair = {"mcap": "mcap recover", "sqlite3": "ros2 bag reindex"}[storage]
    with pytest.raises(BagError, match="corrupt, truncated") as refused:
        BagSource(truncated)
    assert f"repaired with `{repair}`" in str(refused.value), "the error names the tool that repairs a cut-off bag"
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bag, corrupt)
    (corrupt / data_file.name).write_bytes(b"\x00garbage" * 100)
    with pytest.raises(BagError, match="corrupt, truncated"):
        BagSource(corrupt)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_bag_compressed_file_by_file_is_read_as_its_storage(tmp_path: Path, frames: list[np.ndarray],
                                                              storage: str) -> None:
    """A bag recorded with `--compression-mode file` holds drive_0.mcap.zstd or drive_0.db3.zstd: its storage, which
    an evaluation's output bag takes by default and the repair advice names, is the one before .zstd (an mcap
    bag's was taken for sqlite3)."""
    store = typestore()
    writer = Writer(tmp_path / "drive", version=8,
                    storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
    writer.set_compression(CompressionMode.FILE, CompressionFormat.ZSTD)
    with writer:
        camera = writer.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=store)
        with BagWriter(tmp_path / "scratch", storage) as builder:  # its message builders only
            for index, frame in enumerate(frames):
                stamp = START + index * PERIOD
                writer.write(camera, stamp, store.serialize_cdr(
                    image_msg(builder, builder.header(stamp, "camera"), frame, "bgr8"), IMAGE_TYPE))
    suffix = ".mcap.zstd" if storage == "mcap" else ".db3.zstd"
    assert [path.name for path in (tmp_path / "drive").iterdir() if path.name.endswith(".zstd")] == [f"drive{suffix}"]
    with BagSource(tmp_path / "drive") as source:
        assert source.storage == storage
        assert len([f for f in source.frames("/cam/image_raw")]) == len(frames)


def test_a_damaged_index_or_a_compression_the_files_lack_fail_clearly(tmp_path: Path,
                                                                      frames: list[np.ndarray]) -> None:
    bag = tmp_path / "drive"
    write_camera_bag(bag, "sqlite3", frames)
    metadata = (bag / "metadata.yaml").read_text()
    counted = tmp_path / "counted"
    shutil.copytree(bag, counted)
    (counted / "metadata.yaml").write_text(metadata.replace("message_count: 4", "message_count: four"))
    with BagSource(counted) as source, pytest.raises(BagError, match="index that cannot be read"):
        source.verify("/cam/image_raw")
    compressed = tmp_path / "compressed"
    shutil.copytree(bag, compressed)
    (compressed / "metadata.yaml").write_text(metadata.replace("compression_mode: ''", "compression_mode: file")
                                              .replace("compression_format: ''", "compression_format: zstd"))
    with pytest.raises(BagError, match="corrupt, truncated"):
        BagSource(compressed)
    listless = tmp_path / "listless"  # rosbags opened it and raised AttributeError closing it: a traceback
    shutil.copytree(bag, listless)
    information = yaml.safe_load(metadata)
    information["rosbag2_bagfile_information"]["files"] = "drive.db3"
    (listless / "metadata.yaml").write_text(yaml.safe_dump(information))
    with pytest.raises(BagError, match=r"damaged metadata.yaml: its `files` is no list .*`ros2 bag reindex"):
        BagSource(listless)
    information = yaml.safe_load(metadata)  # rosbags read each letter as a data file: 'missing: [.../d, .../r, ...]'
    information["rosbag2_bagfile_information"]["relative_file_paths"] = "drive.db3"
    (listless / "metadata.yaml").write_text(yaml.safe_dump(information))
    with pytest.raises(BagError, match=r"damaged metadata.yaml: its `relative_file_paths` is no list .*reindex"):
        BagSource(listless)


def test_an_error_of_the_code_is_not_taken_for_a_damaged_bag(tmp_path: Path, frames: list[np.ndarray],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    write_camera_bag(tmp_path / "drive", "mcap", frames)

    def changed_api(raw, msgtype):
        raise AttributeError("'Reader' object has no attribute 'deserialize'")  # as a rosbags upgrade might

    with BagSource(tmp_path / "drive") as source:
        monkeypatch.setattr(source._reader, "deserialize", changed_api)
        connection = next(c for c in source.connections if c.topic == "/cam/image_raw")
        raw = next(raw for c, _, raw in source.raw_messages([connection]))
        with pytest.raises(AttributeError):
            source.decode_frame(connection, 0, raw, 0, None)  # not every frame skipped as "damaged"


def test_messages_missing_from_the_index_are_reported(tmp_path: Path, frames: list[np.ndarray]) -> None:
    bag = tmp_path / "drive"
    write_camera_bag(bag, "sqlite3", frames)
    with sqlite3.connect(bag / "drive.db3") as db:
        db.execute("DELETE FROM messages WHERE id = (SELECT MAX(id) FROM messages)")
    with BagSource(bag) as source, pytest.raises(BagError, match="truncated: its index lists 4 messages"):
        source.verify("/cam/image_raw", "/cam/camera_info")
    stale = tmp_path / "stale"
    write_camera_bag(stale, "mcap", frames)
    metadata = stale / "metadata.yaml"
    metadata.write_text(metadata.read_text().replace("message_count: 4", "message_count: 3"))
    with BagSource(stale) as source, pytest.raises(BagError, match="index that is out of date: it lists 3 messages on "
                                                                   "'/cam/image_raw' but 4 can be read"):
        source.verify("/cam/image_raw", "/cam/camera_info")  # not "truncated ... only 4 can be read"


def test_missing_topic_and_empty_bag(tmp_path: Path, frames: list[np.ndarray]) -> None:
    bag = tmp_path / "drive"
    write_camera_bag(bag, "mcap", frames)
    with BagSource(bag) as source:
        with pytest.raises(BagError, match=r"no topic '/front/image'; its image topics: /cam/image_raw"):
            source.verify("/front/image")
        with pytest.raises(BagError, match="holds sensor_msgs/msg/Image, not sensor_msgs/msg/CameraInfo"):
            source.verify("/cam/image_raw", "/cam/image_raw")
    empty = tmp_path / "empty"
    with BagWriter(empty, "mcap") as writer:
        writer._writer.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=writer.store)
    with BagSource(empty) as source, pytest.raises(BagError, match="has no messages"):
        source.verify("/cam/image_raw")
    with BagSource(empty) as source, pytest.raises(BagError, match=r"holds no messages \(its topics: /cam/image_raw"):
        source.select_window(1.0)  # not "lasts -9223372036.9 s", rosbags' times of a bag without messages
    nothing = tmp_path / "nothing"
    BagWriter(nothing, "sqlite3").close()
    with BagSource(nothing) as source, pytest.raises(BagError, match="image topics: none"):
        source.verify("/cam/image_raw")
    with BagSource(nothing) as source, pytest.raises(BagError, match="holds no image topic .its topics: none"):
        source.only_topic((IMAGE_TYPE,), "image", "--image-topic")  # not "pass --image-topic", which cannot help
    with pytest.raises(FileNotFoundError):
        BagSource(tmp_path / "absent")
    (tmp_path / "folder").mkdir()
    with pytest.raises(BagError, match="is not a ROS 2 bag: it has no metadata.yaml"):
        BagSource(tmp_path / "folder")
    (bag / "metadata.yaml").unlink()  # as rosbag2 leaves a recording cut off (killed, a power cut)
    with pytest.raises(BagError, match=r"bag .*drive has no metadata.yaml, as a recording cut off before it closed "
                                       r"has none \(its files: drive.mcap\): `ros2 bag reindex .*drive` writes it "
                                       r"\(docs/BAGS.md\), or give its one file, .*drive/drive.mcap, which is read "
                                       r"alone$"):
        BagSource(bag)
    with BagSource(bag / "drive.mcap") as source:  # as the message says
        assert source.topics()


def test_a_topic_of_two_message_types_is_written_as_two_and_refused_as_frames_naming_them(
        tmp_path: Path, frames: list[np.ndarray]) -> None:
    """BagWriter wrote a second message type on a topic under the topic's first connection (a CompressedImage
    stored as an Image: an output bag no reader decodes right); and a bag whose camera topic holds Image and
    CompressedImage (two publishers on one topic) was refused as holding "mixed" or no image topic at all."""
    bag = tmp_path / "two_types"
    encoded = cv2.imencode(".jpg", frames[0])[1]
    with BagWriter(bag, "mcap") as writer:
        header = writer.header(START, "camera_optical_frame")
        writer.write_image("/cam/image", START, header, frames[0])
        writer.write("/cam/image", COMPRESSED_IMAGE_TYPE, START + PERIOD, writer.types[COMPRESSED_IMAGE_TYPE](
            header=header, format="jpeg", data=np.frombuffer(encoded.tobytes(), np.uint8)))
    with BagSource(bag) as source:
        assert sorted((c.msgtype, c.msgcount) for c in source.connections) == [(COMPRESSED_IMAGE_TYPE, 1),
                                                                                (IMAGE_TYPE, 1)]
        with pytest.raises(BagError, match=r"'/cam/image' .* holds messages of several types "
                                           r"\(sensor_msgs/msg/CompressedImage, sensor_msgs/msg/Image\)"):
            source.verify("/cam/image")
        with pytest.raises(BagError, match="holds no image topic with messages .*; of several message types each: "
                                           "/cam/image"):
            source.only_topic((IMAGE_TYPE, COMPRESSED_IMAGE_TYPE), "image", "--image-topic", with_messages=True)


def test_an_empty_bag_file_or_a_pipe_is_refused_as_what_it_is(tmp_path: Path) -> None:
    """An empty .bag or .mcap (a recorder that never wrote) was told to run a repair tool, which adds nothing; a
    named pipe given as a bag waited for a writer for good."""
    for name in ("drive.bag", "drive.mcap"):
        (tmp_path / name).touch()
        with pytest.raises(BagError, match=rf"{name} is empty \(0 bytes\): nothing was recorded") as error:
            BagSource(tmp_path / name)
        assert "reindex" not in str(error.value) and "recover" not in str(error.value)
    os.mkfifo(tmp_path / "pipe.mcap")
    with pytest.raises(BagError, match="pipe.mcap is not a bag: neither a file nor a folder"):
        BagSource(tmp_path / "pipe.mcap")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_bag_copied_without_its_data_file_says_so_not_how_to_repair_a_recording(
        tmp_path: Path, storage: str, capsys: pytest.CaptureFixture) -> None:
    """A rosbag2 folder whose metadata.yaml lists a data file it lacks (copied without it, or the file renamed):
    an mcap bag got sqlite3's advice (`ros2 bag reindex`), and no repair tool recreates a missing file anyway."""
    bag = tmp_path / "drive"
    if storage == "mcap":
        shutil.copytree(REPO_DIR / "data" / "demo" / "rural_fog_day", bag)
    else:
        write_camera_bag(bag, storage, demo_frames(2))
    data = next(path for path in bag.iterdir() if path.name != "metadata.yaml")
    data.unlink()
    assert main(["bag-eval", str(bag), "--image-topic", "/cam/image_raw", "--method", "dcp", "--no-detection",
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert (f"bag {bag} lacks the data file its metadata.yaml lists: {data.name} (copied without it?); no repair "
            "recreates it: copy it in from the recording") in error, error
    assert "reindex" not in error and "recover" not in error and not (tmp_path / "out").exists()


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_data_file_the_metadata_does_not_list_is_not_left_out_unsaid(tmp_path: Path, storage: str,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """A recording's last split file that its metadata.yaml does not name (cut off before it did): rosbags reads only
    the files listed, and its frames were left out of the figures without a word."""
    bag = tmp_path / "drive"
    write_camera_bag(bag, storage, demo_frames(2))
    data = next(path for path in bag.iterdir() if path.name != "metadata.yaml")
    shutil.copy(data, bag / f"drive_1{data.suffix}")
    assert main(["bag-eval", str(bag), "--method", "dcp", "--no-detection", "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert f"bag {bag} holds data files its metadata.yaml does not list: drive_1{data.suffix}" in error, error
    assert f"`ros2 bag reindex {bag}` writes it anew" in error and not (tmp_path / "out").exists()


def test_vision_msgs_definitions_match_the_package_built_for_ros() -> None:
    """The typestore's vision_msgs must be field for field the messages the node publishes."""
    msg_dir = REPO_DIR / "tools" / "vision_msgs" / "msg"
    if not msg_dir.is_dir():
        pytest.skip("tools/vision_msgs is not in this checkout")
    for name, text in VISION_MSGS.items():
        short = name.rsplit("/", 1)[1]
        built = (msg_dir / f"{short}.msg").read_text()
        assert get_types_from_msg(built, name) == get_types_from_msg(text, name), name


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_custom_type_recorded_without_a_hash_is_copied_with_its_stored_definition(
        tmp_path: Path, frames: list[np.ndarray], storage: str) -> None:
    write_humble_bag(tmp_path / "humble", storage, frames[:2])
    with BagSource(tmp_path / "humble") as source, BagWriter(tmp_path / "out", storage) as writer:
        assert {c.topic: c.digest for c in source.connections} == {"/cam/image_raw": "", "/wiper": ""}
        for connection, log_time, raw in source.raw_messages():
            writer.copy(connection, log_time, raw)
    store = typestore()
    store.register(get_types_from_msg(CUSTOM_DEFINITION, CUSTOM_TYPE))
    with BagSource(tmp_path / "out") as copied:
        wiper = next(c for c in copied.connections if c.topic == "/wiper")
        assert wiper.digest == store.hash_rihs01(CUSTOM_TYPE)  # what Jazzy computes for the definition
        messages = [copied.deserialize(wiper, raw) for _, _, raw in copied.raw_messages([wiper])]
        assert [(m.speed, m.angle) for m in messages] == [(2, 0.5)] * 2
        assert copied.verify("/cam/image_raw") == 2


def test_a_custom_type_whose_definition_the_bag_lacks_cannot_be_copied_and_says_so(
        tmp_path: Path, frames: list[np.ndarray]) -> None:
    write_humble_bag(tmp_path / "humble", "sqlite3", frames[:1], definitions=False)
    with BagSource(tmp_path / "humble") as source:
        with pytest.raises(BagError, match=r"'/wiper' holds wiper_msgs/msg/WiperState, which the bag stores no "
                                           r"definition of") as raised:
            source.check_copyable()
        assert "\n" not in str(raised.value)
        assert source.verify("/cam/image_raw") == 1  # the standard types are still read with the typestore's
    write_humble_bag(tmp_path / "humble-quiet", "sqlite3", frames[:2], definitions=False, wiper_messages=False)
    with BagSource(tmp_path / "humble-quiet") as source:
        source.check_copyable()  # a declared topic without messages has nothing to copy
    assert main(["bag-eval", str(tmp_path / "humble-quiet"), "--out", str(tmp_path / "out"), "--method", "dcp",
                 "--no-detection", "--no-progress"]) == 0


def test_an_image_topic_without_messages_is_not_taken_for_the_frames(tmp_path: Path, frames: list[np.ndarray],
                                                                     capsys: pytest.CaptureFixture) -> None:
    """A recorder subscribed to a second camera that never published: bag-eval takes the one with frames."""
    write_camera_bag(tmp_path / "beside", "mcap", frames[:2], declared_images=["/cam2/image_raw"])
    assert pick_image_topic(tmp_path / "beside") == "/cam/image_raw"
    assert main(["bag-eval", str(tmp_path / "beside"), "--out", str(tmp_path / "out"), "--method", "dcp",
                 "--no-detection", "--no-progress"]) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["image_topic"] == "/cam/image_raw"
    write_camera_bag(tmp_path / "declared", "mcap", [], with_info=False, declared_images=["/cam/image_raw"])
    with pytest.raises(BagError, match="holds no image topic with messages"):
        pick_image_topic(tmp_path / "declared")


def test_a_camera_info_topic_without_messages_is_not_taken_for_the_frames(tmp_path: Path,
                                                                          frames: list[np.ndarray]) -> None:
    write_camera_bag(tmp_path / "declared", "mcap", frames[:2], with_info=False, declared_info=["/cam/camera_info"])
    with BagSource(tmp_path / "declared") as source:
        assert source.camera_info_for_frames(required=False) is None
        with pytest.raises(BagError, match="holds no camera info topic with messages"):
            source.camera_info_for_frames(required=True)
    write_camera_bag(tmp_path / "beside", "sqlite3", frames[:2], declared_info=["/other/camera_info"])
    with BagSource(tmp_path / "beside") as source:
        assert source.camera_info_for_frames(required=False) == "/cam/camera_info"
        assert source.camera_info_for_frames(required=True) == "/cam/camera_info"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_window_without_a_frame_is_found_from_the_index_before_the_bag_is_read(tmp_path: Path,
                                                                                  frames: list[np.ndarray],
                                                                                  storage: str) -> None:
    """A window between two frames, or after the camera's last frame while the recording went on, was found empty
    only by the full read (`verify`), after bag-eval's detector had loaded: `pick_image_topic` finds it from the
    bag's index, with verify's message, and takes a window that holds one frame."""
    bag = tmp_path / storage
    write_camera_bag(bag, storage, frames, info_after_last=3)  # 4 frames, the recording 7 periods long

    def window(start: float, duration: float | None) -> tuple[float, float | None]:
        return start * PERIOD / 1e9, None if duration is None else duration * PERIOD / 1e9

    message = f"topic '/cam/image_raw' in {bag} has no frame in the time window selected"
    for empty in (window(1.25, 0.5), window(3.5, None)):
        with pytest.raises(BagError) as refused:
            pick_image_topic(bag, None, None, *empty)
        assert str(refused.value) == message, empty
        with BagSource(bag) as source, pytest.raises(BagError) as read:
            source.select_window(*empty)
            source.verify("/cam/image_raw", "/cam/camera_info")
        assert str(read.value) == message, "the same words as the full read"
    assert pick_image_topic(bag, None, None, *window(1.5, 1.0)) == "/cam/image_raw"
