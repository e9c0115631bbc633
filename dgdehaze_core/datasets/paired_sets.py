"""Paired dehazing sets: hazy images with their clear ground truth, matched by name.

A paired set is a folder in one of the layouts the public benchmarks are published in:
- a `hazy/` (or `haze/`) folder beside a `clear/` (or `GT/`, `clean/`) folder, names matched in any case: RESIDE
  (SOTS, ITS, OTS; RESIDE-beta's OTS as `haze/0001_0.8_0.2.jpg` with `clear/0001.jpg`), O-HAZE and I-HAZE
  (`hazy/01_outdoor_hazy.jpg` with `GT/01_outdoor_GT.jpg`), Dense-HAZE (`hazy/01_hazy.png` with `GT/01_GT.png`),
  and RESIDE HSTS's synthetic half (`HSTS/synthetic/`: `synthetic/0586.jpg` with `original/0586.jpg`; these two
  names count only together, `HSTS_FOLDERS`).
  The images of both folders are read from their subfolders too (OTS unpacked from its zip parts as
  `haze/part1/...`, `haze/part2/...`), so a file's folder within them plays no part in its pairing: its name does;
- Foggy Cityscapes (Sakaridis et al.) beside Cityscapes: the folder holding `leftImg8bit_foggy/` (or the refined
  `leftImg8bit_foggyDBF/`) and `leftImg8bit/`, either directly or one folder deeper as the official zips unpack
  (`leftImg8bit_trainvaltest_foggy/leftImg8bit_foggy/` beside `leftImg8bit_trainvaltest/leftImg8bit/`), each as
  `SPLIT/CITY/` folders:
  `leftImg8bit_foggy/val/frankfurt/frankfurt_000000_000294_leftImg8bit_foggy_beta_0.02.png` (betas 0.005, 0.01,
  0.02) pairs with `leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png`. Cityscapes' names are
  unique across its splits and cities, and a pair's name is its foggy file's stem, beta included
  (`frankfurt_000000_000294_leftImg8bit_foggy_beta_0.02`); a selection by file name (`eval --include`) chooses a
  density by `*_beta_0.02.*` and a split by its cities (val: `frankfurt_*`, `lindau_*`, `munster_*`);
- one flat folder of images named `NAME_hazy.*` beside `NAME_GT.*`: NH-HAZE and NH-HAZE2 (`01_hazy.png` with
  `01_GT.png`).
A hazy file `NAME_anything.ext` (or `NAME.ext`) pairs with the clear file `NAME.*` or `NAME_GT.*` (a clear name's
role token `_GT`, `_clear` or `_clean`, in any case, is not part of its NAME): RESIDE's `1400_7.png` -> `1400.png`,
SOTS outdoor's `0016_0.8_0.08.jpg` -> `0016.jpg`, O-HAZE's `27_hazy.png` -> `27.png` and `01_outdoor_hazy.jpg` ->
`01_outdoor_GT.jpg`. When several clear names fit, the longest wins (`a_b_1.png` -> `a_b.png` before `a.png`).
Names are compared in one Unicode form (NFC), so that `scène_hazy.png` copied from a Mac (which stores the `è` as
`e` and an accent, NFD) pairs with the `scène.png` written elsewhere, as the two show on screen. In
the flat layout the hazy images are those named with a hazy role token (`_hazy` or `_haze`, any case) and every
image must carry one of the two kinds of token. Every problem (missing folder, empty folder, two hazy or two clear
folders, a hazy image without its clear image, two clear files with one name such as `01.png` and `01_GT.png` or
two hazy files with one name in two subfolders, an image of a flat set named as neither, the outputs of a
`dgdehaze dehaze` run written into the hazy folder (they would read as more hazy images), unreadable files, sizes
that differ other than by SOTS indoor's frame, a grayscale image with one in colour: `load_pair`) raises a
`PairingError` that names the files. A selection (`find_pairs`' `choose`: eval's --include) is made before pairing,
so only the chosen hazy images must pair: a partial download whose other images lack their ground truth evaluates
the part that is whole.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dgdehaze_core.io.file_paths import DEHAZE_RUN_RECORD, listing
from dgdehaze_core.io.images import ImageError, ReadImage, images_under, list_images, read_image

HAZY_FOLDER_NAMES = ("hazy", "haze", "leftimg8bit_foggy", "leftimg8bit_foggydbf")
CLEAR_FOLDER_NAMES = ("clear", "gt", "clean", "leftimg8bit")
"""Folder names of the two kinds, matched in any case (`GT/`, `Hazy/`, Foggy Cityscapes' `leftImg8bit_foggy/` and
Cityscapes' `leftImg8bit/`)."""
HSTS_FOLDERS = {"hazy": "synthetic", "clear": "original"}
"""RESIDE HSTS's folder of each kind (`HSTS/synthetic/` holds its hazy `synthetic/` beside their ground truth in
`original/`, of the same file names), matched in any case and only together: a `synthetic/` or an `original/` alone
says nothing of haze."""
UNZIPPED_FOLDER_NAMES = ("leftimg8bit_foggy", "leftimg8bit_foggydbf", "leftimg8bit")
"""Folder names also found one folder deeper, where the official zips unpack them, each in a folder of its own
(`leftImg8bit_trainvaltest_foggy/leftImg8bit_foggy/`, `leftImg8bit_trainvaltest/leftImg8bit/`)."""
HAZY_ROLE = re.compile(r"(?P<name>.+)_(hazy|haze)", re.IGNORECASE)
CLEAR_ROLE = re.compile(r"(?P<name>.+)_(gt|clear|clean)", re.IGNORECASE)
"""A file stem that ends in a role token (matched whole with `fullmatch`), and its NAME before the token."""
NYU_FRAME = 10
"""The border, in pixels on each side, of the NYU Depth v2 frames (white, left by their registration) that RESIDE
cropped off to make SOTS indoor's 620x460 hazy images but left on the 640x480 ground truth of its `gt/`."""


class PairingError(ValueError):
    """A paired set that cannot be evaluated as it is, with the offending files named."""


@dataclass(frozen=True)
class Pair:
    """One hazy image and its clear ground truth; `name` is the hazy file's stem (unique within a set)."""

    name: str
    scene: str
    hazy: Path
    clear: Path


@dataclass(frozen=True)
class _Layout:
    """Where a set's hazy and clear images lie (one folder for both in the flat layout) and the images there."""

    hazy_folder: Path
    clear_folder: Path
    hazy: list[Path]
    clear: list[Path]

    @property
    def flat(self) -> bool:
        """True for the flat layout: the hazy images and their ground truth in one folder."""
        return self.hazy_folder == self.clear_folder


def _subfolders(root: Path, names: tuple[str, ...]) -> list[Path]:
    """The folders directly in `root` whose name is one of `names` in any case, sorted."""
    return sorted(path for path in root.iterdir() if path.is_dir() and path.name.lower() in names)


def _kind_folders(root: Path, kind: str) -> list[Path]:
    """The `kind` ("hazy" or "clear") folders of `root`, sorted: those named one of the kind's folder names
    (HAZY_FOLDER_NAMES, CLEAR_FOLDER_NAMES) in any case, and HSTS's folder of the kind where both HSTS_FOLDERS are
    there; without any, those named one of the kind's UNZIPPED_FOLDER_NAMES one folder deeper."""
    names = HAZY_FOLDER_NAMES if kind == "hazy" else CLEAR_FOLDER_NAMES
    found = _subfolders(root, names)
    if all(_subfolders(root, (name,)) for name in HSTS_FOLDERS.values()):
        found = sorted(found + _subfolders(root, (HSTS_FOLDERS[kind],)))
    deeper = tuple(name for name in names if name in UNZIPPED_FOLDER_NAMES)
    if found or not deeper:
        return found
    return sorted(path for folder in root.iterdir() if folder.is_dir() for path in _subfolders(folder, deeper))


def _one_folder(root: Path, kind: str) -> Path | None:
    """The one `kind` folder of `root` (`_kind_folders`), None without one; PairingError naming them when there are
    several."""
    found = _kind_folders(root, kind)
    if len(found) > 1:
        raise PairingError(f"{root} holds {len(found)} {kind} folders ({_named(root, found)}): which one holds the "
                           "set cannot be told, keep one")
    return found[0] if found else None


def _named(root: Path, folders: list[Path]) -> str:
    """`folders` by their path in `root`, each with a trailing slash, comma-separated."""
    return ", ".join(folder.relative_to(root).as_posix() + "/" for folder in folders)


def _flat_roles(images: list[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """`images` split into (hazy-named, clear-named, named as neither), each in the given order."""
    split: tuple[list[Path], list[Path], list[Path]] = ([], [], [])
    for path in images:
        split[0 if HAZY_ROLE.fullmatch(path.stem) else 1 if CLEAR_ROLE.fullmatch(path.stem) else 2].append(path)
    return split


def is_paired_set(folder: str | Path) -> bool:
    """True when `folder` has a hazy folder and a clear (or GT, clean) folder, names in any case (or HSTS's
    synthetic/ beside original/), or, without a hazy folder, holds images named `NAME_hazy.*` and images named
    `NAME_GT.*` (role tokens as in the module's docstring). A folder of photos whose names carry no clear role token
    (URHI, O-HAZE's hazy photos alone) is not one. It says nothing of whether the set pairs: `find_pairs` tells."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    if _kind_folders(folder, "hazy"):
        return bool(_kind_folders(folder, "clear"))
    hazy, clear, _ = _flat_roles(list_images(folder))
    return bool(hazy and clear)


def _layout(root: Path) -> _Layout:
    """The layout of the set at `root` (module docstring); PairingError when it is in neither."""
    if not root.is_dir():
        raise PairingError(f"no such paired set: {root}")
    hazy_folder = _one_folder(root, "hazy")
    if hazy_folder is None:
        hazy, clear, neither = _flat_roles(list_images(root))
        if not hazy:
            clear_folders = _kind_folders(root, "clear")
            raise PairingError(_no_hazy(root, clear_folders) if clear_folders else f"{root} has no hazy/ folder (a "
                               "paired set holds hazy/ and clear/ or GT/, or HSTS's synthetic/ and original/) and no "
                               "images named NAME_hazy.* beside NAME_GT.*")
        if neither:
            raise PairingError(f"{root} holds hazy images beside their ground truth (NAME_hazy.* with NAME_GT.*) and "
                               f"{len(neither)} image(s) named as neither: {listing([p.name for p in neither])}")
        return _Layout(root, root, hazy, clear)
    clear_folder = _one_folder(root, "clear")
    if clear_folder is None:
        raise PairingError(_no_clear(root, [hazy_folder]))
    hazy = images_under(hazy_folder)
    outputs = sorted({path.parent for path in hazy if (path.parent / DEHAZE_RUN_RECORD).is_file()})
    if outputs:
        raise PairingError(f"{hazy_folder} holds the outputs of a dgdehaze dehaze run in "
                           f"{_named(hazy_folder, outputs)} ({DEHAZE_RUN_RECORD} there), which would be scored as "
                           "hazy images: move them out of it")
    return _Layout(hazy_folder, clear_folder, hazy, images_under(clear_folder))


def one_side_only(folder: Path) -> str | None:
    """Why `folder` is no paired set when it holds the folder of one side alone (a hazy folder without a clear one,
    Foggy Cityscapes without Cityscapes, or the other way round: one zip of the two unpacked), as words for an
    error; None when it holds both or neither, or its hazy images are those of the flat layout."""
    hazy, clear = _kind_folders(folder, "hazy"), _kind_folders(folder, "clear")
    if hazy and not clear:
        return _no_clear(folder, hazy)
    if clear and not hazy and not _flat_roles(list_images(folder))[0]:
        return _no_hazy(folder, clear)
    return None


def untagged_ground_truth(folder: Path) -> str | None:
    """Why `folder` is no paired set when it holds images named `NAME_hazy.*` and, without any `NAME_GT.*`, images
    named `NAME.*` of their NAMEs (ground truth named as in hazy/ + clear/, which the flat layout takes for photos),
    as words for an error; None otherwise."""
    hazy, clear, neither = _flat_roles(list_images(folder))
    names = {_name(match.group("name")) for match in (HAZY_ROLE.fullmatch(path.stem) for path in hazy) if match}
    untagged = [path for path in neither if _name(path.stem) in names]
    if clear or not untagged:
        return None
    named = listing([path.name for path in untagged])
    return (f"{folder} holds hazy images named NAME_hazy.* beside images named NAME.* ({named}), which one folder "
            f"does not take for their ground truth: name each NAME_GT.* (as "
            f"{untagged[0].stem}_GT{untagged[0].suffix}), or move the hazy images into hazy/ and the clear ones into "
            "clear/")


def _no_clear(root: Path, hazy: list[Path]) -> str:
    """The error for `root` holding the hazy folders `hazy` and no clear folder."""
    return (f"{root} holds hazy images in {_named(root, hazy)} but no clear folder (clear/, GT/ or clean/ beside "
            "it, or Cityscapes' leftImg8bit/ beside it or one folder deeper, as leftImg8bit_trainvaltest/leftImg8bit/ "
            "unpacks) of their ground truth")


def _no_hazy(root: Path, clear: list[Path]) -> str:
    """The error for `root` holding the clear folders `clear` and no hazy folder (nor hazy images of its own)."""
    return (f"{root} holds ground truth in {_named(root, clear)} but no hazy folder (hazy/ or haze/ beside it, or "
            "Foggy Cityscapes' leftImg8bit_foggy/ or leftImg8bit_foggyDBF/ beside it or one folder deeper, as "
            "leftImg8bit_trainvaltest_foggy/leftImg8bit_foggy/ unpacks) of the hazy images it pairs with")


def hazy_images(root: str | Path) -> list[Path]:
    """The hazy images of the paired set at `root`, sorted by path: its hazy folder's images (its subfolders'
    too), or in the flat layout those named `NAME_hazy.*`. Whether each has its clear image is not checked
    (`find_pairs` does); PairingError when `root` is in neither layout."""
    return _layout(Path(root)).hazy


def _name(stem: str) -> str:
    """A file stem in the Unicode form names are compared in (NFC, module docstring)."""
    return unicodedata.normalize("NFC", stem)


def _clear_name(stem: str) -> str:
    """The NAME a clear file pairs by (`_name`): its stem less a trailing clear role token (`01_outdoor_GT` ->
    `01_outdoor`)."""
    name = _name(stem)
    role = CLEAR_ROLE.fullmatch(name)
    return name if role is None else role.group("name")


def _scene_of(hazy_stem: str, clear_names: set[str]) -> str | None:
    """The longest clear name that the hazy stem equals or starts with, followed by '_'."""
    candidates = [hazy_stem] + [hazy_stem[:i] for i in range(len(hazy_stem) - 1, 0, -1) if hazy_stem[i] == "_"]
    return next((name for name in candidates if name in clear_names), None)


def _several(by_name: dict[str, list[Path]], folder: Path) -> list[str]:
    """`NAME (file, file)` for each name of `by_name` with several files, these given by their path in `folder`
    (`part1/0001_1.jpg`), sorted."""
    return sorted(f"{name} ({', '.join(sorted(p.relative_to(folder).as_posix() for p in paths))})"
                  for name, paths in by_name.items() if len(paths) > 1)


def find_pairs(root: str | Path, choose: Callable[[list[Path]], list[Path]] | None = None) -> list[Pair]:
    """The pairs of the set at `root`, in the order of `hazy_images`, each hazy image with the clear image of its
    NAME (module docstring); with `choose`, only those of the hazy images it returns from that ordered list (a
    selection such as eval's --include/--limit; an empty selection gives no pairs, the caller saying so).

    The selection comes first: only a chosen hazy image must have its clear image, another chosen hazy file of its
    name, or a clear image that shares its NAME with another clear file, raises PairingError. A clash among files
    no chosen image pairs with (a hazy image left out of the selection without its clear image or beside another of
    its name, two clear files of a NAME no chosen image has) fails nothing: they are neither paired nor read (a
    partial download of a set evaluates the part that is whole). What the set's layout needs is checked whole,
    before choosing: its folders, images in its hazy folder and its clear folder, and in the flat layout no image
    named as neither kind (such an image could be ground truth misnamed)."""
    root = Path(root)
    layout = _layout(root)
    hazy_folder, clear_folder = layout.hazy_folder, layout.clear_folder
    if not layout.hazy:
        raise PairingError(f"{hazy_folder} holds no images")
    if not layout.clear and not layout.flat:
        raise PairingError(f"{clear_folder} holds no images")
    chosen = layout.hazy if choose is None else choose(layout.hazy)
    by_name: dict[str, list[Path]] = {}
    for path in layout.clear:
        by_name.setdefault(_clear_name(path.stem), []).append(path)
    clear_names = set(by_name)
    scenes = {path: _scene_of(_name(path.stem), clear_names) for path in chosen}
    ambiguous = _several({scene: by_name[scene] for scene in scenes.values() if scene is not None}, clear_folder)
    if ambiguous:
        raise PairingError(f"{clear_folder} holds several files for one name: {listing(ambiguous)}")
    by_stem: dict[str, list[Path]] = {}
    for path in chosen:
        by_stem.setdefault(_name(path.stem), []).append(path)
    duplicates = _several(by_stem, hazy_folder)
    if duplicates:
        raise PairingError(f"{hazy_folder} holds several files for one name: {listing(duplicates)}")
    pairs: list[Pair] = []
    unmatched: list[str] = []
    for path, scene in scenes.items():
        if scene is None:
            unmatched.append(path.name)
        else:
            pairs.append(Pair(path.stem, scene, path, by_name[scene][0]))
    if unmatched:
        rule = ("NAME_GT.* beside them (NAME_hazy.ext pairs with NAME_GT.*)" if layout.flat else
                f"NAME.* or NAME_GT.* in {clear_folder} (NAME_anything.ext pairs with NAME.* or NAME_GT.*)")
        raise PairingError(f"{len(unmatched)} hazy image(s) in {hazy_folder} have no clear image {rule}: "
                           f"{listing(unmatched)}")
    return pairs


def load_pair(pair: Pair, read: ReadImage = read_image) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair with `read` as two uint8 BGR frames of the same size; PairingError names the file that fails.
    A clear image larger than its hazy image by `NYU_FRAME` pixels on every side (SOTS indoor as RESIDE publishes
    it: 640x480 ground truth around 620x460 hazy images) is taken less that frame, as the hazy image was made. A
    grayscale image paired with one in colour is refused: its figures would compare colour with grey."""
    try:
        hazy = read(pair.hazy)
        clear = read(pair.clear)
    except ImageError as exc:
        raise PairingError(f"pair {pair.name}: {exc}") from None
    if clear.shape[2:] == hazy.shape[2:] and clear.shape[:2] == (hazy.shape[0] + 2 * NYU_FRAME,
                                                                  hazy.shape[1] + 2 * NYU_FRAME):
        clear = np.ascontiguousarray(clear[NYU_FRAME:-NYU_FRAME, NYU_FRAME:-NYU_FRAME])
    if hazy.shape != clear.shape:
        raise PairingError(f"pair {pair.name}: {pair.hazy.name} is {hazy.shape[1]}x{hazy.shape[0]} but "
                           f"{pair.clear.name} is {clear.shape[1]}x{clear.shape[0]}; a pair must share one size")
    hazy_grey = _grey(hazy)
    if hazy_grey != _grey(clear):
        grey, colour = (pair.hazy, pair.clear) if hazy_grey else (pair.clear, pair.hazy)
        raise PairingError(f"pair {pair.name}: {grey.name} is grayscale but {colour.name} is in colour; a pair "
                           "must be both in colour or both grayscale (give the colour ground truth, or convert both)")
    return hazy, clear


def _grey(frame: np.ndarray) -> bool:
    """Whether a BGR frame is grayscale: its three channels equal everywhere (a grayscale file as read)."""
    return bool(np.array_equal(frame[:, :, 0], frame[:, :, 1]) and np.array_equal(frame[:, :, 1], frame[:, :, 2]))
