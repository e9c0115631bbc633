#!/usr/bin/env python3
"""Build the sample hazy bags committed under data/demo/ (data/demo/README.md has their sources and licences).

`make demo` replays the daytime one: ../shared/data/video/dvd_rural_fog_day.mp4 (62 frames, 1280x720, a forward
car camera on a village road in dense daytime fog; Driving-Video Dehazing, Apache-2.0), scaled to 960x540. The
night clip (foggy_road_night.mp4, 640x360, frames 2475-2594, the stretch where the shipped YOLOv8n finds the most
vehicles) stays as the documented limit: at night the model is out of its domain.
Frames go in as sensor_msgs/CompressedImage JPEG (what a camera driver's image_transport records) with a
sensor_msgs/CameraInfo per frame, frame_id `camera_optical_frame`, header stamps at the video rate from a fixed
start time, so a bag is byte-for-byte reproducible:

    .venv/bin/python tools/make_demo_bag.py            # writes data/demo/rural_fog_day
    .venv/bin/python tools/make_demo_bag.py --video ../shared/data/video/foggy_road_night.mp4 \
        --out data/demo/foggy_road_night --start 2475 --frames 120 --width 640 --quality 90
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.bags.io import CAMERA_INFO_TYPE, COMPRESSED_IMAGE_TYPE  # noqa: E402
from dgdehaze_core.bags.writer import BagWriter  # noqa: E402
from dgdehaze_core.datasets.paths import REPO_DIR, shared_data_dir  # noqa: E402
from tools.tool_cli import one_line_errors  # noqa: E402

LOG = logging.getLogger("make_demo_bag")

IMAGE_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
FRAME_ID = "camera_optical_frame"
START_NS = 1_700_000_000_000_000_000
"""Header stamp of the first frame (2023-11-14T22:13:20Z): fixed so that rebuilding gives the same bag."""
HORIZONTAL_FOV_DEG = 60.0
"""A plausible road-camera lens; the clip has no calibration, so K is built from this field of view."""


def camera_info(writer: BagWriter, header: object, width: int, height: int) -> object:
    focal = (width / 2.0) / np.tan(np.radians(HORIZONTAL_FOV_DEG) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    roi = writer.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                            do_rectify=False)
    return writer.types[CAMERA_INFO_TYPE](
        header=header, height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5, np.float64),
        k=np.array([focal, 0, cx, 0, focal, cy, 0, 0, 1], np.float64),
        r=np.eye(3, dtype=np.float64).ravel(),
        p=np.array([focal, 0, cx, 0, 0, focal, cy, 0, 0, 0, 1, 0], np.float64),
        binning_x=0, binning_y=0, roi=roi)


def build(video: Path, out: Path, start: int, count: int, quality: int, storage: str, width: int = 0) -> int:
    """Write up to `count` (at least 1) frames of `video` from frame `start` (0 or more) as the bag folder `out`,
    scaled to `width` (0: as recorded), JPEG `quality` 0-100, and return how many were written. FileExistsError for
    an `out` that is no bag, ValueError when the video has no frame at `start`."""
    if os.path.lexists(out) and not (out.is_dir() and (out / "metadata.yaml").is_file()):
        raise FileExistsError(f"{out} exists and is not a bag folder (no metadata.yaml): give a new folder or a bag "
                              "to replace")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise FileNotFoundError(f"cannot open video {video}")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    written = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # The bag is built under its final name inside a hidden sibling folder (rosbags names the storage file
        # after the bag folder), then renamed into place: an interrupted build leaves no half bag behind.
        tmp = staging / out.name
        with BagWriter(tmp, storage=storage) as writer:
            for index in range(count):
                ok, frame = capture.read()
                if not ok:
                    break
                if width and frame.shape[1] != width:
                    height = round(frame.shape[0] * width / frame.shape[1])
                    frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                stamp = START_NS + round(index * 1e9 / fps)
                header = writer.header(stamp, FRAME_ID)
                ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
                if not ok:
                    raise RuntimeError(f"JPEG encoding failed for frame {start + index}")
                image = writer.types[COMPRESSED_IMAGE_TYPE](header=header, format="jpeg",
                                                             data=np.frombuffer(jpeg.tobytes(), np.uint8))
                info = camera_info(writer, header, frame.shape[1], frame.shape[0])
                writer.write(CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE, stamp, info)
                writer.write(IMAGE_TOPIC, COMPRESSED_IMAGE_TYPE, stamp, image)
                written += 1
        if written == 0:
            frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
            raise ValueError(f"{video} has no frames from index {start} (it holds {frames}): give a smaller --start")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        capture.release()
    return written


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Build the bag --out and log how many frames it holds."""
    data = shared_data_dir()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path,
                        default=data / "video" / "dvd_rural_fog_day.mp4" if data else None)
    parser.add_argument("--out", type=Path, default=REPO_DIR / "data" / "demo" / "rural_fog_day")
    parser.add_argument("--start", type=int, default=0, help="first video frame")
    parser.add_argument("--frames", type=int, default=62, help="number of frames")
    parser.add_argument("--width", type=int, default=960, help="scale frames to this width (0: as recorded)")
    parser.add_argument("--quality", type=int, default=88, help="JPEG quality")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    args = parser.parse_args(argv)
    for flag, value, low, high in (("--frames", args.frames, 1, None), ("--start", args.start, 0, None),
                                   ("--width", args.width, 0, None), ("--quality", args.quality, 0, 100)):
        if value < low or (high is not None and value > high):
            raise ValueError(f"{flag} {value}: it must be " + (f"at least {low}" if high is None
                                                                 else f"between {low} and {high}"))
    if args.video is None:
        parser.error("../shared/data is absent; pass --video")
    count = build(args.video, args.out, args.start, args.frames, args.quality, args.storage, args.width)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    LOG.info("wrote %d frames to %s (%.1f MB)", count, args.out, size / 1e6)


if __name__ == "__main__":
    sys.exit(main())
