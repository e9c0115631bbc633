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


def test_the_lookup_forbids_dehazing_below_an_airlight_at_the_floor_and_never_bounds_a_white_airlight() -> None:
    lookup = boundary_lookup(np.array([0.01, 1.0, 0.5]), 0.02)[:, 0, :]
    assert (lookup[:3, 0] == 255).all() and (lookup[3:, 0] <= 255).all()  # levels below a 0.01 airlight: t = 1
    assert (np.diff(lookup[:, 1].astype(int)) <= 0).all() and lookup[255, 1] == 0  # a white airlight: no upper
    assert lookup[round(0.5 * 255), 2] <= 1 and lookup[255, 2] == 255  # the airlight's level: none; white: t = 1


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
    from dgdehaze_core.io.images import read_image

    clear = read_image(next((shared_data / "depth" / "kitti-tiny").rglob("image_02/data/*.png")))
    bounded, unbounded = load_pipeline("lite"), load_pipeline("lite", radiance_floor=None)
    assert bounded.radiance_floor == RADIANCE_FLOOR and unbounded.radiance_floor is None
    before, after = image_changes(unbounded(clear).image, clear), image_changes(bounded(clear).image, clear)
    assert before["crushed"] > 0.1 and after["crushed"] == 0.0
    assert after["psnr"] > before["psnr"] + 0.5 and abs(after["brightness_change"]) < abs(before["brightness_change"])
    fog_before, fog_after = unbounded(foggy_road).image, bounded(foggy_road).image
    assert fog_after.std() > foggy_road.std() * 1.2
    assert abs(float(fog_after.std()) - float(fog_before.std())) < 0.1 * fog_before.std()
