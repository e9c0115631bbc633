"""sensor_msgs Image / CompressedImage <-> numpy for the node, over `dgdehaze_core.io.camera_frames`.

Camera frames are decoded by `camera_frames`, the decoder bag replay uses too, so the node and `dgdehaze bag-eval`
accept and refuse the same encodings; its errors are `ImageError`s (here also named `ImageConversionError`). This
module adds what only ROS needs: building Image messages (the dehazed frame in the input's encoding, depth in
32FC1) and reading any known encoding back, depth included.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dgdehaze_core.io import camera_frames
from dgdehaze_core.io.camera_frames import (ENCODINGS, bgr8_to_pixels, compress_frame, layout_of, output_encoding,
                                           pixels_to_bgr8)
from dgdehaze_core.io.compressed_depth import compress_depth
from dgdehaze_core.io.images import MAX_PIXELS, SAMPLE_BITS, ImageError, NarrowSamples

__all__ = ["ENCODINGS", "ImageConversionError", "array_to_image", "bgr8_to_image", "bgr8_to_pixels", "camera_frame",
           "compressed_depth_image", "compressed_image", "depth_to_image", "image_to_array", "output_encoding"]


ImageConversionError = ImageError
"""What a message that cannot be turned into an image (or an image into a message) raises, with the reason."""


def image_to_array(msg: Image, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The pixels of a raw Image in its own encoding and dtype, depth encodings included (for readers)."""
    return camera_frames.raw_pixels(msg, max_pixels=max_pixels, camera=False)


def camera_frame(msg: Image | CompressedImage, *, max_pixels: int = MAX_PIXELS, bits: int = SAMPLE_BITS,
                 samples: NarrowSamples | None = None) -> tuple[np.ndarray, str, np.ndarray | None]:
    """(uint8 BGR frame, encoding to publish its dehazed image in, the input's pixels or None for compressed);
    16-bit samples, raw or in a compressed PNG, have `bits` significant bits and are shown to `samples` (the
    node's test of a 12-bit camera read with 16 bits)."""
    if isinstance(msg, CompressedImage):
        return camera_frames.compressed_to_bgr8(msg, max_pixels=max_pixels, bits=bits, samples=samples), "bgr8", None
    pixels = camera_frames.raw_pixels(msg, max_pixels=max_pixels)
    return pixels_to_bgr8(pixels, msg.encoding, bits, samples), output_encoding(msg.encoding), pixels


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """An (H, W[, C]) array already in `encoding`'s layout as an Image with `header` (little-endian, packed)."""
    layout = layout_of(encoding)
    array = np.ascontiguousarray(array, dtype=layout.dtype.newbyteorder("<"))
    expected = array.shape[:2] + ((layout.channels,) if layout.channels > 1 else ())
    if array.shape != expected:
        raise ImageConversionError(f"array of shape {array.shape} does not fit encoding {encoding}")
    height, width = array.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                step=width * layout.channels * layout.dtype.itemsize)
    msg.data = array.tobytes()
    return msg


def bgr8_to_image(bgr: np.ndarray, encoding: str, header: Header, like: np.ndarray | None = None,
                  bits: int = SAMPLE_BITS) -> Image:
    """A uint8 BGR frame as an Image in `encoding` (the input's; 16-bit samples on `bits` significant bits), with
    `header` kept."""
    return array_to_image(bgr8_to_pixels(bgr, encoding, like, bits), encoding, header)


def compressed_image(bgr: np.ndarray, pixels: np.ndarray, encoding: str, header: Header, fmt: str = "jpeg",
                     jpeg_quality: int = 95, png_level: int = 3) -> CompressedImage:
    """The frame published raw as `pixels` in `encoding` (`bgr` its uint8 BGR view) as image_transport's compressed
    transport publishes it (`camera_frames.compress_frame`), with `header` kept."""
    fmt_string, data = compress_frame(bgr, pixels, encoding, fmt, jpeg_quality, png_level)
    return CompressedImage(header=header, format=fmt_string, data=data)


def compressed_depth_image(depth: np.ndarray, header: Header) -> CompressedImage:
    """Float depth (H, W), NaN where invalid, as image_transport's compressedDepth transport carries it
    (`compressed_depth.compress_depth`), with `header` kept."""
    fmt, data = compress_depth(depth)
    return CompressedImage(header=header, format=fmt, data=data)


def depth_to_image(depth: np.ndarray, header: Header) -> Image:
    """Float depth (H, W) as a REP-117 32FC1 Image: NaN where invalid, finite elsewhere."""
    if depth.ndim != 2:
        raise ImageConversionError(f"depth must be (H, W), got {depth.shape}")
    depth = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32, copy=False)
    return array_to_image(depth, "32FC1", header)
