"""The node's camera_info: which one received describes a frame (`CameraInfos`), and the one it re-publishes with
the frame's outputs (`relayed_camera_info`).

`~/camera_info` pairs with `~/image_dehazed`, `~/depth` and `~/depth_relative` (image_transport's CameraSubscriber
finds it beside them) for image_proc and depth_image_proc, so it describes those images as the node read the
input's: the input's camera_info with the frame's header where it describes the frame (or gives no size), scaled to
the frame where the frame is a resized copy of the image it describes (`resized_calibration`), as received where it
fits no resized copy (another aspect ratio: the node takes no intrinsics from it, `size_mismatch`).

A camera that changes mode (a driver switching resolution) sends frames of the new size while the newest
camera_info may still describe the old one: that camera_info is not this frame's, and scaled onto it (a crop or
binning mode is no resize) it would give wrong intrinsics and metres. `CameraInfos` takes each frame's from what
image_transport pairs: the camera_info of the frame's stamp, else the newest of the frame's size, else the newest
as the source of a resized copy only while no frame of its own size has come.
"""
from __future__ import annotations

import copy
import threading
from collections import deque
from typing import Callable

from sensor_msgs.msg import CameraInfo, RegionOfInterest
from std_msgs.msg import Header

from dgdehaze_core.physics.visibility import described_size, resized_camera_info

KEPT = 16
"""How many camera_info messages `CameraInfos` keeps by stamp, and how many image sizes it keeps the newest
camera_info, the frames' sizes and their waits for: a camera's frames are processed within a few of their
camera_info, and it has a few modes; a stream of ever new sizes (bad input) drops the oldest (a size dropped
waits again)."""

UNANSWERED_WAITS = 2
"""How many of an activation's waits for a camera_info may end without it before no frame waits again until the next
activation: a publisher that sends none for a size, or frames of ever new sizes (bad input), cost at most this many
waits an activation, while one camera_info that did not come in time (lost in transport, say) does not stop a later
mode switch from having its camera_info."""


class CameraInfos:
    """The camera_info received, and which one describes a frame (`for_frame`). `add` runs on the executor,
    `for_frame` on the frame worker; `clear` empties it (a cleanup), `restart_waits` lets each size wait again (an
    activation)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._recent: deque[CameraInfo] = deque(maxlen=KEPT)
        """The newest received, oldest first."""
        self._by_size: dict[tuple[int, int], CameraInfo] = {}
        """The newest received per image size it describes ((0, 0): none given), the least recent size first."""
        self._frame_sizes: dict[tuple[int, int], None] = {}
        """The sizes (width, height) of the frames asked for, the least recent first."""
        self._waited: dict[tuple[int, int], None] = {}
        """The frame sizes that have had their wait since `restart_waits`, the least recent first."""
        self._unanswered = 0
        """How many waits since `restart_waits` ended without their frame's camera_info: from UNANSWERED_WAITS on,
        later sizes wait no more (a publisher that sends none for them, or frames of ever new sizes, would cost a
        wait a frame)."""

    def add(self, info: CameraInfo) -> None:
        with self._changed:
            self._recent.append(info)
            _keep_newest(self._by_size, described_size(info), info)
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._recent.clear()
            self._by_size.clear()
            self._frame_sizes.clear()

    def restart_waits(self) -> None:
        with self._changed:
            self._waited.clear()
            self._unanswered = 0

    def for_frame(self, header: Header, shape: tuple[int, int], wait_s: float = 0.0,
                  may_come: Callable[[], bool] = lambda: True) -> tuple[CameraInfo | None, str]:
        """The camera_info for a frame of `shape` (height, width) with `header`, and why there is none ("" where
        none has come, or one is given): the one of the frame's stamp (image_transport's pairing: the camera's own,
        or the source of a resized copy), else the newest describing an image of the frame's size (or none), else
        the newest where no frame of the size it describes has come (the source of a resized copy). One describing
        the size of earlier frames is another mode's, not this frame's: none then, with the reason. Where none
        fits, the first frame of each size since `restart_waits` waits up to `wait_s` for one while `may_come()`,
        until UNANSWERED_WAITS such waits have ended without it: image_transport's CameraPublisher sends each frame
        before its camera_info, so the activation's first frame and a camera's first frame in a new mode get
        theirs."""
        size = (shape[1], shape[0])
        with self._changed:
            info, withheld = self._fitting(header, size)
            if info is None and size not in self._waited:
                _keep_newest(self._waited, size, None)
                if wait_s > 0 and self._unanswered < UNANSWERED_WAITS and may_come():
                    self._changed.wait_for(lambda: self._fitting(header, size)[0] is not None, wait_s)
                    info, withheld = self._fitting(header, size)
                    self._unanswered += info is None
            _keep_newest(self._frame_sizes, size, None)
            return info, withheld

    def _fitting(self, header: Header, size: tuple[int, int]) -> tuple[CameraInfo | None, str]:
        """`for_frame`'s choice, under `_changed`."""
        stamp = (header.stamp.sec, header.stamp.nanosec)
        for info in reversed(self._recent if stamp != (0, 0) else ()):  # unstamped frames pair with nothing
            if (info.header.stamp.sec, info.header.stamp.nanosec) == stamp:
                return info, ""
        own = self._by_size.get(size) or self._by_size.get((0, 0))
        if own is not None or not self._recent:
            return own, ""
        newest = self._recent[-1]
        described = described_size(newest)
        if described not in self._frame_sizes:
            return newest, ""
        return None, (f"camera_info describes {described[0]}x{described[1]} images, as earlier frames were, but a "
                      f"frame is {size[0]}x{size[1]} and none of its stamp or size has come (a camera that changed "
                      "mode?)")


def _keep_newest(kept: dict, key: tuple[int, int], value: object) -> None:
    """`kept[key] = value` as its most recent entry, the least recent dropped past KEPT."""
    kept.pop(key, None)
    kept[key] = value
    if len(kept) > KEPT:
        del kept[next(iter(kept))]


def relayed_camera_info(info: CameraInfo, header: Header, shape: tuple[int, int]) -> tuple[CameraInfo, str]:
    """`info` for the outputs of a frame of `shape` (height, width), with `header`, and a note for the log when it
    was scaled to the frame ("" otherwise). Scaled: the fields `resized_camera_info` gives (the frame's width and
    height, no region of interest or binning, K and P as `resized_calibration` gives them), D and R as received
    (they hold for any pixel scale)."""
    relay = copy.copy(info)
    relay.header = header
    scaled = resized_camera_info(info, shape)
    if scaled is None:
        return relay, ""
    relay.roi = RegionOfInterest(**scaled.pop("roi"))
    for name, value in scaled.items():
        setattr(relay, name, value)
    width, height = described_size(info)
    note = (f"camera_info describes a {width}x{height} image but the frames are {shape[1]}x{shape[0]}: its "
            "intrinsics are scaled to the frames (a resized image, or a camera_info of another mode?), and "
            "~/camera_info carries them scaled")
    return relay, note
