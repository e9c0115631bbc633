"""Training images from camera recordings: the frames of a bag's image topic, decoded as `dgdehaze bag-eval`
decodes them (`BagSource.decode_frame`).

A bag is a rosbag2 folder (with metadata.yaml), a single .mcap or .db3 file, or a ROS 1 .bag file, read as it is
(a ROS 1 bag is not converted: only its frames are needed). Listing a bag's frames reads its index only; the
frames are decoded when the training images are loaded, each bag once for all of its frames. rosbags is imported
only when a bag is read, so that `dgdehaze train` runs where it is not installed (the lent GPU machine).
"""
from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Collection

import numpy as np

from dgdehaze_core.io.file_paths import VIDEO_SUFFIXES, file_suffix
from dgdehaze_core.io.images import SAMPLE_BITS, ImageError

LOG = logging.getLogger(__name__)

BAG_SUFFIXES = (".mcap", ".db3", ".bag")
"""The files read as a bag: a single-file rosbag2 (mcap, sqlite3) or a ROS 1 bag."""


def is_bag_path(path: Path) -> bool:
    """Whether `path` is read as a bag: a folder holding metadata.yaml, or a file named *.mcap, *.db3 or *.bag."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.suffix.lower() in BAG_SUFFIXES


def recording_kind(path: Path) -> str | None:
    """"a bag" (`is_bag_path`) or "a video" (by its suffix) where `path` is a recording whose frames are read out of
    it, else None: what a place that takes a folder of image files tells it apart by."""
    if is_bag_path(path):
        return "a bag"
    return "a video" if file_suffix(path) in VIDEO_SUFFIXES else None


def _bags(bag: Path) -> ModuleType:
    """`dgdehaze_core.bags.io`, imported when a bag is read; ImageError naming the bag where rosbags is missing."""
    try:
        from dgdehaze_core.bags import io
    except ModuleNotFoundError as exc:
        package = (exc.name or "rosbags").split(".")[0]
        raise ImageError(f"{bag} is a bag: reading it needs the Python package {package!r} (pip install rosbags)") \
            from None
    return io


def bag_frame_indices(bag: Path, topic: str, frame_step: int, kind: str) -> tuple[str, list[int]]:
    """(the image topic, every `frame_step`-th frame index of it, from the bag's index): `topic`, or where empty the
    bag's only image topic with messages. BagError (a ValueError) names the bag and its image topics when `topic`
    is no image topic of it, or when it is empty and the bag has none or several."""
    bags = _bags(bag)
    with bags.BagSource(bag, as_ros2=False) as source:
        topics = source.topics()
        if not topic:
            topic = source.only_topic(bags.FRAME_TYPES, "image", f"'topic' in the {kind} source", with_messages=True)
        elif topics.get(topic, ("", 0))[0] not in bags.FRAME_TYPES:
            images = sorted(name for name, (msgtype, _) in topics.items() if msgtype in bags.FRAME_TYPES)
            raise ImageError(f"{kind} images: bag {bag} has no image topic {topic!r}; its image topics: "
                             f"{', '.join(images) or 'none'}")
        return topic, list(range(0, topics[topic][1], frame_step))


def read_bag_frames(bag: Path, topic: str, wanted: Collection[int], bits: int = SAMPLE_BITS, *,
                    remedy: str) -> dict[int, np.ndarray | ImageError]:
    """The frames `wanted` (indices on `topic`, in time order) of the bag as BGR uint8 (16-bit samples with `bits`
    significant bits, as bag-eval's --input-bits; frames read with 16 bits that look like a 12-bit camera's are
    warned of once, the warning asking for `remedy`), or the ImageError of a frame that does not decode, read in
    one pass that stops after the last one wanted. ImageError when the bag ends before a wanted frame (its index
    lists more)."""
    taken: dict[int, np.ndarray | ImageError] = {}
    last = max(wanted)
    bags = _bags(bag)
    with bags.BagSource(bag, input_bits=bits, as_ros2=False, remedy=remedy) as source:
        connections = [connection for connection in source.connections if connection.topic == topic]
        for index, (connection, log_time, raw) in enumerate(source.raw_messages(connections)):
            if index in wanted:
                frame = source.decode_frame(connection, log_time, raw, index, None)
                taken[index] = frame.image if isinstance(frame, bags.BagFrame) else frame
            if index == last:
                break
    missing = sorted(set(wanted) - set(taken))
    if missing:
        raise ImageError(f"bag {bag} ends before frame {missing[0]} of {topic!r} (its index lists more frames)")
    return taken


def decoded_frames(recording: str, taken_from: str,
                   taken: dict[int, np.ndarray | ImageError]) -> dict[int, np.ndarray]:
    """The frames of `taken` (a bag's `read_bag_frames`, or a video's) that decode. Those that do not are left out
    with one warning for the recording ("bag PATH", "video PATH"; its frames `taken_from` a topic, or the video),
    naming the first; ImageError when none decodes."""
    decoded = {index: frame for index, frame in taken.items() if isinstance(frame, np.ndarray)}
    failed = [frame for _, frame in sorted(taken.items()) if isinstance(frame, ImageError)]
    if not decoded:
        raise ImageError(f"{recording}: none of the {len(failed)} frames taken from {taken_from} decodes, e.g. "
                         f"{failed[0] if failed else None}")
    if failed:
        LOG.warning("%s: %d of the %d frames taken from %s do not decode and are left out, e.g. %s", recording,
                    len(failed), len(taken), taken_from, failed[0])
    return decoded
