"""Human-labelled boxes in YOLO (Ultralytics, darknet) label files, as Roboflow and Ultralytics share them.

The photos in `images/` and one label file per photo in `labels/` (the photo's stem, `.txt`). Give either the
folder holding both (a Roboflow split such as `train/`, or a set without splits) or, in Ultralytics' own layout
`images/SPLIT/` + `labels/SPLIT/`, the folder `images/SPLIT` (its labels are where Ultralytics looks: `images`
replaced by `labels` in the path), or a folder of photos with each label file beside its photo (LabelImg's YOLO
mode, CVAT's YOLO 1.1 `obj_train_data/`) where a names file lies in it or the folder above. A line is
`class cx cy w h`, normalised to [0, 1] by the width and height of the photo as Ultralytics and `read_image` read it
(upright: turned by its EXIF orientation), or a segment `class x1 y1 x2 y2 x3 y3 ...`, whose bounding box is taken;
blank lines are allowed. A photo without a label file is a photo with no object (Ultralytics' background image); a
folder where no photo has one is no YOLO set.

Class ids mean nothing without their names (DAWN's YOLO files number car 3 in their own list), so the names are
required: the `names:` of a `data.yaml` or `dataset.yaml` (a list, or a map from id to name), or a darknet
`classes.txt` or `*.names` (one name a line), from the first of these folders that holds one: the labels folder
and up to three folders above it (for `images/` + `labels/` in the given folder: that folder and its two parents;
for `images/SPLIT`, the set's root), looked for along the folders the path names and, for a folder given through a
link (a set kept on another disk), along its real ones too. Names are mapped to COCO's as VOC's are
(`voc_boxes.coco_name`). A line with another number of fields, a number that is not finite, a coordinate outside
[0, 1] or a class without a name is refused, naming the file and line; so is a label file without its photo.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import yaml

from dgdehaze_core.evaluation.voc_boxes import LabelledImage, LabelledLayout, ReferenceBox, clip_box, coco_name
from dgdehaze_core.io.images import list_images, read_image
from dgdehaze_core.io.yaml_text import load_yaml

LOG = logging.getLogger(__name__)
IMAGES, LABELS = "images", "labels"
YAML_NAMES = ("data.yaml", "dataset.yaml")
CLASSES_FILE = "classes.txt"
"""Darknet's list of names (also `*.names`), one a line; also found in the labels folder, as no label file."""


def _label_files(labels: Path) -> dict[str, Path]:
    """The label files of a labels folder by stem (`.txt`, any case; `classes.txt` is names, not labels)."""
    return {path.stem: path for path in sorted(labels.iterdir()) if path.suffix.lower() == ".txt"
            and path.name.lower() != CLASSES_FILE and path.is_file()} if labels.is_dir() else {}


def yolo_layouts(folder: Path) -> list[LabelledLayout]:
    """The YOLO layouts of `folder` (the module's docstring) in which a photo has a label file."""
    pairs = [(folder / IMAGES, folder / LABELS)]
    real = folder.resolve()  # images/SPLIT given through a link: its labels/SPLIT is beside the real images/
    if folder.parent.name == IMAGES or real.parent.name == IMAGES:
        split = folder if folder.parent.name == IMAGES else real
        pairs.append((folder, split.parent.parent / LABELS / split.name))
    if _names_files(folder) or _names_files(folder.parent):
        pairs.append((folder, folder))  # LabelImg's YOLO mode (classes.txt beside), CVAT's obj_train_data/
    found = []
    for photos, labels in pairs:
        stems = _label_files(labels).keys()
        if photos.is_dir() and any(path.stem in stems for path in list_images(photos)):
            found.append(LabelledLayout(photos, labels, "yolo"))
    return found


def _text(path: Path) -> str:
    """A names or label file's text, UTF-8 with or without the byte-order mark Windows editors begin it with (which
    would otherwise become part of the first class name or number); ValueError naming the file when it is not
    UTF-8."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from None


def _names_in(path: Path) -> dict[int, str]:
    """Class names by id from a data.yaml (`names:`) or a darknet names file; ValueError naming the file when it
    has none or they are malformed."""
    if path.suffix.lower() == ".yaml":
        try:
            data = load_yaml(_text(path))
        except yaml.YAMLError as exc:
            raise ValueError(f"{path} is not readable YAML: {exc}") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, list):
            names = dict(enumerate(names))
        if not isinstance(names, dict) or not all(isinstance(key, int) and isinstance(name, str)
                                                  for key, name in names.items()):
            raise ValueError(f"{path}: expected names: as a list of class names or a map from id to name")
    else:
        names = dict(enumerate(line.strip() for line in _text(path).rstrip().splitlines()))
    if not names or not all(name.strip() for name in names.values()):
        raise ValueError(f"{path} names no class, or a class without a name")
    return {key: coco_name(name) for key, name in names.items()}


def _names_files(folder: Path) -> list[Path]:
    """The files in `folder` that can name a YOLO set's classes, the first the one read: a data.yaml or
    dataset.yaml, a classes.txt, then any *.names."""
    files = [folder / name for name in (*YAML_NAMES, CLASSES_FILE) if (folder / name).is_file()]
    return files + sorted(path for path in folder.glob("*.names") if path.is_file())


def class_names(labels: Path) -> dict[int, str]:
    """The class names by id for the YOLO labels folder `labels`, from the nearest file the module's docstring
    names; ValueError naming what was looked for, and where, when there is none."""
    real = labels.resolve()
    folders = list(dict.fromkeys([labels, *labels.parents[:3], real, *real.parents[:3]]))
    for folder in folders:
        files = _names_files(folder)
        if files:
            return _names_in(files[0])
    raise ValueError(f"{labels}: YOLO class ids need their names, and none was found: looked for "
                     f"{', '.join(YAML_NAMES)} (names:), {CLASSES_FILE} or *.names in {', '.join(map(str, folders))}")


def read_yolo(path: Path, names: dict[int, str], image_size: tuple[int, int]) -> tuple[ReferenceBox, ...]:
    """The boxes of one label file in the pixels of its photo of `image_size` (width, height, upright), clipped to
    it; ValueError naming the file and line for a malformed line (the module's docstring)."""
    boxes = []
    for number, line in enumerate(_text(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {number}"
        if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
            raise ValueError(f"{where}: {len(fields)} fields; expected class cx cy w h, or class x1 y1 x2 y2 x3 y3 "
                             "... (a segment)")
        try:
            values = [float(field) for field in fields]
        except ValueError:
            raise ValueError(f"{where}: not a number: {line.strip()!r}") from None
        if not all(math.isfinite(value) for value in values):
            raise ValueError(f"{where}: a number is not finite: {line.strip()!r}")
        if values[0] not in names:
            raise ValueError(f"{where}: class {fields[0]} has no name (names: {len(names)} classes)")
        if not all(0.0 <= value <= 1.0 for value in values[1:]):
            raise ValueError(f"{where}: coordinates must be normalised to [0, 1]: {line.strip()!r}")
        name, (width, height) = names[int(values[0])], image_size
        if len(fields) == 5:
            cx, cy, w, h = values[1:]
            box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        else:
            xs, ys = values[1::2], values[2::2]
            box = (min(xs) * width, min(ys) * height, max(xs) * width, max(ys) * height)
        clipped = clip_box(f"{path.name}, line {number}", name, box, image_size)
        if clipped is not None:
            boxes.append(ReferenceBox(name, clipped))
    return tuple(boxes)


def yolo_images(layout: LabelledLayout, keep: Callable[[str], bool] | None = None,
                choose: Callable[[list[Path]], list[Path]] | None = None) -> list[LabelledImage]:
    """Every photo of a YOLO `layout`, in the photos folder's order, with the boxes of its label file (none
    without one), selected as `labelled_sets.labelled_images` says. ValueError when the class names are missing
    (`class_names`), for a label file without its photo or shared by two photos, and for a malformed line."""
    names = class_names(layout.labels)
    labels = _label_files(layout.labels)
    photos = list_images(layout.photos)
    by_stem: dict[str, list[Path]] = {}
    for photo in photos:
        by_stem.setdefault(photo.stem, []).append(photo)
    for stem, path in labels.items():
        if len(by_stem.get(stem, [])) != 1:
            raise ValueError(f"{path} labels {len(by_stem.get(stem, []))} photos of {layout.photos}: "
                             "expected one photo of that name")
    kept = [photo for photo in photos if keep is None or keep(photo.name)]
    result = []
    for photo in kept if choose is None else choose(kept):
        height, width = read_image(photo).shape[:2]
        label = labels.get(photo.stem)
        result.append(LabelledImage(photo, () if label is None else read_yolo(label, names, (width, height))))
    return result
