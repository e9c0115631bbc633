"""Benchmark rows for the node's fog measurement: what `~/visibility` and `~/depth` cost a frame beside the dehazing.

The node with a camera_info and a mounting measures every frame's fog (`FrameChain.measure_fog`): on the dark
undersides of the road users its detector last found, else on the road. Two rows per frame size, each timing that
call alone on one hazy frame (a KITTI road photo in synthesized haze, `timing.hazy_test_frame`: the first of its
photos, by seed, where the node's default detector finds a road user that measures the fog; `frame_seed` says which)
with the transmission of the chain's network:
- `fog/<network>/road@WxH`: no detector, so the road measures the fog (the node's `detection_enabled: false`, and
  every frame before the first detection);
- `fog/<network>/road-users@WxH`: the boxes the node's default detector finds in the frame, as the node holds
  them from its previous frame; `objects` is how many of them measured the fog (0: none of the photos tried shows
  a road user standing on the road in view, or the shared data is absent, so the row timed the road on the last).

Both rows carry `ratio_to_dcp` (against DCP timed right before the row, as every bench row) and `pct_of_frame`:
the measurement's share of the network pipeline's frame, timed in the same run. The camera is KITTI's colour camera
(its focal lengths and principal point scaled to the frame, 1.65 m above a flat road, no pitch): the frame is a
KITTI photo stretched to the frame size, so the rows' geometry is the photo's.
"""
from __future__ import annotations

import itertools
import logging

from dgdehaze_core.benchmarks.networks import (BenchSettings, DcpBeside, Row, against_dcp, chain_detector, chain_device,
                                               timed_network)
from dgdehaze_core.benchmarks.timing import hazy_test_frame
from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.evaluation.visibility_eval import KITTI_CAMERA_HEIGHT, KITTI_PITCH
from dgdehaze_core.inference.frame_chain import DehazedFrame, FrameChain
from dgdehaze_core.inference.pipeline import NetworkPipeline, pipeline_from_model
from dgdehaze_core.physics.visibility import Intrinsics, Mounting, VisibilityEstimator

LOG = logging.getLogger(__name__)

KITTI_PHOTO = (1242, 375)
"""Width and height of the KITTI road photos the bench's hazy frame is made from."""
KITTI_CAMERA = Intrinsics(721.5377, 721.5377, 609.5593, 172.854)
"""KITTI's left colour camera (P2 of its road benchmark's calibration) at KITTI_PHOTO's size."""
PHOTOS_TRIED = 20
"""How many of the shared data's KITTI photos (`hazy_test_frame`'s seeds) are tried for one with a road user."""
FRAME_INTERVAL_S = 1.0 / 30.0
"""The stamps the measured frames carry apart (the fog's smoothing follows them)."""


def bench_camera(width: int, height: int) -> Intrinsics:
    """KITTI_CAMERA scaled to a frame of `width` x `height` (the bench frame stretches the photo to that size)."""
    sx, sy = width / KITTI_PHOTO[0], height / KITTI_PHOTO[1]
    return Intrinsics(KITTI_CAMERA.fx * sx, KITTI_CAMERA.fy * sy, KITTI_CAMERA.cx * sx, KITTI_CAMERA.cy * sy)


def _fog_chain(pipeline: NetworkPipeline, detector: Detector | None) -> FrameChain:
    return FrameChain.build(pipeline, detector, fog=VisibilityEstimator(Mounting(KITTI_CAMERA_HEIGHT, KITTI_PITCH)))


def _objects_measured(chain: FrameChain, dehazed: DehazedFrame, intrinsics: Intrinsics) -> int:
    """Detect on `dehazed` (the boxes the next frame's fog reads, as the node's previous frame's) and return how
    many road users measure its fog."""
    chain.detect(dehazed)
    reading = chain.measure_fog(dehazed, intrinsics, 0.0)
    return reading.measurement.pixels if reading is not None and reading.measurement.source == "objects" else 0


def bench_fog(config: str, backend: str, device: str, size: tuple[int, int],
              settings: BenchSettings) -> dict[str, Row]:
    """The two fog rows (module docstring) at `size` (width, height), the network `config` on `backend`."""
    pipeline = pipeline_from_model(timed_network(config), backend=backend, device=device, threads=settings.threads)
    width, height = size
    intrinsics = bench_camera(width, height)
    users = _fog_chain(pipeline, chain_detector("auto", 640, chain_device(backend, device), settings.threads))
    for seed in range(PHOTOS_TRIED):
        frame = hazy_test_frame(width, height, seed)
        dehazed = users.dehaze(frame)
        objects = _objects_measured(users, dehazed, intrinsics)
        if objects:
            break
    if not objects:
        LOG.warning("none of %d bench frames shows a road user standing on the road in view: the road-users row at "
                    "%dx%d times the road", PHOTOS_TRIED, width, height)
    label = f"{config}/{pipeline.backend}"
    beside = DcpBeside(settings)
    frame_ms = settings.measure(lambda: users.dehaze(frame))["latency_ms_median"]
    rows: dict[str, Row] = {}
    for name, chain in (("road", _fog_chain(pipeline, None)), ("road-users", users)):
        frames = itertools.count(1)
        dcp_ms = beside.ms(frame)
        timed = settings.measure(lambda: chain.measure_fog(dehazed, intrinsics, next(frames) * FRAME_INTERVAL_S))
        rows[f"fog/{label}/{name}@{width}x{height}"] = {
            **timed, **against_dcp(timed, dcp_ms), "objects": float(objects if chain is users else 0),
            "pct_of_frame": 100.0 * timed["latency_ms_median"] / frame_ms, "frame_seed": float(seed)}
    return rows
