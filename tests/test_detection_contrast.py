"""The detector's local contrast (CLAHE on the lightness) on real fog photos: what it does to a frame, how the node's
detector and `eval`'s `+clahe` methods apply it, and what it refuses."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.detection.contrast import local_contrast
from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.detection.fusion import FrameDetector, fuse_detections
from dgdehaze_core.evaluation.detection_eval import match_labelled, method_detections
from dgdehaze_core.evaluation.methods import MethodSpec, load_methods, parse_methods
from dgdehaze_core.evaluation.labelled_sets import labelled_images
from dgdehaze_core.io.images import ImageError, read_image


def tile_contrast(frame: np.ndarray, tile: int = 32) -> float:
    """Mean over 32-pixel tiles of the lightness's standard deviation: the local contrast fog takes away."""
    lightness = cv2.cvtColor(frame, cv2.COLOR_BGR2LAB)[:, :, 0].astype(np.float64)
    height, width = (s - s % tile for s in lightness.shape)
    tiles = lightness[:height, :width].reshape(height // tile, tile, width // tile, tile)
    return float(tiles.std(axis=(1, 3)).mean())


def boxes(detections: list) -> list[tuple]:
    return [(d.class_id, tuple(round(v, 3) for v in d.box)) for d in detections]


def test_a_fog_photo_gains_local_contrast_and_keeps_its_colours(foggy_road: np.ndarray) -> None:
    out = local_contrast(foggy_road)
    assert out.shape == foggy_road.shape and out.dtype == np.uint8 and out is not foggy_road
    assert tile_contrast(out) > 1.3 * tile_contrast(foggy_road)
    before, after = (cv2.cvtColor(f, cv2.COLOR_BGR2LAB)[:, :, 1:].astype(int) for f in (foggy_road, out))
    assert np.median(np.abs(after - before)) <= 1


def test_a_flat_frame_stays_flat_rather_than_amplifying_noise() -> None:
    rng = np.random.default_rng(0)
    flat = np.clip(200 + rng.normal(0, 1.0, (240, 320, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    assert local_contrast(flat).astype(float).std() < 3.0 * flat.astype(float).std() + 1.0


@pytest.mark.parametrize("frame", [np.zeros((0, 8, 3), np.uint8), np.zeros((8, 8), np.uint8),
                                   np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 4), np.uint8), "frame"])
def test_anything_but_a_uint8_bgr_frame_is_refused(frame) -> None:
    with pytest.raises(ImageError, match="local contrast"):
        local_contrast(frame)


def test_a_clip_limit_that_is_not_positive_is_refused(foggy_road: np.ndarray) -> None:
    assert tile_contrast(local_contrast(foggy_road, 4.0)) > tile_contrast(local_contrast(foggy_road, 1.0))
    for clip in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="clip limit must be positive"):
            local_contrast(foggy_road, clip)


def test_the_node_detector_reads_the_equalised_frames_when_asked(foggy_road: np.ndarray, detector: Detector) -> None:
    dehazed = cv2.GaussianBlur(foggy_road, (3, 3), 0)
    size = (foggy_road.shape[1], foggy_road.shape[0])
    plain = FrameDetector(detector, "dehazed")
    assert boxes(plain(dehazed, foggy_road)) == boxes(detector(dehazed))
    plain.contrast = True
    assert boxes(plain(dehazed, foggy_road)) == boxes(detector(local_contrast(dehazed)))
    grey = cv2.cvtColor(dehazed, cv2.COLOR_BGR2GRAY)  # the detector reads grey frames: equalised as BGR
    assert boxes(plain(grey, foggy_road)) == boxes(detector(local_contrast(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))))
    fused = FrameDetector(detector, "fused", contrast=True)
    expected = fuse_detections([detector(local_contrast(foggy_road)), detector(local_contrast(dehazed))], size)
    assert boxes(fused(dehazed, foggy_road)) == boxes(expected)
    assert boxes(detector(local_contrast(foggy_road))) != boxes(detector(foggy_road)), \
        "equalising changes what is found in fog"


def test_clahe_method_names_parse_and_the_clear_references_take_none() -> None:
    specs = parse_methods("hazy+clahe,lite+clahe,lite+hazy+clahe,X=runs/a/last.pt+clahe")
    assert specs == [MethodSpec("hazy+clahe", "hazy", False, True), MethodSpec("lite+clahe", "lite", False, True),
                     MethodSpec("lite+hazy+clahe", "lite", True, True), MethodSpec("X", "runs/a/last.pt", False, True)]
    assert all(spec.detection_only for spec in specs) and not MethodSpec("lite", "lite").detection_only
    for reference in ("clear+clahe", "clear-jpeg90+clahe"):
        with pytest.raises(ValueError, match="clear image's own reference"):
            parse_methods(reference)


def test_eval_methods_detect_on_the_equalised_input_and_output(shared_data: Path, detector: Detector) -> None:
    folder = shared_data / "detection" / "dawn-fog"
    images = [item for item in labelled_images(folder) if item.image.name in ("foggy-001.jpg", "haze-003.jpg")]
    methods = load_methods(parse_methods("hazy,hazy+clahe,dcp,dcp+clahe,dcp+hazy+clahe"))
    hazy = read_image(images[0].image)
    dcp = methods[2].dehaze(hazy).image
    expected = {"hazy+clahe": detector(local_contrast(hazy)), "dcp+clahe": detector(local_contrast(dcp)),
                "dcp+hazy+clahe": fuse_detections([detector(local_contrast(hazy)), detector(local_contrast(dcp))],
                                                  (hazy.shape[1], hazy.shape[0]))}
    for method in methods[1:]:
        if method.name in expected:
            assert boxes(method_detections(method, hazy, detector)) == boxes(expected[method.name]), method.name
    matches = match_labelled(images, methods, detector, classes=detector.names.values())
    assert set(matches) == {m.name for m in methods} and all(len(rows) == 2 for rows in matches.values())
