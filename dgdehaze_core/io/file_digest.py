"""The SHA-256 of a file, read in chunks (weights, exports and engines can be hundreds of MB): what names them in
records, provenance lines and cache keys."""
from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at `path`; OSError when it cannot be read."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
