"""The depth of a detected object from where its box meets the road (`physics.ground_contact`), checked against
road points projected by OpenCV with the camera's height and pitch (a raw image's lens: tests/test_lens.py), and the
chain giving it to the detections that stand on the road."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.detection.schedule import DetectionSchedule
from dgdehaze_core.evaluation.depth_datasets import load_kitti
from dgdehaze_core.evaluation.visibility_eval import kitti_intrinsics
from dgdehaze_core.inference.frame_chain import FrameChain
from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.physics.ground_contact import NO_CONTACT, detection_contact, ground_contact
from dgdehaze_core.physics.visibility import Intrinsics, Mounting, VisibilityEstimator

SHAPE = (375, 1242)
KITTI = Intrinsics(721.5377, 721.5377, 609.5593, 172.854)
"""KITTI's rectified camera 2 (P_rect_02), whose principal point lies 15 px above the image's middle."""


def road_point(x: float, forward: float, mounting: Mounting) -> np.ndarray:
    """A road point `x` m to the right and `forward` m ahead (level) in the optical frame of a camera `height` above
    the road, pitched nose down by `pitch`: the optical axes (x right, y down, z forward) turned down by the pitch."""
    p, h = mounting.pitch, mounting.height
    return np.array([x, h * math.cos(p) - forward * math.sin(p), h * math.sin(p) + forward * math.cos(p)])


def box_standing_at(pixel: np.ndarray, width: float = 80.0, height: float = 60.0) -> tuple[float, float, float, float]:
    """A detector's box whose bottom edge's middle is `pixel` (u, v)."""
    u, v = (float(c) for c in pixel)
    return (u - width / 2, v - height, u + width / 2, v)


def project(points: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    k = np.array([[intrinsics.fx, 0.0, intrinsics.cx], [0.0, intrinsics.fy, intrinsics.cy], [0.0, 0.0, 1.0]])
    pixels, _ = cv2.projectPoints(points.reshape(-1, 3), np.zeros(3), np.zeros(3), k, np.zeros(5))
    return pixels.reshape(-1, 2)


@pytest.mark.parametrize("pitch", [0.0, 0.03, -0.02, 0.3])
@pytest.mark.parametrize("x, forward", [(0.0, 8.0), (-3.5, 14.0), (2.0, 25.0)])
def test_an_object_standing_on_the_road_is_at_the_road_s_depth_under_its_box(pitch: float, x: float,
                                                                             forward: float) -> None:
    mounting = Mounting(1.65, pitch)
    point = road_point(x, forward, mounting)
    pixel, = project(point, KITTI)
    if not (0 <= pixel[0] < SHAPE[1] and pixel[1] < SHAPE[0] * 0.98):
        pytest.skip("the contact is out of this camera's view")
    contact = ground_contact(box_standing_at(pixel), SHAPE, KITTI, mounting)
    assert contact.z == pytest.approx(point[2], rel=1e-9)
    assert contact.distance == pytest.approx(float(np.linalg.norm(point)), rel=1e-9)  # along the ray, not z


def test_a_contact_out_of_view_beyond_the_road_measured_or_above_the_horizon_gives_none() -> None:
    mounting = Mounting(1.65, 0.0, road_max_distance=30.0)
    near, = project(road_point(0.0, 3.0, mounting), KITTI)  # below the frame's bottom: a box cut off by it
    assert math.isnan(ground_contact(box_standing_at((near[0], SHAPE[0] - 1.0)), SHAPE, KITTI, mounting).z)
    far, = project(road_point(0.0, 45.0, mounting), KITTI)
    assert math.isnan(ground_contact(box_standing_at(far), SHAPE, KITTI, mounting).z)
    assert ground_contact(box_standing_at(far), SHAPE, KITTI, Mounting(1.65, 0.0, road_max_distance=60.0)).z == \
        pytest.approx(45.0)
    assert math.isnan(ground_contact(box_standing_at((600.0, KITTI.cy - 5.0)), SHAPE, KITTI, mounting).z)
    assert math.isnan(ground_contact((math.nan, 0.0, 10.0, 300.0), SHAPE, KITTI, mounting).z)


def test_a_detection_takes_the_road_s_depth_under_its_box_only_if_it_stands_on_the_road(shared_data: Path,
                                                                                       detector: Detector) -> None:
    """The chain as the node runs it on a kitti-seq frame: each car of the queue whose contact is in view takes the
    road's depth under its box; the same box named a stop sign (a sign on its pole: the road lies below the box's
    bottom, so the contact would place it too far) keeps the frame's depth in the box, as does a car whose contact
    is out of view. A detector's own class names stand on the road."""
    folder = shared_data / "depth" / "kitti-seq"
    sample = [f for f in load_kitti(folder).frames if "/image_02/" in f.name][40].read()
    intrinsics, mounting = kitti_intrinsics(folder, sample.name), Mounting(1.65, 0.0)
    cars = [d for d in detector(sample.image) if d.class_name == "car"]
    contacts = [ground_contact(car.box, sample.image.shape[:2], intrinsics, mounting).z for car in cars]
    standing = next(car for car, z in zip(cars, contacts) if math.isfinite(z))
    sign = dataclasses.replace(standing, class_name="stop sign", class_id=11)
    chain = FrameChain(load_pipeline("dcp"), DetectionSchedule(lambda *frames: [*cars, sign]),
                       VisibilityEstimator(mounting))
    metres = np.full(sample.image.shape[:2], 20.0, np.float32)  # the fog's depth in metres: 20 m in every box
    detected = chain.detect(chain.dehaze(sample.image), metres, intrinsics)
    assert detected.depths == pytest.approx([z if math.isfinite(z) else 20.0 for z in contacts] + [20.0])
    assert detection_contact(sign, sample.image.shape[:2], intrinsics, mounting) is NO_CONTACT
    own_name = dataclasses.replace(standing, class_name="Pedestrian", class_id=0)
    assert detection_contact(own_name, sample.image.shape[:2], intrinsics, mounting).z == pytest.approx(
        ground_contact(standing.box, sample.image.shape[:2], intrinsics, mounting).z)
