"""Training data: random crops from folders of unpaired images, frames of videos and of bags (`bag_frames`), and
paired validation folders.

Validation folders are paired by `dgdehaze_core.datasets.paired_sets` (the same rules as `dgdehaze eval`).
Images are decoded once a run (`DecodeCache`, where several sources list them), scaled so that their long side
is at most `max_side`, and kept in memory as RGB uint8.
Each sample is a function of its index alone (the generator is seeded with the recipe seed and the index), so a
run draws the same crops whatever the number of loader workers, and a resumed run continues the same stream.
"""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from collections import Counter
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from dgdehaze_core.datasets.paired_sets import Pair, find_pairs, load_pair
from dgdehaze_core.datasets.splits import refuse_judging_files
from dgdehaze_core.evaluation.metrics import SSIM_MIN_SIDE
from dgdehaze_core.io.file_paths import VIDEO_SUFFIXES, listing
from dgdehaze_core.io.folder_walk import linked_folders
from dgdehaze_core.io.images import (MAX_PIXELS, SAMPLE_BITS, ImageError, ImageReader, ReadImage, images_under,
                                     is_hidden, read_image)
from dgdehaze_core.io.videos import VideoFrames, video_frame_count
from dgdehaze_core.training.bag_frames import (BAG_SUFFIXES, bag_frame_indices, decoded_frames, is_bag_path,
                                                read_bag_frames)
from dgdehaze_core.training.recipe import ImageSource

LOG = logging.getLogger(__name__)

BAG_FORMS = "a rosbag2 folder with metadata.yaml, a .mcap, .db3 or .bag file"
"""What a source must be to be read as a bag (`bag_frames.is_bag_path`), as the messages on a source say it."""

MAX_NAMED = 10
"""The most image files the error or the warning on a source's files names (`decode_training_images`)."""
MAX_GROWTH = 2.0
"""How far an image file may be scaled up to reach the crop's short side before `decode_training_images` warns of it:
beyond it, the crops of a thumbnail or an icon hold a few pixels blown up, not a camera's."""

FILE_REMEDY = "set input_bits: 12 on its source in the recipe (this is said once per source)"
"""What the warning on a training source's 16-bit images that look like a 12-bit camera's asks for (its files'
`io.images.ImageReader`, its bag's `bags.io.BagSource`)."""


@dataclass(frozen=True)
class TrainingImage:
    """An image file, frame `frame` of a video file, or (with `topic`) frame `frame` of that image topic of a bag."""

    path: Path
    frame: int | None = None
    topic: str = ""
    bits: int = SAMPLE_BITS
    """Significant bits of its 16-bit samples (its source's `input_bits`)."""


def _bag_frames(source: ImageSource, kind: str) -> list[TrainingImage]:
    topic, indices = bag_frame_indices(source.path, source.topic, source.frame_step, kind)
    return [TrainingImage(source.path, index, topic, source.input_bits) for index in indices]


def _video_frames(source: ImageSource, kind: str) -> list[TrainingImage]:
    count = video_frame_count(source.path)
    if count <= 0:
        raise ImageError(f"{kind} images: {source.path} is not a readable video (no frame count)")
    return [TrainingImage(source.path, frame) for frame in range(0, count, source.frame_step)]


def _recordings_under(folder: Path) -> list[Path]:
    """The video files and bags (a rosbag2 folder, a .mcap, .db3 or .bag file) in `folder` and its subfolders,
    hidden ones left out: what a folder source does not read."""
    found = set()
    for current, files in linked_folders(folder):
        for name in files:
            suffix = Path(name).suffix.lower()
            if suffix in BAG_SUFFIXES and "metadata.yaml" in files:
                found.add(current)
            elif suffix in (*VIDEO_SUFFIXES, *BAG_SUFFIXES):
                found.add(current / name)
    return sorted(path for path in found if not is_hidden(path, folder))


def _folder_images(source: ImageSource, kind: str) -> list[TrainingImage]:
    """Every `frame_step`-th image under the folder (matching `include`). The videos and bags under it, which it
    does not read, are named: in the ImageError where it holds no image, else in a warning."""
    if not source.path.is_dir():
        raise NotADirectoryError(f"{kind} images: {source.path} is not a folder, a video file or a bag ({BAG_FORMS})")
    paths, recordings = images_under(source.path), _recordings_under(source.path)
    if source.include:
        paths, recordings = ([p for p in found if any(fnmatch.fnmatch(p.name, pattern) for pattern in source.include)]
                             for found in (paths, recordings))
    if recordings:
        named = ", ".join(str(path.relative_to(source.path)) for path in recordings[:5])
        unread = (f"{source.path} holds {len(recordings)} video(s) or bag(s) that a folder source does not read "
                  f"({named}{' ...' if len(recordings) > 5 else ''}): name each as a source of its own")
        if not paths:
            raise ImageError(f"{kind} images: no images in {source.path}; {unread}")
        LOG.warning("%s images: %s", kind, unread)
    return [TrainingImage(path, bits=source.input_bits) for path in paths[::source.frame_step]]


def collect_images(sources: Sequence[ImageSource], kind: str) -> list[tuple[TrainingImage, float, ImageSource]]:
    """(image, draw weight, its source) for every image of every source (a folder, or every `frame_step`-th frame
    of a video file or of a bag's image topic, listed from the bag's index without decoding); a missing or empty
    source raises with its path, a `topic` on a source that is no bag is refused, and SplitError refuses images that
    only judge (`judging_files`: a folder without `include`, or a glob, can reach a split's judge part).

    A source's weight is shared by its images, so a source of 15 images with weight 1 is drawn as often as one
    of 200 images with weight 1.
    """
    found: list[tuple[TrainingImage, float, ImageSource]] = []
    for source in sources:
        if not source.path.exists():
            raise FileNotFoundError(f"{kind} images: no such folder, video or bag {source.path}")
        is_video = source.path.is_file() and source.path.suffix.lower() in VIDEO_SUFFIXES
        if is_bag_path(source.path):
            images = _bag_frames(source, kind)
        elif source.topic:
            raise ImageError(f"{kind} images: 'topic' {source.topic!r} names a bag's image topic, but {source.path} "
                             f"is no bag ({BAG_FORMS})")
        else:
            images = _video_frames(source, kind) if is_video else _folder_images(source, kind)
        if not images:
            detail = f" matching {list(source.include)}" if source.include else ""
            raise ImageError(f"{kind} images: no images{detail} in {source.path}")
        found.extend((image, source.weight / len(images), source) for image in images)
    refuse_judging_files(sorted({image.path for image, _, _ in found}), f"{kind} images")
    return found


def _scaled(image: np.ndarray, max_side: int, min_side: int, grown: list[str] | None = None,
            name: str = "") -> np.ndarray:
    """`image` scaled as `load_rgb` says; `name` (its size and scale) added to `grown` where it grows beyond
    MAX_GROWTH."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    scale = max(scale, min_side / min(height, width))
    if grown is not None and scale > MAX_GROWTH:
        grown.append(f"{name} ({width}x{height}, {scale:.1f}x)")
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size[0] * size[1] > MAX_PIXELS:  # a long thin strip brought up to the crop's short side
            raise ImageError(f"a {width}x{height} image would be scaled to {size[0]}x{size[1]} to reach the "
                             f"crop's {min_side} pixels on its short side")
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    return np.ascontiguousarray(image)


def load_rgb(path: Path, max_side: int, min_side: int = 1, read: ReadImage = read_image,
             grown: list[str] | None = None) -> np.ndarray:
    """An image file read with `read` as RGB uint8, scaled down so its long side is at most `max_side` and up so its
    short side is at least `min_side` (named in `grown` where that is more than MAX_GROWTH times). ImageError names
    the file when it cannot be read or would grow too large."""
    try:
        return _scaled(read(path)[:, :, ::-1], max_side, min_side, grown, path.name)
    except ImageError as exc:
        raise ImageError(exc if str(path) in str(exc) else f"{path}: {exc}") from None


DecodeCache = dict[tuple[TrainingImage, int, int], np.ndarray | ImageError]
"""Training images decoded by (image, max_side, min_side), as `load_rgb` gives them, or the ImageError of a bag's or
a video's frame that does not decode: shared by the sources of a run (`decode_training_images`), so that an image
file, a video or a bag that several sources list (as clear and as hazy, or twice) is decoded once and held in memory
once."""


def decode_training_images(images: Sequence[TrainingImage], max_side: int, min_side: int = 1,
                           cache: DecodeCache | None = None) -> dict[TrainingImage, np.ndarray]:
    """Every image as `load_rgb` gives it, by image, with its `bits`; each video and each bag is decoded once for all
    its frames, and an image already in `cache` is not decoded again (those decoded now are added to it). A bag
    frame that does not decode is left out, and so are a video's frames from the first that does not decode on (a
    damaged file, or one cut short: OpenCV reads no further) (`bag_frames.decoded_frames`: one warning per bag or
    video, ImageError when none of its frames decodes). ImageError names a bag that ends before a frame its index
    listed, and every image file that does not read (up to MAX_NAMED), once all are read; the image files scaled up
    more than MAX_GROWTH times to reach `min_side` are warned of once. The image files are read
    by one `ImageReader` per `bits`, which warns once per call when one read with 16 bits looks like a 12-bit
    camera's; a bag's frames are warned of alike, once per bag."""
    cache = {} if cache is None else cache

    def keep(image: TrainingImage, frame: np.ndarray | ImageError) -> None:
        cache[(image, max_side, min_side)] = (frame if isinstance(frame, ImageError)
                                              else _scaled(frame[:, :, ::-1], max_side, min_side))

    todo = [image for image in images if (image, max_side, min_side) not in cache]
    for bag, topic, bits in sorted({(image.path, image.topic, image.bits) for image in todo if image.topic}):
        listed = [image for image in todo if (image.path, image.topic, image.bits) == (bag, topic, bits)]
        taken = read_bag_frames(bag, topic, {image.frame for image in listed if image.frame is not None}, bits,
                                remedy=FILE_REMEDY)
        for image in listed:
            keep(image, taken[image.frame])
    for video in sorted({image.path for image in todo if image.frame is not None and not image.topic}):
        wanted = {image.frame: image for image in todo if image.path == video}
        frames = VideoFrames(video)
        for index, frame in enumerate(frames):
            if index in wanted:
                keep(wanted[index], frame)
        why = ("the file is damaged there (a later frame decodes)" if frames.damaged_at is not None
               else "the frames end before it, though the container reports more (a damaged or cut tail)")
        for index, image in wanted.items():
            if (image, max_side, min_side) not in cache:
                keep(image, ImageError(f"frame {index} does not decode: {why}"))
    readers: dict[int, ImageReader] = {}
    files = [image for image in todo if image.frame is None]
    unreadable: list[str] = []
    grown: list[str] = []
    for image in files:
        reader = readers.setdefault(image.bits, ImageReader(image.bits, FILE_REMEDY))
        try:
            cache[(image, max_side, min_side)] = load_rgb(image.path, max_side, min_side, reader, grown)
        except ImageError as exc:
            unreadable.append(str(exc))
    if unreadable:
        raise ImageError(f"{len(unreadable)} of the {len(files)} image files to train on do not read (remove them "
                         f"or move them out of their source's folder): {'; '.join(unreadable[:MAX_NAMED])}"
                         f"{f'; and {len(unreadable) - MAX_NAMED} more' if len(unreadable) > MAX_NAMED else ''}")
    if grown:
        LOG.warning("%d of the %d image files to train on are scaled up more than %gx to reach the crop's %d pixels "
                    "on their short side, so that their crops hold a few pixels blown up: %s; leave them out, or "
                    "lower crop_size", len(grown), len(files), MAX_GROWTH, min_side, listing(grown, MAX_NAMED))
    decoded = {image: cache[(image, max_side, min_side)] for image in images}
    for bag, topic, bits in sorted({(image.path, image.topic, image.bits) for image in images if image.topic}):
        decoded_frames(f"bag {bag}", repr(topic), {image.frame: decoded[image] for image in images
                                                   if (image.path, image.topic, image.bits) == (bag, topic, bits)})
    for video in sorted({image.path for image in images if image.frame is not None and not image.topic}):
        decoded_frames(f"video {video}", "it", {image.frame: decoded[image] for image in images
                                                if image.path == video and not image.topic})
    return {image: frame for image, frame in decoded.items() if isinstance(frame, np.ndarray)}


DepthOf = Callable[[np.ndarray], np.ndarray]
"""RGB uint8 image (H, W, 3) -> float32 (H, W) relative depth of the whole image."""


class RandomCrops(Dataset):
    """Square crops of `crop` pixels from unpaired images, as 3xHxW float RGB tensors in [0, 1].

    Each crop covers a window of `crop * zoom` pixels (zoom drawn from `zoom_range`, bounded by the image), resized
    to `crop`, so the network sees the scene at several scales (a zoom below 1 enlarges a smaller window); crops
    are flipped left-right at random.

    With `depth_of`, each image's depth is computed once on the whole image (a depth network sees the field of view
    it learned on, not a zoomed crop) and crops are 4xHxW: RGB and the same window of that depth, NaN for the
    images of sources marked `prior_depth`.

    `cache` (`DecodeCache`), given to the clear and the hazy crops of a run, decodes an image that both list once;
    the sources of one dataset share one in any case. `listed`: the sources' `collect_images`, where the caller
    listed them already (a run lists its clear and its hazy sources before it decodes either).
    """

    def __init__(self, sources: Sequence[ImageSource], crop: int, max_side: int,
                 zoom_range: tuple[float, float], seed: int, kind: str, depth_of: DepthOf | None = None,
                 cache: DecodeCache | None = None,
                 listed: Sequence[tuple[TrainingImage, float, ImageSource]] | None = None) -> None:
        listed = collect_images(sources, kind) if listed is None else listed
        cache = {} if cache is None else cache
        self.kind = kind
        self.crop = crop
        self.zoom_range = zoom_range
        self.seed = seed
        self.stream = {"clear": 1, "hazy": 2}.get(kind, 3)
        decoded: dict[TrainingImage, np.ndarray] = {}
        for source in sources:  # one call a source: its reader warns once for it
            decoded.update(decode_training_images([image for image, _, of in listed if of is source], max_side,
                                                  min_side=crop, cache=cache))
        entries = [entry for entry in listed if entry[0] in decoded]
        self.sources = [image for image, _, _ in entries]
        self.images = [decoded[image] for image in self.sources]
        # a source's weight stays shared by the images it still has when bag frames that do not decode are left out
        share = Counter(source for _, _, source in listed)
        kept = Counter(source for _, _, source in entries)
        weights = np.array([w * share[source] / kept[source] for _, w, source in entries], dtype=np.float64)
        self.probabilities = weights / weights.sum()
        self.depths: list[np.ndarray] | None = None
        if depth_of is not None:
            self.depths = [np.full(image.shape[:2], np.nan, np.float32) if source.prior_depth
                           else _checked_depth(depth_of(image), image, path)
                           for image, (path, _, source) in tqdm(zip(self.images, entries), total=len(entries),
                                                                 desc=f"{kind} depth", unit="image", leave=False,
                                                                 disable=None)]
        LOG.info("%s: %d images from %d source(s)%s", kind, len(self.images), len(sources),
                 ", each with its depth" if self.depths is not None else "")

    def __len__(self) -> int:
        return 2 ** 62

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.stream, int(index)])
        chosen = int(rng.choice(len(self.images), p=self.probabilities))
        image = self.images[chosen]
        height, width = image.shape[:2]
        window = int(round(self.crop * rng.uniform(*self.zoom_range)))
        window = max(1, min(window, height, width))
        top = int(rng.integers(0, height - window + 1))
        left = int(rng.integers(0, width - window + 1))
        planes = [image[top:top + window, left:left + window]]
        if self.depths is not None:
            planes.append(self.depths[chosen][top:top + window, left:left + window, None])
        if window != self.crop:
            shrink = window > self.crop
            planes = [cv2.resize(plane, (self.crop, self.crop), interpolation=cv2.INTER_AREA if shrink else
                                 cv2.INTER_CUBIC if plane.dtype == np.uint8 else cv2.INTER_LINEAR).reshape(
                self.crop, self.crop, -1) for plane in planes]
        crop = torch.from_numpy(np.ascontiguousarray(planes[0])).permute(2, 0, 1).float().div_(255.0)
        if self.depths is not None:
            crop = torch.cat([crop, torch.from_numpy(np.ascontiguousarray(planes[1])).permute(2, 0, 1)])
        if rng.random() < 0.5:
            crop = crop.flip(-1)
        return crop


def _checked_depth(depth: np.ndarray, image: np.ndarray, source: TrainingImage) -> np.ndarray:
    if depth.shape != image.shape[:2] or not np.isfinite(depth).all() or float(depth.min()) <= 0:
        raise ValueError(f"the clear-depth network gave no usable depth for {source.path}"
                         f"{'' if source.frame is None else f' frame {source.frame}'}: shape {depth.shape}, "
                         f"range [{np.nanmin(depth)}, {np.nanmax(depth)}]")
    return depth.astype(np.float32)


@dataclass(frozen=True)
class ValidationPair:
    name: str
    hazy: np.ndarray
    """BGR uint8, as the pipeline takes a camera frame."""
    clear: np.ndarray
    """BGR uint8, the same size as `hazy`."""


def validation_pairs(sources: Sequence[ImageSource]) -> list[Pair]:
    """Every pair of the validation folders, paired as `datasets.paired_sets.find_pairs` does; `include` chooses the
    hazy images by name before they pair (one it leaves out need not have its clear image). SplitError when an image
    of a pair only judges (`splits.judging_files`): validation chooses the weights kept (best.pt), as the training
    images shape them."""
    pairs: list[Pair] = []
    for source in sources:
        def matching(paths: list[Path]) -> list[Path]:  # called by find_pairs below, within this iteration
            kept = [path for path in paths if any(fnmatch.fnmatch(path.name, glob) for glob in source.include)]
            if not kept:
                raise ImageError(f"no hazy images matching {list(source.include)} in {source.path}")
            return kept

        pairs.extend(find_pairs(source.path, matching if source.include else None))
    refuse_judging_files(sorted({path for pair in pairs for path in (pair.hazy, pair.clear)}), "validation pairs")
    return pairs


def load_validation(sources: Sequence[ImageSource], max_side: int) -> list[ValidationPair]:
    """Every pair of `validation_pairs(sources)`, both images scaled alike to a long side of at most `max_side`;
    ImageError naming a pair whose short side is then below what SSIM takes (before training, not at its first
    validation)."""
    pairs = []
    for source in sources:
        reader = ImageReader(source.input_bits, FILE_REMEDY)
        for pair in validation_pairs([source]):
            hazy, clear = load_pair(pair, reader)
            scale = min(1.0, max_side / max(hazy.shape[:2]))
            if scale < 1.0:
                size = (max(1, round(hazy.shape[1] * scale)), max(1, round(hazy.shape[0] * scale)))
                hazy = cv2.resize(hazy, size, interpolation=cv2.INTER_AREA)
                clear = cv2.resize(clear, size, interpolation=cv2.INTER_AREA)
            if min(hazy.shape[:2]) < SSIM_MIN_SIDE:
                raise ImageError(f"validation pair {pair.hazy}: {hazy.shape[1]}x{hazy.shape[0]} pixels at "
                                 f"val_max_side {max_side}, and SSIM needs {SSIM_MIN_SIDE} on the short side: leave "
                                 "it out (include), or raise val_max_side where it was scaled down")
            pairs.append(ValidationPair(f"{source.path.name}/{pair.name}", hazy, clear))
    return pairs
