"""Camera frames from sensor_msgs/Image and CompressedImage fields: the one decoder of the node and of bag replay.

Both take a message by its fields (`encoding`, `width`, `height`, `step`, `is_bigendian`, `data`; `format` and
`data` for compressed), so an rclpy message and a rosbags one decode alike. Every message is checked against its
own header before a pixel is touched: a wrong step, truncated data, a 0x0 or oversized image, an unknown encoding
or a depth encoding (32FC1 and 64FC1 are depth, REP-118, never a camera frame) raises ImageError with the reason.
The pipeline works on uint8 BGR; `pixels_to_bgr8` converts to it and `bgr8_to_pixels` back to the input's
encoding, so the dehazed image keeps the camera's encoding (Bayer mosaics come back as bgr8: see `output_encoding`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dgdehaze_core.io.images import (MAX_PIXELS, SAMPLE_BITS, ImageError, NarrowSamples, check_size, declared_size,
                                     png_options, to_bgr8, uint8_to_uint16, uint16_to_uint8)


@dataclass(frozen=True)
class EncodingLayout:
    """How one ROS encoding lays out a pixel: numpy dtype, channels, and the OpenCV code that makes it BGR."""

    dtype: np.dtype
    channels: int
    to_bgr: int | None = None
    """cv2.COLOR_* code from this layout to BGR (YUV 4:2:2, Bayer, RGB, alpha); None: grey or already BGR."""
    camera: bool = True
    """False for depth encodings, which a camera frame never has."""


U8, U16, F32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)
ENCODINGS: dict[str, EncodingLayout] = {
    "bgr8": EncodingLayout(U8, 3), "8UC3": EncodingLayout(U8, 3),
    "rgb8": EncodingLayout(U8, 3, cv2.COLOR_RGB2BGR),
    "bgra8": EncodingLayout(U8, 4, cv2.COLOR_BGRA2BGR), "8UC4": EncodingLayout(U8, 4, cv2.COLOR_BGRA2BGR),
    "rgba8": EncodingLayout(U8, 4, cv2.COLOR_RGBA2BGR),
    "bgr16": EncodingLayout(U16, 3), "rgb16": EncodingLayout(U16, 3, cv2.COLOR_RGB2BGR),
    "bgra16": EncodingLayout(U16, 4, cv2.COLOR_BGRA2BGR), "rgba16": EncodingLayout(U16, 4, cv2.COLOR_RGBA2BGR),
    "mono8": EncodingLayout(U8, 1), "8UC1": EncodingLayout(U8, 1),
    "mono16": EncodingLayout(U16, 1), "16UC1": EncodingLayout(U16, 1),
    "uyvy": EncodingLayout(U8, 2, cv2.COLOR_YUV2BGR_UYVY), "yuv422": EncodingLayout(U8, 2, cv2.COLOR_YUV2BGR_UYVY),
    "yuyv": EncodingLayout(U8, 2, cv2.COLOR_YUV2BGR_YUYV),
    "yuv422_yuy2": EncodingLayout(U8, 2, cv2.COLOR_YUV2BGR_YUYV),
    # OpenCV names a Bayer pattern by the second row's first two pixels: ROS rggb is OpenCV's BG (as cv_bridge)
    "bayer_rggb8": EncodingLayout(U8, 1, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr8": EncodingLayout(U8, 1, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg8": EncodingLayout(U8, 1, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg8": EncodingLayout(U8, 1, cv2.COLOR_BayerGB2BGR),
    "bayer_rggb16": EncodingLayout(U16, 1, cv2.COLOR_BayerBG2BGR),
    "bayer_bggr16": EncodingLayout(U16, 1, cv2.COLOR_BayerRG2BGR),
    "bayer_gbrg16": EncodingLayout(U16, 1, cv2.COLOR_BayerGR2BGR),
    "bayer_grbg16": EncodingLayout(U16, 1, cv2.COLOR_BayerGB2BGR),
    "32FC1": EncodingLayout(F32, 1, camera=False), "64FC1": EncodingLayout(np.dtype(np.float64), 1, camera=False),
}
"""sensor_msgs/image_encodings names this package reads (and, but for Bayer, writes)."""
CAMERA_ENCODINGS = tuple(name for name, layout in ENCODINGS.items() if layout.camera)

BT601_BGR_TO_YUV = np.array([[24.966, 128.553, 65.481], [112.0, -74.203, -37.797], [-18.214, -93.786, 112.0]],
                            np.float32)
"""Limited-range BT.601 (the range OpenCV's YUV 4:2:2 decoders expect), rows Y, U, V over B, G, R columns."""
COMPRESSED_DECODABLE = ("jpeg", "jpg", "png", "bmp", "tiff", "webp")


QUOTED_CHARACTERS = 64
"""The most characters of a message's own text (an encoding, a format) an error quotes: the node logs its errors
and sends them on /diagnostics, where a malformed message's 100 KB encoding would go whole."""


def quoted(text: str) -> str:
    """`text` as repr quotes it, cut to QUOTED_CHARACTERS with its length said where longer."""
    if len(text) <= QUOTED_CHARACTERS:
        return repr(text)
    return f"{text[:QUOTED_CHARACTERS]!r}... ({len(text)} characters)"


def layout_of(encoding: str) -> EncodingLayout:
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise ImageError(f"unsupported encoding {quoted(encoding)}; supported: {', '.join(CAMERA_ENCODINGS)}")
    return layout


def output_encoding(encoding: str) -> str:
    """The encoding a dehazed frame is published in: the input's, except bgr8 for a Bayer mosaic."""
    return "bgr8" if encoding.startswith("bayer_") else encoding


def raw_pixels(msg: Any, *, max_pixels: int = MAX_PIXELS, camera: bool = True) -> np.ndarray:
    """The pixels of a raw Image as an (H, W) or (H, W, C) array in the message's own encoding and dtype (a view of
    its buffer where the layout allows); YUV 4:2:2 comes back as (H, W, 2) bytes. With `camera`, a depth encoding
    is refused."""
    layout = layout_of(msg.encoding)
    if camera and not layout.camera:
        raise ImageError(f"{msg.encoding} is a depth encoding (REP-118), not a camera frame")
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    check_size(width, height, max_pixels)
    if layout.channels == 2 and width % 2:
        raise ImageError(f"{msg.encoding} needs an even width, got {width}")
    row_bytes = width * layout.channels * layout.dtype.itemsize
    if step < row_bytes:
        raise ImageError(f"step {step} is shorter than one row of {width} {msg.encoding} pixels ({row_bytes} bytes)")
    if step % layout.dtype.itemsize:
        raise ImageError(f"step {step} is not a multiple of the {layout.dtype.itemsize}-byte sample")
    buffer = np.frombuffer(msg.data, dtype=np.uint8) if isinstance(msg.data, (bytes, bytearray, memoryview)) \
        else np.asarray(msg.data, np.uint8)
    needed = step * (height - 1) + row_bytes  # the last row's padding may be left out
    if buffer.size < needed:
        raise ImageError(f"truncated data: {buffer.size} bytes for {width}x{height} {msg.encoding} "
                         f"with step {step} (needs {needed})")
    dtype = layout.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    shape: tuple[int, ...] = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    strides: tuple[int, ...] = (step, layout.channels * dtype.itemsize, dtype.itemsize)[:len(shape)]
    array = np.ndarray(shape, dtype=dtype, buffer=buffer, strides=strides)
    if dtype.byteorder not in ("=", "|") and (dtype.byteorder == ">") != (sys.byteorder == "big"):
        array = array.astype(layout.dtype)
    return array


def pixels_to_bgr8(array: np.ndarray, encoding: str, bits: int = SAMPLE_BITS,
                   samples: NarrowSamples | None = None) -> np.ndarray:
    """Pixels in `encoding` (as `raw_pixels` returns them) to a contiguous uint8 BGR frame; 16-bit samples have
    `bits` significant bits (12 for a 12-bit sensor's 0..4095). The samples are shown to `samples`, the stream's
    test of 16-bit frames that look like a 12-bit camera's read with 16 bits."""
    layout = layout_of(encoding)
    if samples is not None:
        samples.see(array, bits)
    if layout.dtype == np.uint16:
        array = uint16_to_uint8(array, bits)
    array = np.ascontiguousarray(array)
    if layout.to_bgr is not None:
        return cv2.cvtColor(array, layout.to_bgr)
    if layout.channels == 1:
        return cv2.cvtColor(array, cv2.COLOR_GRAY2BGR)
    return array


def bgr8_to_pixels(bgr: np.ndarray, encoding: str, like: np.ndarray | None = None,
                   bits: int = SAMPLE_BITS) -> np.ndarray:
    """A uint8 BGR frame in `encoding`'s layout (a camera's, not Bayer: see `output_encoding`), 16-bit samples on the
    range of `bits` significant bits, as `pixels_to_bgr8` read them. `like`, the input frame in that encoding, gives
    the alpha channel of 4-channel encodings (kept from the input); without it, opaque. ImageError for a Bayer or
    depth encoding."""
    layout = layout_of(encoding)
    if encoding.startswith("bayer_"):
        raise ImageError(f"frames are not written as {encoding}: publish {output_encoding(encoding)}")
    if not layout.camera:
        raise ImageError(f"{encoding} is a depth encoding (REP-118), not a camera frame's")
    if layout.channels == 2:
        yuv = np.clip(bgr.astype(np.float32) @ BT601_BGR_TO_YUV.T / 255.0 + (16.0, 128.0, 128.0), 0, 255)
        y, u, v = (np.rint(yuv[:, :, i]).astype(np.uint8) for i in range(3))
        chroma = np.empty_like(y)
        chroma[:, 0::2] = ((u[:, 0::2].astype(np.uint16) + u[:, 1::2] + 1) // 2).astype(np.uint8)
        chroma[:, 1::2] = ((v[:, 0::2].astype(np.uint16) + v[:, 1::2] + 1) // 2).astype(np.uint8)
        luma_first = layout.to_bgr == cv2.COLOR_YUV2BGR_YUYV
        return np.ascontiguousarray(np.stack((y, chroma) if luma_first else (chroma, y), axis=2))
    if layout.channels == 1:
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        return uint8_to_uint16(gray, bits) if layout.dtype == np.uint16 else gray
    if layout.channels == 4:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA if layout.to_bgr == cv2.COLOR_RGBA2BGR else cv2.COLOR_BGR2BGRA)
    else:
        out = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if layout.to_bgr == cv2.COLOR_RGB2BGR else np.ascontiguousarray(bgr)
    if layout.dtype == np.uint16:
        out = uint8_to_uint16(out, bits)
    if layout.channels == 4 and like is not None and like.shape[:2] == bgr.shape[:2]:
        out[:, :, 3] = like[:, :, 3]
    return out


def raw_to_bgr8(msg: Any, *, max_pixels: int = MAX_PIXELS, bits: int = SAMPLE_BITS,
                samples: NarrowSamples | None = None) -> np.ndarray:
    """A raw Image message (rclpy or rosbags) as a uint8 BGR frame (`bits`, `samples`: as `pixels_to_bgr8`)."""
    return pixels_to_bgr8(raw_pixels(msg, max_pixels=max_pixels), msg.encoding, bits, samples)


def compressed_to_bgr8(msg: Any, *, max_pixels: int = MAX_PIXELS, bits: int = SAMPLE_BITS,
                       samples: NarrowSamples | None = None) -> np.ndarray:
    """A CompressedImage (JPEG, PNG, ...; rclpy or rosbags) as a uint8 BGR frame; the size its header declares is
    checked before decoding, so a huge image is refused before it is allocated, and one whose header does not
    read is refused undecoded. It is decoded as stored, as image_transport's compressed subscriber does: a 16-bit
    PNG (image_transport's `mono16; png compressed`, `bgr16; ...`) keeps its samples, read with `bits` significant
    bits and shown to `samples` as `pixels_to_bgr8` reads a raw frame; grey and BGRA become BGR; an EXIF
    orientation is not applied (a camera frame is no photo file: `images.read_image` turns a file upright). A
    compressedDepth image is refused as the depth image it is."""
    fmt = str(msg.format).lower()
    if "compresseddepth" in fmt:  # its PNG follows a header of its own: it read as a broken image
        raise ImageError(f"{quoted(str(msg.format))} is a depth image (image_transport's compressedDepth), not a "
                         "camera frame")
    if fmt and not any(name in fmt for name in COMPRESSED_DECODABLE):
        raise ImageError(f"unsupported compressed format {quoted(str(msg.format))}")
    raw = bytes(msg.data)
    if not raw:
        raise ImageError("empty compressed image")
    check_size(*declared_size(raw), max_pixels)
    data = np.frombuffer(raw, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # as image_transport: no EXIF orientation
    if image is None:
        named = quoted(str(msg.format)) if msg.format else "no format"
        raise ImageError(f"compressed image ({named}, {data.size} bytes) does not decode")
    if samples is not None:
        samples.see(image, bits)
    if image.dtype == np.uint16:
        image = uint16_to_uint8(image, bits)
    return to_bgr8(image, max_pixels=max_pixels)


COMPRESSION_FORMATS = ("jpeg", "png")
"""What `compress_frame` writes: image_transport's compressed transport's `format` parameter values."""
COLOUR_ENCODINGS = ("bgr8", "rgb8", "bgra8", "rgba8", "bgr16", "rgb16", "bgra16", "rgba16")
"""Encodings image_transport's compressed subscriber turns a compressed BGR image back into."""


def compress_frame(bgr: np.ndarray, pixels: np.ndarray, encoding: str, fmt: str = "jpeg", jpeg_quality: int = 95,
                   png_level: int = 3) -> tuple[str, bytes]:
    """(`format`, data) of a sensor_msgs/CompressedImage as image_transport's compressed publisher writes it, for a
    frame published raw as `pixels` in `encoding` (`bgr` its uint8 BGR view): `"<encoding>; jpeg compressed bgr8"`
    for colour, `"mono8; jpeg compressed mono8"` for grey. A 16-bit grey frame keeps its samples as a 16-bit PNG
    (`"mono16; png compressed mono16"`); as a JPEG it is its 8-bit view (`mono8`); a 16-bit colour frame alike
    (`"rgb16; png compressed bgr16"`, `"rgb16; jpeg compressed bgr8"`). A colour encoding the subscriber
    cannot restore from BGR (YUV 4:2:2, 8UC3, 8UC4) is compressed as the bgr8 frame it is decoded to. An alpha
    channel is dropped, as image_transport drops it. ImageError for a format other than jpeg or png."""
    if fmt not in COMPRESSION_FORMATS:
        raise ImageError(f"compressed format must be one of {', '.join(COMPRESSION_FORMATS)}, got {fmt!r}")
    layout = layout_of(encoding)
    if layout.channels == 1:
        if layout.dtype == U16 and fmt == "png":
            stands_for, target, image = encoding, "mono16", pixels
        elif layout.dtype == U8:
            stands_for, target, image = encoding, "mono8", pixels
        else:
            stands_for, target, image = "mono8", "mono8", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    elif layout.dtype == U16:
        sixteen_bit = fmt == "png"
        stands_for, target = encoding, "bgr16" if sixteen_bit else "bgr8"
        image = (pixels if layout.to_bgr is None else cv2.cvtColor(pixels, layout.to_bgr)) if sixteen_bit else bgr
    else:
        stands_for, target, image = (encoding if encoding in COLOUR_ENCODINGS else "bgr8"), "bgr8", bgr
    options = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if fmt == "jpeg" else png_options(png_level)
    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(image), options)
    if not ok:
        raise ImageError(f"OpenCV could not encode a {image.shape} {image.dtype} frame as {fmt}")
    return f"{stands_for}; {fmt} compressed {target}", data.tobytes()
