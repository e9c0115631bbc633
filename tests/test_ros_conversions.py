"""sensor_msgs <-> numpy conversion: every encoding round-trips, Bayer demosaics, the node and bag replay decode
alike (one decoder), and bad messages are refused with a reason."""
from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="needs ROS 2 message packages (pip ros-* wheels or a ROS install)")

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from dgdehaze_core.bags.io import COMPRESSED_IMAGE_TYPE, IMAGE_TYPE, decode_image, typestore  # noqa: E402
from dgdehaze_core.benchmarks.timing import hazy_test_frame  # noqa: E402
from dgdehaze_core.detection.offline import offline_ultralytics  # noqa: E402
from dgdehaze_core.io.camera_frames import CAMERA_ENCODINGS, compressed_to_bgr8, declared_size  # noqa: E402
from dgdehaze_core.io.images import read_image, uint16_to_uint8  # noqa: E402
from dgdehaze_ros.conversions import (ENCODINGS, ImageConversionError, array_to_image, bgr8_to_image,  # noqa: E402
                                      bgr8_to_pixels, camera_frame, compressed_depth_image, compressed_image,
                                      depth_to_image, image_to_array)

pytestmark = pytest.mark.ros


def bgr8_of(msg: Image | CompressedImage) -> np.ndarray:
    """The uint8 BGR frame the node makes of a camera message."""
    return camera_frame(msg)[0]


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return hazy_test_frame(64, 48)


def header() -> Header:
    out = Header(frame_id="camera_optical")
    out.stamp.sec, out.stamp.nanosec = 12, 345
    return out


WRITTEN = sorted(name for name in CAMERA_ENCODINGS if not name.startswith("bayer_"))


@pytest.mark.parametrize("encoding", WRITTEN)
def test_every_encoding_round_trips_with_header_size_and_step(frame: np.ndarray, encoding: str) -> None:
    msg = bgr8_to_image(frame, encoding, header())
    layout = ENCODINGS[encoding]
    assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == (encoding, 64, 48, "camera_optical")
    assert msg.step == 64 * layout.channels * layout.dtype.itemsize and len(msg.data) == msg.step * 48
    back = bgr8_of(msg)
    assert back.shape == frame.shape and back.dtype == np.uint8
    if encoding in ("bgr8", "rgb8", "8UC3", "bgra8", "rgba8", "8UC4"):
        np.testing.assert_array_equal(back, frame)
    elif layout.channels == 1:
        np.testing.assert_array_equal(back[:, :, 0], cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    else:  # YUV 4:2:2 halves the chroma resolution: close, not exact
        assert np.abs(back.astype(int) - frame).mean() < 6


def test_rgb8_is_channel_swapped_and_mono16_uses_full_range(frame: np.ndarray) -> None:
    rgb = image_to_array(bgr8_to_image(frame, "rgb8", header()))
    np.testing.assert_array_equal(rgb, frame[:, :, ::-1])
    mono16 = image_to_array(bgr8_to_image(frame, "mono16", header()))
    assert mono16.dtype == np.uint16 and mono16.max() == 257 * int(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).max())


def test_a_12_bit_mono16_camera_reads_on_its_own_range_and_the_output_keeps_that_range(frame: np.ndarray) -> None:
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    twelve_bit = np.rint(gray.astype(np.float64) * 4095 / 255).astype(np.uint16)  # samples 0..4095
    msg = array_to_image(twelve_bit, "mono16", header())
    as_full_range = camera_frame(msg)[0]
    assert as_full_range.max() <= 16, "read as 16-bit, a 12-bit frame is nearly black"
    bgr, encoding, _ = camera_frame(msg, bits=12)
    assert encoding == "mono16" and np.abs(bgr[:, :, 0].astype(int) - gray).max() <= 1
    back = image_to_array(bgr8_to_image(bgr, "mono16", header(), bits=12))
    assert back.max() <= 4095 and np.abs(back.astype(int) - twelve_bit).max() <= 17  # one 8-bit step of 4095


def test_padded_rows_and_big_endian_are_read_correctly(frame: np.ndarray) -> None:
    padded = np.zeros((48, 64 * 3 + 16), np.uint8)
    padded[:, :64 * 3] = frame.reshape(48, -1)
    msg = Image(header=header(), height=48, width=64, encoding="bgr8", step=64 * 3 + 16)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(bgr8_of(msg), frame)
    values = (np.arange(48 * 64, dtype=np.uint16) * 13).reshape(48, 64)
    big = Image(header=header(), height=48, width=64, encoding="16UC1", is_bigendian=1, step=128)
    big.data = values.astype(">u2").tobytes()
    np.testing.assert_array_equal(image_to_array(big), values)


@pytest.fixture(scope="module")
def photo(shared_data: Path) -> np.ndarray:
    """A real clear KITTI road photo, 64x48, unhazed: its colours show a channel or chroma mix-up."""
    return cv2.resize(read_image(sorted((shared_data / "clear" / "kitti").glob("*.jpg"))[3]), (64, 48),
                      interpolation=cv2.INTER_AREA)


def bt601_422(bgr: np.ndarray, luma_first: bool) -> np.ndarray:
    """`bgr` as a YUV 4:2:2 camera sends it, by the BT.601 limited-range formulas written out (R, G, B named): Y per
    pixel, U and V of each pixel pair averaged; bytes U Y0 V Y1 (UYVY, ROS's yuv422) or Y0 U Y1 V (YUYV)."""
    b, g, r = (bgr[:, :, i].astype(np.float64) for i in range(3))
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    chroma = np.empty_like(y)
    chroma[:, 0::2] = (u[:, 0::2] + u[:, 1::2]) / 2
    chroma[:, 1::2] = (v[:, 0::2] + v[:, 1::2]) / 2
    planes = (y, chroma) if luma_first else (chroma, y)
    return np.clip(np.rint(np.stack(planes, axis=2)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("encoding, luma_first", [("uyvy", False), ("yuv422", False), ("yuyv", True),
                                                  ("yuv422_yuy2", True)])
def test_yuv422_frames_are_read_and_written_in_their_byte_order_and_bt601_colours(photo: np.ndarray, encoding: str,
                                                                                  luma_first: bool) -> None:
    """The round trip cannot tell UYVY from YUYV, U from V or R from B (the writer and the reader would swap alike):
    a camera's bytes, made by the formulas, are read as the photo, and the dehazed frame is written as those bytes."""
    sent = bt601_422(photo, luma_first)
    read = bgr8_of(array_to_image(sent, encoding, header()))
    assert np.abs(read.astype(int) - photo).mean() < 4, "byte order or chroma misread"
    written = bgr8_to_pixels(photo, encoding)
    assert written.shape == sent.shape and np.abs(written.astype(int) - sent).max() <= 1


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "rgba8", "8UC4", "bgr16", "rgb16", "bgra16", "rgba16"])
def test_colour_frames_are_read_and_written_in_their_channel_order_with_the_alpha_kept(photo: np.ndarray,
                                                                                       encoding: str) -> None:
    """A camera's pixels laid out by hand (R first for rgb*, alpha last, 16-bit samples x 257) read as the photo, and
    the dehazed frame is written in that layout with the input's alpha kept (opaque without one)."""
    layout = ENCODINGS[encoding]
    colour = photo[:, :, ::-1] if encoding.startswith("rgb") else photo
    alpha = np.linspace(0, 255, 64, dtype=np.uint8)[None, :].repeat(48, 0)
    pixels = np.dstack([colour, alpha]) if layout.channels == 4 else colour
    if layout.dtype == np.uint16:
        pixels = pixels.astype(np.uint16) * 257
    np.testing.assert_array_equal(bgr8_of(array_to_image(pixels, encoding, header())), photo)
    np.testing.assert_array_equal(bgr8_to_pixels(photo, encoding, like=pixels), pixels)
    if layout.channels == 4:
        assert (bgr8_to_pixels(photo, encoding)[:, :, 3] == np.iinfo(layout.dtype).max).all(), "opaque"


def test_a_padded_big_endian_16_bit_frame_reads_whole_even_when_its_last_row_has_no_padding(photo: np.ndarray) -> None:
    """A 12-bit rgb16 camera on a big-endian host, odd width, rows padded to 8 bytes, whose driver leaves out the
    last row's padding (the data ends with the last pixel): every sample is read where it lies, in the host's byte
    order, which OpenCV needs (it reads a big-endian array's bytes as they lie in memory, as other numbers)."""
    width, height = 63, 48
    samples = np.rint(photo[:, :width, ::-1].astype(np.float64) * 4095 / 255).astype(np.uint16)
    step = -(-width * 6 // 8) * 8
    rows = np.zeros((height, step), np.uint8)
    rows[:, :width * 6] = samples.astype(">u2").view(np.uint8).reshape(height, -1)
    msg = Image(header=header(), height=height, width=width, encoding="rgb16", is_bigendian=1, step=step)
    msg.data = rows.tobytes()[:step * (height - 1) + width * 6]
    pixels = image_to_array(msg)
    np.testing.assert_array_equal(pixels, samples)
    np.testing.assert_array_equal(cv2.flip(pixels, 1), samples[:, ::-1])
    assert np.abs(camera_frame(msg, bits=12)[0].astype(int) - photo[:, :width]).max() <= 1
    needed = len(msg.data)
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(ImageConversionError, match=f"truncated data: {needed - 1} bytes .* \\(needs {needed}\\)"):
        bgr8_of(msg)


def raw(encoding: str = "bgr8", width: int = 64, height: int = 48, step: int | None = None,
        size: int | None = None) -> Image:
    step = 64 * 3 if step is None else step
    msg = Image(header=header(), height=height, width=width, encoding=encoding, step=step)
    msg.data = bytes(step * height if size is None else size)
    return msg


@pytest.mark.parametrize("msg, reason", [
    (raw("nv12"), "unsupported encoding"),
    (raw("32FC1", step=256), "depth encoding"),
    (raw("bgr8", step=100), "step 100 is shorter"),
    (raw("bgr8", size=64 * 3 * 47), "truncated data"),
    (raw("bgr8", 0, 0, step=0), "empty image"),
    (raw("bgr8", 100_000, 100_000, step=300_000, size=16), "exceeds the limit"),
    (raw("mono16", step=129), "not a multiple"),
    (raw("yuyv", 63, step=126), "even width"),
])
def test_bad_messages_raise_a_clear_error(msg: Image, reason: str) -> None:
    with pytest.raises(ImageConversionError, match=reason):
        bgr8_of(msg)


def test_a_message_s_own_long_text_is_quoted_cut_short_in_its_error() -> None:
    """A malformed message's 100 KB encoding (or CompressedImage format) went whole into the error, which the node
    logs and sends on /diagnostics for every such frame; so did a format naming png whose PNG is cut short."""
    cut = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()[:60]  # its header reads, no more
    for msg, start in ((raw("x" * 100_000, width=4, height=4, step=12), "unsupported encoding 'xxx"),
                       (CompressedImage(header=header(), format="y" * 100_000, data=b"\xff"),
                        "unsupported compressed format 'yyy"),
                       (CompressedImage(header=header(), format="compressedDepth" * 10_000, data=b"\xff"), "'comp"),
                       (CompressedImage(header=header(), format="png" + "z" * 99_997, data=cut),
                        r"compressed image \('pngzzz.*\(100000 characters\), 60 bytes\) does not decode")):
        with pytest.raises(ImageConversionError, match=start) as error:
            bgr8_of(msg)
        assert len(str(error.value)) < 600 and ("(100000 characters)" in str(error.value)
                                               or "(150000 characters)" in str(error.value)), str(error.value)[:200]


def _mosaic(bgr: np.ndarray, pattern: str) -> np.ndarray:
    """The single-channel Bayer mosaic a sensor with `pattern` (e.g. "rggb": R at row 0 col 0) would record."""
    channel = {"b": 0, "g": 1, "r": 2}
    out = np.empty(bgr.shape[:2], bgr.dtype)
    for index, colour in enumerate(pattern):
        row, col = divmod(index, 2)
        out[row::2, col::2] = bgr[row::2, col::2, channel[colour]]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_frames_demosaic_to_the_scene_and_are_published_as_bgr8(pattern: str) -> None:
    scene = cv2.GaussianBlur(hazy_test_frame(160, 120), (0, 0), 2.0)  # smooth: demosaicing is near exact
    msg = array_to_image(_mosaic(scene, pattern), f"bayer_{pattern}8", header())
    bgr, encoding, _ = camera_frame(msg)
    assert encoding == "bgr8"
    assert np.abs(bgr[4:-4, 4:-4].astype(int) - scene[4:-4, 4:-4]).mean() < 3, "colours swapped or mosaic misread"
    wide = array_to_image(_mosaic(scene, pattern).astype(np.uint16) * 257, f"bayer_{pattern}16", header())
    assert np.abs(bgr8_of(wide).astype(int) - bgr).max() <= 1


@pytest.mark.parametrize("encoding", ["bayer_grbg8", "8UC4", "yuyv", "mono16", "rgb8"])
def test_the_node_and_bag_replay_decode_a_frame_alike(encoding: str) -> None:
    scene = hazy_test_frame(64, 48)
    pixels = _mosaic(scene, "grbg") if encoding.startswith("bayer_") else None
    msg = array_to_image(pixels, encoding, header()) if pixels is not None else bgr8_to_image(scene, encoding,
                                                                                              header())
    store = typestore()
    bag_msg = store.deserialize_cdr(store.serialize_cdr(
        store.types[IMAGE_TYPE](header=store.types["std_msgs/msg/Header"](
            stamp=store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"),
            height=msg.height, width=msg.width, encoding=msg.encoding, is_bigendian=msg.is_bigendian,
            step=msg.step, data=np.frombuffer(bytes(msg.data), np.uint8)), IMAGE_TYPE), IMAGE_TYPE)
    np.testing.assert_array_equal(bgr8_of(msg), decode_image(bag_msg, IMAGE_TYPE))
    jpeg = CompressedImage(header=header(), format="jpeg", data=cv2.imencode(".jpg", scene)[1].tobytes())
    bag_jpeg = store.types["sensor_msgs/msg/CompressedImage"](
        header=bag_msg.header, format="jpeg", data=np.frombuffer(bytes(jpeg.data), np.uint8))
    np.testing.assert_array_equal(bgr8_of(jpeg), decode_image(bag_jpeg, COMPRESSED_IMAGE_TYPE))


@pytest.mark.parametrize("encoding", ["32FC1", "64FC1", "bayer_rggb8"])
def test_a_dehazed_frame_is_not_written_in_a_depth_or_bayer_encoding(frame: np.ndarray, encoding: str) -> None:
    """Depth is published by depth_to_image: a frame written as 32FC1 came out as grey/255 floats, and as 64FC1 as
    uint8 grey levels cast to float64 (0..255 metres), both without a word."""
    with pytest.raises(ImageConversionError, match="depth encoding|not written"):
        bgr8_to_image(frame, encoding, header())


def test_depth_is_32fc1_with_nan_for_invalid() -> None:
    depth = np.array([[1.0, np.inf], [-np.inf, 2.5]], np.float32)
    msg = depth_to_image(depth, header())
    assert (msg.encoding, msg.step, msg.header.stamp.sec) == ("32FC1", 8, 12)
    out = image_to_array(msg)
    assert out[0, 0] == 1.0 and out[1, 1] == 2.5 and np.isnan(out[0, 1]) and np.isnan(out[1, 0])


def test_compressed_jpeg_and_png_decode_and_corrupt_or_huge_ones_are_refused(frame: np.ndarray) -> None:
    offline_ultralytics()  # as the node's detector imports it
    import ultralytics.utils.patches  # noqa: F401  # which wraps PIL.Image.open in the node's process
    for fmt, ext in (("jpeg", ".jpg"), ("png", ".png")):
        msg = CompressedImage(header=header(), format=fmt, data=cv2.imencode(ext, frame)[1].tobytes())
        decoded, encoding, pixels = camera_frame(msg)
        assert decoded.shape == frame.shape and np.abs(decoded.astype(int) - frame).mean() < 3
        assert (encoding, pixels) == ("bgr8", None), "a compressed frame's dehazed image is published as bgr8"
    with pytest.raises(ImageConversionError, match="header does not read"):
        bgr8_of(CompressedImage(format="jpeg", data=b"\xff\xd8 not really a jpeg"))
    with pytest.raises(ImageConversionError, match="empty"):
        bgr8_of(CompressedImage(format="png", data=b""))
    depth = compressed_depth_image(np.full((48, 64), 7.5, np.float32), header())  # a depth camera's topic given
    assert depth.header == header() and depth.format == "32FC1; compressedDepth png"
    with pytest.raises(ImageConversionError, match="is a depth image \\(image_transport's compressedDepth\\), not a "
                                                   "camera frame"):
        bgr8_of(depth)  # was: "its header does not read as JPEG, PNG, ..."
    for side in (7000, 50_000):
        huge_png = bytearray(cv2.imencode(".png", frame)[1].tobytes())
        huge_png[16:24] = side.to_bytes(4, "big") * 2  # IHDR claims side x side, with its checksum
        huge_png[29:33] = zlib.crc32(bytes(huge_png[12:29])).to_bytes(4, "big")
        with pytest.raises(ImageConversionError, match=f"{side}x{side} exceeds the limit"):
            bgr8_of(CompressedImage(format="png", data=bytes(huge_png)))


def test_a_16_bit_png_reads_on_input_bits_range_as_the_raw_frame_does_in_the_node_and_in_bag_replay(
        frame: np.ndarray) -> None:
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    twelve_bit = np.rint(gray.astype(np.float64) * 4095 / 255).astype(np.uint16)  # a 12-bit camera, 0..4095
    colour = np.rint(frame.astype(np.float64) * 4095 / 255).astype(np.uint16)
    store = typestore()
    for fmt, samples, encoding, scene in (("mono16; png compressed", twelve_bit, "mono16", cv2.merge([gray] * 3)),
                                          ("bgr16; png compressed bgr16", colour, None, frame)):
        png = cv2.imencode(".png", samples)[1].tobytes()  # image_transport's PNG keeps the 16-bit samples
        msg = CompressedImage(header=header(), format=fmt, data=png)
        stamp = store.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0)
        bag_msg = store.types["sensor_msgs/msg/CompressedImage"](  # as bag-eval reads it
            header=store.types["std_msgs/msg/Header"](stamp=stamp, frame_id="c"), format=fmt,
            data=np.frombuffer(png, np.uint8))
        for bits in (12, 16):
            raw = (camera_frame(array_to_image(samples, encoding, header()), bits=bits)[0] if encoding
                   else uint16_to_uint8(samples, bits))
            decoded = camera_frame(msg, bits=bits)[0]
            np.testing.assert_array_equal(decoded, raw, err_msg=f"{fmt}, {bits} bits")
            np.testing.assert_array_equal(decode_image(bag_msg, COMPRESSED_IMAGE_TYPE, bits), raw)
        assert np.abs(camera_frame(msg, bits=12)[0].astype(int) - scene).max() <= 1, "not read on 0..4095"
        assert bgr8_of(msg).max() <= 16  # the default: the full 16-bit range, where 0..4095 is nearly black
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 40
    with_alpha = CompressedImage(format="png", data=cv2.imencode(".png", bgra)[1].tobytes())
    np.testing.assert_array_equal(bgr8_of(with_alpha), frame)


def jpeg_declaring(frame: np.ndarray, width: int, height: int, comment_bytes: int) -> bytes:
    """A JPEG of `frame` whose frame header (SOF0) declares width x height, after `comment_bytes` of comments."""
    data = bytearray(cv2.imencode(".jpg", frame)[1].tobytes())
    index = 2
    while data[index + 1] != 0xC0:
        index += 2 + int.from_bytes(data[index + 2:index + 4], "big")
    data[index + 5:index + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    comment = b"\xff\xfe" + (65535).to_bytes(2, "big") + b"x" * 65533
    return bytes(data[:2]) + comment * (comment_bytes // 65537) + bytes(data[2:])


def test_a_compressed_frame_declaring_a_huge_size_deep_in_its_header_is_refused_before_decoding(
        frame: np.ndarray) -> None:
    bomb = jpeg_declaring(frame, 20_000, 20_000, comment_bytes=131_074)  # 131 KB declaring 400 Mpixels
    assert declared_size(bomb) == (20_000, 20_000)  # read from the header, nothing decoded
    with pytest.raises(ImageConversionError, match="20000x20000 exceeds the limit"):
        bgr8_of(CompressedImage(format="jpeg", data=bomb))
    honest = jpeg_declaring(frame, frame.shape[1], frame.shape[0], comment_bytes=131_074)
    assert bgr8_of(CompressedImage(format="jpeg", data=honest)).shape == frame.shape


@pytest.mark.parametrize("encoding, fmt, expected", [
    ("bgr8", "jpeg", "bgr8; jpeg compressed bgr8"), ("rgb8", "jpeg", "rgb8; jpeg compressed bgr8"),
    ("rgba8", "png", "rgba8; png compressed bgr8"), ("mono8", "jpeg", "mono8; jpeg compressed mono8"),
    ("mono16", "png", "mono16; png compressed mono16"), ("16UC1", "jpeg", "mono8; jpeg compressed mono8"),
    ("yuyv", "png", "bgr8; png compressed bgr8"), ("8UC3", "jpeg", "bgr8; jpeg compressed bgr8"),
    ("rgb16", "png", "rgb16; png compressed bgr16"), ("bgra16", "png", "bgra16; png compressed bgr16"),
    ("rgba16", "jpeg", "rgba16; jpeg compressed bgr8")])
def test_a_compressed_output_says_what_it_stands_for_as_image_transport_and_decodes_to_the_raw_output(
        encoding: str, fmt: str, expected: str) -> None:
    """The format string is image_transport's compressed publisher's, with the encoding its subscriber can restore,
    and the node's own decoder (bag replay's too) reads the frame back: a PNG exactly, a JPEG to its quality."""
    bgr = hazy_test_frame(160, 120)
    pixels = bgr8_to_pixels(bgr, encoding, bits=12)
    msg = compressed_image(bgr, pixels, encoding, header(), fmt, jpeg_quality=90)
    assert (msg.format, msg.header) == (expected, header())
    decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED)
    if expected.startswith("mono16"):
        np.testing.assert_array_equal(decoded, pixels)  # the 12-bit samples kept
        return
    if expected.endswith("bgr16"):  # the 12-bit samples kept, in BGR order, the alpha dropped
        np.testing.assert_array_equal(decoded, pixels[:, :, 2::-1] if encoding.startswith("rgb") else pixels[:, :, :3])
        np.testing.assert_array_equal(compressed_to_bgr8(msg, bits=12), bgr)
        return
    if expected.endswith("bgr8"):  # the dehazed frame itself (YUV 4:2:2 would lose half its chroma)
        view = bgr
    else:  # grey: the raw output as a viewer sees it
        view = camera_frame(array_to_image(pixels, encoding, header()), bits=12)[0]
    back = compressed_to_bgr8(msg)
    if fmt == "png":
        np.testing.assert_array_equal(back, view)
    else:
        assert cv2.PSNR(back, view) > 30.0


def test_a_compressed_output_refuses_a_format_image_transport_does_not_name_and_quality_changes_the_size() -> None:
    bgr = hazy_test_frame(160, 120)
    with pytest.raises(ImageConversionError, match="jpeg, png"):
        compressed_image(bgr, bgr, "bgr8", header(), "webp")
    sizes = [len(compressed_image(bgr, bgr, "bgr8", header(), "jpeg", quality).data) for quality in (20, 95)]
    assert sizes[0] < sizes[1] / 2


def test_an_array_that_does_not_fit_its_encoding_is_refused_not_sent_with_the_wrong_size(frame: np.ndarray) -> None:
    """A gray frame sent as bgr8, or a colour one as mono8, would make a message whose data does not hold
    width * height pixels of its encoding: every reader refuses it (or reads garbage)."""
    for pixels, encoding in ((frame[:, :, 0], "bgr8"), (frame, "mono8"), (frame[:, :, :2], "bgr8")):
        with pytest.raises(ImageConversionError, match=f"does not fit encoding {encoding}"):
            array_to_image(pixels, encoding, header())
    msg = array_to_image(frame, "bgr8", header())
    assert len(msg.data) == msg.height * msg.step == 48 * 64 * 3
