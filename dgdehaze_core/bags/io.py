"""ROS 2 bags without a ROS install: read camera frames from sqlite3 and mcap bags (and ROS 1 bags, converted to ROS
2 first: bags/ros1.py); evaluation output bags are written by bags/writer.py with the same typestore.

Everything goes through the `rosbags` library's typestore, so a ROS 2 install is not needed. Output bags carry
real `vision_msgs/msg/Detection2DArray` messages: the vision_msgs 4.x definitions are registered in the typestore
from their .msg text (`VISION_MSGS`), with the same names and fields as upstream, so `ros2 bag play` of an output
bag feeds real vision_msgs subscribers.

Every problem with an input bag (missing, not a bag, corrupt or truncated, empty, topic absent, undecodable
frame) is a `BagError`, a ValueError whose message says what is wrong and where.
"""
from __future__ import annotations

import logging
import math
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Iterator, Sequence

import numpy as np
import yaml
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection, MessageDefinition, MessageDefinitionFormat
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from dgdehaze_core.bags.ros1 import ROS1_MAGIC, Ros2Copy, is_ros1_bag, ros2_copy
from dgdehaze_core.io.camera_frames import compressed_to_bgr8, raw_to_bgr8
from dgdehaze_core.io.images import SAMPLE_BITS, ImageError, NarrowSamples, check_sample_bits

LOG = logging.getLogger(__name__)
PROGRAMMING_ERRORS = (NameError, AttributeError)
"""Errors of this code or of a changed rosbags API, which a damaged bag does not cause: never read as a bad bag."""

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
DETECTIONS_TYPE = "vision_msgs/msg/Detection2DArray"
LABEL_INFO_TYPE = "vision_msgs/msg/LabelInfo"
RANGE_TYPE = "sensor_msgs/msg/Range"
"""~/visibility: the meteorological visibility in metres as `range` (dgdehaze_ros/visibility_messages.py)."""
HAZE_TYPE = "vision_msgs/msg/Classification"
"""~/haze_density: the frame's header and one hypothesis, class HAZE_CLASS, whose score is the density."""
HAZE_CLASS = "haze_density"
FRAME_TYPES = (IMAGE_TYPE, COMPRESSED_IMAGE_TYPE)
TF_STATIC = "/tf_static"
STORAGES = ("mcap", "sqlite3")
DATA_FILES = (".db3", ".mcap", ".db3.zstd", ".mcap.zstd")
"""How a rosbag2 folder's data files are named (compressed per file: with .zstd)."""
BAG_VERSION = 8
"""rosbag2 metadata version written: 8 is what Jazzy writes and what Jazzy and later read."""

VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"),
    "vision_msgs/msg/Detection2D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox2D bbox\nstring id\n"),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
    "vision_msgs/msg/VisionClass": "uint16 class_id\nstring class_name\n",
    "vision_msgs/msg/LabelInfo": "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
    "vision_msgs/msg/Classification": "std_msgs/Header header\nvision_msgs/ObjectHypothesis[] results\n",
}
"""vision_msgs 4.x (Humble and later) message definitions, field for field as upstream."""


class BagError(ValueError):
    """A bag that cannot be used, with the reason in words."""


@contextmanager
def _damage_as_bag_error(what: str, advice: str = "",
                         passing: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """A failure of rosbags within the block as the BagError `what: reason` and `advice`: on damaged files it raises
    many types (struct.error, MemoryError, EOFError, zstd's, TypeError from an index, ...). BagError,
    PROGRAMMING_ERRORS and `passing` pass as they are."""
    try:
        yield
    except (BagError, *PROGRAMMING_ERRORS, *passing):
        raise
    except Exception as exc:
        raise BagError(f"{what}: {str(exc) or type(exc).__name__}{advice}") from exc


def stored_types(definition: MessageDefinition, msgtype: str) -> dict[str, Any]:
    """The types of a bag's stored definition of `msgtype` (rosbag2's .msg or IDL text, its dependencies
    included), as rosbags' AnyReader reads them; TypesysError when it does not parse."""
    if definition.format == MessageDefinitionFormat.MSG:
        return dict(get_types_from_msg(definition.data, msgtype))
    separator = "=" * 80 + "\n"
    if definition.data.startswith(f"{separator}IDL: "):  # one "IDL: name" section per type
        texts = [section.split("\n", 1)[1] for section in definition.data.split(separator)[1:]]
    else:
        texts = [definition.data]
    types: dict[str, Any] = {}
    for text in texts:
        types.update(get_types_from_idl(text))
    return types


def typestore() -> Typestore:
    """ROS 2 Kilted message types plus vision_msgs 4.x."""
    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def output_definition(connection: Connection, store: Typestore) -> tuple[str, str]:
    """The message definition and RIHS01 hash that copy an input connection to an output bag: as stored; a stored
    definition without a hash (rosbag2 before Jazzy writes none) with the hash of that definition; without a
    stored definition, `store`'s for a type it knows. BagError for a type the bag stores no definition of (a
    Humble sqlite3 bag stores none) that `store` does not know: its messages cannot be described."""
    stored = connection.msgdef
    if stored.format != MessageDefinitionFormat.NONE and stored.data:
        if connection.digest:
            return stored.data, connection.digest
        with _damage_as_bag_error(f"topic {connection.topic!r}: the stored definition of {connection.msgtype} "
                                  "does not parse"):
            own = get_typestore(Stores.EMPTY)
            own.register(stored_types(stored, connection.msgtype))
            return stored.data, own.hash_rihs01(connection.msgtype)
    if connection.msgtype not in store.fielddefs:
        raise BagError(f"topic {connection.topic!r} holds {connection.msgtype}, which the bag stores no definition "
                       "of and is no standard ROS 2 type: it cannot be copied to the output bag")
    return store.generate_msgdef(connection.msgtype, ros_version=2)[0], store.hash_rihs01(connection.msgtype)


# --- image messages <-> numpy -------------------------------------------------------------------------------------

def decode_image(msg: Any, msgtype: str, bits: int = SAMPLE_BITS, samples: NarrowSamples | None = None) -> np.ndarray:
    """A sensor_msgs Image or CompressedImage (rosbags message) as a uint8 BGR frame, by the node's decoder
    (`io.camera_frames`; 16-bit samples with `bits` significant bits, as the node's input_bits, shown to `samples`);
    ImageError says why not."""
    if msgtype == COMPRESSED_IMAGE_TYPE:
        return compressed_to_bgr8(msg, bits=bits, samples=samples)
    return raw_to_bgr8(msg, bits=bits, samples=samples)


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


# --- reading ------------------------------------------------------------------------------------------------------

@dataclass
class BagFrame:
    """One camera frame of a bag, with the bag's receive time and the message header."""

    index: int
    log_time_ns: int
    header: Any
    image: np.ndarray
    source_encoding: str
    camera_info: Any | None

    @property
    def stamp_ns(self) -> int:
        return stamp_ns(self.header)


def _storage_of(path: Path) -> str:
    """"mcap" or "sqlite3": a bag file's storage by its suffix, a rosbag2 folder's by its data files' names (a file
    compressed whole ends in .zstd after its storage's suffix)."""
    if path.is_file():
        return "mcap" if path.suffix == ".mcap" else "sqlite3"
    names = [p.name for p in path.iterdir()] if path.is_dir() else []
    return "mcap" if any(name.endswith((".mcap", ".mcap.zstd")) for name in names) else "sqlite3"


def _bag_information(folder: Path) -> dict[str, Any]:
    """A rosbag2 folder's metadata.yaml, its `rosbag2_bagfile_information`; {} where it does not read as one (rosbags'
    reader then says what is wrong with it)."""
    try:
        information = yaml.safe_load((folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return {}
    return information if isinstance(information, dict) else {}


def _listed_data_files(information: dict[str, Any]) -> list[str] | None:
    """The names of the data files a rosbag2 folder's metadata.yaml (`information`, `_bag_information`) lists, as
    rosbags finds them in the folder; None where the metadata does not say."""
    listed = information.get("relative_file_paths")
    return [PurePath(name).name for name in listed if isinstance(name, str)] if isinstance(listed, list) else None


def _missing_data_files(folder: Path, information: dict[str, Any]) -> list[str]:
    """The data files that a rosbag2 folder's metadata.yaml lists and the folder lacks."""
    return [name for name in _listed_data_files(information) or [] if not (folder / name).exists()]


def _unlisted_data_files(folder: Path, information: dict[str, Any]) -> list[str]:
    """The data files of a rosbag2 folder that its metadata.yaml does not list, which rosbags does not read (a
    recording's last split file, cut off before the metadata named it)."""
    listed = _listed_data_files(information)
    if listed is None:
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(DATA_FILES) and p.name not in listed)


def _seconds(value: float) -> str:
    """A time in a bag's words: tenths of a second, two significant digits under a second (a bag of a few frames
    lasts a few hundredths, which tenths read as 0.0)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def check_time_window(start_s: float, duration_s: float | None) -> None:
    """ValueError for a start that is not 0 or more seconds, or a duration that is not a positive number of seconds
    (None: to the end), as `BagSource.select_window` takes them."""
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"the start must be 0 or more seconds into the bag, got {start_s:g}")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"the duration must be a positive number of seconds, got {duration_s:g}")


BITS_REMEDY = "give --input-bits 12 (this is said once per bag)"
"""What the warning on a bag's frames read with 16 bits that look like a 12-bit camera's asks for, by default
bag-eval's option (`BagSource`)."""


def _no_bag_file(path: Path) -> str:
    """Why `path`, a file that is no ROS 1 bag and is named neither *.mcap nor *.db3 (in lower case), is no bag (a
    glob of a folder's files catches such files beside the bags): rosbags reads a single ROS 2 bag file by its
    name."""
    if path.name == "metadata.yaml":
        return f"{path} is a rosbag2 folder's description, not a bag: give its folder, {path.parent}"
    if path.suffix.lower() == ".bag":
        return f"{path} does not begin as a ROS 1 bag does ({ROS1_MAGIC.decode()}): no bag, or one damaged at its start"
    if path.suffix.lower() in (".mcap", ".db3"):  # a camera's or a copy's upper-case name
        return (f"{path}: a bag file is read by its lower-case suffix (rosbags'), {path.suffix.lower()}: rename it to "
                f"{path.with_suffix(path.suffix.lower()).name}")
    return (f"{path} is no bag: a bag is a rosbag2 folder (with metadata.yaml), a file named *.mcap or *.db3, or a "
            "ROS 1 bag file")


class BagSource:
    """An open bag: a rosbag2 folder, a single .mcap/.db3 file, or a ROS 1 bag file. Use as a context manager."""

    def __init__(self, path: str | Path, input_bits: int = SAMPLE_BITS, as_ros2: bool = True,
                 remedy: str = BITS_REMEDY) -> None:
        """input_bits: significant bits of the frames' 16-bit samples (`decode_image`). as_ros2: a ROS 1 bag is
        read from a ROS 2 copy (bags/ros1.py, removed on close), so that its raw messages are ROS 2's to copy to an
        output bag or replay to a node; without it (topics and frames only) the ROS 1 bag is read as it is.
        remedy: how the warning on frames that look like a 12-bit camera's read with 16 bits (said once for the
        bag, `decode`) tells the user to read them with 12."""
        self.path = Path(path)
        self.input_bits = check_sample_bits(input_bits)
        self.samples = NarrowSamples(remedy, f"frames of bag {self.path}")
        if not self.path.exists():
            raise FileNotFoundError(f"no such bag: {self.path}")
        if not self.path.is_dir() and not self.path.is_file():  # a FIFO would wait for a writer forever
            raise BagError(f"{self.path} is not a bag: neither a file nor a folder (a device or a pipe?)")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise BagError(f"bag {self.path} is empty (0 bytes): nothing was recorded in it, and no repair adds any")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            data = sorted(p.name for p in self.path.iterdir() if p.name.endswith(DATA_FILES))
            if data:  # rosbag2 writes metadata.yaml as it closes the bag
                alone = f", or give its one file, {self.path / data[0]}, which is read alone" \
                    if len(data) == 1 and data[0].endswith((".mcap", ".db3")) else ""  # a copied .mcap, say
                raise BagError(f"bag {self.path} has no metadata.yaml, as a recording cut off before it closed has "
                               f"none (its files: {', '.join(data[:3])}{' ...' if len(data) > 3 else ''}): "
                               f"`ros2 bag reindex {self.path}` writes it (docs/BAGS.md){alone}")
            raise BagError(f"{self.path} is not a ROS 2 bag: it has no metadata.yaml")
        information = _bag_information(self.path) if self.path.is_dir() else {}
        if missing := _missing_data_files(self.path, information):
            one = len(missing) == 1
            raise BagError(f"bag {self.path} lacks the data file{'' if one else 's'} its metadata.yaml lists: "
                           f"{', '.join(missing)} (copied without {'it' if one else 'them'}?); no repair recreates "
                           f"{'it' if one else 'them'}: copy {'it' if one else 'them'} in from the recording")
        if unlisted := _unlisted_data_files(self.path, information):  # their messages would be left out unsaid
            raise BagError(f"bag {self.path} holds data files its metadata.yaml does not list: "
                           f"{', '.join(unlisted[:3])}{' ...' if len(unlisted) > 3 else ''} (a recording cut off "
                           f"before its metadata named them?): `ros2 bag reindex {self.path}` writes it anew, or move "
                           "them out (docs/BAGS.md)")
        for key in ("relative_file_paths", "files"):  # files: rosbags opens it, then fails closing it; the
            if not isinstance(information.get(key, []), list):  # paths: it reads each letter as a missing file
                raise BagError(f"bag {self.path} has a damaged metadata.yaml: its `{key}` is no list of the data "
                               f"files (`ros2 bag reindex {self.path}` writes it anew: docs/BAGS.md)")
        self.ros1 = is_ros1_bag(self.path)
        if self.path.is_file() and not self.ros1 and self.path.suffix not in (".mcap", ".db3"):  # as rosbags reads
            raise BagError(_no_bag_file(self.path))
        self.storage = _storage_of(self.path)
        store = typestore()
        self._converted: Ros2Copy | None = None
        readable = self.path
        if self.ros1 and as_ros2:
            with _damage_as_bag_error(f"cannot convert ROS 1 bag {self.path} to ROS 2 (corrupt or truncated?)",
                                      self._repair(), passing=(OSError,)):  # no room for the copy: ros2_copy's
                self._converted = ros2_copy(self.path, store)
            readable = self._converted.bag
            self.storage = _storage_of(readable)
        try:
            with _damage_as_bag_error(f"cannot open bag {self.path} (corrupt, truncated or not a bag?)",
                                      self._repair()):
                self._reader = AnyReader([readable], default_typestore=store)
                self._reader.open()
        except BaseException:
            self._remove_copy()
            raise
        self.window: tuple[int, int | None] | None = None
        """(start, stop) in ns of recording time of the messages read (`select_window`); None: all of them."""

    def _repair(self) -> str:
        """How a cut-off recording of this storage is usually repaired, for the errors on damaged bags."""
        if self.ros1:
            tool = "rosbag reindex"
        else:
            tool = "mcap recover" if self.storage == "mcap" else "ros2 bag reindex"
        return f" (a recording cut off is often repaired with `{tool}` first: docs/BAGS.md)"

    def _remove_copy(self) -> None:
        if self._converted is not None:
            self._converted.remove()
            self._converted = None

    def __enter__(self) -> "BagSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._reader.stack is not None:
            self._reader.close()
        self._remove_copy()

    @property
    def connections(self) -> list[Connection]:
        return list(self._reader.connections)

    def topics(self) -> dict[str, tuple[str, int]]:
        """{topic: (message type, message count from the bag's index)}; BagError for an index that cannot be read."""
        with _damage_as_bag_error(f"bag {self.path} has an index that cannot be read"):
            return {name: (info.msgtype or "mixed", int(info.msgcount))
                    for name, info in self._reader.topics.items()}

    def only_topic(self, kinds: Sequence[str], role: str, option: str, with_messages: bool = False) -> str:
        """The bag's one topic holding one of `kinds` (`role` names them; `with_messages`: one that holds
        messages, a topic only declared is left out); BagError saying to pass `option`."""
        topics = self.topics()
        found = sorted(t for t, (kind, count) in topics.items() if kind in kinds and (count or not with_messages))
        if not found:
            mixed = sorted(t for t, (kind, _) in topics.items() if kind == "mixed")
            raise BagError(f"bag {self.path} holds no {role} topic{' with messages' if with_messages else ''} "
                           f"(its topics: {', '.join(sorted(topics)) or 'none, an empty bag'}"
                           f"{'; of several message types each: ' + ', '.join(mixed) if mixed else ''})")
        if len(found) != 1:
            raise BagError(f"pass {option}: bag {self.path} has {len(found)} {role} topics"
                           f"{': ' + ', '.join(found) if found else ''} (all topics: {', '.join(sorted(topics))})")
        return found[0]

    def camera_info_for_frames(self, required: bool) -> str | None:
        """The CameraInfo topic to take when none was named: the bag's only one that holds messages (one only
        declared, as a recorder subscribed to a camera that never published, is left out); None when it has none
        or several and nothing needs one (several: said once), else (`required`: a camera mounting needs the
        intrinsics) BagError saying to pass --camera-info-topic."""
        found = sorted(t for t, (kind, count) in self.topics().items() if kind == CAMERA_INFO_TYPE and count)
        if len(found) == 1 or required:
            return self.only_topic((CAMERA_INFO_TYPE,), "camera info", "--camera-info-topic", with_messages=True)
        if found:
            LOG.warning("bag %s has %d camera info topics (%s): none goes with the frames; pass --camera-info-topic",
                        self.path, len(found), ", ".join(found))
        return None

    def check_output_namespace(self, prefix: str, remedy: str) -> None:
        """BagError when the bag already holds topics under `prefix`, where an evaluation writes its outputs (a bag
        recorded beside a running node holds its outputs): the two would be mixed on one topic."""
        taken = sorted(topic for topic in self.topics() if topic.startswith(prefix.rstrip("/") + "/"))
        if taken:
            raise BagError(f"bag {self.path} already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}"
                           f" under {prefix}, where the outputs go: {remedy}")

    def check_copyable(self) -> None:
        """BagError when a topic with messages cannot be copied to an output bag (`output_definition`), so that it
        fails before any work is done; a declared topic without messages has nothing to copy."""
        store = typestore()
        for connection in self.connections:
            if connection.msgcount:
                output_definition(connection, store)

    def _topic_connections(self, topic: str, kinds: Sequence[str], role: str) -> list[Connection]:
        topics = self.topics()
        if topic not in topics:
            candidates = sorted(t for t, (kind, _) in topics.items() if kind in kinds)
            raise BagError(f"bag {self.path} has no topic {topic!r}; its {role} topics: "
                           f"{', '.join(candidates) or 'none'} (all topics: {', '.join(sorted(topics)) or 'none'})")
        kind, count = topics[topic]
        if kind == "mixed":  # rosbags' name for a topic recorded with connections of several types
            recorded = sorted({c.msgtype for c in self._reader.connections if c.topic == topic})
            raise BagError(f"topic {topic!r} in {self.path} holds messages of several types ({', '.join(recorded)}), "
                           f"which no subscriber reads as one stream: it was recorded from publishers of different "
                           f"types on one topic; record each on its own topic")
        if kind not in kinds:
            raise BagError(f"topic {topic!r} in {self.path} holds {kind}, not {' or '.join(kinds)}")
        if count == 0:
            raise BagError(f"topic {topic!r} in {self.path} has no messages (empty bag)")
        return [c for c in self._reader.connections if c.topic == topic]

    def frame_connections(self, image_topic: str, camera_info_topic: str | None = None) -> list[Connection]:
        """The connections of `image_topic` and of `camera_info_topic` (if given), from the bag's metadata; BagError
        when the bag lacks either, or it holds another type (an Image or CompressedImage, a CameraInfo) or no
        message."""
        connections = self._topic_connections(image_topic, FRAME_TYPES, "image")
        if camera_info_topic:
            connections += self._topic_connections(camera_info_topic, (CAMERA_INFO_TYPE,), "camera info")
        return connections

    def verify(self, image_topic: str, camera_info_topic: str | None = None) -> int:
        """Check that the topics exist, hold the right types and that every indexed message can be read.

        Reads the raw messages once (no decoding), so that a truncated or corrupt bag fails before any work is
        done. Returns the number of frames on `image_topic` (within the window, `select_window`).
        """
        connections = self.frame_connections(image_topic, camera_info_topic)
        expected = {c.id: c.msgcount for c in connections}
        found = dict.fromkeys(expected, 0)
        start, stop = self.window or (None, None)
        framed = 0
        with _damage_as_bag_error(f"bag {self.path} is corrupt or truncated: reading it failed with", self._repair()):
            for connection, log_time, raw in self._reader.messages(connections=connections):
                if len(raw) == 0:
                    raise BagError(f"bag {self.path} holds an empty message on {connection.topic!r}")
                found[connection.id] += 1
                framed += (connection.topic == image_topic and (start is None or log_time >= start)
                           and (stop is None or log_time < stop))
        for connection in connections:
            listed, read = expected[connection.id], found[connection.id]
            if read < listed:
                raise BagError(f"bag {self.path} is truncated: its index lists {listed} messages on "
                               f"{connection.topic!r} but only {read} can be read{self._repair()}")
            if read > listed:  # a metadata.yaml written before the last messages, or copied from another bag
                raise BagError(f"bag {self.path} has an index that is out of date: it lists {listed} messages on "
                               f"{connection.topic!r} but {read} can be read (`ros2 bag reindex` writes its "
                               "metadata.yaml anew: docs/BAGS.md)")
        if not framed:
            raise self._no_frame_in_window(image_topic)
        return framed

    def check_window_has_frames(self, image_topic: str) -> None:
        """BagError when the time window (`select_window`; none: nothing to check) holds no message of
        `image_topic`, as `verify` says after its full read, found here through the bag's index: the read goes no
        further than the window's first frame (an mcap's chunks that hold the topic and overlap the window, up to the
        one holding it; an sqlite3 bag's and a ROS 1 bag's index by time), so a window after the camera's last
        frame or between two frames is refused before the detector loads."""
        if self.window is None:
            return
        start, stop = self.window
        connections = self.frame_connections(image_topic)
        with _damage_as_bag_error(f"bag {self.path} is corrupt or truncated: reading it failed with", self._repair()):
            with closing(self._reader.messages(connections=connections, start=start, stop=stop)) as messages:
                if next(messages, None) is None:
                    raise self._no_frame_in_window(image_topic)

    def _no_frame_in_window(self, image_topic: str) -> BagError:
        return BagError(f"topic {image_topic!r} in {self.path} has no frame in the time window selected")

    def select_window(self, start_s: float = 0.0, duration_s: float | None = None) -> str:
        """Read only what was recorded from `start_s` seconds after the bag's first message, for `duration_s`
        seconds (None, or one past the bag's end: to its end), as `ros2 bag play --start-offset` and
        `--playback-duration` take them; the window in words. ValueError for a negative start or a duration that is
        not positive, BagError for a start at or after the bag's end, or a bag that holds no message."""
        check_time_window(start_s, duration_s)
        first, end = self._reader.start_time, self._reader.end_time
        if end <= first:  # rosbags' times of a bag without messages: the largest int64 to 0
            topics = ", ".join(sorted(self.topics())) or "none"
            raise BagError(f"bag {self.path} holds no messages (its topics: {topics})")
        length = (end - first) / 1e9
        if start_s >= length:
            raise BagError(f"bag {self.path} lasts {_seconds(length)} s: nothing was recorded {start_s:g} s into it")
        start = first + round(start_s * 1e9)
        to_end = duration_s is None or start_s + duration_s >= length  # a stop past the end: none (any int64 fits)
        self.window = (start, None if to_end else start + round(duration_s * 1e9))
        until = length if duration_s is None else min(start_s + duration_s, length)
        return f"{start_s:g} to {_seconds(until)} s of the bag's {_seconds(length)} s"

    def raw_messages(self, connections: Sequence[Connection] = ()) -> Iterator[tuple[Connection, int, bytes]]:
        """The messages of `connections` (default: all) in time order, serialized as stored; within the window
        (`select_window`), led by what a player needs from before it: each CameraInfo topic's last message (a camera
        may send it once) and /tf_static's messages."""
        with _damage_as_bag_error(f"bag {self.path} is corrupt or truncated"):
            if self.window is None:
                yield from self._reader.messages(connections=connections)
                return
            start, stop = self.window
            chosen = list(connections) or self.connections
            carried = [c for c in chosen if c.msgtype == CAMERA_INFO_TYPE or c.topic == TF_STATIC]
            last: dict[str, tuple[Connection, int, bytes]] = {}
            before = []
            # rosbags reads every topic for no connections: nothing to carry reads nothing from before the window
            for connection, log_time, raw in (self._reader.messages(connections=carried, stop=start) if carried
                                              else ()):
                if connection.topic == TF_STATIC:
                    before.append((connection, log_time, raw))
                else:
                    last[connection.topic] = (connection, log_time, raw)
            yield from sorted([*before, *last.values()], key=lambda message: message[1])
            yield from self._reader.messages(connections=connections, start=start, stop=stop)

    def deserialize(self, connection: Connection, raw: bytes) -> Any:
        """One stored message as a rosbags message object."""
        with _damage_as_bag_error(f"bag {self.path}: a message on {connection.topic!r} does not deserialize as "
                                  f"{connection.msgtype}"):
            return self._reader.deserialize(raw, connection.msgtype)

    def frames(self, image_topic: str, camera_info_topic: str | None = None,
               max_frames: int | None = None) -> Iterator[BagFrame | ImageError]:
        """The frames of `image_topic` in time order, each with the latest CameraInfo received before it.

        A frame that cannot be decoded comes back as the ImageError saying why, so that callers can skip it.
        """
        connections = self.frame_connections(image_topic, camera_info_topic)
        camera_info = None
        index = 0
        for connection, log_time, raw in self.raw_messages(connections):
            if connection.msgtype == CAMERA_INFO_TYPE:
                camera_info = self.deserialize(connection, raw)
                continue
            if max_frames is not None and index >= max_frames:
                return
            yield self.decode_frame(connection, log_time, raw, index, camera_info)
            index += 1

    def decode(self, msg: Any, msgtype: str) -> np.ndarray:
        """A deserialized Image or CompressedImage of the bag as a uint8 BGR frame (`decode_image` with the bag's
        input_bits); the first frame whose 16-bit samples look like a 12-bit camera's read with 16 bits is warned
        of, once for the bag."""
        return decode_image(msg, msgtype, self.input_bits, self.samples)

    def decode_frame(self, connection: Connection, log_time: int, raw: bytes, index: int,
                     camera_info: Any | None) -> BagFrame | ImageError:
        """A stored Image/CompressedImage as a `BagFrame`, or the ImageError saying why it cannot be one (a
        message that does not deserialize too: one damaged frame is skipped, not the bag)."""
        try:
            msg = self.deserialize(connection, raw)
        except BagError as exc:
            return ImageError(f"frame {index} at {log_time} ns: {exc}")
        encoding = msg.format if connection.msgtype == COMPRESSED_IMAGE_TYPE else msg.encoding
        try:
            image = self.decode(msg, connection.msgtype)
        except ImageError as exc:
            return ImageError(f"frame {index} at {log_time} ns on {connection.topic!r}: {exc}")
        return BagFrame(index, log_time, msg.header, image, encoding, camera_info)


def pick_image_topic(bag: Path, image_topic: str | None = None, camera_info_topic: str | None = None,
                     start: float = 0.0, duration: float | None = None, camera_info_needed: bool = False) -> str:
    """The image topic to evaluate: `image_topic`, or the bag's only image topic that holds messages (one only
    declared, as a recorder subscribed to a camera that never published, is left out), after the checks the bag's
    metadata and index answer without reading it through, so that a bad bag is refused before the detector loads: the
    bag opens (a ROS 1 bag without its ROS 2 copy), the image topic and `camera_info_topic` (if given) exist, hold
    their types and messages, a time window (`start`, `duration`) starts before the bag's end and holds a frame
    (`BagSource.check_window_has_frames`, from the bag's index), and, where `camera_info_needed` (a camera
    mounting) and no topic is named, the bag has one CameraInfo topic with messages. BagError (FileNotFoundError for
    a missing path) says what is wrong; whether every message can be read, `BagSource.verify` finds as it reads
    them."""
    with BagSource(bag, as_ros2=False) as source:
        topic = image_topic or source.only_topic(FRAME_TYPES, "image", "--image-topic", with_messages=True)
        source.frame_connections(topic, camera_info_topic)
        if not camera_info_topic and camera_info_needed:
            source.camera_info_for_frames(required=True)
        if start or duration is not None:
            source.select_window(start, duration)
            source.check_window_has_frames(topic)
        return topic
