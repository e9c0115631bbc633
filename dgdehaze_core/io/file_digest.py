"""The SHA-256 of a file, read in chunks (weights, exports and engines can be hundreds of MB): what names them in
records, provenance lines and cache keys."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Iterable

from dgdehaze_core.io.file_paths import missing

CHUNK_BYTES = 2 ** 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at `path`; OSError when it cannot be read, and without opening it when it is a named
    pipe, a socket or a device (opening a pipe waits for a writer: an image folder lists one named as an image).
    Read chunk by chunk here, as `hashlib.file_digest` does, which Python 3.10 (ROS 2 Humble's, JetPack 6's) does
    not have."""
    mode = os.stat(path).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a folder: open's own IsADirectoryError
        raise OSError(missing(Path(path)))
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_sha256(paths: Iterable[str | os.PathLike[str]], header: str = "") -> str:
    """Hex SHA-256 of `header` followed by each file's SHA-256 on a line of its own, in the order given: a key for
    what a set of files holds (an int8 calibration set), which changes with any file's contents and none's name or
    time. OSError when a file cannot be read."""
    digest = hashlib.sha256(header.encode())
    for path in paths:
        digest.update(f"{file_sha256(path)}\n".encode())
    return digest.hexdigest()
