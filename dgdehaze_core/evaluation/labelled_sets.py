"""Labelled photo sets in any of the formats fog detection sets are shared in: where a set keeps its photos and
boxes (`labelled_layout`) and its photos with their human boxes (`labelled_images`), whatever the format.

- Pascal VOC XML (`voc_boxes`): `labels-voc/` beside the photos, `JPEGImages/` + `Annotations/` (RTTS, CVAT) or
  `images/` + `Annotations/` (Label Studio), DAWN's `Fog/` + `Fog/Fog_PASCAL_VOC/`, each file beside its photo
  (LabelImg, Roboflow);
- COCO JSON (`coco_boxes`): one JSON file beside the photos (Roboflow) or in `annotations/` (CVAT);
- YOLO (`yolo_boxes`): `images/` + `labels/` with class names from a `data.yaml` (Ultralytics, Roboflow), or each
  label file beside its photo with a `classes.txt` (LabelImg) or `obj.names` (CVAT).

Every format gives the same `LabelledImage`s: COCO class names, boxes in the pixels of the image file, clipped
to it, `difficult` boxes (VOC's flag, COCO's crowds) neither right nor wrong.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from dgdehaze_core.evaluation.coco_boxes import coco_images, coco_layouts
from dgdehaze_core.evaluation.voc_boxes import LabelledImage, LabelledLayout, voc_images, voc_layouts
from dgdehaze_core.evaluation.yolo_boxes import yolo_images, yolo_layouts

LAYOUTS = ("VOC files in labels-voc/ beside the photos, in Annotations/ beside JPEGImages/ (Pascal VOC, RTTS) "
           "or images/ (Label Studio), in *_PASCAL_VOC/ beside the photos (DAWN), or each beside its photo "
           "(LabelImg, Roboflow); a COCO JSON beside the photos or in annotations/ "
           "(Roboflow, CVAT); or YOLO labels/ beside images/ and a data.yaml (give the folder holding both, or "
           "images/SPLIT beside labels/SPLIT), or each beside its photo with a classes.txt (LabelImg)")
"""The layouts, in words for errors."""
READERS = {"voc": voc_images, "coco": coco_images, "yolo": yolo_images}


def labelled_layout(folder: str | Path) -> LabelledLayout | None:
    """The photos and boxes of the labelled set at `folder`, in any of the module's layouts; None when `folder`
    has none of them. ValueError when it has two (naming both: which boxes judge the photos cannot be told) or two
    COCO JSON files."""
    folder = Path(folder)
    found = [*voc_layouts(folder), *coco_layouts(folder), *yolo_layouts(folder)]
    if len(found) > 1:
        places = [os.path.relpath(layout.labels, folder) + ("/" if layout.labels.is_dir() else "")
                  for layout in found]
        raise ValueError(f"{folder} holds boxes in {len(found)} places ({', '.join(places)}): keep one")
    return found[0] if found else None


def labelled_images(folder: str | Path, keep: Callable[[str], bool] | None = None,
                    choose: Callable[[list[Path]], list[Path]] | None = None) -> list[LabelledImage]:
    """The labelled photos of the set at `folder` (`labelled_layout`) with their boxes, in the order of the
    format's module; with `keep`, only the photos whose file name it keeps; with `choose`, only those it returns
    from that ordered list of labelled photos (a selection such as eval's --include/--limit). No photo or label
    file left out is read, so a broken one there fails nothing.

    Which photos count as labelled is the format's: VOC leaves out a photo without a VOC file (one warning), COCO
    one its JSON does not list (one warning), while a photo COCO lists without a box, or YOLO's photo without a
    label file, is a photo with no object. ValueError when the folder is in none of the layouts (or in two), and
    for broken labels (each module says which)."""
    layout = labelled_layout(folder)
    if layout is None:
        raise ValueError(f"{folder} has no labelled boxes: expected {LAYOUTS}")
    return READERS[layout.kind](layout, keep, choose)
