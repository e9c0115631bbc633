"""Reading, normalising and writing images with clear errors.

Everything downstream works on one frame type: a C-contiguous `uint8` array of shape (H, W, 3) in BGR order
(OpenCV's and ROS `bgr8`'s layout). `to_bgr8` brings grayscale, 16-bit, float and 4-channel arrays to it.

An image file is read upright: a phone stores a portrait photo as landscape pixels with an EXIF orientation tag
(0x0112, values 1-8) saying how a viewer turns or mirrors them, and `read_image` turns them so, as viewers,
OpenCV's `imread`, Ultralytics and labelling tools (CVAT, Label Studio) show the photo, so that the depth network
and the detector see its sky on top. A camera frame is no file: `camera_frames` decodes a CompressedImage as stored,
as image_transport does.
"""
from __future__ import annotations

import io
import logging
import struct
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PIL import Image as PILImage

from dgdehaze_core.io.atomic_files import atomic_path
from dgdehaze_core.io.file_paths import IMAGE_SUFFIXES, UNREAD_IMAGE_SUFFIXES, file_suffix, listing, missing
from dgdehaze_core.io.folder_walk import linked_folders

LOG = logging.getLogger(__name__)

MAX_PIXELS = 7680 * 4320
"""Largest frame accepted anywhere (8K UHD); larger frames are refused rather than exhausting memory."""


PNG_ROW_FILTER = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP] if hasattr(cv2, "IMWRITE_PNG_FILTER") else []
"""Each PNG row predicted from the row above (any PNG decoder reads it): on foggy road photos and the node's depth
images both faster and smaller than libpng's choice per row. OpenCV before 4.11 (a distribution's) has no such
option and keeps libpng's."""


def png_options(level: int) -> list[int]:
    """cv2.imencode's options for a PNG at zlib `level` (0..9) with PNG_ROW_FILTER."""
    return [cv2.IMWRITE_PNG_COMPRESSION, level, *PNG_ROW_FILTER]


class ImageError(ValueError):
    """An image that cannot be used, with the reason in words."""


HEADER_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "PPM")
"""Pillow's names of the formats whose header gives an image's size before it is decoded."""


def check_size(width: int, height: int, max_pixels: int = MAX_PIXELS) -> None:
    """ImageError for an empty image or one of more than `max_pixels` pixels."""
    if width <= 0 or height <= 0:
        raise ImageError(f"empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"image of {width}x{height} exceeds the limit of {max_pixels} pixels (8K UHD: a frame's "
                         "network and inversion buffers would take many GB); scale it down first")


PILLOW_PARSE_ERRORS = (OSError, SyntaxError, ValueError, IndexError, TypeError, struct.error)
"""What Pillow's format parsers raise for a header or pixel data they cannot read."""


def pillow_header(data: bytes) -> PILImage.Image:
    """An image file's header read, without decoding a pixel, by Pillow's own JPEG (every frame type), PNG, BMP,
    TIFF, WebP or PPM header parser (its size, mode and EXIF); ImageError when none reads it.

    The parsers are called from Pillow's registry rather than through `PIL.Image.open`, which Ultralytics replaces
    with a wrapper that tries to install a HEIF plugin whenever a file is not recognised, and whose decompression
    bomb check would refuse a large size before it could be reported.
    """
    PILImage.init()
    prefix = data[:16]
    for name in HEADER_FORMATS:
        factory, accept = PILImage.OPEN.get(name, (None, None))
        if factory is None or (accept is not None and accept(prefix) is not True):
            continue
        try:
            return factory(io.BytesIO(data), "")
        except PILLOW_PARSE_ERRORS as exc:
            raise ImageError(f"image ({len(data)} bytes): its {name} header does not read ({exc})") from exc
    raise ImageError(f"image ({len(data)} bytes): its header does not read as {', '.join(HEADER_FORMATS)}")


def declared_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the pixels as an image file stores them, which its header declares (`pillow_header`);
    ImageError when none reads it. Its product is the pixel count whichever way the image is turned."""
    return pillow_header(data).size


ORIENTATION_TAG = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)
"""The EXIF orientations whose upright view swaps the stored width and height."""
DECODER_TURNS = ("TIFF",)
"""The formats whose EXIF orientation OpenCV's decoder applies itself, even when asked for the pixels unchanged."""
UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda image: image, 2: lambda image: image[:, ::-1], 3: lambda image: image[::-1, ::-1],
    4: lambda image: image[::-1], 5: lambda image: image.swapaxes(0, 1), 6: lambda image: np.rot90(image, -1),
    7: lambda image: np.rot90(image, 2).swapaxes(0, 1), 8: lambda image: np.rot90(image, 1)}
"""How a viewer turns or mirrors the stored pixels (rows, columns first) of each EXIF orientation upright."""


def _header_orientation(header: PILImage.Image) -> int:
    """The EXIF orientation (1-8) of an image file whose header `pillow_header` read; 1 (upright as stored) when it
    has none, a value outside 1-8, or EXIF that does not read. A PNG's is read from an eXIf chunk before its pixel
    data, where the PNG specification places it (Pillow would decode the pixels to look for one after them)."""
    if header.format == "PNG" and "exif" not in header.info:
        return 1
    try:
        value = header.getexif().get(ORIENTATION_TAG, 1)
    except PILLOW_PARSE_ERRORS:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def data_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of an image file's bytes (`_header_orientation`), which `read_image` applies; 1 as
    well when Pillow does not read their header."""
    try:
        return _header_orientation(pillow_header(data))
    except ImageError:
        return 1


def exif_orientation(path: Path) -> int:
    """The EXIF orientation (1-8) of an image file (`data_orientation`); 1 as well for a file that does not read."""
    try:
        return data_orientation(path.read_bytes())
    except OSError:
        return 1


def upright_size(stored: tuple[float, float], orientation: int) -> tuple[float, float]:
    """(width, height) of the upright view that `orientation` gives of pixels stored at `stored` (width, height);
    the stored size of an upright view alike."""
    return (stored[1], stored[0]) if orientation in QUARTER_TURNS else stored


SAMPLE_BITS = 16
"""Significant bits of a 16-bit sample unless told otherwise: the full range 0..65535."""


def check_sample_bits(bits: int) -> int:
    """`bits` when it is a valid number of significant bits of a 16-bit sample (8..16), else ValueError."""
    if not 8 <= int(bits) <= 16:
        raise ValueError(f"the significant bits of 16-bit samples must lie in 8..16, got {bits}")
    return int(bits)


def uint16_to_uint8(array: np.ndarray, bits: int = SAMPLE_BITS) -> np.ndarray:
    """16-bit samples with `bits` significant bits (0 .. 2^bits - 1) to 8-bit, that range to 0..255, rounded to
    nearest; larger values saturate at 255."""
    top = (1 << check_sample_bits(bits)) - 1
    scaled = (np.minimum(array.astype(np.uint32), top) * 255 + top // 2) // top
    return scaled.astype(np.uint8)


def uint8_to_uint16(array: np.ndarray, bits: int = SAMPLE_BITS) -> np.ndarray:
    """8-bit samples back to 16-bit samples of `bits` significant bits (0..255 to 0 .. 2^bits - 1, rounded)."""
    top = (1 << check_sample_bits(bits)) - 1
    return ((array.astype(np.uint32) * top + 127) // 255).astype(np.uint16)


def to_bgr8(array: np.ndarray, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Convert a grayscale, BGR or BGRA image of any usual depth to a contiguous uint8 BGR frame.

    uint16 is scaled by 1/257 (full range to full range), floats are taken as [0, 1] and clipped.
    Raises ImageError for empty, oversized, non-finite or oddly shaped arrays.
    """
    if not isinstance(array, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(array).__name__}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    check_size(array.shape[1], array.shape[0], max_pixels)
    if array.dtype == np.uint8:
        out = array
    elif array.dtype == np.uint16:
        out = uint16_to_uint8(array)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("image contains NaN or infinite values")
        out = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ImageError(f"unsupported pixel type {array.dtype}")
    if out.ndim == 2:
        out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
    elif out.shape[2] == 4:
        out = cv2.cvtColor(out, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(out)


NETPBM_MAGIC = (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")
"""The first bytes of PBM, PGM and PPM files (plain and raw)."""


def _netpbm_pixels(data: bytes) -> np.ndarray | None:
    """A PBM/PGM/PPM file's pixels (greyscale, or BGR) scaled from the maximum value its header declares to their
    type's full range, as Pillow's reader scales them: OpenCV returns them as stored, so a 12-bit PGM (maximum
    4095) would read nearly black. None when the file does not decode."""
    PILImage.init()
    try:
        image = PILImage.OPEN["PPM"][0](io.BytesIO(data), "")
        image.load()
    except PILLOW_PARSE_ERRORS:
        return None
    if image.mode == "I":  # 16-bit samples, already on 0..65535
        return np.asarray(image).astype(np.uint16)
    if image.mode == "RGB":
        return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
    return np.asarray(image.convert("L"))


def file_bytes(path: Path) -> bytes:
    """The bytes of an image file (or a depth file), read once; ImageError says why when the file is missing, a
    folder, empty or unreadable."""
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image")
    if not path.is_file():
        raise ImageError(missing(path))
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes)")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path} cannot be read: {exc.strerror or exc}") from None


def _file_pixels(path: Path) -> tuple[np.ndarray, bool, int]:
    """An image file's pixels as decoded, upright (`read_image`), whether its header declares its samples' range
    (a PBM/PGM/PPM's maximum value, by which they are scaled to their type's full range) and its EXIF orientation
    (`data_orientation`'s, applied by OpenCV's decoder to a TIFF and here to the others); ImageError says why when
    it cannot be read. The file is read once."""
    raw = file_bytes(path)
    data = np.frombuffer(raw, dtype=np.uint8)
    try:
        header = pillow_header(raw)
    except ImageError:
        header = None  # a format whose header Pillow does not read: OpenCV decides below
    if header is not None:
        try:
            check_size(*header.size)
        except ImageError as exc:
            raise ImageError(f"{path}: {exc}") from None
    netpbm = raw[:2] in NETPBM_MAGIC
    try:
        image = _netpbm_pixels(raw) if netpbm else cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # a header OpenCV refuses (its own pixel limit for formats Pillow does not read)
        raise ImageError(f"{path} is not a readable image: {str(exc).strip().splitlines()[-1]}") from None
    if image is None:
        suffix = file_suffix(path)
        unread = f" (OpenCV does not read {suffix} files: convert it to JPEG or PNG)"
        raise ImageError(f"{path} is not a readable image{unread if suffix in UNREAD_IMAGE_SUFFIXES else ''}")
    orientation = 1 if header is None else _header_orientation(header)
    if header is not None and header.format not in DECODER_TURNS:
        image = np.ascontiguousarray(UPRIGHT[orientation](image))
    return image, netpbm, orientation


def _file_bgr8(path: Path, image: np.ndarray, declared: bool, bits: int) -> np.ndarray:
    """A file's pixels (`_file_pixels`) as a uint8 BGR frame: 16-bit samples with `bits` significant bits, unless
    the file's header `declared` their range (they are scaled to the full range already)."""
    if image.dtype == np.uint16:
        image = uint16_to_uint8(image, SAMPLE_BITS if declared else bits)
    try:
        return to_bgr8(image)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None


def read_image(path: str | Path, bits: int = SAMPLE_BITS) -> np.ndarray:
    """Read an image file as a uint8 BGR frame, upright: turned or mirrored by its EXIF orientation as a viewer
    shows it, whatever its format (OpenCV's decoder turns a TIFF itself; a JPEG's, PNG's or WebP's pixels are turned
    here); ImageError says why when it cannot. The size limit is checked on the header's size before decoding.

    The 16-bit samples of a PNG or TIFF have `bits` significant bits (as the node's input_bits: 12 for a 12-bit
    camera's 0..4095, the rest of the range saturating); a PGM's or PPM's header declares their range, and they are
    read by it whatever `bits` says."""
    return read_upright(path, bits)[0]


def read_upright(path: str | Path, bits: int = SAMPLE_BITS) -> tuple[np.ndarray, int]:
    """`read_image`'s frame and the EXIF orientation that turned it upright (`exif_orientation`'s), from one read of
    the file."""
    path = Path(path)
    image, declared, orientation = _file_pixels(path)
    return _file_bgr8(path, image, declared, check_sample_bits(bits)), orientation


ReadImage = Callable[[Path], np.ndarray]
"""How a run reads an image file as a uint8 BGR frame: `read_image`, or an `ImageReader` of its --input-bits."""


NARROW_SAMPLE = (1 << 12) - 1
"""The largest sample of a 12-bit camera: 16-bit samples read with 16 significant bits that hold none above it read
nearly black (at most 16 of 255)."""
WIDE_SHARE = 0.01
"""The share of 16-bit samples above the range of the significant bits they are read with (input_bits 12: 4095)
from which they are taken for wider ones (a file using all 16 bits) and warned of: they read white. Fewer are a
sensor's hot pixels, which saturate."""


class NarrowSamples:
    """The one test of whether 16-bit samples read with all 16 significant bits are a 12-bit camera's (they hold
    samples but none above 4095), for a stream of images: a run's files (`ImageReader`), the node's frames and a
    bag's (`camera_frames`, through `see`). The first time it holds, `warn` says so once, with the `remedy`.

    Every `every`-th 16-bit image read with 16 bits is tested, the first one included, by one max over its samples:
    a node at camera rate spends that once per `every` frames. `narrow` is the last test's verdict (an 8-bit image,
    or one read with fewer bits, is not narrow), so that a node's status follows a change of camera or of
    input_bits; a run over files tests every file, whose decoding costs far more than the max.

    The other way round, every `every`-th 16-bit image read with fewer bits is tested by one count of its samples
    above their range: where more than WIDE_SHARE are (samples of all 16 bits read as 12-bit ones: most of the
    image white), `warn` says so once."""

    def __init__(self, remedy: str, source: str = "", every: int = 1,
                 warn: Callable[[str], None] = LOG.warning) -> None:
        """remedy: how the warning tells the user to say 12 bits (a command's option, a parameter, a recipe's
        field). source: what the images are, for the warning (a topic, a bag), unless `see` names each."""
        self.remedy, self.source, self.every, self.warn = remedy, source, max(1, int(every)), warn
        self.narrow = False
        self.warned = False
        self.warned_wide = False
        self._seen = 0

    def see(self, samples: np.ndarray, bits: int, source: str = "") -> None:
        """Test an image's `samples` read with `bits` significant bits (8-bit ones, or 16-bit ones read with
        fewer bits, are not narrow; the latter are tested for samples above their range); `source` names them in
        the warning instead of the stream's."""
        if samples.dtype != np.uint16 or bits != SAMPLE_BITS:
            self.narrow = False
        if samples.dtype != np.uint16:
            return
        self._seen += 1
        if (self._seen - 1) % self.every:
            return
        if bits != SAMPLE_BITS:
            self._see_wide(samples, bits, source)
            return
        self.narrow = 0 < int(samples.max()) <= NARROW_SAMPLE
        if self.narrow and not self.warned:
            self.warned = True
            self.warn(f"{source or self.source}: 16-bit samples but none above {NARROW_SAMPLE}, as a 12-bit "
                      f"camera's: read with all 16 significant bits they are nearly black; if they have 12 "
                      f"significant bits, {self.remedy}")

    def _see_wide(self, samples: np.ndarray, bits: int, source: str) -> None:
        """Warn once where more than WIDE_SHARE of `samples` lie above the range of `bits` significant bits."""
        top = (1 << bits) - 1
        above = np.count_nonzero(samples > top)
        if self.warned_wide or above <= WIDE_SHARE * samples.size:
            return
        self.warned_wide = True
        self.warn(f"{source or self.source}: {100 * above / samples.size:.0f} % of the 16-bit samples lie above "
                  f"{top}, the range of the {bits} significant bits they are read with: they read white; if the "
                  "images use all 16 bits, read them with 16 (the default input bits)")


class ImageReader:
    """`read_image` for one run (a command over many files): 16-bit samples with `bits` significant bits, as the
    node's input_bits, and, the first time only, a warning when a 16-bit file read with all 16 bits looks like a
    12-bit camera's (`NarrowSamples`: a PGM's or PPM's declared range is never narrow), which would be processed as
    a nearly black image without a word."""

    def __init__(self, bits: int = SAMPLE_BITS,
                 remedy: str = "give --input-bits 12 (this is said once per run)") -> None:
        """bits: as `read_image`'s (ValueError outside 8..16). remedy: how the warning tells the user to say 12 bits
        (a command's option, a recipe's field)."""
        self.bits = check_sample_bits(bits)
        self.samples = NarrowSamples(remedy)

    def __call__(self, path: str | Path) -> np.ndarray:
        path = Path(path)
        image, declared, _ = _file_pixels(path)
        if not declared:
            self.samples.see(image, self.bits, str(path))
        return _file_bgr8(path, image, declared, self.bits)


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an image atomically; the format follows the suffix. OSError naming `path` when it cannot be written (a
    full disk: ENOSPC), which the failed write itself does not name."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise ImageError(f"could not encode an image for {path}")
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(encoded.tobytes())
        except OSError as exc:
            raise OSError(exc.errno, f"{path} could not be written: {exc.strerror or exc}") from exc
    return path


def is_hidden(path: Path, root: Path) -> bool:
    """Whether `path` or a folder between `root` and it is hidden (a name starting with '.': macOS' ._ sidecars,
    .ipynb_checkpoints copies), which the image listings leave out."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _image_entry(path: Path) -> bool:
    """Whether a folder entry is listed as an image: whatever is named as one, a file or not (a link that leads to no
    file, a named pipe, a folder that `list_images` does not enter), listed so that reading it says what it is (a
    frame silently left out would change a run's result without a word)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


_TOLD_UNREAD: set[tuple[str, ...]] = set()
"""The unread photos `_tell_unread` has warned of in this process (a folder is listed more than once in a run)."""


def _tell_unread(folder: Path, paths: list[Path]) -> None:
    """Warn, once for each set of them, of the photos among `paths` that no listing takes (UNREAD_IMAGE_SUFFIXES):
    a folder of a phone's HEIC photos left out without a word read as a folder of fewer images."""
    unread = sorted(p for p in paths if file_suffix(p) in UNREAD_IMAGE_SUFFIXES and not is_hidden(p, folder))
    told = tuple(map(str, unread))
    if not unread or told in _TOLD_UNREAD:
        return
    _TOLD_UNREAD.add(told)
    kinds = sorted({file_suffix(p) for p in unread})
    names = listing([p.name for p in unread], 3)
    LOG.warning("%s: %d photos left out, %s files OpenCV does not read (%s): convert them to JPEG or PNG to take "
                "them in", folder, len(unread), "/".join(kinds), names)


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder` (and whatever else is named as an image there: `_image_entry`), sorted
    by name; hidden files left out, and photos of a kind not read left out with a warning (`_tell_unread`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"no such folder: {folder}")
    entries = list(folder.iterdir())
    _tell_unread(folder, entries)
    return sorted(p for p in entries if _image_entry(p) and not is_hidden(p, folder))


def images_under(folder: str | Path) -> list[Path]:
    """The image files in `folder` and its subfolders (and whatever else but a folder is named as an image there:
    `_image_entry`), sorted; hidden files and folders left out, photos of a kind not read left out with a warning
    (`_tell_unread`); [] for a missing folder. Symlinked subfolders are
    followed (a data set linked into a training folder), each real folder once, so a link back up the tree ends;
    a folder named as an image is entered as any other."""
    root = Path(folder)
    if not root.is_dir():
        return []
    found = [current / name for current, files in linked_folders(root) for name in files]
    _tell_unread(root, found)
    return sorted(p for p in found if _image_entry(p) and not is_hidden(p, root))


def unit_float(image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 to float32 in [0, 1], channels as they are, in one float buffer: `out` (float32, the image's shape)
    when given."""
    if out is None:
        scaled = image.astype(np.float32)
    else:
        scaled = out
        np.copyto(scaled, image)
    return np.divide(scaled, 255.0, out=scaled)


def bgr_to_rgb_float(image: np.ndarray) -> np.ndarray:
    """uint8 BGR to float32 RGB in [0, 1] (the channel swap in uint8, then `unit_float`)."""
    return unit_float(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2RGB))


def rgb_float_to_bgr(image: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] to uint8 BGR (rounded to nearest; the channel swap after the cast, in uint8)."""
    scaled = np.multiply(image, 255.0)
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return cv2.cvtColor(scaled.astype(np.uint8), cv2.COLOR_RGB2BGR)
