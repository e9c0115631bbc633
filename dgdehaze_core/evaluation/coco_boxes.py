"""Human-labelled boxes in COCO JSON, as Roboflow, CVAT, Label Studio and Detectron conversions share them.

One JSON file whose top level holds `images` (id, file_name, width, height), `annotations` (image_id,
category_id, bbox [x, y, w, h] in pixels, optional iscrowd) and `categories` (id, name), found in the set folder
(Roboflow's `train/_annotations.coco.json`, Label Studio's `result.json`) or in its `annotations/` (CVAT's
`annotations/instances_default.json`). The photos are those directly in the set folder or, where it has none, in
its `images/`. Other JSON files there are no labels (one that does not read as JSON is named in a
warning, and refused where it bears an export tool's name for its COCO file: `EXPORT_NAMES`); two that hold COCO's
keys are refused.

An image's `file_name` is found as a path under the photos folder, else by its base name there (exports write
`images/x.jpg` or `JPEGImages/x.jpg`); an image whose file is not there is refused, naming it. Category names are
mapped to COCO's as VOC's are (`voc_boxes.coco_name`: motorbike -> motorcycle); other names are kept, so a class
the detector does not know is set aside as the evaluation says. Boxes are scaled from the image's JSON width and
height to the photo's own size (a set whose photos were resized after labelling), placed on its upright view as
`io.orientation` says for a photo with an EXIF orientation, then clipped to the photo.
`iscrowd: 1` boxes are difficult and crowds (`ReferenceBox.crowd`): neither right nor wrong, as COCO's own
evaluation ignores crowds (one warning gives their count: CVAT exports every mask as a crowd). A listed image
without an annotation is a photo with no object (COCO's meaning); a photo the JSON does not list is left out with
one warning. A number that is not finite, an annotation of an unlisted image or an unknown category, a width or
height that is not positive, and two images, or two categories of different names, of one id (two files merged
without new ids) are refused naming the JSON file.
"""
from __future__ import annotations

import fnmatch
import json
import logging
import math
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from dgdehaze_core.evaluation.voc_boxes import (LabelledImage, LabelledLayout, ReferenceBox, clip_box, coco_name,
                                                warn_unlabelled)
from dgdehaze_core.io.images import list_images, read_image
from dgdehaze_core.io.orientation import labelled_view

LOG = logging.getLogger(__name__)
COCO_KEYS = ("images", "annotations", "categories")
ANNOTATIONS, IMAGES = "annotations", "images"
"""The subfolders that may hold the JSON file and the photos."""
EXPORT_NAMES = ("_annotations.coco.json", "result.json", "instances_*.json")
"""The names Roboflow, Label Studio and CVAT (as COCO itself) give the COCO JSON of an export: one that does not read
as JSON (a truncated download) is refused naming it, where it was passed over and the set then fit no measure."""


_LAST_PARSED: dict[tuple[str, int, int], dict[str, Any]] = {}
"""The last COCO JSON parsed, by (resolved path, modification time in ns, size): one entry at most."""
_WARNED: set[tuple[str, int, int]] = set()
"""The JSON files (as `_LAST_PARSED` keys them) already said not to read, so that each is said once."""


def _coco(path: Path) -> dict[str, Any] | None:
    """The JSON at `path` when its top level holds COCO's keys; None for any other JSON, and, with a warning naming
    it and the reason (once while it is unchanged), for a file that does not read as JSON (a truncated download),
    which may have been the set's boxes; ValueError naming it and the reason for such a file of one of the
    `EXPORT_NAMES`, which was. A UTF-8 byte-order mark (a file saved by a Windows editor) is read as JSON
    allows.

    A COCO file is parsed once while it is unchanged (same size and modification time): finding a set's layout and
    reading its boxes, each of which asks for it, share one parse of a file that may be hundreds of MB (full
    COCO's). Only the last one is kept. The dict is shared between callers, who only read it."""
    try:
        stat = path.stat()
        stamp = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if stamp in _LAST_PARSED:
            return _LAST_PARSED[stamp]
        data = json.loads(path.read_bytes())
    except OSError as exc:
        LOG.debug("%s is no COCO JSON: %s", path, exc)
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if any(fnmatch.fnmatch(path.name.lower(), name) for name in EXPORT_NAMES):
            raise ValueError(f"{path} does not read as JSON ({exc}): the export's COCO boxes cannot be read; "
                             "export or download it again") from None
        if stamp not in _WARNED:
            _WARNED.add(stamp)
            LOG.warning("%s does not read as JSON (%s): taken as no COCO boxes", path, exc)
        return None
    if not (isinstance(data, dict) and all(key in data for key in COCO_KEYS)):
        return None
    _LAST_PARSED.clear()
    _LAST_PARSED[stamp] = data
    return data


def coco_layouts(folder: Path) -> list[LabelledLayout]:
    """The COCO layout of `folder` (the module's docstring) as a list of one, or []; ValueError naming them when
    two JSON files there hold COCO's keys."""
    places = [folder, folder / ANNOTATIONS]
    candidates = [path for place in places if place.is_dir() for path in sorted(place.iterdir())
                  if path.suffix.lower() == ".json" and path.is_file()]
    found = [path for path in candidates if _coco(path) is not None]
    if len(found) > 1:
        named = ", ".join(str(path.relative_to(folder)) for path in found)
        raise ValueError(f"{folder} holds {len(found)} COCO JSON files ({named}): keep one")
    if not found:
        return []
    photos = folder if list_images(folder) or not (folder / IMAGES).is_dir() else folder / IMAGES
    return [LabelledLayout(photos, found[0], "coco")]


def _number(value: Any, what: str, source: Path) -> float:
    """`value` as a finite number; ValueError naming `source` and `what` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{source}: {what} is not a finite number: {value!r}")
    return float(value)


def _photo(entry: dict[str, Any], photos: Path, source: Path) -> Path:
    """The photo file of a COCO image entry: its file_name under `photos` (an absolute one too), else its base name
    there."""
    name = str(entry.get("file_name", "")).replace("\\", "/").lstrip("/")
    for candidate in (photos / name, photos / PurePosixPath(name).name):
        if name and candidate.is_file():
            return candidate
    raise ValueError(f"{source}: image {entry.get('id')} ({name or 'no file_name'}) is not in {photos}")


def _boxes(annotations: list[dict[str, Any]], names: dict[Any, str], entry: dict[str, Any], image: Path,
           source: Path) -> tuple[ReferenceBox, ...]:
    """The boxes of one image's annotations, scaled from its `entry`'s width and height to the photo `image`'s
    size and clipped to the photo."""
    size = [_number(entry.get(key), f"the {key} of image {image.name}", source) for key in ("width", "height")]
    if min(size) <= 0:
        raise ValueError(f"{source}: image {image.name} must have a positive width and height, got {size}")
    height, width = read_image(image).shape[:2]
    view = labelled_view(f"{source.name} ({image.name})", image, (size[0], size[1]), (width, height))
    boxes = []
    for annotation in annotations:
        bbox = annotation.get("bbox")
        what = f"the bbox of annotation {annotation.get('id')} (image {image.name})"
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ValueError(f"{source}: {what} is not [x, y, w, h]: {bbox!r}")
        x, y, w, h = (_number(value, what, source) for value in bbox)
        name = names[annotation["category_id"]]
        if w < 0 or h < 0:
            LOG.warning("%s: a %s box of %s has a negative width or height; left out", source.name, name, image.name)
            continue
        clipped = clip_box(f"{source.name} ({image.name})", name, view.to_upright((x, y, x + w, y + h)),
                           (width, height))
        if clipped is not None:
            crowd = annotation.get("iscrowd", 0) == 1
            boxes.append(ReferenceBox(name, clipped, difficult=crowd, crowd=crowd))
    return tuple(boxes)


def coco_images(layout: LabelledLayout, keep: Callable[[str], bool] | None = None,
                choose: Callable[[list[Path]], list[Path]] | None = None) -> list[LabelledImage]:
    """Every image the COCO JSON of `layout` lists, in the photos folder's order, with its boxes, selected as
    `labelled_sets.labelled_images` says (the JSON is read whole; the boxes and photo of an image left out are
    not). ValueError naming the JSON for what the module's docstring refuses, for two images of one photo, and for
    two images of one id."""
    source, data = layout.labels, _coco(layout.labels)
    if data is None:
        raise ValueError(f"{source} is not readable COCO JSON")
    if not all(isinstance(data[key], list) and all(isinstance(item, dict) for item in data[key]) for key in COCO_KEYS):
        raise ValueError(f"{source}: {', '.join(COCO_KEYS)} must each be a list of objects")
    names: dict[Any, str] = {}
    for category in data["categories"]:
        name = coco_name(str(category.get("name") or ""))
        if not name:
            raise ValueError(f"{source}: a category has no name")
        if names.setdefault(category.get("id"), name) != name:  # two files merged without new ids
            raise ValueError(f"{source}: categories {names[category.get('id')]} and {name} share the id "
                             f"{category.get('id')!r}: give each category its own id")
    entries: dict[Any, dict[str, Any]] = {}
    photo_of: dict[Path, Any] = {}
    for entry in data["images"]:
        photo = _photo(entry, layout.photos, source)
        if photo in photo_of:
            raise ValueError(f"{source}: images {photo_of[photo]} and {entry.get('id')} are both {photo.name}")
        if entry.get("id") in entries:  # two files merged without new ids: whose boxes are whose cannot be told
            raise ValueError(f"{source}: {entries[entry.get('id')].get('file_name')} and {entry.get('file_name')} "
                             f"share the image id {entry.get('id')!r}: give each image its own id")
        photo_of[photo] = entry.get("id")
        entries[entry.get("id")] = entry
    annotations: dict[Any, list[dict[str, Any]]] = {key: [] for key in entries}
    for annotation in data["annotations"]:
        if annotation.get("image_id") not in entries or annotation.get("category_id") not in names:
            raise ValueError(f"{source}: annotation {annotation.get('id')} is of an image or category the file "
                             f"does not list (image {annotation.get('image_id')}, "
                             f"category {annotation.get('category_id')})")
        annotations[annotation["image_id"]].append(annotation)
    listed = [path for path in sorted(photo_of) if keep is None or keep(path.name)]
    result = []
    for photo in listed if choose is None else choose(listed):
        entry = entries[photo_of[photo]]
        result.append(LabelledImage(photo, _boxes(annotations[entry.get("id")], names, entry, photo, source)))
    warn_unlabelled(layout.photos, [path.name for path in list_images(layout.photos)
                                    if path not in photo_of and (keep is None or keep(path.name))], source.name)
    _warn_crowds(result, source)
    return result


def _warn_crowds(images: list[LabelledImage], source: Path) -> None:
    """One warning giving how many of `images`' boxes are crowds: CVAT exports every object drawn as a mask (its
    brush, or a segmenting model's) as a crowd, which its user meant as an object to score."""
    boxes = [box for item in images for box in item.boxes]
    crowds = sum(box.crowd for box in boxes)
    if crowds:
        LOG.warning("%s: %d of the %d boxes are crowds (iscrowd: 1), neither right nor wrong as in COCO's own "
                    "evaluation; CVAT exports every mask so: draw an object to score as a box or polygon",
                    source.name, crowds, len(boxes))
