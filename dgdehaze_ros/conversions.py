"""sensor_msgs Image / CompressedImage <-> numpy, validated before any pixel is touched.

Every message is checked against its own header (encoding, width, height, step, byte order, data length) so that a
wrong step, truncated data, a 0x0 image or an oversized one raises `ImageConversionError` with the reason instead of
crashing or reading garbage. The pipeline works on uint8 BGR; `image_to_bgr8` / `bgr8_to_image` convert to it and
back to the input's encoding, so `~/image_dehazed` keeps the encoding of `image`.
Where cv_bridge is importable (a real ROS install) it decodes validated raw images; elsewhere numpy does it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dgdehaze_core.image_io import MAX_PIXELS

try:
    from cv_bridge import CvBridge
except ImportError:  # no ROS install: the numpy path below does the same work
    CvBridge = None


class ImageConversionError(ValueError):
    """A message that cannot be turned into an image (or an image into a message), with the reason."""


@dataclass(frozen=True)
class EncodingLayout:
    """How one ROS encoding lays out a pixel: numpy dtype, channels, and whether it is YUV 4:2:2."""

    dtype: np.dtype
    channels: int
    yuv_order: int | None = None
    """OpenCV's COLOR_YUV2BGR_* code for packed 4:2:2 encodings, else None."""


ENCODINGS: dict[str, EncodingLayout] = {
    "bgr8": EncodingLayout(np.dtype(np.uint8), 3),
    "rgb8": EncodingLayout(np.dtype(np.uint8), 3),
    "bgra8": EncodingLayout(np.dtype(np.uint8), 4),
    "rgba8": EncodingLayout(np.dtype(np.uint8), 4),
    "mono8": EncodingLayout(np.dtype(np.uint8), 1),
    "8UC1": EncodingLayout(np.dtype(np.uint8), 1),
    "8UC3": EncodingLayout(np.dtype(np.uint8), 3),
    "mono16": EncodingLayout(np.dtype(np.uint16), 1),
    "16UC1": EncodingLayout(np.dtype(np.uint16), 1),
    "32FC1": EncodingLayout(np.dtype(np.float32), 1),
    "uyvy": EncodingLayout(np.dtype(np.uint8), 2, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422": EncodingLayout(np.dtype(np.uint8), 2, cv2.COLOR_YUV2BGR_UYVY),
    "yuyv": EncodingLayout(np.dtype(np.uint8), 2, cv2.COLOR_YUV2BGR_YUYV),
    "yuv422_yuy2": EncodingLayout(np.dtype(np.uint8), 2, cv2.COLOR_YUV2BGR_YUYV),
}
"""Raw encodings the node accepts (sensor_msgs/image_encodings names). 32FC1 intensity is taken as [0, 1]."""

BT601_BGR_TO_YUV = np.array([[24.966, 128.553, 65.481], [112.0, -74.203, -37.797], [-18.214, -93.786, 112.0]],
                            np.float32)
"""Limited-range BT.601 (the range OpenCV's YUV 4:2:2 decoders expect), rows Y, U, V over B, G, R columns."""

COMPRESSED_DECODABLE = ("jpeg", "jpg", "png", "bmp", "tiff", "webp")


def _layout(encoding: str) -> EncodingLayout:
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise ImageConversionError(f"unsupported encoding {encoding!r}; supported: {', '.join(ENCODINGS)}")
    return layout


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageConversionError(f"image of {width}x{height} exceeds the limit of {max_pixels} pixels")


def image_to_array(msg: Image, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The pixels of a raw Image as an (H, W) or (H, W, C) array in the message's own encoding and dtype.

    The array is a view of the message's buffer where the layout allows (no copy); YUV 4:2:2 comes back as
    (H, W, 2) bytes. Raises ImageConversionError for unsupported encodings and inconsistent headers.
    """
    layout = _layout(msg.encoding)
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_pixels)
    if layout.yuv_order is not None and width % 2:
        raise ImageConversionError(f"{msg.encoding} needs an even width, got {width}")
    row_bytes = width * layout.channels * layout.dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is shorter than one row of {width} {msg.encoding} pixels ({row_bytes} bytes)")
    if step % layout.dtype.itemsize:
        raise ImageConversionError(f"step {step} is not a multiple of the {layout.dtype.itemsize}-byte sample")
    needed = step * (height - 1) + row_bytes
    size = len(msg.data)
    if size < needed:
        raise ImageConversionError(f"truncated data: {size} bytes for {width}x{height} {msg.encoding} "
                                   f"with step {step} (needs {step * height})")
    if CvBridge is not None and layout.yuv_order is None:
        return CvBridge().imgmsg_to_cv2(msg, desired_encoding="passthrough")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    dtype = layout.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    shape: tuple[int, ...] = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    strides: tuple[int, ...] = (step, layout.channels * dtype.itemsize, dtype.itemsize)[:len(shape)]
    array = np.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides)
    if dtype.byteorder not in ("=", "|") and (dtype.byteorder == ">") != (sys.byteorder == "big"):
        array = array.astype(layout.dtype)
    return array


def array_to_bgr8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Pixels in `encoding` (as `image_to_array` returns them) to a contiguous uint8 BGR frame."""
    layout = _layout(encoding)
    if layout.yuv_order is not None:
        return cv2.cvtColor(np.ascontiguousarray(array), layout.yuv_order)
    if layout.dtype == np.uint16:
        array = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif layout.dtype == np.float32:
        if not np.isfinite(array).all():
            raise ImageConversionError(f"{encoding} image contains NaN or infinite values")
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    if layout.channels == 1:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    code = {"rgb8": cv2.COLOR_RGB2BGR, "bgra8": cv2.COLOR_BGRA2BGR, "rgba8": cv2.COLOR_RGBA2BGR}.get(encoding)
    return cv2.cvtColor(array, code) if code is not None else np.ascontiguousarray(array)


def bgr8_to_array(bgr: np.ndarray, encoding: str, like: np.ndarray | None = None) -> np.ndarray:
    """A uint8 BGR frame in `encoding`'s layout. `like`, the input frame in that encoding, gives the alpha
    channel of 4-channel encodings (kept from the input); without it alpha is opaque."""
    layout = _layout(encoding)
    if layout.yuv_order is not None:
        yuv = np.clip(bgr.astype(np.float32) @ BT601_BGR_TO_YUV.T / 255.0 + (16.0, 128.0, 128.0), 0, 255)
        y, u, v = (np.rint(yuv[:, :, i]).astype(np.uint8) for i in range(3))
        chroma = np.empty_like(y)
        chroma[:, 0::2] = ((u[:, 0::2].astype(np.uint16) + u[:, 1::2] + 1) // 2).astype(np.uint8)
        chroma[:, 1::2] = ((v[:, 0::2].astype(np.uint16) + v[:, 1::2] + 1) // 2).astype(np.uint8)
        luma_first = layout.yuv_order == cv2.COLOR_YUV2BGR_YUYV
        return np.ascontiguousarray(np.stack((y, chroma) if luma_first else (chroma, y), axis=2))
    if layout.channels == 1:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        if layout.dtype == np.uint16:
            return gray.astype(np.uint16) * 257
        if layout.dtype == np.float32:
            return gray.astype(np.float32) / 255.0
        return gray
    if layout.channels == 4:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA if encoding == "bgra8" else cv2.COLOR_BGR2RGBA)
        if like is not None and like.shape[:2] == bgr.shape[:2]:
            out[:, :, 3] = like[:, :, 3]
        return out
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if encoding == "rgb8" else np.ascontiguousarray(bgr)


def image_to_bgr8(msg: Image, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A raw Image message as a uint8 BGR frame (validated; see `image_to_array`)."""
    return array_to_bgr8(image_to_array(msg, max_pixels=max_pixels), msg.encoding)


def array_to_image(array: np.ndarray, encoding: str, header: Header) -> Image:
    """An (H, W[, C]) array already in `encoding`'s layout as an Image with `header` (little-endian, packed)."""
    layout = _layout(encoding)
    array = np.ascontiguousarray(array, dtype=layout.dtype.newbyteorder("<"))
    expected = array.shape[:2] + ((layout.channels,) if layout.channels > 1 else ())
    if array.shape != expected:
        raise ImageConversionError(f"array of shape {array.shape} does not fit encoding {encoding}")
    height, width = array.shape[:2]
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                step=width * layout.channels * layout.dtype.itemsize)
    msg.data = array.tobytes()
    return msg


def bgr8_to_image(bgr: np.ndarray, encoding: str, header: Header, like: np.ndarray | None = None) -> Image:
    """A uint8 BGR frame as an Image in `encoding` (the input's), with `header` kept."""
    return array_to_image(bgr8_to_array(bgr, encoding, like), encoding, header)


def depth_to_image(depth: np.ndarray, header: Header) -> Image:
    """Float depth (H, W) as a REP-117 32FC1 Image: NaN where invalid, finite elsewhere."""
    if depth.ndim != 2:
        raise ImageConversionError(f"depth must be (H, W), got {depth.shape}")
    depth = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32, copy=False)
    return array_to_image(depth, "32FC1", header)


def compressed_to_bgr8(msg: CompressedImage, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A CompressedImage (JPEG, PNG, ...) as a uint8 BGR frame; the size is checked before decoding."""
    fmt = msg.format.lower()
    if fmt and not any(name in fmt for name in COMPRESSED_DECODABLE):
        raise ImageConversionError(f"unsupported compressed format {msg.format!r}")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("empty compressed image")
    ok, header_image = _peek_size(data)
    if ok:
        _check_size(header_image[0], header_image[1], max_pixels)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageConversionError(f"cannot decode {len(data)} bytes as {msg.format or 'an image'}")
    _check_size(image.shape[1], image.shape[0], max_pixels)
    return image


def _peek_size(data: np.ndarray) -> tuple[bool, tuple[int, int]]:
    """(width, height) from a PNG or JPEG header without decoding, so huge images are refused before allocation."""
    raw = data.tobytes()[:65536]
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24:
        return True, (int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big"))
    if raw[:2] == b"\xff\xd8":
        index = 2
        while index + 9 < len(raw):
            if raw[index] != 0xFF:
                break
            marker, length = raw[index + 1], int.from_bytes(raw[index + 2:index + 4], "big")
            if marker in (0xC0, 0xC1, 0xC2):
                return True, (int.from_bytes(raw[index + 7:index + 9], "big"),
                              int.from_bytes(raw[index + 5:index + 7], "big"))
            index += 2 + length
    return False, (0, 0)
