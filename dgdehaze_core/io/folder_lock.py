"""One writer at a time in an output folder: a command that fills a folder file by file over minutes (a training's
checkpoints and logs, `dehaze`'s images) holds an advisory lock (`fcntl.flock`) on the folder's `.lock` while it
runs, so that the same command started again into the same folder is refused instead of mixing its files with the
first's. The lock dies with its process (a kill, the OOM killer): a killed run leaves the folder free for its
resume."""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator, TextIO

from dgdehaze_core.io.atomic_files import check_folder_path

LOCK_NAME = ".lock"
"""The lock file in a locked folder (hidden: no command lists it as an input or an output)."""

HELD_LOCKS: dict[int, int] = {}
"""The descriptors of the folder locks `folder_lock` holds, with the process that took each: a forked process that
must not keep a folder locked past its parent (a training's DataLoader workers, `quiet_loader_worker`) closes its
copies, which would otherwise hold the lock past a parent killed at once until the child noticed."""


@contextlib.contextmanager
def folder_lock(folder: Path, flag: str, writer: str) -> Iterator[None]:
    """Within its block no other `folder_lock` of `folder` is taken: a second one is refused with FileExistsError
    naming the `writer` (what writes there: "training", "dehaze run") that holds it and `flag`, the option that
    named the folder. The folder is made where it is missing, and the folders made for it are removed again when
    the block leaves nothing but the lock in them (bad data, a run stopped before its first output): a failed run
    leaves no new folder behind. The lock file goes at the block's end (one a killed run left is taken over)."""
    check_folder_path(folder, flag)
    created = [place for place in (folder, *folder.parents) if not place.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    with _locked(lock_path, flag, writer) as handle:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        HELD_LOCKS[handle.fileno()] = os.getpid()
        try:
            yield
        finally:
            del HELD_LOCKS[handle.fileno()]
            with contextlib.suppress(OSError):  # before the lock is let go: see `_locked`
                lock_path.unlink()
                for place in created:
                    place.rmdir()  # only while empty: a run's files keep their folder


@contextlib.contextmanager
def _locked(lock_path: Path, flag: str, writer: str) -> Iterator[TextIO]:
    """`lock_path` opened and locked. The holder unlinks it before letting go, so a lock taken on a file that is
    no longer at `lock_path` (a process that opened it just before) is another holder's leftover, not the folder's
    lock: taken again on the file there now."""
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise FileExistsError(f"another {writer} ({owner}) is writing into {lock_path.parent}: wait for it to "
                                  f"end, or choose another {flag} folder") from None
        try:
            there = os.stat(lock_path)
        except FileNotFoundError:
            there = None
        held = os.fstat(handle.fileno())
        if there is not None and (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino):
            break
        handle.close()
    with handle:
        yield handle
