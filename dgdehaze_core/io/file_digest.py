"""The SHA-256 of a file, read in chunks (weights, exports and engines can be hundreds of MB): what names them in
records, provenance lines and cache keys."""
from __future__ import annotations

import hashlib
import os

CHUNK_BYTES = 2 ** 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at `path`; OSError when it cannot be read. Read chunk by chunk here, as
    `hashlib.file_digest` does, which Python 3.10 (ROS 2 Humble's, JetPack 6's) does not have."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
