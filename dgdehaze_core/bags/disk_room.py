"""Room on the disk a bag evaluation writes to: the evaluation stops early, with a report of the frames it did,
rather than fill the disk.

An output bag grows by the frame, by megabytes a frame where it holds raw images, and node replay at the recorded
rate first spools the node's raw outputs beside it. Its output is made in a temporary folder that is moved in place
only once complete, so a write that failed for want of room would end a long run with nothing written: each
evaluation loop asks `room_problem` before each frame.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

RESERVE_BYTES = 1 << 30
"""Free space an evaluation leaves on its disk for what it writes after its last frame (the output bag's index,
the report and its figures) and for the machine's other work."""


def _existing(folder: Path) -> Path:
    """`folder`, or its nearest parent that exists."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_bytes(folder: Path) -> int:
    """Free bytes, for an unprivileged writer, on the file system holding `folder`."""
    return shutil.disk_usage(_existing(folder)).free


def mount_point(folder: Path) -> Path:
    """The mount point of the file system holding `folder`: how a user names the disk (the evaluation writes in a
    temporary folder beside its output folder)."""
    folder = _existing(folder)
    while not os.path.ismount(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


SMALLER_IMAGES = {"raw": "--output-images compressed or none", "compressed": "--output-images none", "none": ""}
"""By how the output bag holds its images, the --output-images that would shrink it ("" none would)."""


def room_problem(folder: Path, keep: int = 0, images: str | None = None) -> str:
    """Why writing on under `folder` must stop ("" while it need not): its disk has less free than RESERVE_BYTES
    plus `keep` bytes still to be written after this point (a spool's content and the output bag's copy of the
    input up to the frame it answers, every topic of it). `images`: how the output bag holds its images
    (`writer.IMAGE_TRANSPORTS` but auto), so that the advice names only an --output-images that shrinks it (None:
    not known yet, raw's advice)."""
    free = free_bytes(folder)
    needed = RESERVE_BYTES + keep
    if free >= needed:
        return ""
    smaller = SMALLER_IMAGES[images or "raw"]
    # the free space rounded down and the room needed up: a byte short is not "1024 MiB free, under the 1024 MiB"
    return (f"the disk mounted at {mount_point(folder)} has {free // 2**20} MiB free, under the "
            f"{-(-needed // 2**20)} MiB kept for the rest of the output (--duration or --max-frames shortens the run, "
            f"{smaller + ' shrinks its bag, ' if smaller else ''}or give an output folder on a larger disk)")
