"""32FC1 depth images as image_transport's `compressedDepth` transport carries them (sensor_msgs/CompressedImage).

The data is a 12-byte header (the format, INV_DEPTH, and the quantisation's a and b as little-endian floats) and a
16-bit PNG of the quantised inverse depth q = a / d + b, 0 where there is no depth (NaN, negative, or beyond
the far end). A reader takes d = a / (q - b) and NaN where q is 0, as image_transport's compressedDepth subscriber,
depthimage_to_laserscan's and rviz's do, whatever a and b are. image_transport's publisher fixes the far end at its
`depth_max` (10 m by default) and drops everything beyond, which would drop a road's depth; here a and b are chosen
per image so that its own nearest and farthest depth span the 16 bits: a depth d comes back within about d² / a.
The nearest end is held to at least NEAR_FLOOR of the farthest: a depth nearer than that, 0 included (DCP's
relative depth -ln t where a pixel shows no haze, t = 1, as in a rectified image's black border), goes out as the
nearest level and comes back as that small a depth, never as NaN.
"""
from __future__ import annotations

import struct

import cv2
import numpy as np

from dgdehaze_core.io.images import ImageError, png_options

HEADER = struct.Struct("<iff")
"""compressed_depth_image_transport's ConfigHeader: format (int32), depthParam[2] (float32 a, b)."""
INV_DEPTH = 0
"""ConfigHeader.format of a quantised inverse depth (the only one a 32FC1 image gets)."""
FORMAT = "32FC1; compressedDepth png"
LEVELS = 65535
NEAR_FLOOR = 1.0 / 1024
"""The least nearest end of an image's quantisation, as a fraction of its farthest depth. Without it one tiny depth
(DCP's -ln t of a t rounded just below 1: 6e-8) spread the levels so far that every other depth came back wrong by
up to 45 times itself; with it the farthest depth keeps a step of 1024 / 65534 of itself (within 0.8 %). An image
whose only depth is 0 comes back exactly (a = 0)."""


def compress_depth(depth: np.ndarray, png_level: int = 1) -> tuple[str, bytes]:
    """(`format`, data) of a CompressedImage carrying the (H, W) depth image `depth` (any unit; NaN where there is
    none) as image_transport's compressedDepth transport does; ImageError for another shape. PNG level 1: higher
    levels shrink a depth image by a few percent at several times the time."""
    if depth.ndim != 2 or depth.size == 0:
        raise ImageError(f"a compressedDepth image is (H, W) depth, got shape {depth.shape}")
    depth = depth.astype(np.float32, copy=False)
    valid = np.isfinite(depth) & (depth >= 0)
    values = depth[valid]
    positive = values[values > 0]
    if positive.size:
        far = float(positive.max())
        near = max(float(positive.min()), far * NEAR_FLOOR)
        far = max(far, near * 1.001) * 1.000001  # q = 1 just beyond the farthest depth
        a = np.float32((LEVELS - 1) / (1.0 / near - 1.0 / far))
        b = np.float32(1.0 - a / far)
    else:  # no depth, or only zeros: a = 0 gives each 0 / (q - b) = 0
        a, b = np.float32(0.0), np.float32(0.0)
    quantised = np.zeros(depth.shape, np.uint16)
    with np.errstate(divide="ignore", invalid="ignore"):  # a / 0, 0 / 0: levels np.where leaves out
        quantised[valid] = np.clip(np.where(values > 0, np.rint(a / values + b), LEVELS), 1, LEVELS)
    ok, png = cv2.imencode(".png", quantised, png_options(png_level))
    if not ok:
        raise ImageError(f"OpenCV could not encode a {depth.shape} depth image as PNG")
    return FORMAT, HEADER.pack(INV_DEPTH, float(a), float(b)) + png.tobytes()


def decompress_depth(fmt: str, data: bytes) -> np.ndarray:
    """The float32 depth image of a compressedDepth CompressedImage (`format`, `data`), NaN where it has none;
    ImageError when it is not one (another format, no header, a PNG that does not decode)."""
    if "compressedDepth" not in fmt:
        raise ImageError(f"not a compressedDepth image: format {fmt!r}")
    if len(data) <= HEADER.size:
        raise ImageError(f"a compressedDepth image of {len(data)} bytes holds no PNG after its header")
    kind, a, b = HEADER.unpack_from(data)
    if kind != INV_DEPTH:
        raise ImageError(f"compressedDepth format {kind} is not an inverse depth ({INV_DEPTH})")
    quantised = cv2.imdecode(np.frombuffer(data, np.uint8, offset=HEADER.size), cv2.IMREAD_UNCHANGED)
    if quantised is None or quantised.dtype != np.uint16 or quantised.ndim != 2:
        raise ImageError("the PNG of a compressedDepth image does not decode to 16-bit grey")
    depth = np.full(quantised.shape, np.nan, np.float32)
    held = quantised > 0
    depth[held] = np.float32(a) / (quantised[held].astype(np.float32) - np.float32(b))
    return depth
