"""The one frame chain (dehaze, detect on schedule, depth per box) on a real foggy road photo with the shipped
detector: what it returns is what its parts return, in the order and on the frames the schedule says."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from dgdehaze_core.detection.contrast import local_contrast
from dgdehaze_core.detection.detector import Detector, median_depth
from dgdehaze_core.detection.fusion import fuse_detections
from dgdehaze_core.inference.frame_chain import FrameChain
from dgdehaze_core.inference.pipeline import load_pipeline
from dgdehaze_core.physics.visibility import Intrinsics, Mounting, VisibilityEstimator, fog_contrast


def boxes(detections: list) -> list[tuple]:
    return [(d.class_id, tuple(round(v, 3) for v in d.box)) for d in detections]


def test_the_chain_dehazes_then_detects_on_the_dehazed_frame_with_each_box_depth(foggy_road: np.ndarray,
                                                                               detector: Detector) -> None:
    pipeline = load_pipeline("dcp")
    output = FrameChain.build(pipeline, detector)(foggy_road)
    result = output.result
    assert result.image.shape == foggy_road.shape and result.depth.shape == foggy_road.shape[:2]
    expected = detector(pipeline(foggy_road).image)
    assert expected, "the photo has cars the detector finds"
    assert boxes(output.detected.detections) == boxes(expected)
    assert output.detected.fresh and output.detected.age == 0
    assert output.detected.depths == pytest.approx([median_depth(d, result.depth) for d in expected], nan_ok=True)
    assert output.compute_ms == pytest.approx(output.dehazed.dehaze_ms + output.detected.detect_ms)


def test_detection_every_second_frame_carries_the_last_boxes_and_takes_any_depth_map(foggy_road: np.ndarray,
                                                                                   detector: Detector) -> None:
    chain = FrameChain.build(load_pipeline("dcp"), detector, interval=2)
    first = chain(foggy_road)
    dehazed = chain.dehaze(foggy_road)
    metres = np.full(foggy_road.shape[:2], 12.5, np.float32)
    second = chain.detect(dehazed, metres)
    third = chain(foggy_road)
    assert (first.detected.fresh, second.fresh, third.detected.fresh) == (True, False, True)
    assert second.age == 1 and boxes(second.detections) == boxes(first.detected.detections)
    assert second.depths == [12.5] * len(second.detections)


def test_a_frame_of_another_size_is_detected_whatever_the_interval(foggy_road: np.ndarray, detector: Detector) -> None:
    """A camera that changes resolution between two detected frames: the frames between were given the last boxes,
    in the old frame's pixels (drawn on ~/debug_image where no object is)."""
    chain = FrameChain.build(load_pipeline("dcp"), detector, interval=3)
    half = cv2.resize(foggy_road, (foggy_road.shape[1] // 2, foggy_road.shape[0] // 2))
    first, resized = chain(foggy_road), chain(half)
    assert first.detected.fresh and resized.detected.fresh and resized.detected.detections
    assert boxes(resized.detected.detections) == boxes(detector.detect(resized.dehazed.result.image))


def test_fused_input_fuses_the_raw_and_the_dehazed_frames_boxes(foggy_road: np.ndarray, detector: Detector) -> None:
    pipeline = load_pipeline("dcp")
    output = FrameChain.build(pipeline, detector, detection_input="fused")(foggy_road)
    size = (foggy_road.shape[1], foggy_road.shape[0])
    expected = fuse_detections([detector(foggy_road), detector(pipeline(foggy_road).image)], size)
    assert boxes(output.detected.detections) == boxes(expected)


def test_fused_input_keeps_at_most_the_detector_s_max_det_boxes(foggy_road: np.ndarray) -> None:
    detector = Detector()  # its own: max_det changes, as a node's parameter changes it while running
    chain = FrameChain.build(load_pipeline("dcp"), detector, detection_input="fused")
    every = chain(foggy_road).detected.detections
    assert len(every) >= 2, "the raw and the dehazed frame's detectors find different objects on this photo"
    detector.max_det = 1
    assert len(detector(foggy_road)) == 1
    assert boxes(chain(foggy_road).detected.detections) == boxes(every[:1])


def test_without_a_detector_the_chain_dehazes_and_detects_nothing(foggy_road: np.ndarray) -> None:
    output = FrameChain.build(load_pipeline("dcp"))(foggy_road)
    assert output.result.image.shape == foggy_road.shape
    assert (output.detected.detections, output.detected.fresh, output.detected.depths) == ([], False, [])



def test_a_change_to_one_frames_detections_reaches_no_later_frame(foggy_road: np.ndarray) -> None:
    """Without a detector every frame returned one shared FrameDetections: a caller that added to a frame's lists
    (a box of its own, say) found it in every later frame's."""
    chain = FrameChain.build(load_pipeline("dcp"))
    first = chain(foggy_road).detected
    first.detections.append("a caller's own box")
    first.depths.append(3.0)
    first.positions.append((0.0, 0.0, 3.0))
    later = chain(foggy_road).detected
    assert (later.detections, later.depths, later.positions) == ([], [], [])


def test_a_16_bit_or_grayscale_frame_is_measured_as_its_uint8_bgr_frame(foggy_road: np.ndarray) -> None:
    """The pipelines take grayscale and 16-bit frames, and the chain passed them as given to the fog measurement,
    which read them as uint8 BGR: an OverflowError (16-bit) or an IndexError (grayscale)."""
    height, width = foggy_road.shape[:2]
    camera = Intrinsics(float(width), float(width), width / 2.0, height / 2.0)

    def reading(frame: np.ndarray):
        chain = FrameChain(load_pipeline("dcp"), fog=VisibilityEstimator(Mounting(1.5, 0.0), time_constant=0.0))
        return chain(frame, camera).fog

    bgr = reading(foggy_road)
    assert np.isfinite(bgr.beta) and np.isfinite(bgr.depth).any()
    deep = reading(foggy_road.astype(np.uint16) * 257)
    assert deep.beta == bgr.beta and np.array_equal(deep.depth, bgr.depth, equal_nan=True)
    gray = cv2.cvtColor(foggy_road, cv2.COLOR_BGR2GRAY)
    assert reading(gray).beta == reading(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)).beta


def test_without_a_metric_depth_detections_carry_no_position_and_no_relative_depth_in_metres(
        foggy_road: np.ndarray, detector: Detector) -> None:
    """A chain without a fog estimator, given the camera's intrinsics, has only the network's relative depth: its
    detections carry that depth but no position in metres (a ray at a relative depth would read as metres). A chain
    with a fog estimator but no intrinsics yet (no camera_info) measures no fog, and its detections carry NaN, not
    the relative depth."""
    height, width = foggy_road.shape[:2]
    camera = Intrinsics(float(width), float(width), width / 2.0, height / 2.0)
    relative = FrameChain.build(load_pipeline("dcp"), detector)(foggy_road, camera)
    assert relative.fog is None and relative.detected.detections
    assert relative.detected.depths == pytest.approx(
        [median_depth(d, relative.result.depth) for d in relative.detected.detections])
    assert np.isnan(relative.detected.positions).all()
    fog = VisibilityEstimator(Mounting(1.5, 0.0), time_constant=0.0)
    unplaced = FrameChain.build(load_pipeline("dcp"), detector, fog=fog)(foggy_road)
    assert unplaced.fog is None and unplaced.detected.detections
    assert np.isnan(unplaced.detected.depths).all() and np.isnan(unplaced.detected.positions).all()


def test_the_fog_is_read_against_the_pipelines_transmission_floor_and_dehazing_timed_in_ms(
        foggy_road: np.ndarray) -> None:
    """The dark channel prior clips its transmission at its t0 (0.1), not at the network's T_MIN: the chain hands
    the estimator the pipeline's floor, as the visibility sheet does, so that pixels held at the floor are not read
    as fog of that density."""
    height, width = foggy_road.shape[:2]
    camera = Intrinsics(float(width), float(width), width / 2.0, height / 2.0)
    chain = FrameChain(load_pipeline("dcp"), fog=VisibilityEstimator(Mounting(1.5, 0.0), time_constant=0.0))
    begin = time.perf_counter()
    dehazed = chain.dehaze(foggy_road)
    wall_ms = (time.perf_counter() - begin) * 1000.0
    assert 0.5 * wall_ms <= dehazed.dehaze_ms <= wall_ms, "dehaze_ms: the pipeline's time in milliseconds"
    assert dehazed.result.transmission_floor == 0.1
    reading = chain.measure_fog(dehazed, camera, 0.0)
    expected = VisibilityEstimator(Mounting(1.5, 0.0), time_constant=0.0).update(
        dehazed.result.transmission, camera, 0.0, fog_contrast(foggy_road), 0.1)
    assert reading.beta == expected.beta and np.array_equal(reading.depth, expected.depth, equal_nan=True)


def test_the_chain_equalises_contrast_and_tracks_as_its_detector_is_set(foggy_road: np.ndarray,
                                                                       detector: Detector) -> None:
    """`contrast`: the detector reads the dehazed frame with its local contrast equalised; a detector with a tracker
    gives its detections identities through the chain too."""
    pipeline = load_pipeline("dcp")
    equalised = FrameChain.build(pipeline, detector, contrast=True)(foggy_road)
    expected = detector(local_contrast(pipeline(foggy_road).image))
    assert boxes(equalised.detected.detections) == boxes(expected)
    assert boxes(expected) != boxes(detector(pipeline(foggy_road).image)), "equalising changes what is found"
    tracked = FrameChain.build(pipeline, Detector(tracker="bytetrack"))(foggy_road).detected.detections
    assert tracked and all(d.track_id is not None for d in tracked)
