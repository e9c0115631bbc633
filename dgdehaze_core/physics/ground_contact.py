"""Where a detected object stands: the flat road's depth under the bottom of its box.

A car or a person stands on the road, so the middle of its box's bottom edge is where the road meets it: with the
camera's height and pitch (`visibility.Mounting`) and its intrinsics, the ray through that pixel reaches the road at
a known z, whatever the fog. The depth a foggy frame gives (-ln t / beta) squeezes distances together (near objects
read too far, far ones too near), and a box's depth also holds what is seen past the object; the contact holds
neither, and needs no fog. It fails where the contact is not in view or not on the road plane, so it is used only
where it can be read, and the frame's depth elsewhere (`FrameChain.detect`). Nor does it hold for what does not stand
on the road: a traffic light or a stop sign on its pole, a bird, a bag in a hand (`RAISED`).
"""
from __future__ import annotations

import math
from typing import NamedTuple

from dgdehaze_core.detection.detector import Detection
from dgdehaze_core.physics.visibility import Intrinsics, Mounting, road_depth

RAISED = frozenset({"traffic light", "stop sign", "bird", "airplane", "kite", "frisbee", "sports ball", "umbrella",
                    "handbag", "backpack", "tie", "clock"})
"""COCO classes seen above the road in a street (on a pole or a wall, in the air, carried): the bottom of such a box is
not where the object meets the road, which lies below it, so a contact read there would place it too far (three
times too far for a stop sign 2 m up seen from 3 m). Every other class, a detector's own names included, is taken to
stand on the road."""
BOTTOM_MARGIN = 0.02
"""A box whose bottom edge lies within this share of the frame's height of its bottom is cut off by the frame: the
object's contact with the road is out of view."""


class GroundContact(NamedTuple):
    """Where a box meets the road: its `z` (m along the optical axis) and its `distance` (m along the ray); both NaN
    where it cannot be read."""

    z: float
    distance: float


NO_CONTACT = GroundContact(math.nan, math.nan)


def ground_contact(box: tuple[float, float, float, float], shape: tuple[int, int], intrinsics: Intrinsics,
                   mounting: Mounting) -> GroundContact:
    """Where the ray through the middle of `box`'s bottom edge (x1, y1, x2, y2 in the frame's pixels, the detector's
    box as it is) meets the flat road `mounting` describes (`visibility.road_depth`), for a frame of `shape`
    (height, width). NO_CONTACT where it cannot be read: the box is cut off by the frame's bottom (BOTTOM_MARGIN),
    the ray does not fall to the road (at or above the horizon) or has none (a lens's pixel beyond its field), or
    the contact lies farther along the ray than `mounting.road_max_distance`, the road the fog is measured on: near
    the horizon a small error of pitch moves the contact far."""
    x1, _, x2, bottom = box
    if not (math.isfinite(x1) and math.isfinite(x2) and math.isfinite(bottom)):
        return NO_CONTACT
    if bottom >= shape[0] * (1.0 - BOTTOM_MARGIN):
        return NO_CONTACT
    x, y, _ = intrinsics.point_at((x1 + x2) / 2.0, bottom, 1.0)
    z = float(road_depth(y, mounting))
    distance = z * math.sqrt(1.0 + x * x + y * y)
    return GroundContact(z, distance) if distance <= mounting.road_max_distance else NO_CONTACT


def detection_contact(detection: Detection, shape: tuple[int, int], intrinsics: Intrinsics,
                      mounting: Mounting) -> GroundContact:
    """`ground_contact` of `detection`'s box, NO_CONTACT for a class that does not stand on the road (`RAISED`)."""
    if detection.class_name in RAISED:
        return NO_CONTACT
    return ground_contact(detection.box, shape, intrinsics, mounting)
