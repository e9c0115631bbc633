"""Clear images with metric ground-truth depth: KITTI raw (sparse LiDAR) and Middlebury 2003 (dense disparity).

Depth maps are float32 metres with NaN where the ground truth is unknown.
- KITTI raw: `DATE/DRIVE_sync/image_0X/data/NAME.png` (or .jpg) with LiDAR projected into that camera at
  `DRIVE_sync/proj_depth/velodyne/image_0X/NAME.npz` (one array, metres, 0 = no return) or KITTI depth's
  `proj_depth/groundtruth/image_0X/NAME.png` (uint16, metres * 256), its `proj_depth/` moved into the raw drive
  folder; the set is a drive folder, a date folder or the folder above. Evaluated up to 80 m, the KITTI convention.
  One sample per frame: where a frame has several depth files (KITTI depth ships velodyne_raw/ beside
  groundtruth/), its groundtruth/ one, else the first of the others by folder name.
- KITTI depth's selection (`depth_selection/val_selection_cropped/`): `image/DRIVE_image_FRAME_image_0X.png`
  cropped to 1216x352, its `groundtruth_depth/DRIVE_groundtruth_depth_FRAME_image_0X.png` (uint16, metres * 256)
  and `intrinsics/DRIVE_image_FRAME_image_0X.txt` (the cropped image's 3x3 K, 9 numbers row-major), each frame
  named DRIVE/image_0X/FRAME as in the raw layout, up to 80 m. `velodyne_raw/` (the depth-completion input, not the
  ground truth) stands in only for a frame without groundtruth_depth/, as in the raw layout. Every image needs a
  depth file and every depth file its image; the intrinsics are read only by `selection_intrinsics`.
- Middlebury 2003: `SCENE/imK.png` with `SCENE/dispK.pgm` holding 4 x disparity in pixels (0 = unknown), at the
  quarter-size resolution (450x375) where f is about 935 px and the baseline about 0.16 m: Z = f * B / d.
A frame's image is read upright as its EXIF orientation says (`read_image`), its depth turned alike when its file
carries the same orientation; a frame whose two files carry different ones is refused (`upright_depth`). Each file
is read once.
The loaders list the frames (names and files, and that each depth file has its image) without reading any pixel;
`DepthSet.samples` reads each frame when it is reached, so that selecting frames (`eval --include/--limit`) bounds
what is read and a broken frame fails only where it is used, naming its file.
"""
from __future__ import annotations

import io
import logging
import math
import re
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from dgdehaze_core.io.folder_walk import linked_rglob
from dgdehaze_core.io.images import IMAGE_SUFFIXES, UPRIGHT, ImageError, data_orientation, file_bytes, read_upright
from dgdehaze_core.physics.visibility import Intrinsics

LOG = logging.getLogger(__name__)

KITTI_MAX_DEPTH = 80.0
KITTI_GROUND_TRUTH = "groundtruth"
"""KITTI depth's ground-truth folder under proj_depth/ (LiDAR accumulated over frames and checked against stereo),
preferred over its velodyne_raw/ scans of the same frame."""
SELECTION_IMAGE = "image"
SELECTION_TRUTH = "groundtruth_depth"
SELECTION_LIDAR = "velodyne_raw"
SELECTION_INTRINSICS = "intrinsics"
SELECTION_NAME = re.compile(rf"(?P<drive>.+)_(?P<kind>{SELECTION_IMAGE}|{SELECTION_TRUTH}|{SELECTION_LIDAR})_"
                            r"(?P<frame>[0-9]+)_(?P<camera>image_[0-9]{2})")
"""A depth-selection file's stem: DRIVE_KIND_FRAME_image_0X, KIND its folder's name."""
MIDDLEBURY_FOCAL_PX = 935.0
MIDDLEBURY_BASELINE_M = 0.16
MIDDLEBURY_DISPARITY_SCALE = 4.0
MIDDLEBURY_MAX_DEPTH = 40.0
MIN_DEPTH = 1e-3


@dataclass
class DepthSample:
    """One clear uint8 BGR image and its true depth (float32 metres, NaN unknown), same height and width."""

    name: str
    image: np.ndarray
    depth: np.ndarray

    def read(self) -> DepthSample:
        """Itself: a sample already in memory is a frame with nothing left to read."""
        return self


@dataclass(frozen=True)
class DepthFrame:
    """One listed frame, not read yet: its name, its image file, its ground-truth file and the reader that turns
    that file's bytes into depth (float32 metres, NaN unknown; the path names the file in its errors)."""

    name: str
    image_path: Path
    depth_path: Path
    depth_reader: Callable[[Path, bytes], np.ndarray]

    def read(self) -> DepthSample:
        """The frame's image and depth, each file read once and checked now, both upright (`upright_depth`);
        ImageError names the file or frame that fails."""
        image, image_turn = read_upright(self.image_path)
        data = file_bytes(self.depth_path)
        depth = self.depth_reader(self.depth_path, data)
        return _checked(self.name, image, upright_depth(self.image_path, image_turn, self.depth_path,
                                                        data_orientation(data), depth))


def upright_depth(image_path: Path, image_turn: int, depth_path: Path, depth_turn: int,
                  depth: np.ndarray) -> np.ndarray:
    """The ground truth `depth`, as `depth_path` stores it, on the upright view `read_image` gives of `image_path`:
    turned by the EXIF orientation the two files share (`image_turn`, `depth_turn`: each file's), the pixels of
    both as stored when neither has one. ImageError naming both when their orientations differ (an .npz or a PGM
    carries none): a photo tagged as turned half a circle over untagged depth would pass the size check with its
    depth upside down, and whether untagged depth lies as the photo is stored or as it is viewed cannot be told."""
    if image_turn != depth_turn:
        raise ImageError(f"{image_path} carries EXIF orientation {image_turn} and its depth {depth_path} "
                         f"{depth_turn}: which way the depth lies on the photo cannot be told; give both files "
                         "the same orientation, or none")
    return np.ascontiguousarray(UPRIGHT[depth_turn](depth))


Frame = DepthFrame | DepthSample
"""A frame of a depth set: listed on disk, or a sample already in memory (both `read()` into a DepthSample)."""


@dataclass
class DepthSet:
    """A depth set: its frames in order, the depth range evaluated, and whether the ground truth is sparse (LiDAR).

    Selecting from `frames` reads nothing; `samples()` reads the frames one by one as they are used."""

    name: str
    frames: list[Frame]
    max_depth: float
    sparse: bool

    def samples(self) -> Iterator[DepthSample]:
        """Each frame read when it is reached, in order: a caller that keeps none holds one frame at a time (and
        the next while it is read). A frame that cannot be read fails here, naming its file or frame."""
        for frame in self.frames:
            yield frame.read()

    def measures(self, sample: DepthSample) -> bool:
        """Whether `sample`'s ground truth holds a depth in the range scored (MIN_DEPTH to `max_depth`)."""
        return bool(((sample.depth >= MIN_DEPTH) & (sample.depth <= self.max_depth)).any())

    def read_all(self) -> DepthSet:
        """The same set with every frame read into memory now, so that a broken frame fails here, and so does one
        whose ground truth holds no depth in the range measured (MIN_DEPTH to `max_depth`), which
        `depth_eval.depth_errors` would refuse only when it scores the frame (ImageError naming it)."""
        samples = list(self.samples())
        for sample in samples:
            if not self.measures(sample):
                known = sample.depth[np.isfinite(sample.depth)]
                raise ImageError(f"{self.name}/{sample.name}: none of its {known.size} ground-truth depths lies "
                                 f"within the {MIN_DEPTH:g} to {self.max_depth:g} m measured (they span "
                                 f"{known.min():.4g} to {known.max():.4g} m: depth stored in another unit?)")
        return replace(self, frames=samples)


def _checked(name: str, image: np.ndarray, depth: np.ndarray) -> DepthSample:
    if depth.ndim != 2:
        raise ImageError(f"{name}: its depth has shape {depth.shape}, not one plane of height x width")
    if image.shape[:2] != depth.shape:
        raise ImageError(f"{name}: image is {image.shape[1]}x{image.shape[0]} but its depth is "
                         f"{depth.shape[1]}x{depth.shape[0]}")
    if not np.isfinite(depth).any():
        raise ImageError(f"{name}: the ground-truth depth holds no valid value")
    return DepthSample(name, image, depth.astype(np.float32))


def _lidar_depth(path: Path, data: bytes) -> np.ndarray:
    """KITTI LiDAR depth from the bytes `data` of `path`: an .npz of one array in metres or a KITTI depth PNG."""
    if path.suffix.lower() == ".npz":
        try:
            with np.load(io.BytesIO(data)) as archive:
                if len(archive.files) != 1:
                    raise ImageError(f"{path} should hold one depth array, holds {archive.files}")
                depth = archive[archive.files[0]].astype(np.float32)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            if isinstance(exc, ImageError):
                raise
            raise ImageError(f"{path} is not a readable depth archive (truncated or damaged?): {exc}") from exc
    else:
        raw = _one_channel(path, data, np.uint16, "depth PNG",
                           "a KITTI depth PNG is one 16-bit channel of metres * 256 (its depth would be read wrong)")
        depth = raw.astype(np.float32) / 256.0
    return np.where(depth > 0, depth, np.nan).astype(np.float32)


def _one_channel(path: Path, data: bytes, dtype: type[np.generic], what: str, layout: str) -> np.ndarray:
    """The image at `path` as stored, decoded from its bytes `data`; ImageError naming it when it does not decode
    (`what`: its kind) or is not one channel of `dtype` (`layout`: what its kind holds, and what reading another
    would break)."""
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageError(f"{path} is not a readable {what} (truncated or damaged?)")
    if raw.dtype != dtype or raw.ndim != 2:
        raise ImageError(f"{path} is {raw.dtype} with {raw.shape[2] if raw.ndim == 3 else 1} channel(s): {layout}")
    return raw


def is_kitti_set(folder: Path) -> bool:
    """Whether `folder` is KITTI raw with projected depth: a drive folder holding `proj_depth/`, a date folder of
    such drives or the folder above the date folders."""
    return (folder / "proj_depth").is_dir() or any(folder.glob("*/proj_depth")) or any(folder.glob("*/*/proj_depth"))


def is_middlebury_set(folder: Path) -> bool:
    return any(folder.glob("*/disp[0-9].pgm"))


def kitti_depth_files(folder: Path) -> list[Path]:
    """One projected depth file per KITTI frame (drive, camera, frame) under `folder`, in frame order: the frame's
    groundtruth/ file where it has one, else the first of its others by path (velodyne/ before velodyne_raw/)."""
    chosen: dict[tuple[Path, str, str], Path] = {}
    for depth_path in linked_rglob(folder, "proj_depth/*/image_0[0-9]/*"):
        if depth_path.suffix.lower() not in (".npz", ".png"):
            continue
        frame = (depth_path.parents[3], depth_path.parent.name, depth_path.stem)
        if frame not in chosen or (depth_path.parents[1].name == KITTI_GROUND_TRUTH
                                   and chosen[frame].parents[1].name != KITTI_GROUND_TRUTH):
            chosen[frame] = depth_path
    truth = sum(path.parents[1].name == KITTI_GROUND_TRUTH for path in chosen.values())
    if 0 < truth < len(chosen):
        LOG.info("%s: %d of %d KITTI frames have no %s/ depth: their LiDAR scan stands in", folder,
                 len(chosen) - truth, len(chosen), KITTI_GROUND_TRUTH)
    return [chosen[frame] for frame in sorted(chosen)]


def load_kitti(folder: str | Path) -> DepthSet:
    """Every KITTI raw frame under `folder` that has projected LiDAR depth, once (`kitti_depth_files`), listed
    unread; ImageError for a depth file without its image or a folder without frames."""
    folder = Path(folder)
    frames: list[Frame] = []
    for depth_path in kitti_depth_files(folder):
        drive = depth_path.parents[3]
        camera = depth_path.parent.name
        candidates = sorted((drive / camera / "data").glob(f"{depth_path.stem}.*"))
        image_path = next((p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES), None)
        if image_path is None:
            raise ImageError(f"{depth_path} has no image {depth_path.stem}.* in {drive / camera / 'data'}: KITTI "
                             "depth's proj_depth/ is read in its KITTI raw drive folder, beside image_0X/data/ (move "
                             "or link data_depth_annotated's DRIVE/proj_depth/ into the raw DATE/DRIVE/)")
        frames.append(DepthFrame(f"{drive.name}/{camera}/{depth_path.stem}", image_path, depth_path, _lidar_depth))
    if not frames:
        raise ImageError(f"{folder} holds no KITTI frames with proj_depth/ LiDAR depth")
    return DepthSet(folder.name, frames, KITTI_MAX_DEPTH, sparse=True)


def is_kitti_selection_set(folder: Path) -> bool:
    """Whether `folder` has KITTI depth's selection layout (val_selection_cropped): image/ beside
    groundtruth_depth/."""
    return all((folder / kind).is_dir() for kind in (SELECTION_IMAGE, SELECTION_TRUTH))


def _selection_files(folder: Path, kind: str, suffixes: tuple[str, ...]) -> dict[tuple[str, str, str], Path]:
    """{(drive, camera, frame): file} of the `kind/` folder of a selection layout ({} without it), hidden files and
    other suffixes left out; ImageError for a file not named as KITTI names that folder's, or two of one frame."""
    files: dict[tuple[str, str, str], Path] = {}
    if not (folder / kind).is_dir():
        return files
    for path in sorted((folder / kind).iterdir()):
        if not path.is_file() or path.suffix.lower() not in suffixes or path.name.startswith("."):
            continue
        match = SELECTION_NAME.fullmatch(path.stem)
        if match is None or match["kind"] != kind:
            raise ImageError(f"{path} is not named DRIVE_{kind}_FRAME_image_0X{path.suffix} as KITTI's depth "
                             "selection names its files")
        frame = (match["drive"], match["camera"], match["frame"])
        if frame in files:
            raise ImageError(f"{files[frame]} and {path} are the same frame: keep one")
        files[frame] = path
    return files


def load_kitti_selection(folder: str | Path) -> DepthSet:
    """Every frame of a KITTI depth-selection folder (image/ + groundtruth_depth/, velodyne_raw/ standing in for a
    missing groundtruth file), listed unread and named DRIVE/image_0X/FRAME; ImageError for an image without a
    depth file, a depth file without its image, a misnamed file or a folder without frames."""
    folder = Path(folder)
    images = _selection_files(folder, SELECTION_IMAGE, IMAGE_SUFFIXES)
    truth = _selection_files(folder, SELECTION_TRUTH, (".png",))
    lidar = _selection_files(folder, SELECTION_LIDAR, (".png",))
    for frame, depth_path in {**lidar, **truth}.items():
        if frame not in images:
            raise ImageError(f"{depth_path} has no image {_selection_stem(SELECTION_IMAGE, frame)}.png in "
                             f"{folder / SELECTION_IMAGE}")
    frames: list[Frame] = []
    for frame in sorted(images):
        depth_path = truth.get(frame, lidar.get(frame))
        if depth_path is None:
            raise ImageError(f"{images[frame]} has no ground truth {_selection_stem(SELECTION_TRUTH, frame)}.png in "
                             f"{folder / SELECTION_TRUTH}")
        drive, camera, name = frame
        frames.append(DepthFrame(f"{drive}/{camera}/{name}", images[frame], depth_path, _lidar_depth))
    if not frames:
        raise ImageError(f"{folder / SELECTION_IMAGE} holds no KITTI depth-selection images")
    if len(truth) < len(frames):
        LOG.info("%s: %d of %d KITTI frames have no %s/ depth: their LiDAR scan stands in", folder,
                 len(frames) - len(truth), len(frames), SELECTION_TRUTH)
    return DepthSet(folder.name, frames, KITTI_MAX_DEPTH, sparse=True)


def _selection_stem(kind: str, frame: tuple[str, str, str]) -> str:
    drive, camera, name = frame
    return f"{drive}_{kind}_{name}_{camera}"


def selection_intrinsics(folder: Path, sample_name: str) -> Intrinsics:
    """The intrinsics of frame `sample_name` (DRIVE/image_0X/FRAME) of a depth-selection `folder`, from its
    `intrinsics/` file: 9 finite numbers, a 3x3 K with positive focal lengths and a last row 0 0 1 (ImageError
    naming the file otherwise)."""
    drive, camera, name = sample_name.split("/")
    path = folder / SELECTION_INTRINSICS / f"{_selection_stem(SELECTION_IMAGE, (drive, camera, name))}.txt"
    if not path.is_file():
        raise ImageError(f"{path} is missing: the intrinsics of {sample_name} are unknown")
    try:
        k = [float(value) for value in path.read_text().split()]
    except (UnicodeDecodeError, ValueError) as exc:
        raise ImageError(f"{path} is not a text file of 9 numbers (the 3x3 K): {exc}") from None
    if len(k) != 9 or not all(map(math.isfinite, k)):
        raise ImageError(f"{path} holds {len(k)} numbers{'' if len(k) != 9 else ', not all finite'}: the 3x3 K is 9 "
                         "finite numbers")
    if k[6:] != [0.0, 0.0, 1.0]:
        raise ImageError(f"{path}: K's last row is {k[6:]}, not 0 0 1 (a transposed K puts the principal point "
                         "there)")
    try:
        return Intrinsics.from_k(k)
    except ValueError as exc:
        raise ImageError(f"{path}: {exc}") from None


def middlebury_depth(disparity_file: str | Path, data: bytes | None = None) -> np.ndarray:
    """Metres from a Middlebury 2003 quarter-size disparity file (NaN where the disparity is unknown); `data`: its
    bytes when they are read already."""
    path = Path(disparity_file)
    raw = _one_channel(path, file_bytes(path) if data is None else data, np.uint8, "disparity image",
                       "a Middlebury 2003 disparity is one 8-bit channel (its scale would be read wrong)")
    disparity = raw.astype(np.float32) / MIDDLEBURY_DISPARITY_SCALE
    with np.errstate(divide="ignore"):
        depth = MIDDLEBURY_FOCAL_PX * MIDDLEBURY_BASELINE_M / disparity
    return np.where(disparity > 0, depth, np.nan).astype(np.float32)


def load_middlebury(folder: str | Path) -> DepthSet:
    """Every view `SCENE/imK.png` under `folder` with its `SCENE/dispK.pgm`, listed unread; ImageError for a
    disparity file without its image or a folder without any."""
    folder = Path(folder)
    frames: list[Frame] = []
    for disparity_path in sorted(folder.glob("*/disp[0-9].pgm")):
        view = disparity_path.stem.removeprefix("disp")
        image_path = disparity_path.with_name(f"im{view}.png")
        if not image_path.is_file():
            raise ImageError(f"{disparity_path} has no image {image_path.name} beside it")
        frames.append(DepthFrame(f"{disparity_path.parent.name}/im{view}", image_path, disparity_path,
                                 middlebury_depth))
    if not frames:
        raise ImageError(f"{folder} holds no Middlebury SCENE/dispK.pgm files")
    return DepthSet(folder.name, frames, MIDDLEBURY_MAX_DEPTH, sparse=False)


def load_depth_set(folder: str | Path) -> DepthSet:
    """A KITTI (raw or depth-selection) or Middlebury set, told apart by its layout, listed unread."""
    folder = Path(folder)
    if is_kitti_set(folder):
        return load_kitti(folder)
    if is_kitti_selection_set(folder):
        return load_kitti_selection(folder)
    if is_middlebury_set(folder):
        return load_middlebury(folder)
    raise ImageError(f"{folder} is neither a KITTI raw set (proj_depth/), a KITTI depth selection (image/ + "
                     "groundtruth_depth/) nor a Middlebury set (SCENE/dispK.pgm)")
