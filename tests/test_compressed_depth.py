"""image_transport's compressedDepth codec for 32FC1 depth: the depth of a road to hundreds of metres comes back
within its quantisation, NaN stays NaN, and what is not such an image is refused with a reason."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.inference.pipeline import DarkChannelPipeline
from dgdehaze_core.io.compressed_depth import HEADER, NEAR_FLOOR, compress_depth, decompress_depth
from dgdehaze_core.io.images import ImageError, read_image


def road_depth(height: int = 120, width: int = 160) -> np.ndarray:
    """A flat road seen from 1.5 m (Z = f h / (v - horizon)), NaN above the horizon (sky) and in one box."""
    rows = np.arange(height, dtype=np.float32)[:, None] - height / 2 + 0.5
    depth = np.where(rows > 0, 500.0 * 1.5 / np.maximum(rows, 1e-6), np.nan) * np.ones((1, width), np.float32)
    depth[90:100, 40:60] = np.nan
    return depth.astype(np.float32)


def test_depth_to_hundreds_of_metres_comes_back_within_its_quantisation_and_nan_stays_nan() -> None:
    depth = road_depth()
    fmt, data = compress_depth(depth)
    assert fmt == "32FC1; compressedDepth png"
    _, a, _ = HEADER.unpack_from(data)
    back = decompress_depth(fmt, data)
    assert back.dtype == np.float32 and back.shape == depth.shape
    np.testing.assert_array_equal(np.isnan(back), np.isnan(depth))
    valid = np.isfinite(depth)
    assert np.nanmax(depth) > 700 and np.nanmin(depth) < 15
    error = np.abs(back[valid] - depth[valid])
    assert np.all(error <= depth[valid] ** 2 / a + 1e-4 * depth[valid])  # half a level each way, float rounding
    assert np.median(error / depth[valid]) < 1e-3
    assert len(data) < depth.nbytes / 4


def test_a_reader_that_follows_image_transport_s_codec_gets_the_depth_back(middlebury_scene) -> None:
    """What the node publishes is read by image_transport's compressedDepth subscriber, rviz and the like, not by
    `decompress_depth`: decoded here as compressed_depth_image_transport's codec does, independently of ours (its
    ConfigHeader as the C++ struct lays it out on a little-endian machine, the PNG by Pillow, d = a / (q - b),
    q = 0 no depth), the real depth of Middlebury's cones comes back within its quantisation."""
    import io
    import struct

    from PIL import Image

    _, depth = middlebury_scene
    fmt, data = compress_depth(depth)
    kind, a, b = struct.unpack("<iff", data[:12])
    assert kind == 0 and a > 0 and fmt.endswith("compressedDepth png")
    quantised = np.asarray(Image.open(io.BytesIO(data[12:])), np.float64)
    read = np.where(quantised > 0, a / np.where(quantised > 0, quantised - b, 1.0), np.nan)
    valid = np.isfinite(depth)
    np.testing.assert_array_equal(np.isnan(read), ~valid)
    assert np.all(np.abs(read[valid] - depth[valid]) <= depth[valid] ** 2 / a + 1e-4 * depth[valid])


def test_a_constant_an_empty_and_a_unitless_depth_image_round_trip() -> None:
    for depth in (np.full((30, 40), 7.5, np.float32), np.full((30, 40), np.nan, np.float32),
                  np.linspace(0.01, 3.0, 1200, dtype=np.float32).reshape(30, 40)):
        fmt, data = compress_depth(depth)
        _, a, _ = HEADER.unpack_from(data)
        back, valid = decompress_depth(fmt, data), np.isfinite(depth)
        np.testing.assert_array_equal(np.isnan(back), ~valid)
        assert np.all(np.abs(back[valid] - depth[valid]) <= depth[valid] ** 2 / a + 1e-4 * depth[valid])
    negative = depth.copy()
    negative[::7, ::3] = -1.0  # no depth, as image_transport's publisher takes it
    np.testing.assert_array_equal(np.isnan(decompress_depth(*compress_depth(negative))), negative < 0)


def test_a_dcp_depth_of_zero_or_nearly_zero_comes_back_that_near_and_leaves_the_others_within_their_quantisation(
        shared_data: Path) -> None:
    """DCP's relative depth is -ln t: exactly 0 where the dark channel is 0 (t = 1), as in a rectified camera's black
    border, and 6e-8 beside it (t rounded just below 1). compressedDepth turned each 0 into NaN (no depth), and the
    6e-8 spread the levels so far that every other depth of the image came back up to 45 times wrong."""
    frame = read_image(shared_data / "hazy-real" / "o-haze" / "08_outdoor_hazy.jpg")
    frame[:, :48] = 0  # the black border undistortion leaves
    depth = DarkChannelPipeline()(frame).depth
    far = float(depth.max())
    floor = far * NEAR_FLOOR
    nearest = depth < floor
    assert (depth == 0).sum() > frame.shape[0] * 24 and 0 < depth[depth > 0].min() < 1e-6
    fmt, data = compress_depth(depth)
    _, a, _ = HEADER.unpack_from(data)
    back = decompress_depth(fmt, data)
    assert not np.isnan(back).any(), "a depth of 0 is a depth"
    assert np.all((back[nearest] >= 0) & (back[nearest] <= floor * 1.001))
    rest, kept = depth[~nearest], back[~nearest]
    assert np.all(np.abs(kept - rest) <= rest ** 2 / a + 1e-4 * rest)
    assert np.max(np.abs(kept - rest) / rest) < 0.008
    only_zeros = np.zeros((4, 5), np.float32)
    only_zeros[0, 0] = np.nan
    np.testing.assert_array_equal(decompress_depth(*compress_depth(only_zeros)), only_zeros)


def test_what_is_no_compressed_depth_image_is_refused_with_the_reason() -> None:
    fmt, data = compress_depth(road_depth())
    with pytest.raises(ImageError, match="not a compressedDepth"):
        decompress_depth("bgr8; jpeg compressed bgr8", data)
    with pytest.raises(ImageError, match="holds no PNG"):
        decompress_depth(fmt, data[:HEADER.size])
    with pytest.raises(ImageError, match="does not decode"):
        decompress_depth(fmt, data[:HEADER.size] + b"not a png")
    with pytest.raises(ImageError, match=r"\(H, W\)"):
        compress_depth(np.zeros((4, 4, 3), np.float32))


def test_every_png_row_is_predicted_from_the_row_above_where_opencv_can_choose() -> None:
    """PNG filter Up (type 2) on each row (images.PNG_ROW_FILTER): on the node's depth faster and smaller than
    libpng's choice per row."""
    import struct
    import zlib

    import cv2

    if not hasattr(cv2, "IMWRITE_PNG_FILTER"):
        pytest.skip(f"OpenCV {cv2.__version__} cannot choose the PNG filter (added in 4.11); libpng chooses")
    depth = road_depth()
    _, data = compress_depth(depth)
    png = data[HEADER.size:]
    chunks, offset = [], 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset:offset + 8])
        chunks.append((kind, png[offset + 8:offset + 8 + length]))
        offset += 12 + length
    pixels = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    row_bytes = 1 + depth.shape[1] * 2  # a filter byte, then 16-bit grey samples
    assert len(pixels) == depth.shape[0] * row_bytes
    assert {pixels[r * row_bytes] for r in range(1, depth.shape[0])} == {2}  # libpng may filter the first row alike
    np.testing.assert_array_equal(np.isnan(decompress_depth("32FC1; compressedDepth png", data)), np.isnan(depth))
