"""How glibc's malloc keeps the memory of a process that takes frames: the frame-sized buffers numpy and OpenCV
allocate and free on every frame, the arenas of its threads, and what a released model or a huge frame leaves.

glibc serves a request above its mmap threshold (128 KiB when a process starts) with a fresh mapping and returns
freed heap memory to the system above its trim threshold, so each frame of a few megabytes page-faults all its
buffers in again. glibc raises both thresholds by itself only after the process frees a block larger than the
current threshold, so a frame's cost depended on what the process had run before (docs/BENCHMARKS.md, "The C
allocator"). `keep_frame_memory` starts the process where that rule ends: blocks up to glibc's largest mmap
threshold come from the heap, and freed memory stays with the process for the next frame, so its resident memory
stays at its busiest frame's instead of rising and falling each frame; `return_freed_memory` gives it back on
purpose (after a huge frame, after the node releases its models). The `dgdehaze` commands that take frames
(`cli.FRAME_COMMANDS`), the node and a bag fleet's Ray workers call `keep_frame_memory` at start; a user's own
`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or `GLIBC_TUNABLES` (`USER_SETTINGS`) wins. Every function does
nothing where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import logging
import os

LOG = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""mallopt's parameter numbers (glibc's malloc.h)."""
MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's largest mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX), where its own rule stops: blocks
above it, such as a 4K frame's float copy, are still mapped and unmapped each time."""
TRIM_THRESHOLD = 128 * 1024 * 1024
"""Free memory at a heap's top kept rather than returned: above what a 1920x1080 frame frees at once (the dark
channel prior's buffers; the networks' pipelines keep their own), so that no frame's buffers are returned only to
be faulted in again by the next, and what the process holds beyond its live memory stays bounded by it."""
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
"""Environment variables through which a user sets glibc's malloc themselves."""


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc, else None."""
    try:
        library = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not hasattr(library, "mallopt"):
        return None
    library.mallopt.argtypes, library.mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return library


_LIBC = glibc()


def cap_heap_arenas(count: int) -> None:
    """At most `count` heap arenas from now on (glibc gives each new thread its own, up to 8 per core)."""
    if _LIBC is not None:
        _LIBC.mallopt(M_ARENA_MAX, count)


def keep_frame_memory() -> bool:
    """Set glibc's mmap and trim thresholds for frame-sized buffers (module docstring) in this process; True when
    set, False without glibc or where the user set malloc's thresholds through the environment."""
    chosen = [name for name in USER_SETTINGS if name in os.environ]
    if chosen:
        LOG.debug("malloc's thresholds left as %s sets them", ", ".join(chosen))
        return False
    if _LIBC is None:
        return False
    if not (_LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and _LIBC.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        LOG.debug("glibc refused malloc's thresholds (a 32-bit system's mmap threshold is at most 512 KiB)")
        return False
    return True


def return_freed_memory() -> None:
    """Hand the heap pages freed by released models or a huge frame back to the system."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
