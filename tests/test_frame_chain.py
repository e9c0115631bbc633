"""The one frame chain (dehaze, detect on schedule, depth per box) on a real foggy road photo with the shipped
detector: what it returns is what its parts return, in the order and on the frames the schedule says."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.detection.detector import Detector, median_depth
from dgdehaze_core.detection.fusion import fuse_detections
from dgdehaze_core.inference.frame_chain import FrameChain
from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.io.images import read_image


@pytest.fixture(scope="module")
def road(shared_data: Path) -> np.ndarray:
    return read_image(shared_data / "detection" / "dawn-fog" / "foggy-001.jpg")


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


def boxes(detections: list) -> list[tuple]:
    return [(d.class_id, tuple(round(v, 3) for v in d.box)) for d in detections]


def test_the_chain_dehazes_then_detects_on_the_dehazed_frame_with_each_box_depth(road: np.ndarray,
                                                                               detector: Detector) -> None:
    pipeline = load_pipeline("dcp")
    output = FrameChain.build(pipeline, detector)(road)
    result = output.result
    assert result.image.shape == road.shape and result.depth.shape == road.shape[:2]
    expected = detector(pipeline(road).image)
    assert expected, "the photo has cars the detector finds"
    assert boxes(output.detected.detections) == boxes(expected)
    assert output.detected.fresh and output.detected.age == 0
    assert output.detected.depths == pytest.approx([median_depth(d, result.depth) for d in expected], nan_ok=True)
    assert output.compute_ms == pytest.approx(output.dehazed.dehaze_ms + output.detected.detect_ms)


def test_detection_every_second_frame_carries_the_last_boxes_and_takes_any_depth_map(road: np.ndarray,
                                                                                   detector: Detector) -> None:
    chain = FrameChain.build(load_pipeline("dcp"), detector, interval=2)
    first = chain(road)
    dehazed = chain.dehaze(road)
    metres = np.full(road.shape[:2], 12.5, np.float32)
    second = chain.detect(dehazed, metres)
    third = chain(road)
    assert (first.detected.fresh, second.fresh, third.detected.fresh) == (True, False, True)
    assert second.age == 1 and boxes(second.detections) == boxes(first.detected.detections)
    assert second.depths == [12.5] * len(second.detections)


def test_fused_input_fuses_the_raw_and_the_dehazed_frames_boxes(road: np.ndarray, detector: Detector) -> None:
    pipeline = load_pipeline("dcp")
    output = FrameChain.build(pipeline, detector, detection_input="fused")(road)
    expected = fuse_detections([detector(road), detector(pipeline(road).image)], (road.shape[1], road.shape[0]))
    assert boxes(output.detected.detections) == boxes(expected)


def test_without_a_detector_the_chain_dehazes_and_detects_nothing(road: np.ndarray) -> None:
    output = FrameChain.build(load_pipeline("dcp"))(road)
    assert output.result.image.shape == road.shape
    assert (output.detected.detections, output.detected.fresh, output.detected.depths) == ([], False, [])
