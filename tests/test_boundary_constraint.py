"""The boundary constraint under the network's transmission: physics on haze made from a known depth, the pipeline
on a real clear frame and a real fog photo."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.physics.boundary_constraint import (RADIANCE_FLOOR, boundary_lookup, boundary_transmission,
                                                       check_radiance_floor)
from dgdehaze_core.physics.scattering import synthesize_haze, transmission_from_depth

AIRLIGHT_RGB = np.array([0.82, 0.86, 0.9], np.float32)


def _clear_frame(shared_data: Path) -> np.ndarray:
    """The first clear frame of kitti-tiny's drive (uint8 BGR, 1242x375)."""
    from dgdehaze_core.io.images import read_image

    return read_image(min((shared_data / "depth" / "kitti-tiny").rglob("image_02/data/*.png")))


def _hazed(middlebury_scene, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The cones scene hazed at beta 0.6 /m with AIRLIGHT_RGB, its radiance first held within [floor, 1]: the
    uint8 BGR hazy frame and the true transmission."""
    image, depth = middlebury_scene
    depth = np.where(np.isfinite(depth), depth, np.nanmax(depth))
    clear = floor + (1.0 - floor) * image.astype(np.float32) / 255.0
    transmission = transmission_from_depth(depth, 0.6).astype(np.float32)
    hazy = synthesize_haze(clear, depth[..., None], 0.6, AIRLIGHT_RGB[::-1])
    return np.clip(np.rint(hazy * 255.0), 0, 255).astype(np.uint8), transmission


@pytest.mark.parametrize("floor", [0.0, RADIANCE_FLOOR, 0.1])
def test_the_bound_of_a_pixel_never_exceeds_the_true_transmission_of_a_scene_within_it(middlebury_scene,
                                                                                      floor: float) -> None:
    """Haze made from a known depth over a radiance held within [floor, 1]: the per-pixel bound is at most the
    true transmission (up to the frame's 8-bit rounding, and the lookup's rounding up), and it is no empty bound: it
    reaches the truth somewhere."""
    hazy, truth = _hazed(middlebury_scene, floor)
    bound = boundary_transmission(hazy, AIRLIGHT_RGB, floor, patch=1)
    rounding = 0.5 / 255.0 / min(AIRLIGHT_RGB.min() - floor, 1.0 - AIRLIGHT_RGB.max()) + 1.0 / 255.0
    assert (bound <= truth + rounding).all()
    assert np.percentile(truth - bound, 1) < 0.02


def test_a_transmission_raised_to_the_bound_keeps_every_channel_within_the_floor_and_white(middlebury_scene) -> None:
    """A transmission far too small (0.05 everywhere) crushes the dark cones and blows the bright ones out; raised
    to the bound (closed over the default patch), the inversion keeps every channel within [floor, 1]."""
    hazy, _ = _hazed(middlebury_scene, RADIANCE_FLOOR)
    frame = hazy.astype(np.float32) / 255.0
    airlight = AIRLIGHT_RGB[::-1]
    too_small = np.full(hazy.shape[:2], 0.05, np.float32)
    crushed = (frame - airlight) / too_small[..., None] + airlight
    assert (crushed < 0).mean() > 0.2 and (crushed > 1).any()
    raised = np.maximum(too_small, boundary_transmission(hazy, AIRLIGHT_RGB))
    inverted = (frame - airlight) / raised[..., None] + airlight
    assert inverted.min() >= RADIANCE_FLOOR - 1e-5 and inverted.max() <= 1.0 + 1e-5


def _exact_bound(level: float, airlight: float, floor: float) -> float:
    """Meng's bound for one channel, computed apart from the lookup: the least t in [0, 1] at which inverting
    `level` keeps it within [floor, 1] (1 where no t can, as for a level under an airlight at or below the floor)."""
    if level < airlight:
        return min((airlight - level) / (airlight - floor), 1.0) if airlight > floor else 1.0
    return (level - airlight) / (1.0 - airlight) if level > airlight else 0.0


@pytest.mark.parametrize("airlight_bgr, floor", [
    ((0.0, 0.01, 0.02), 0.02),  # airlights under and at the floor
    ((1.0, 128 / 255, 0.5), 0.02),  # a white airlight, one exactly at a level, one between two
    ((0.82, 0.86, 0.9), 0.0), ((0.3, 0.6, 0.99), 0.5)])
def test_the_lookup_is_the_exact_bound_rounded_up_to_the_next_level(airlight_bgr: tuple[float, float, float],
                                                                   floor: float) -> None:
    """Every level of every channel: never below the exact bound (a bound rounded down or to the nearest lets the
    inversion crush or blow out what it should not), and less than one level above it."""
    lookup = boundary_lookup(np.array(airlight_bgr), floor)[:, 0, :].astype(np.float64) / 255.0
    exact = np.array([[_exact_bound(level / 255.0, airlight, floor) for airlight in airlight_bgr]
                      for level in range(256)])
    assert (lookup >= exact - 1e-12).all() and (lookup < exact + 1.0 / 255.0).all()


def test_the_bound_is_closed_over_the_patch_filling_narrow_gaps_without_spreading() -> None:
    """Meng's closing (the least over windows of the greatest over windows): a gap narrower than the patch in a
    region the bound holds high takes the region's bound; a small dark dot and a dark strip on the frame's edge keep
    theirs, not spread (a dilation alone would spread them, an opening or erosion drop them, no closing leave the
    gap), and nothing else changes."""
    frame = np.full((80, 100, 3), 204, np.uint8)  # at the airlight: no bound
    frame[10:40, 30:70] = 20  # a dark region (bound 0.93) ...
    frame[20:25, 45:50] = 204  # ... with a 5-pixel gap at the airlight
    frame[60:63, 40:43] = 20  # a dark dot, alone
    frame[:, :3] = 20  # a dark strip on the left edge
    airlight = np.full(3, 0.8)
    per_pixel, closed = boundary_transmission(frame, airlight, patch=1), boundary_transmission(frame, airlight)
    gap = np.zeros(per_pixel.shape, bool)
    gap[20:25, 45:50] = True
    assert per_pixel[gap].max() == 0.0 and (closed[gap] == per_pixel[15, 35]).all() and per_pixel[15, 35] > 0.9
    np.testing.assert_array_equal(closed[~gap], per_pixel[~gap])


@pytest.mark.parametrize("floor", [-0.01, 0.51, float("nan"), True, "0.02", None])
def test_a_floor_outside_zero_to_half_is_refused(floor: object) -> None:
    with pytest.raises(ValueError, match="radiance_floor must be a number in \\[0, 0.5\\]"):
        check_radiance_floor(floor)  # type: ignore[arg-type]


def test_the_bound_takes_only_a_uint8_bgr_frame() -> None:
    with pytest.raises(ValueError, match="uint8 BGR frame"):
        boundary_transmission(np.zeros((4, 4, 3), np.float32), AIRLIGHT_RGB)


def test_lite_leaves_a_clear_frame_nearly_as_it_is_and_still_dehazes_fog(shared_data: Path,
                                                                        foggy_road: np.ndarray) -> None:
    """A clear KITTI frame: without the constraint lite crushes a fifth of it to black; with it, no pixel, and it
    stays closer to the frame. A real fog photo is still dehazed (its contrast raised) nearly as before."""
    from dgdehaze_core.evaluation.clear_eval import image_changes
    from dgdehaze_core.inference.pipeline import load_pipeline

    clear = _clear_frame(shared_data)
    bounded, unbounded = load_pipeline("lite"), load_pipeline("lite", radiance_floor=None)
    assert bounded.radiance_floor == RADIANCE_FLOOR and unbounded.radiance_floor is None
    before, after = image_changes(unbounded(clear).image, clear), image_changes(bounded(clear).image, clear)
    assert before["crushed"] > 0.1 and after["crushed"] == 0.0
    assert after["psnr"] > before["psnr"] + 0.5 and abs(after["brightness_change"]) < abs(before["brightness_change"])
    fog_before, fog_after = unbounded(foggy_road).image, bounded(foggy_road).image
    assert fog_after.std() > foggy_road.std() * 1.2
    assert abs(float(fog_after.std()) - float(fog_before.std())) < 0.1 * fog_before.std()


def test_the_pipeline_raises_the_networks_transmission_to_the_bound_in_either_output(shared_data: Path) -> None:
    """The pipeline's transmission is the network's (refined, held within [T_MIN, 1]) raised to the bound of the
    frame, of the airlight the pipeline gives (a gray frame's gray one) and of the pipeline's floor, in the decoder
    output as in the physics one: the fog measurement reads it whatever the output. The decoder's image is its own:
    the floor leaves it as it was. A clear frame, where the bound lies above lite's transmission over a third of it."""
    import cv2

    from dgdehaze_core.inference.pipeline import pipeline_from_model
    from dgdehaze_core.models import load_model_and_record
    from dgdehaze_core.physics.scattering import T_MIN

    clear = cv2.resize(_clear_frame(shared_data), (320, 96), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(cv2.cvtColor(clear, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    model, _ = load_model_and_record("lite")
    for output in ("auto", "decoder"):
        bounded = pipeline_from_model(model, output=output, radiance_floor=0.1)
        unbounded = pipeline_from_model(model, output=output, radiance_floor=None)
        for frame in (clear, gray):
            raised, network = bounded(frame), unbounded(frame)
            bound = boundary_transmission(frame, raised.airlight[::-1], 0.1)
            assert (bound > network.transmission).mean() > 0.3, output
            np.testing.assert_array_equal(raised.transmission, np.clip(np.maximum(network.transmission, bound),
                                                                       T_MIN, 1.0), err_msg=output)
            if output == "decoder":
                np.testing.assert_array_equal(raised.image, network.image)
