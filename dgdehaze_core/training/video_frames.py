"""Training data for self-supervised depth: consecutive frames of calibrated camera video.

A `VideoSequence` is an ordered list of frames and the camera's intrinsics, stored normalised by the size the
calibration refers to, so that they scale to any training resolution. Every frame is resized to the recipe's
(width, height) whatever its own size. KITTI raw folders are found by their layout: `DATE/calib_cam_to_cam.txt`
(P_rect_0X: the rectified camera's projection, S_rect_0X: the size it refers to) beside
`DATE/DRIVE/image_0X/data/*`. A `FrameFolder` is any other folder of consecutive frames: the files that match its
pattern in name order, with the camera's intrinsics in the files' pixels given by the recipe, an optional crop
box (e.g. to cut a car's hood, or to bring a taller frame near the training aspect) and the significant bits of
its 16-bit samples (`input_bits`, as the node's: 12 for a 12-bit camera's PNG exports, which read with 16 train on
nearly black frames; a sequence whose frames look so is warned of once).

`FrameTuples` draws a target frame with its neighbours at the recipe's offsets (e.g. -1, +1), flips the tuple
left-right at random and jitters its colour (the same way for all of its frames); the network sees the jittered
frames, the loss compares the unjittered ones (monodepth2). Tuples whose camera barely moves (`min_change`) are
left out, and so are tuples that change by more than `max_change` (a cut between two recordings, or frames
too far apart to overlap), and so are those whose neighbours would skip a frame missing from a KITTI drive, or
take one it holds twice (its names number its frames). Like `RandomCrops`, each sample is a function of its
index alone, so a resumed run continues the same stream.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dgdehaze_core.io.folder_walk import linked_rglob
from dgdehaze_core.io.images import (IMAGE_SUFFIXES, SAMPLE_BITS, ImageError, ImageReader, ReadImage, is_hidden,
                                     read_image)
from dgdehaze_core.training.bag_frames import is_bag_path, recording_kind

LOG = logging.getLogger(__name__)

KITTI_CALIBRATION = "calib_cam_to_cam.txt"
RECORDING_REMEDY = ("train-depth reads a recording's frames saved as image files, in time order: extract a video's "
                    "(e.g. ffmpeg -i drive.mp4 frames/%06d.png) or a bag's image topic into a folder and name it with "
                    "the camera's intrinsics (docs/DEPTH.md)")
"""What a sequence that names a video or a bag is told: its frames are not read from the recording."""
BITS_REMEDY = "set input_bits: 12 on its entry in the recipe's sequences (this is said once per sequence)"
"""What the warning on a sequence's 16-bit frames that look like a 12-bit camera's read with 16 bits asks for."""
ASPECT_TOLERANCE = 0.02
"""How far a frame's aspect may lie from that of the image its intrinsics describe before it is warned of: KITTI
resized to monodepth2's 640x192 is 0.6 % off, resized so its intrinsics still hold; cropped to 1216x352, 4 %."""
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.2, 0.2, 0.2, 0.05
"""Colour-jitter ranges (monodepth2's): factors drawn from [1 - r, 1 + r]; hue as a fraction of the circle."""


@dataclass(frozen=True)
class VideoSequence:
    """Ordered frame files and the intrinsics as fractions of the (cropped) image size (fx/w, fy/h, cx/w, cy/h);
    `crop` (left, top, right, bottom in the files' pixels) is cut from every frame before it is resized, and
    `frame_offsets`, where given, replace the recipe's for this sequence (video at another frame rate). `folder`,
    where the frames lie, tells apart two sequences of one name (the same drive under two roots). `bits`: the
    significant bits of the frames' 16-bit samples. `numbers`: each frame's number in its recording where the names
    give it (KITTI raw's), so that a tuple whose neighbours would skip a missing frame is left out (`FrameTuples`);
    None where the names do not number the frames one by one. `calibrated_size`: (width, height) of the image the
    intrinsics describe (KITTI's S_rect_0X, a folder's first frame), before any crop; a frame of another aspect is
    warned of once (`FrameTuples`), as a cropped one would train with intrinsics that are not its own."""

    name: str
    frames: tuple[Path, ...]
    normalised_intrinsics: tuple[float, float, float, float]
    crop: tuple[int, int, int, int] | None = None
    frame_offsets: tuple[int, ...] | None = None
    folder: Path | None = None
    bits: int = SAMPLE_BITS
    numbers: tuple[int, ...] | None = None
    calibrated_size: tuple[int, int] | None = None

    @property
    def where(self) -> str:
        """The sequence for a message: its name and the folder its frames lie in."""
        return self.name if self.folder is None else f"{self.name} ({self.folder})"

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """The 3x3 K for frames resized to width x height."""
        fx, fy, cx, cy = self.normalised_intrinsics
        return np.array([[fx * width, 0.0, cx * width], [0.0, fy * height, cy * height], [0.0, 0.0, 1.0]],
                        dtype=np.float32)


def read_kitti_intrinsics(calibration: Path, camera: str) -> tuple[float, float, float, float]:
    """Normalised (fx/w, fy/h, cx/w, cy/h) of rectified camera `camera` ("02") from a calib_cam_to_cam.txt."""
    return read_kitti_calibration(calibration, camera)[0]


def read_kitti_calibration(calibration: Path, camera: str) -> tuple[tuple[float, float, float, float],
                                                                     tuple[int, int]]:
    """`read_kitti_intrinsics`'s normalised intrinsics and the (width, height) they refer to (S_rect_0X)."""
    values: dict[str, list[float]] = {}
    try:
        for line in calibration.read_text(encoding="utf-8").splitlines():
            key, _, text = line.partition(":")
            if key.strip() in (f"P_rect_{camera}", f"S_rect_{camera}"):
                values[key.strip()] = [float(v) for v in text.split()]
    except (OSError, ValueError) as exc:
        raise ImageError(f"{calibration} is not a readable KITTI calibration: {exc}") from None
    projection, size = values.get(f"P_rect_{camera}"), values.get(f"S_rect_{camera}")
    if projection is None or len(projection) != 12 or size is None or len(size) != 2:
        raise ImageError(f"{calibration} lacks P_rect_{camera} (12 numbers) or S_rect_{camera} (width height)")
    width, height = size
    return ((projection[0] / width, projection[5] / height, projection[2] / width, projection[6] / height),
            (round(width), round(height)))


@dataclass(frozen=True)
class FrameFolder:
    """A folder of consecutive frames that is not KITTI raw: the files matching `include` in name order, the
    camera's intrinsics (fx, fy, cx, cy) in pixels of the files, an optional crop box (left, top, right, bottom)
    in the same pixels, optional frame offsets of its own (as many as the recipe's) and the significant bits of
    its 16-bit samples."""

    path: Path
    intrinsics: tuple[float, float, float, float]
    include: str = "*"
    crop: tuple[int, int, int, int] | None = None
    frame_offsets: tuple[int, ...] | None = None
    input_bits: int = SAMPLE_BITS


def _by_numbers(path: Path) -> list[list[tuple[int, int | str]]]:
    """Each part of a path as its runs of digits, each compared by its value, and the text between them."""
    return [[(0, int(run)) if run.isdigit() else (1, run) for run in re.split(r"(\d+)", part) if run]
            for part in path.parts]


def frames_in_order(paths: Iterable[Path], folder: Path) -> tuple[Path, ...]:
    """The image files among `paths` (under `folder`, hidden ones left out) in name order; ImageError, naming two of
    them, where the numbers in their names give another order (frame10.png before frame2.png: numbers not
    zero-padded), which would make neighbours of frames that are not."""
    by_name = sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and not is_hidden(p, folder))
    by_number = sorted(by_name, key=_by_numbers)
    if by_name != by_number:
        first, second = next((a, b) for a, b in zip(by_name, by_number) if a != b)
        raise ImageError(f"the frames in {folder} are in one order by name and in another by the numbers in their "
                         f"names ({first.relative_to(folder)} sorts before {second.relative_to(folder)}): name them "
                         "with numbers of one width (zero-padded), so that name order is time order")
    return tuple(by_name)


def _check_frame_folder(path: Path) -> None:
    """FileNotFoundError where `path` is no folder; ImageError where it is a recording (a video or a bag file, or a
    rosbag2 folder) or another file, whose frames train-depth does not read."""
    if is_bag_path(path) or path.is_file():
        raise ImageError(f"{path} is {recording_kind(path) or 'a file'}, not a folder of frames: {RECORDING_REMEDY}")
    if not path.is_dir():
        raise FileNotFoundError(f"no such sequence folder: {path}")


def _recordings_in(folder: Path, include: str) -> str:
    """A note naming the first of the videos and bags among `folder`'s files matching `include`, or ''."""
    recordings = sorted(path for path in folder.glob(include) if recording_kind(path))
    if not recordings:
        return ""
    return f" (it holds {len(recordings)} video(s) or bag(s), e.g. {recordings[0].name}: {RECORDING_REMEDY})"


def folder_sequence(folder: FrameFolder) -> VideoSequence:
    """The `VideoSequence` of a `FrameFolder`: intrinsics moved into the crop and normalised by its size."""
    _check_frame_folder(folder.path)
    frames = frames_in_order(folder.path.glob(folder.include), folder.path)
    if not frames:
        raise ImageError(f"{folder.path} holds no frames matching {folder.include!r}"
                         f"{_recordings_in(folder.path, folder.include)}")
    height, width = read_image(frames[0]).shape[:2]
    left, top, right, bottom = folder.crop or (0, 0, width, height)
    if not 0 <= left < right <= width or not 0 <= top < bottom <= height:
        raise ImageError(f"crop {list(folder.crop or ())} does not lie inside the {width}x{height} frames of "
                         f"{folder.path}")
    fx, fy, cx, cy = folder.intrinsics
    if not (0 <= cx <= width and 0 <= cy <= height):
        raise ImageError(f"the intrinsics of {folder.path} put the principal point ({cx:g}, {cy:g}) outside its "
                         f"{width}x{height} frames: give fx, fy, cx, cy in the files' pixels (a calibration of "
                         "another image size scales with the frames: times their width over its width)")
    crop_width, crop_height = right - left, bottom - top
    normalised = (fx / crop_width, fy / crop_height, (cx - left) / crop_width, (cy - top) / crop_height)
    return VideoSequence(f"{folder.path.name}/{folder.include}", frames, normalised, folder.crop,
                         folder.frame_offsets, folder.path, folder.input_bits, calibrated_size=(width, height))


def load_sequences(source: Path | FrameFolder, camera: str = "02") -> list[VideoSequence]:
    """The sequences of one recipe entry: every KITTI raw drive under a folder, or one `FrameFolder`."""
    return [folder_sequence(source)] if isinstance(source, FrameFolder) else find_kitti_sequences(source, camera)


def find_kitti_sequences(root: Path, camera: str = "02") -> list[VideoSequence]:
    """Every `DRIVE/image_<camera>/data` folder under `root` with the calibration of its date folder; hidden files
    and folders left out (`is_hidden`), as a `FrameFolder`'s are."""
    _check_frame_folder(root)
    sequences = []
    for folder in linked_rglob(root, f"image_{camera}/data"):
        drive = folder.parent.parent
        calibration = drive.parent / KITTI_CALIBRATION
        if not calibration.is_file():
            raise ImageError(f"{folder} has no {KITTI_CALIBRATION} in {drive.parent}")
        frames = frames_in_order(folder.iterdir(), folder)
        numbers = tuple(int(frame.stem) for frame in frames) if all(frame.stem.isdigit() for frame in frames) else None
        intrinsics, size = read_kitti_calibration(calibration, camera)
        sequences.append(VideoSequence(f"{drive.name}/image_{camera}", frames, intrinsics, folder=folder,
                                       numbers=numbers, calibrated_size=size))
    if not sequences:
        raise ImageError(f"{root} holds no KITTI raw frames (DRIVE/image_{camera}/data/ beside a "
                         f"{KITTI_CALIBRATION}); another camera's frames are a mapping with 'path' and "
                         f"'intrinsics' [fx, fy, cx, cy] (docs/DEPTH.md){_recordings_in(root, '*')}")
    return sequences


def load_frame(path: Path, width: int, height: int, crop: tuple[int, int, int, int] | None = None,
               read: ReadImage = read_image) -> np.ndarray:
    """A frame read by `read` (its sequence's `ImageReader`) as RGB uint8 at exactly width x height (area-averaged
    down, cubic up), after cutting `crop` (left, top, right, bottom) from it."""
    image = read(path)[:, :, ::-1]
    if crop is not None:
        left, top, right, bottom = crop
        if image.shape[0] < bottom or image.shape[1] < right:
            raise ImageError(f"{path} ({image.shape[1]}x{image.shape[0]}) is smaller than the crop {list(crop)}")
        image = image[top:bottom, left:right]
    if image.shape[:2] != (height, width):
        shrink = image.shape[0] > height and image.shape[1] > width
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.ascontiguousarray(image)


def _without_gaps(sequence: VideoSequence, targets: range, offsets: Sequence[int]) -> list[int]:
    """The `targets` (indices into the sequence's frames) whose neighbours at `offsets` are the frames that many
    numbers away (`VideoSequence.numbers`): a frame missing from a KITTI drive, or one there twice (a .jpg and a
    .png), would otherwise make neighbours of frames that the offsets do not name. Those left out are counted in one
    warning naming the first number missing or repeated."""
    numbers = sequence.numbers
    if numbers is None:
        return list(targets)
    kept = [index for index in targets
            if all(numbers[index + offset] - numbers[index] == offset for offset in offsets)]
    if len(kept) < len(targets):
        width = len(sequence.frames[0].stem)
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        repeated = sorted(number for number, count in Counter(numbers).items() if count > 1)
        found = ([f"{len(missing)} missing, the first {missing[0]:0{width}d}"] if missing else []) + (
            [f"{len(repeated)} given twice, the first {repeated[0]:0{width}d}"] if repeated else [])
        LOG.warning("sequence %s: its frame numbers are not consecutive (%s): the %d of its %d frame tuples whose "
                    "neighbours would not be the frames the offsets name are left out", sequence.where,
                    "; ".join(found), len(targets) - len(kept), len(targets))
    return kept


def _warning_of_another_aspect(sequence: VideoSequence, read: ReadImage) -> ReadImage:
    """`read`, warning once for the sequence of a frame whose aspect lies more than ASPECT_TOLERANCE from the image
    its intrinsics describe (`VideoSequence.calibrated_size`): right for a frame resized so, wrong for a cropped one."""
    if sequence.calibrated_size is None:
        return read
    calibrated_width, calibrated_height = sequence.calibrated_size
    warned = False

    def checked(path: Path) -> np.ndarray:
        nonlocal warned
        image = read(path)
        height, width = image.shape[:2]
        change = (width / height) / (calibrated_width / calibrated_height) - 1
        if not warned and abs(change) > ASPECT_TOLERANCE:
            warned = True
            LOG.warning("sequence %s: %s is %dx%d, %.1f %% %s than the %dx%d image its intrinsics describe: resized "
                        "so, its intrinsics scale with it; cropped so, they are wrong: give cropped frames a folder "
                        "and a mapping with intrinsics of their own (said once per sequence)", sequence.where,
                        path.name, width, height, abs(change) * 100, "wider" if change > 0 else "narrower",
                        calibrated_width, calibrated_height)
        return image
    return checked


def _jitter(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and hue changes drawn once, applied to every frame (F, H, W, 3) in [0, 1]."""
    out = frames * rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * rng.uniform(1 - CONTRAST, 1 + CONTRAST) + mean
    gray = out.mean(axis=3, keepdims=True)
    out = np.clip((out - gray) * rng.uniform(1 - SATURATION, 1 + SATURATION) + gray, 0.0, 1.0).astype(np.float32)
    shift = rng.uniform(-HUE, HUE) * 360.0
    hsv = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2HSV) for frame in out])
    hsv[..., 0] = np.mod(hsv[..., 0] + shift, 360.0)
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_HSV2RGB) for frame in hsv])


class FrameTuples(Dataset):
    """Samples {"frames", "inputs": (F, 3, H, W) float RGB in [0, 1], "intrinsics": (3, 3)}: frame 0 is the target,
    then one source per offset. "frames" feed the loss, "inputs" (colour-jittered) the networks."""

    def __init__(self, sequences: Sequence[VideoSequence], width: int, height: int, offsets: Sequence[int],
                 seed: int = 0, augment: bool = True, min_change: float = 0.0, max_change: float = 1.0) -> None:
        if not offsets or 0 in offsets:
            raise ValueError(f"frame offsets must be non-zero, got {list(offsets)}")
        self.width, self.height = width, height
        self.seed, self.augment = seed, augment
        self.sequences = list(sequences)
        self.offsets = [tuple(sequence.frame_offsets or offsets) for sequence in self.sequences]
        self.frames: list[np.ndarray] = []
        self.samples: list[tuple[int, int]] = []
        for sequence, own in zip(self.sequences, self.offsets):  # every sequence before any frame is read
            if len(own) != len(offsets) or 0 in own or [o < 0 for o in own] != [o < 0 for o in offsets]:
                raise ValueError(f"sequence {sequence.where}: its frame offsets {list(own)} must be non-zero, as "
                                 f"many as the recipe's {list(offsets)} and of their signs in their order (the "
                                 "pose network is told which sources come earlier by the recipe's)")
            span = max(max(own), 0) - min(min(own), 0) + 1
            if len(sequence.frames) < span:
                raise ImageError(f"sequence {sequence.where} has {len(sequence.frames)} frame(s); self-supervised "
                                 f"depth needs at least {span} consecutive frames for offsets {list(own)}")
        for number, (sequence, own) in enumerate(zip(self.sequences, self.offsets)):
            read = _warning_of_another_aspect(sequence, ImageReader(sequence.bits, BITS_REMEDY))
            self.frames.append(np.stack([load_frame(path, width, height, sequence.crop, read)
                                         for path in sequence.frames]))
            first, last = -min(min(own), 0), len(sequence.frames) - max(max(own), 0)
            targets = _without_gaps(sequence, range(first, last), own)
            self.samples += [(number, index) for index in targets
                             if self._changes_within(number, index, min_change, max_change)]
        if not self.samples:
            raise ImageError(f"no frame tuple changes by {min_change} to {max_change} (mean absolute difference) "
                             "between its target and its sources: the camera does not move, or every neighbour is "
                             "another scene")
        LOG.info("%d training tuples from %d sequence(s) at %dx%d, offsets %s", len(self.samples),
                 len(self.sequences), width, height, sorted(set(self.offsets)))

    def _changes_within(self, number: int, target: int, min_change: float, max_change: float) -> bool:
        """Whether every source differs from the target by at least `min_change` (a static camera teaches
        nothing: monodepth2 leaves such frames out) and at most `max_change` (a cut to another scene)."""
        frames = self.frames[number]
        reference = frames[target].astype(np.float32)
        return all(min_change <= np.abs(frames[target + offset] - reference).mean() / 255.0 <= max_change
                   for offset in self.offsets[number])

    def __len__(self) -> int:
        return 2 ** 62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 4, int(index)])
        number, target = self.samples[int(rng.integers(len(self.samples)))]
        indices = [target, *(target + offset for offset in self.offsets[number])]
        frames = self.frames[number][indices].astype(np.float32) / 255.0
        intrinsics = self.sequences[number].intrinsics(self.width, self.height)
        if self.augment and rng.random() < 0.5:
            frames = frames[:, :, ::-1]
            intrinsics[0, 2] = self.width - 1 - intrinsics[0, 2]
        inputs = _jitter(frames, rng) if self.augment and rng.random() < 0.5 else frames

        def tensor(array: np.ndarray) -> torch.Tensor:  # contiguous, as a worker's batch is: the same arithmetic
            return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous()

        return {"frames": tensor(frames), "inputs": tensor(inputs), "intrinsics": torch.from_numpy(intrinsics)}
