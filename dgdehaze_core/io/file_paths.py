"""What the package tells of a file by its path alone: its kind, by its suffix, and why a path names no file to
read.

Light to import (no torch, no OpenCV), as the ONNX Runtime backend, which runs without torch, needs.
"""
from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif", ".avif")
"""The images read, by suffix (.jfif: a JPEG by another name; .gif: its first frame)."""
UNREAD_IMAGE_SUFFIXES = (".heic", ".heif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf")
"""Photos by their suffix that OpenCV does not read (a phone's HEIC, JPEG XL, a camera's raw files): the image
listings leave them out and say so, rather than list them as images that every read would fail on."""
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".3gp",
                  ".wmv", ".asf", ".flv", ".mjpeg", ".mjpg")
"""The videos OpenCV reads, by suffix: the containers of phones, dashcams (MPEG-TS .ts, a camcorder's .mts and
.m2ts) and older cameras, and an IP or robot camera's raw MJPEG stream (.mjpeg), whose first frame alone reads as a
JPEG image."""
DEHAZE_RUN_RECORD = "dehaze_run.json"
"""The file `dgdehaze dehaze` writes into its --out folder (`dgdehaze_core.commands.dehaze_record`): a folder
holding one holds a run's outputs, not photos to read as inputs."""


def listing(items: list[str], limit: int = 5) -> str:
    """The first `limit` of `items`, comma-separated, and how many more there are: the files or names a message
    lists."""
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def file_suffix(path: str | os.PathLike[str]) -> str:
    """The suffix that tells a file's kind (weights `.pt`, `.pth`, exports `.onnx`, `.engine`), lower-case: the one
    rule for every file read or written by its suffix, so that `W.PT` is a `.pt` to read and to write alike."""
    return Path(path).suffix.lower()


def missing(path: Path, what: str = "file") -> str:
    """Why `path`, which is no file, cannot be read: no such `what`, a link that leads to no file (its target
    missing, as on a drive not mounted, or a loop of links), or something else than a file there (a named pipe, a
    socket, a device: "no such" misnamed it, and reading a pipe would wait for a writer, or find it empty)."""
    if path.exists() and not path.is_dir():
        return f"{path} is no file but a named pipe, a socket or a device: no {what} to read"
    if path.is_symlink():
        return f"{path} is a link to {os.readlink(path)}, which leads to no {what} (missing, or a loop of links)"
    return f"no such {what}: {path}"


def existing_file(path: str | os.PathLike[str], what: str) -> Path:
    """`path` as a Path when it is a file to read `what` from; else FileNotFoundError saying there is no such `what`
    (`missing`: or that its link leads to none), or that it is a folder (which "no such" misnamed): either way no
    file of it, as the callers that name or replace a missing file take it."""
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path} is a folder, not {'an' if what[:1] in 'aeiouAEIOU' else 'a'} {what}")
    if not path.is_file():
        raise FileNotFoundError(missing(path, what))
    return path
