"""Human-labelled boxes in Pascal VOC XML (the RTTS annotations), scaled to the image they are scored on, and the
types and rules every labelled format shares (`labelled_sets` reads a set in any of them: VOC here, COCO JSON in
`coco_boxes`, YOLO in `yolo_boxes`).

RTTS labels person, car, bus, bicycle and motorbike; the names are mapped to the COCO names the detector uses
(motorbike -> motorcycle; the road sets' pedestrian -> person: `COCO_SYNONYMS`). Boxes flagged `difficult` are kept with
that flag: detections on them are neither counted right nor wrong, as in the VOC protocol. Boxes are clipped to the
image; one with no area left inside it, or with xmin > xmax or ymin > ymax, is dropped with a warning naming the file.
An <object> without <bndbox> (one drawn as a polygon only, or with no shape) cannot be scored as a box: it is left
out, counted nowhere, with one warning per file naming the file and its objects so left out; a difficult one too,
as no region is left in which detections could be excused.
The boxes of a photo with an EXIF orientation are placed on its upright view, which `read_image` gives, as
`io.orientation` says. A number that is not finite (nan, inf) in a box or in <size> is refused. A file without
<size>, or whose <size> gives no width or height or 0 for one (as CVAT, LabelImg and Roboflow exports may), has its
boxes taken in the pixels of the image it labels. A photo of a labelled folder without a VOC file is left out, with
one warning for the folder (some sets label only some photos).

VOC files are found in the layouts such sets are published in (`voc_layouts`): this project's (the photos in a
folder, their VOC files in its `labels-voc/`), Pascal VOC's (`JPEGImages/` and `Annotations/`: RTTS, VOC
conversions of foggy driving sets, CVAT's export; Label Studio's export names the photos' folder `images/`), DAWN's
(the photos of `Fog/` beside `Fog/Fog_PASCAL_VOC/`), and each VOC file beside its photo in one folder (LabelImg's
default, Roboflow's export), where one of them has the name of a photo there.
"""
from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dgdehaze_core.io.images import list_images, read_image
from dgdehaze_core.io.orientation import LabelledView, labelled_view

LOG = logging.getLogger(__name__)
NAMES_SHOWN = 5
"""How many unlabelled photos the warning of `warn_unlabelled` names."""
COCO_SYNONYMS = {"motorbike": "motorcycle", "aeroplane": "airplane", "diningtable": "dining table",
                 "pottedplant": "potted plant", "sofa": "couch", "tvmonitor": "tv",
                 "pedestrian": "person", "person_sitting": "person", "people": "person", "bike": "bicycle",
                 "motor": "motorcycle"}
"""Class names of labelled sets that mean a COCO class under another name: Pascal VOC's (RTTS), the road sets'
(KITTI's Pedestrian and Person_sitting, BDD100K's pedestrian, bike and motor), and `people` (other plurals, such
as `cars`, are taken as the detector's class where it lacks them: `detection_eval.singular_name`). Names that are
no single COCO class (KITTI's Cyclist and Van, BDD100K's rider) are kept, and set aside as classes the detector
lacks."""
LABELS_FOLDER = "labels-voc"
"""This project's layout: a folder of photos keeps their VOC files in this subfolder."""
VOC_PHOTOS, VOC_LABELS = "JPEGImages", "Annotations"
"""Pascal VOC's layout (RTTS's too): the photos and their VOC files in these two subfolders of the set."""
EXPORT_PHOTOS = "images"
"""Label Studio's VOC export: the photos in this subfolder, beside `Annotations/`."""
DAWN_LABELS = "*_PASCAL_VOC"
"""DAWN's layout: a folder of photos (`Fog/`) keeps their VOC files in a subfolder so named (`Fog_PASCAL_VOC/`)."""


@dataclass(frozen=True)
class ReferenceBox:
    """A reference object: COCO class name, (x1, y1, x2, y2) pixels, the VOC `difficult` flag, `crowd` for a
    COCO crowd region (difficult too), which a prediction overlaps by the share of its own area inside it, as COCO's
    evaluation measures crowds (a person of a crowd has a small IoU with the crowd's box), and `unknown` for a box
    of a class the detector does not know (difficult too), on which a prediction of any class is neither right nor
    wrong (a van the detector can only call a car or truck, a rider it calls a person)."""

    class_name: str
    box: tuple[float, float, float, float]
    difficult: bool = False
    crowd: bool = False
    unknown: bool = False


@dataclass(frozen=True)
class LabelledLayout:
    """Where a labelled photo set keeps its photos and their boxes: `labels` is the folder of VOC files (`kind`
    "voc"), the COCO JSON file ("coco") or the folder of YOLO label files ("yolo")."""

    photos: Path
    labels: Path
    kind: str


@dataclass(frozen=True)
class LabelledImage:
    """An image file and its human boxes in that image's pixels."""

    image: Path
    boxes: tuple[ReferenceBox, ...]


def _number(node: ET.Element, tag: str, source: Path) -> float:
    """The finite number in `node`'s <tag>; ValueError naming `source` and the tag when missing, not a number, or
    not finite (nan, inf)."""
    text = node.findtext(tag)
    if text is None:
        raise ValueError(f"{source}: <{tag}> is missing")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{source}: <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{source}: <{tag}> is not a finite number: {text!r}")
    return value


def _drawn_size(root: ET.Element, xml_path: Path, image_size: tuple[int, int]) -> tuple[float, float]:
    """The size (width, height) a VOC file's boxes were drawn at: its <size>, or `image_size` where <size> is
    missing, or gives no width or height (a tag absent or empty) or 0 for one. ValueError naming the file for a
    number that is not one, not finite, or negative."""
    size = root.find("size")
    if size is None or any(not (size.findtext(tag) or "").strip() for tag in ("width", "height")):
        return float(image_size[0]), float(image_size[1])
    width, height = _number(size, "width", xml_path), _number(size, "height", xml_path)
    if width < 0 or height < 0:
        raise ValueError(f"{xml_path}: <size> must be positive, or 0 for unknown, got {width:g}x{height:g}")
    if width == 0 or height == 0:
        return float(image_size[0]), float(image_size[1])
    return width, height


def read_voc(xml_path: str | Path, image_size: tuple[int, int],
             photo: Path | None = None) -> tuple[ReferenceBox, ...]:
    """Boxes of one VOC file, scaled from the XML's <size> to `image_size` (width, height; without a <size> that
    gives both, taken as drawn at `image_size`), clipped to the image; inverted boxes and boxes with no area inside
    the image are left out with a warning, objects without <bndbox> with one warning for the file. The boxes of a
    `photo` with an EXIF orientation are placed on its upright view as `orientation.labelled_view` says (None: boxes
    drawn on the image as it is). ValueError naming the file for unreadable XML, an <object> without <name>, a
    negative <size>, a box number missing, a number not finite, and a <size> that `labelled_view` refuses."""
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{xml_path} is not readable VOC XML: {exc}") from None
    width, height = _drawn_size(root, xml_path, image_size)
    view = LabelledView((width, height), image_size) if photo is None else \
        labelled_view(xml_path.name, photo, (width, height), image_size)
    boxes = []
    unboxed = []
    for number, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip().lower()
        if not name:
            raise ValueError(f"{xml_path}: <object> {number} has no <name>")
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        box = obj.find("bndbox")
        if box is None:
            unboxed.append(f"{number} ({name}{', difficult' if difficult else ''})")
            continue
        x1, y1, x2, y2 = (_number(box, tag, xml_path) for tag in ("xmin", "ymin", "xmax", "ymax"))
        if x1 > x2 or y1 > y2:
            LOG.warning("%s: a %s box (%g, %g, %g, %g) has xmin > xmax or ymin > ymax; left out", xml_path.name,
                        name, x1, y1, x2, y2)
            continue
        clipped = clip_box(xml_path.name, name, view.to_upright((x1, y1, x2, y2)), image_size)
        if clipped is not None:
            boxes.append(ReferenceBox(coco_name(name), clipped, difficult))
    if unboxed:
        LOG.warning("%s: <object> %s without <bndbox> cannot be scored as a box; left out", xml_path.name,
                    ", ".join(unboxed))
    return tuple(boxes)


def coco_name(name: str) -> str:
    """The COCO name the detector uses for a class name of a labelled set (lower case; `COCO_SYNONYMS` mapped)."""
    name = name.strip().lower()
    return COCO_SYNONYMS.get(name, name)


def clip_box(source: str, name: str, box: tuple[float, float, float, float],
             image_size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """`box` (x1, y1, x2, y2 in the pixels of an image of `image_size`, width and height) clipped to the image;
    None, with a warning naming `source` and the class `name`, when no area of it is left inside."""
    left, right = (min(max(x, 0.0), image_size[0]) for x in (box[0], box[2]))
    top, bottom = (min(max(y, 0.0), image_size[1]) for y in (box[1], box[3]))
    if right <= left or bottom <= top:
        LOG.warning("%s: a %s box (%g, %g, %g, %g) has no area inside the %dx%d image; left out", source, name,
                    *box, *image_size)
        return None
    return left, top, right, bottom


def warn_unlabelled(photos: Path, unlabelled: list[str], labels: str) -> None:
    """One warning for the photos of `photos` that `labels` (a folder or file name) has no boxes for, naming their
    count and the first few; none when there are none."""
    if unlabelled:
        more = ", ..." if len(unlabelled) > NAMES_SHOWN else ""
        LOG.warning("%s: %d image(s) without boxes in %s left out: %s%s", photos, len(unlabelled), labels,
                    ", ".join(unlabelled[:NAMES_SHOWN]), more)


def _has_voc_files(folder: Path) -> bool:
    return folder.is_dir() and any(path.suffix.lower() == ".xml" and path.is_file() for path in folder.iterdir())


def _labels_a_photo(folder: Path) -> bool:
    """Whether a VOC file in `folder` has the name of a photo there (other XML files beside photos are no labels)."""
    stems = {path.stem for path in folder.iterdir() if path.suffix.lower() == ".xml" and path.is_file()}
    return bool(stems) and any(path.stem in stems for path in list_images(folder))


def voc_layouts(folder: Path) -> list[LabelledLayout]:
    """The layouts of the module's docstring in which `folder` holds VOC files (a labels folder without a .xml file
    counts as none)."""
    found = [LabelledLayout(folder, labels, "voc") for labels in sorted(folder.glob(DAWN_LABELS))
             if _has_voc_files(labels)]
    if _has_voc_files(folder / LABELS_FOLDER):
        found.append(LabelledLayout(folder, folder / LABELS_FOLDER, "voc"))
    photos = next((folder / name for name in (VOC_PHOTOS, EXPORT_PHOTOS) if (folder / name).is_dir()), None)
    if photos is not None and _has_voc_files(folder / VOC_LABELS):
        found.append(LabelledLayout(photos, folder / VOC_LABELS, "voc"))
    if _labels_a_photo(folder):
        found.append(LabelledLayout(folder, folder, "voc"))
    return found


def voc_images(layout: LabelledLayout, keep: Callable[[str], bool] | None = None,
               choose: Callable[[list[Path]], list[Path]] | None = None) -> list[LabelledImage]:
    """Every photo of a VOC `layout` with a VOC file (`.xml`, any case), matched by file stem, in the VOC files'
    order, selected as `labelled_sets.labelled_images` says. Photos without a VOC file are left out with one
    warning; ValueError when a VOC file names no photo of the set, or when two photos share the stem of a VOC file
    (which one it labels cannot be told)."""
    folder, labels = layout.photos, layout.labels
    images: dict[str, list[Path]] = {}
    for path in list_images(folder):
        images.setdefault(path.stem, []).append(path)
    xml_paths = sorted(path for path in labels.iterdir() if path.suffix.lower() == ".xml" and path.is_file())
    matched: dict[Path, Path] = {}
    for xml_path in xml_paths:
        candidates = images.get(xml_path.stem, [])
        if not candidates:
            raise ValueError(f"{xml_path.name} labels an image that is not in {folder}")
        if len(candidates) > 1:
            raise ValueError(f"{xml_path.name} labels two images of {folder}: "
                             f"{', '.join(sorted(p.name for p in candidates))}; keep one image per name")
        if keep is None or keep(candidates[0].name):
            matched[candidates[0]] = xml_path
    chosen = list(matched) if choose is None else choose(list(matched))
    result = []
    for image_path in chosen:
        height, width = read_image(image_path).shape[:2]
        result.append(LabelledImage(image_path, read_voc(matched[image_path], (width, height), image_path)))
    labelled = {path.stem for path in xml_paths}
    warn_unlabelled(folder, sorted(path.name for stem, paths in images.items() if stem not in labelled
                                   for path in paths if keep is None or keep(path.name)), labels.name + "/")
    return result
