"""ROS 1 bags as input: many recorded fog drives predate ROS 2.

rosbags reads a ROS 1 bag's topics and decodes its messages, but its messages are in ROS 1's serialization and
its definitions are ROS 1's (a CameraInfo's `D`, `K`, `R`, `P`; a Header's `seq`): copied byte for byte into a ROS
2 output bag, or handed to rclpy as ROS 2 messages, they would be garbage. So a ROS 1 bag that is copied or replayed
is first converted to a ROS 2 bag in a temporary folder by rosbags' own converter (what `rosbags-convert` does),
with the ROS 2 message definitions the rest of the package writes.
"""
from __future__ import annotations

import errno
import io
import logging
import shutil
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

from rosbags.convert import ConverterError, convert
from rosbags.typesys import Stores, get_typestore
from rosbags.typesys.store import Typestore

from dgdehaze_core.io.atomic_files import drop_lock, free_locks, new_lock

LOG = logging.getLogger(__name__)
ROS1_MAGIC = b"#ROSBAG V2.0"
"""The first bytes of every ROS 1 bag file."""
CONVERTED_STORAGE = "mcap"
"""Storage of the ROS 2 copy: rosbag2's default since Iron."""
CONVERTED_VERSION = 8
"""rosbag2 metadata version of the copy, as the output bags (bags/io.py's BAG_VERSION)."""
NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""Write errors that say the copy did not fit where it was written (a full disk, a quota, a file size limit)."""


def is_ros1_bag(path: Path) -> bool:
    """Whether `path` is a ROS 1 bag file, by its header (its name may end in anything)."""
    if not path.is_file():
        return False
    with path.open("rb") as stream:
        return stream.read(len(ROS1_MAGIC)) == ROS1_MAGIC


def _no_room(exc: BaseException) -> OSError | None:
    """The write error for want of room (NO_ROOM) that `exc` (the converter's error) was raised from, if any."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not (isinstance(cause, OSError) and cause.errno in NO_ROOM):
        cause = cause.__cause__ or cause.__context__
    return cause if isinstance(cause, OSError) else None


COPY_PREFIX = "dgdehaze-ros1-"
"""The start of the name of each ROS 2 copy's folder in the temporary folder, and of the lock file beside it."""


class Ros2Copy:
    """A ROS 2 copy of a ROS 1 bag (`bag`) in a folder of its own in the temporary folder, beside a lock file held
    (`atomic_files.new_lock`) until `remove`, so that a copy whose process was killed outright, or interrupted as it
    removed it, is told from one in use and removed by the next (`remove_stale_copies`)."""

    def __init__(self, name: str) -> None:
        self._lock_fd, self.lock = new_lock(Path(tempfile.gettempdir()), COPY_PREFIX)
        self.folder = self.lock.with_suffix("")
        self.folder.mkdir()
        self.bag = self.folder / name

    def remove(self) -> None:
        """Remove the copy, its folder before its lock file (a removal cut short leaves the lock to find it by)."""
        if self._lock_fd < 0:
            return
        shutil.rmtree(self.folder, ignore_errors=True)
        drop_lock(self._lock_fd, self.lock)
        self._lock_fd = -1


def remove_stale_copies() -> None:
    """Remove the ROS 2 copies in the temporary folder whose process is gone (their lock is free): one killed outright
    (SIGKILL, out of memory, a power cut) leaves a copy the size of its bag."""
    for lock in free_locks(Path(tempfile.gettempdir()), COPY_PREFIX):
        LOG.info("removing %s, the ROS 2 copy of a run that ended without removing it", lock.with_suffix(""))
        shutil.rmtree(lock.with_suffix(""), ignore_errors=True)


def ros2_copy(bag: Path, store: Typestore) -> Ros2Copy:
    """A ROS 2 copy (mcap) of the ROS 1 bag `bag`, every topic kept, its messages in `store`'s ROS 2 definitions,
    which the caller removes (`Ros2Copy.remove`); the copies a run killed outright left first removed
    (`remove_stale_copies`). Any failure of the converter (a corrupt or truncated bag, a message type it cannot map)
    propagates after the copy is removed; one for want of room where the copy goes (a full disk there is the usual
    one for a large bag) as the OSError saying so and that TMPDIR chooses that place. What the converter prints (a
    line for each message type it migrates) is logged, not left on stdout, where a command's output goes."""
    size = bag.stat().st_size
    room = f"(TMPDIR chooses where the copy goes; it needs about the bag's {size / 2 ** 20:.0f} MB)"
    remove_stale_copies()
    try:
        copy = Ros2Copy(bag.stem)
    except OSError as exc:
        raise OSError(f"cannot make the ROS 2 copy of ROS 1 bag {bag}: {exc} {room}") from exc
    LOG.info("%s is a ROS 1 bag (%.0f MB): converting it to ROS 2 in %s first", bag, size / 2 ** 20, copy.folder)
    said = io.StringIO()
    try:
        with redirect_stdout(said):
            convert(srcs=[bag], dst=copy.bag, dst_storage=CONVERTED_STORAGE, dst_version=CONVERTED_VERSION,
                    compress=None, compress_mode="file", default_typestore=get_typestore(Stores.ROS1_NOETIC),
                    typestore=store, exclude_topics=[], include_topics=[], exclude_msgtypes=[], include_msgtypes=[])
    except BaseException as exc:
        copy.remove()
        if isinstance(exc, ConverterError) and (full := _no_room(exc)) is not None:
            raise OSError(f"cannot write the ROS 2 copy of ROS 1 bag {bag} in {copy.folder}: {full.strerror} "
                          f"{room}") from exc
        raise
    finally:
        for line in said.getvalue().splitlines():
            LOG.info("converting %s: %s", bag.name, line)
    return copy
