"""Human boxes of a photo with an EXIF orientation placed on the upright view `read_image` gives of it.

Most labelling tools draw on the upright photo (CVAT, Label Studio and OpenLabeling show it; Ultralytics, Detectron2
and MMDetection read photos upright, so YOLO's normalised boxes are on it), a few on the pixels as stored
(LabelImg). Where a label file gives the size its boxes were drawn at (VOC's <size>, COCO's width and height) and
the orientation swaps width and height, that size tells which: boxes drawn on the stored pixels are turned with the
photo. Where it cannot tell (a photo upside down or mirrored, a square one), the boxes are taken as drawn upright,
with a warning naming the file.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from dgdehaze_core.io.images import QUARTER_TURNS, exif_orientation, upright_size

LOG = logging.getLogger(__name__)
SAME_ASPECT = 0.01
"""Aspect ratios closer than this (relative) are taken as equal: a size rounded when a photo was resized."""

Box = tuple[float, float, float, float]


def _upright_point(x: float, y: float, stored: tuple[float, float], orientation: int) -> tuple[float, float]:
    """The upright view's position of the point (x, y) of pixels stored at `stored` (width, height) that
    `orientation` turns upright (as `images.UPRIGHT` turns them)."""
    width, height = stored
    return {1: (x, y), 2: (width - x, y), 3: (width - x, height - y), 4: (x, height - y), 5: (y, x),
            6: (height - y, x), 7: (height - y, width - x), 8: (y, width - x)}[orientation]


def _aspect_gap(size: tuple[float, float], other: tuple[float, float]) -> float:
    return abs(math.log((size[0] / size[1]) / (other[0] / other[1])))


@dataclass(frozen=True)
class LabelledView:
    """Where one photo's boxes were drawn: on a picture of `size` (width, height) of the photo's pixels that
    `orientation` turns upright (1: the upright view itself), of a photo whose upright view is `upright` (width,
    height)."""

    size: tuple[float, float]
    upright: tuple[int, int]
    orientation: int = 1

    def to_upright(self, box: Box) -> Box:
        """`box` (x1, y1, x2, y2 on the labelled picture) in the photo's upright pixels: scaled to the photo's size,
        then turned upright with the photo."""
        drawn = upright_size(self.upright, self.orientation)
        sx, sy = drawn[0] / self.size[0], drawn[1] / self.size[1]
        corners = [_upright_point(x * sx, y * sy, drawn, self.orientation)
                   for x, y in ((box[0], box[1]), (box[2], box[3]))]
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        return min(xs), min(ys), max(xs), max(ys)


def labelled_view(source: str, photo: Path, size: tuple[float, float], upright: tuple[int, int]) -> LabelledView:
    """The view the boxes of the label file `source` for `photo` (upright at `upright`, width and height) were drawn
    on, given the `size` the file says they were drawn at (the module's docstring); a warning naming both when a
    tagged photo's size cannot tell. ValueError naming them when `size` is the photo's turned a quarter and the photo
    has no EXIF orientation saying which way (boxes drawn on a turned copy cannot be placed)."""
    orientation = exif_orientation(photo)
    square = _aspect_gap(upright, (1, 1)) < SAME_ASPECT
    turned = _aspect_gap(size, (upright[1], upright[0])) < _aspect_gap(size, upright)
    if orientation == 1:
        if turned and not square and _aspect_gap(size, (upright[1], upright[0])) < SAME_ASPECT:
            raise ValueError(f"{source}: its boxes were drawn on a {size[0]:g}x{size[1]:g} picture, the "
                             f"{upright[0]}x{upright[1]} photo {photo.name} turned a quarter, and the photo has no "
                             "EXIF orientation saying which way it was turned: label the photo as viewers show it")
        return LabelledView(size, upright)
    if orientation in QUARTER_TURNS and not square:
        return LabelledView(size, upright, orientation if turned else 1)
    LOG.warning("%s: %s carries EXIF orientation %d, and the %gx%g size its boxes were drawn at does not tell whether "
                "they were drawn on its stored pixels or on the upright view: taken as drawn upright",
                source, photo.name, orientation, *size)
    return LabelledView(size, upright)
