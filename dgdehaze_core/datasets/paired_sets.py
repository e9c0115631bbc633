"""Paired dehazing sets: hazy images with their clear ground truth, matched by name.

A paired set is a folder with `hazy/` and `clear/` (or `GT/`). A hazy file `NAME_anything.ext` (or `NAME.ext`)
pairs with `clear/NAME.*`: RESIDE's `1400_7.png` -> `1400.png`, SOTS outdoor's `0016_0.8_0.08.jpg` -> `0016.jpg`,
O-HAZE's `27_hazy.png` -> `27.png`. When several clear names fit, the longest wins (`a_b_1.png` -> `a_b.png`
before `a.png`). Every problem (missing folder, empty folder, a hazy image without its clear image, two clear
files with one name, unreadable files, sizes that differ) raises a `PairingError` that names the files.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dgdehaze_core.io.images import ImageError, list_images, read_image

CLEAR_FOLDER_NAMES = ("clear", "GT", "gt")
HAZY_FOLDER_NAME = "hazy"


class PairingError(ValueError):
    """A paired set that cannot be evaluated as it is, with the offending files named."""


@dataclass(frozen=True)
class Pair:
    """One hazy image and its clear ground truth; `name` is the hazy file's stem (unique within a set)."""

    name: str
    scene: str
    hazy: Path
    clear: Path


def is_paired_set(folder: Path) -> bool:
    """True when `folder` has a `hazy/` folder and a `clear/` (or `GT/`) folder."""
    return (folder / HAZY_FOLDER_NAME).is_dir() and any((folder / name).is_dir() for name in CLEAR_FOLDER_NAMES)


def _clear_folder(root: Path) -> Path:
    for name in CLEAR_FOLDER_NAMES:
        if (root / name).is_dir():
            return root / name
    raise PairingError(f"{root} has no clear/ (or GT/) folder of ground-truth images")


def _scene_of(hazy_stem: str, clear_stems: set[str]) -> str | None:
    """The longest clear stem that the hazy stem equals or starts with, followed by '_'."""
    candidates = [hazy_stem] + [hazy_stem[:i] for i in range(len(hazy_stem) - 1, 0, -1) if hazy_stem[i] == "_"]
    return next((stem for stem in candidates if stem in clear_stems), None)


def _listing(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def find_pairs(root: str | Path) -> list[Pair]:
    """All pairs of the set at `root`, sorted by hazy name; raises PairingError when the set is not usable."""
    root = Path(root)
    if not root.is_dir():
        raise PairingError(f"no such paired set: {root}")
    hazy_folder = root / HAZY_FOLDER_NAME
    if not hazy_folder.is_dir():
        raise PairingError(f"{root} has no hazy/ folder (a paired set holds hazy/ and clear/ or GT/)")
    clear_folder = _clear_folder(root)
    hazy_files = list_images(hazy_folder)
    clear_files = list_images(clear_folder)
    if not hazy_files:
        raise PairingError(f"{hazy_folder} holds no images")
    if not clear_files:
        raise PairingError(f"{clear_folder} holds no images")
    by_stem: dict[str, list[Path]] = {}
    for path in clear_files:
        by_stem.setdefault(path.stem, []).append(path)
    ambiguous = sorted(f"{stem} ({', '.join(p.name for p in paths)})" for stem, paths in by_stem.items()
                       if len(paths) > 1)
    if ambiguous:
        raise PairingError(f"{clear_folder} holds several files for one name: {_listing(ambiguous)}")
    duplicates = sorted(stem for stem, count in Counter(path.stem for path in hazy_files).items() if count > 1)
    if duplicates:
        raise PairingError(f"{hazy_folder} holds several files for one name: {_listing(duplicates)}")
    pairs: list[Pair] = []
    unmatched: list[str] = []
    for path in hazy_files:
        scene = _scene_of(path.stem, set(by_stem))
        if scene is None:
            unmatched.append(path.name)
        else:
            pairs.append(Pair(path.stem, scene, path, by_stem[scene][0]))
    if unmatched:
        raise PairingError(f"{len(unmatched)} hazy image(s) in {hazy_folder} have no clear image "
                           f"NAME.* in {clear_folder} (NAME_anything.ext pairs with NAME.*): {_listing(unmatched)}")
    return pairs


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair as two uint8 BGR frames of the same size; PairingError names the file that fails."""
    try:
        hazy = read_image(pair.hazy)
        clear = read_image(pair.clear)
    except ImageError as exc:
        raise PairingError(f"pair {pair.name}: {exc}") from None
    if hazy.shape != clear.shape:
        raise PairingError(f"pair {pair.name}: {pair.hazy.name} is {hazy.shape[1]}x{hazy.shape[0]} but "
                           f"{pair.clear.name} is {clear.shape[1]}x{clear.shape[0]}; a pair must share one size")
    return hazy, clear
