"""Reading video files frame by frame with clear errors: the frames upright (OpenCV applies a phone's rotation
metadata), up to the first that does not decode, with the video's mean frame rate, how far its frames' times stray
from that rate, and whether the file was cut short.
"""
from __future__ import annotations

import heapq
import logging
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from dgdehaze_core.io.images import ImageError, to_bgr8

LOG = logging.getLogger(__name__)


def video_path(path: str | Path) -> str:
    """`path` as OpenCV's video reader and writer take it: a str that encodes as UTF-8. ImageError for a path that
    does not (a Latin-1 name from an old camera or a Windows share, which Python holds with surrogate escapes), on
    which OpenCV's Python binding crashes the process (a segmentation fault, without a word)."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ImageError(f"{text}: OpenCV reads and writes videos only at paths that are UTF-8, and this one is not: "
                         "rename it") from None
    return text


CUT_SHORT = 0.25
"""Seconds a video's frames must end before the end its container reports to be a file cut short: an MKV's or
WebM's frame count is its duration times its rate, and its duration is that of its longest stream, which a sound
track that runs on a little past the last frame makes longer."""


class VideoFrames:
    """The frames of a video file as uint8 BGR arrays, up to the first that does not decode (ImageError when the file
    does not open). OpenCV's read fails alike at the end and at a frame that does not decode; a later frame that
    still reads tells them apart (a container's frame count may be an estimate): `damaged_at`, once iterated, is the
    number of the first frame that did not decode where a later one does (a damaged file, with a warning), None
    where the frames ended.

    Once iteration has begun, `fps` is the frame rate (with `mean_rate`, the mean of the frames' times,
    `mean_frame_rate`: a pass over the file's packets before its first frame; else the container's; 0 where neither
    gives one) and `drift` the furthest (seconds) that the time of a frame read so far lies from
    where that constant rate, from the first frame's time, puts it: more than half a frame for a video of variable
    frame rate (a phone's).

    Once iterated, `reported` is the frame count the container reports where the frames ended (no later frame
    decodes) well before the end that count gives (a file cut short: a copy or a recording stopped part way), 0
    where they reached it. The count is the container's index (MP4, AVI) or its duration times
    its rate (MKV: an estimate), so the end is judged by time, a frame (the longest gap read) and CUT_SHORT
    allowed."""

    LOOK_AHEAD = 8
    """Frames tried past one that did not decode."""

    def __init__(self, path: str | Path, mean_rate: bool = False) -> None:
        self.path = Path(path)
        self.mean_rate = mean_rate
        self.damaged_at: int | None = None
        self.fps = 0.0
        self.drift = 0.0
        self.reported = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        capture = cv2.VideoCapture(video_path(self.path))
        if not capture.isOpened():
            raise ImageError(f"{self.path} is not a readable video")
        rate = capture.get(cv2.CAP_PROP_FPS)
        rate = rate if 0 < rate < float("inf") else 0.0
        self.fps = mean_frame_rate(self.path, rate) if self.mean_rate else rate
        read = 0
        start = last = gap = 0.0
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    if any(capture.grab() for _ in range(self.LOOK_AHEAD)):
                        self.damaged_at = read + 1
                        LOG.warning("%s: frame %d does not decode and a later one does (a damaged file): read as far "
                                    "as frame %d", self.path, read + 1, read)
                    elif rate:
                        self._check_end(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), rate, read, last - start,
                                        max(gap, 1 / rate))
                    return
                seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
                start = seconds if read == 0 else start
                gap = max(gap, seconds - last) if read else gap
                last = seconds
                if self.fps:
                    self.drift = max(self.drift, abs(seconds - start - read / self.fps))
                read += 1
                yield to_bgr8(frame)
        finally:
            capture.release()

    def _check_end(self, reported: int, rate: float, read: int, last: float, frame: float) -> None:
        """Set `reported` where the `read` frames, the last at `last` seconds from the first, end more than 1.5
        `frame` (seconds: the longest a frame lasts) and CUT_SHORT before the `reported` frames at the container's
        `rate` do."""
        if reported > read and reported / rate - last > max(1.5 * frame, CUT_SHORT):
            self.reported = reported


RATE_TOLERANCE = 0.01
"""How far (relative) the mean rate of a video's frame times may lie from its container's rate, which is then kept."""
REORDERED = 4
"""Frames at the end of a video's times left out of its mean rate where its packets come in another order than its
frames are shown (B-frames): in a file cut short the frames shown before its last packets may be missing."""


def mean_frame_rate(path: str | Path, rate: float) -> float:
    """The mean frame rate of the video at `path` by the times of its frames' packets, read without decoding them,
    from the first to the last; `rate`, its container's, where that lies within RATE_TOLERANCE of it or the times
    give none. OpenCV gives an MKV's or WebM's base rate, not its mean, which for a recording of variable rate (OBS's,
    a browser's) is the rate of its fastest stretch. Memory stays flat however long the video."""
    capture = cv2.VideoCapture(video_path(path), cv2.CAP_FFMPEG)
    count, first, ordered, latest = 0, float("inf"), True, []  # latest: the REORDERED + 1 latest times, a heap
    try:
        if capture.isOpened() and capture.set(cv2.CAP_PROP_FORMAT, -1):  # its packets, undecoded
            while capture.grab():
                seconds = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
                ordered = ordered and (not latest or seconds >= max(latest))
                first = min(first, seconds)
                count += 1
                (heapq.heappush if len(latest) <= REORDERED else heapq.heappushpop)(latest, seconds)
    finally:
        capture.release()
    if not latest:
        return rate
    reordered = not ordered and count > 2 * REORDERED
    last = latest[0] if reordered else max(latest)
    frames = count - REORDERED if reordered else count
    if last <= first:
        return rate
    mean = (frames - 1) / (last - first)
    return rate if rate and abs(mean / rate - 1) <= RATE_TOLERANCE else mean


def video_frame_count(path: str | Path) -> int:
    """Frame count a video's container reports (0 when unknown); ImageError for a path OpenCV cannot take
    (`video_path`)."""
    capture = cv2.VideoCapture(video_path(path))
    try:
        return max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        capture.release()
