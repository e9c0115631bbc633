"""Atomic file writes: a reader sees the old file or the complete new one, never half of one.

Checkpoints, engines, reports and bags are written to a temporary sibling and renamed into place. The sibling's
name carries the writing process (host and pid): what a killed process left beside a target (a half-written bag
folder can take hundreds of MB) is removed by the next write of that target on the same host, and an old folder
it had set aside without putting the new one in its place is put back.
"""
from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

NAME_CHARS = 100
"""How much of the target's name the temporary sibling's name repeats (a file name holds at most 255 bytes)."""


def _host() -> str:
    return socket.gethostname().split(".")[0][:40] or "host"


def _prefix(target: Path, pid: int | None = None) -> str:
    return f".{target.name[:NAME_CHARS]}.{_host()}-{os.getpid() if pid is None else pid}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_leftovers(target: Path) -> None:
    """Remove the temporary siblings of `target` that dead processes of this host left; put back an old folder
    set aside when `target` itself is missing."""
    stem = _prefix(target, 0)[:-2]  # ".NAME.HOST-"
    for sibling in target.parent.glob(glob.escape(stem) + "*"):
        pid = sibling.name[len(stem):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        kept = sibling / target.name
        if sibling.name.endswith(".old") and kept.exists() and not os.path.lexists(target):
            os.replace(kept, target)
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it over `target`, on error remove it.

    The temporary path ends with the target's suffix (or `suffix`) so that writers which pick a format by
    extension (OpenCV, torch) behave the same. Works for files and for directories.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_prefix(target), suffix=".part" + (suffix if suffix is not None else target.suffix)[:20],
        dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {target}")
        if tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        elif target.is_dir():  # set the old folder aside, put the new one in its place, then drop the old one
            aside = Path(tempfile.mkdtemp(prefix=_prefix(target), suffix=".old", dir=target.parent))
            os.replace(target, aside / target.name)
            os.replace(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `target` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 `text` to `target` atomically and return the path."""
    return atomic_write_bytes(target, text.encode("utf-8"))
