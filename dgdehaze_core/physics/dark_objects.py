"""Fog density from the dark undersides of road users at the distance where they stand on the road.

The road itself is a poor black body: grey asphalt reads as hazy under a clear sky, an offset larger than the whole
signal of thin fog on the nearest 30 m (docs/RESULTS.md, "Visibility and depth in metres"). The shadow under a car,
its tyres and a person's dark clothes are nearly black (J close to 0), so there the scattering model
I = J t + A (1 - t) leaves t = 1 - I / A, whatever the method, and the object's box says how far away it is: the
flat road's depth under its bottom edge (`ground_contact.ground_contact`). beta = -ln(t) / r over the darkest
pixels of each box's bottom band, r the distance along the ray, the median over the objects.

The frame's airlight A is the dark channel prior's estimate on the frame (the brightest of its haziest pixels),
its least channel taken, so that a tinted airlight does not read a coloured object as fog.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dgdehaze_core.detection.detector import Detection
from dgdehaze_core.physics.dark_channel import channel_min, estimate_airlight, window_min
from dgdehaze_core.physics.ground_contact import ground_contact
from dgdehaze_core.physics.visibility import BetaMeasurement, Intrinsics, Mounting

ROAD_USERS = frozenset({"car", "truck", "bus", "person", "bicycle", "motorcycle"})
"""COCO classes that stand on the road and show a dark underside (a shadow, tyres, clothes)."""
MIN_SCORE = 0.4
"""Least detection confidence of an object measured."""
UNDERSIDE = 0.25
"""The band of a box measured: its bottom quarter, where the shadow and the tyres are."""
SIDE_MARGIN = 0.1
"""The share of the box's width left out on each side (the road beside the object)."""
DARK_PERCENTILE = 0.5
"""The percentile of the band's least channel taken as its black: the darkest pixels, not a lone dead one."""
MIN_BAND_PIXELS = 20
"""Fewest pixels of a band measured."""


def frame_airlight(frame: np.ndarray, least: np.ndarray) -> float:
    """The airlight of a uint8 BGR frame in [0, 1] whose `channel_min` is `least`: the least channel of the dark
    channel prior's estimate (on the bytes as they are: a few times faster than on floats)."""
    return float(np.min(estimate_airlight(frame, window_min(least))))


def object_betas(frame: np.ndarray, detections: Sequence[Detection], intrinsics: Intrinsics,
                 mounting: Mounting) -> list[float]:
    """beta (1/m) at each road user of `detections` (ROAD_USERS, score >= MIN_SCORE) standing on the road in view
    of the uint8 BGR `frame`, in the detections' order; objects whose contact is out of view
    (`ground_contact`), whose band is too small, or whose black is as bright as the airlight (the fog hides them)
    are left out, and so are all of them in a frame without airlight (black: a covered lens)."""
    users = [d for d in detections if d.class_name in ROAD_USERS and d.score >= MIN_SCORE]
    if not users:
        return []
    least = channel_min(frame)
    airlight = frame_airlight(frame, least)
    if not airlight > 0:
        return []
    height, width = least.shape
    betas = []
    for detection in users:
        contact = ground_contact(detection.box, least.shape, intrinsics, mounting)
        if not math.isfinite(contact.distance):
            continue
        x1, y1, x2, y2 = detection.box
        top, bottom = max(0, int(y2 - UNDERSIDE * (y2 - y1))), min(height, int(math.ceil(y2)))
        left = max(0, int(x1 + SIDE_MARGIN * (x2 - x1)))
        right = min(width, int(math.ceil(x2 - SIDE_MARGIN * (x2 - x1))))
        band = least[top:bottom, left:right]
        if band.size < MIN_BAND_PIXELS:
            continue
        t = 1.0 - float(np.percentile(band, DARK_PERCENTILE)) / 255.0 / airlight
        if not t > 0.0:
            continue
        betas.append(-math.log(min(t, 1.0)) / contact.distance)
    return betas


def measure_objects_beta(frame: np.ndarray, detections: Sequence[Detection], intrinsics: Intrinsics,
                         mounting: Mounting) -> BetaMeasurement:
    """The frame's beta from its road users (`object_betas`): their median, with `pixels` the number of objects
    measured and `source` "objects"; NaN with the reason where none could be."""
    betas = object_betas(frame, detections, intrinsics, mounting)
    if not betas:
        return BetaMeasurement(math.nan, 0, "no road user standing on the road in view", source="objects")
    return BetaMeasurement(float(np.median(betas)), len(betas), source="objects")
