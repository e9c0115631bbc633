"""The scattering model on a real image with its real dense depth (Middlebury 'cones')."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from dgdehaze_core.physics.scattering import (depth_from_transmission, invert_scattering,
                                              invert_scattering_detail_limited, synthesize_haze,
                                              transmission_from_depth)


def _filled(depth: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(depth), depth, np.nanmedian(depth)).astype(np.float32)


def test_true_transmission_and_airlight_invert_haze_exactly(middlebury_scene):
    image, depth = middlebury_scene
    clear = image.astype(np.float32) / 255.0
    airlight = np.array([0.86, 0.88, 0.9], np.float32)
    t = transmission_from_depth(_filled(depth), beta=0.1)[:, :, None]
    hazy = synthesize_haze(clear, _filled(depth)[:, :, None], 0.1, airlight)
    assert float(np.abs(hazy - clear).mean()) > 0.1, "the synthesized haze should change the image substantially"
    recovered = invert_scattering(hazy, t, airlight, t_min=1e-6)
    assert float(np.abs(recovered - clear).max()) < 1e-4
    too_thin = [invert_scattering(hazy, t * 0.5, airlight),  # an underestimated t overshoots: clipped to [0, 1]
                invert_scattering(torch.from_numpy(hazy).permute(2, 0, 1)[None], torch.from_numpy(t * 0.5).permute(
                    2, 0, 1)[None], torch.from_numpy(airlight).reshape(1, 3, 1, 1)).numpy()[0].transpose(1, 2, 0)]
    for overshot in too_thin:
        assert overshot.min() == 0.0 and overshot.max() == 1.0
    np.testing.assert_allclose(too_thin[1], too_thin[0], atol=1e-5)


def test_depth_transmission_round_trip_and_bounds():
    depth = np.linspace(0.0, 50.0, 101, dtype=np.float32)
    t = transmission_from_depth(depth, 0.08)
    assert t[0] == 1.0 and np.all(np.diff(t) < 0) and np.all(t > 0)
    np.testing.assert_allclose(depth_from_transmission(t, 0.08), depth, rtol=1e-4, atol=1e-4)
    assert np.isfinite(depth_from_transmission(np.zeros(3, np.float32), 1.0)).all()


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(0)
    clear = rng.random((2, 3, 8, 8), dtype=np.float32)
    depth = rng.random((2, 1, 8, 8), dtype=np.float32) * 5
    airlight = np.array([0.8, 0.9, 1.0], np.float32).reshape(1, 3, 1, 1)
    hazy_np = synthesize_haze(clear, depth, 0.7, airlight)
    hazy_torch = synthesize_haze(torch.from_numpy(clear), torch.from_numpy(depth), 0.7, torch.from_numpy(airlight))
    assert isinstance(hazy_torch, torch.Tensor)
    np.testing.assert_allclose(hazy_torch.numpy(), hazy_np, atol=1e-6)
    t = transmission_from_depth(torch.from_numpy(depth), 0.7)
    back = invert_scattering(hazy_torch, t, torch.from_numpy(airlight), t_min=1e-6)
    np.testing.assert_allclose(back.numpy(), clear, atol=1e-4)


def test_the_frame_inversion_on_bands_of_rows_gives_the_whole_frame_result(middlebury_scene):
    from dgdehaze_core.io.images import bgr_to_rgb_float, rgb_float_to_bgr
    from dgdehaze_core.physics.frame_inversion import FrameInverter

    image, depth = middlebury_scene
    rgb = bgr_to_rgb_float(image)
    airlight = np.array([0.86, 0.88, 0.9], np.float32)
    filled = _filled(depth)
    t = np.clip(transmission_from_depth(filled, np.log(2.0) / np.median(filled)), 0.05, 1.0).astype(np.float32)
    assert (t < 0.5).mean() > 0.2 and (t > 0.5).mean() > 0.2, "dense haze in part of the frame, light elsewhere"
    hazy = rgb_float_to_bgr(synthesize_haze(rgb, (-np.log(t))[:, :, None], 1.0, airlight))
    for rows in (hazy.shape[0], hazy.shape[0] - 37):  # bands of equal and of unequal height
        frame, transmission = hazy[:rows], t[:rows]
        whole = FrameInverter(2.0, radius=4, eps=0.032 ** 2, workers=1)(frame, transmission, airlight)
        for workers in (2, 3):
            banded = FrameInverter(2.0, radius=4, eps=0.032 ** 2, workers=workers)
            np.testing.assert_array_equal(banded(frame, transmission, airlight), whole)
            np.testing.assert_array_equal(banded(frame, transmission, airlight), whole)  # buffers reused
    recovered = np.abs(whole.astype(np.float32) - image[:rows]).mean()
    assert recovered < 0.5 * np.abs(frame.astype(np.float32) - image[:rows]).mean(), "the scene comes back"
    exact = FrameInverter(None, radius=4, eps=0.032 ** 2, workers=2)(hazy, t, airlight)
    reference = rgb_float_to_bgr(invert_scattering(bgr_to_rgb_float(hazy), t[:, :, None], airlight))
    np.testing.assert_array_equal(exact, reference)
    tiny = FrameInverter(2.0, radius=4, eps=0.032 ** 2, workers=4)(hazy[:5], t[:5], airlight)
    assert tiny.shape == (5, *hazy.shape[1:]) and tiny.dtype == np.uint8


@pytest.mark.parametrize("radius, eps, workers, refused", [
    (0, 0.032 ** 2, 2, "radius must be an integer >= 1, got 0"), (-3, 0.032 ** 2, 2, "radius .* got -3"),
    (2.5, 0.032 ** 2, 2, "radius .* got 2.5"), (4, float("nan"), 2, "eps must be a finite number > 0, got nan"),
    (4, -1e-3, 2, "eps .* got -0.001"), (4, 0.0, 2, "eps .* got 0.0"), (4, float("inf"), 2, "eps .* got inf"),
    (4, 0.032 ** 2, 0, "workers must be an integer >= 1"), (4, 0.032 ** 2, float("nan"), "workers .* got nan"),
    (4, 0.032 ** 2, 2.5, "workers .* got 2.5")])
def test_the_frame_inversion_refuses_a_smoothing_window_or_workers_out_of_range_when_built(radius, eps, workers,
                                                                                          refused):
    """A radius of 0 smoothed nothing, a negative one failed inside OpenCV at the first frame, a NaN eps turned the
    frame black and a negative one amplified noise, all without a word; 2.5 workers ran as 2."""
    from dgdehaze_core.physics.frame_inversion import FrameInverter
    from dgdehaze_core.physics.guided_filter import SelfGuidedSmoother

    with pytest.raises(ValueError, match=refused):
        FrameInverter(2.0, radius=radius, eps=eps, workers=workers)
    if workers == 2:
        with pytest.raises(ValueError, match=refused):
            SelfGuidedSmoother(radius, eps)


def test_the_inversions_take_the_airlight_as_a_list_or_one_value_and_keep_the_image_dtype():
    rng = np.random.default_rng(0)
    hazy = rng.uniform(0.3, 1.0, (6, 5, 3)).astype(np.float32)
    base = cv2.blur(hazy, (3, 3))
    t = rng.uniform(0.2, 1.0, (6, 5, 1)).astype(np.float32)
    as_array = invert_scattering(hazy, t, np.array([0.7, 0.8, 0.9], np.float32))
    as_list = invert_scattering(hazy, t, [0.7, 0.8, 0.9])
    assert as_list.dtype == np.float32 and np.allclose(as_list, as_array, atol=1e-6)
    limited = invert_scattering_detail_limited(hazy, base, t, [0.8, 0.8, 0.8], 2.0)
    assert np.allclose(invert_scattering_detail_limited(hazy, base, t, 0.8, 2.0), limited, atol=1e-6)
    assert invert_scattering_detail_limited(hazy, base, t, np.full(3, 0.8), 2.0).dtype == np.float32
    with pytest.raises(ValueError, match="max_detail_gain must be >= 1"):
        invert_scattering_detail_limited(hazy, base, t, [0.8, 0.8, 0.8], float("nan"))


def test_the_detail_limited_inversion_recovers_the_base_in_full_and_amplifies_detail_at_most_the_gain(
        middlebury_scene):
    """On real haze over the scene's true depth: where 1 / t is within `max_detail_gain` the result is the exact
    inversion; where the fog is denser, the smoothed base layer is still inverted in full (by 1 / t) while the fine
    detail I - B is amplified exactly `max_detail_gain` times, and nothing leaves [0, 1] (a negative value would wrap
    to a bright byte in the uint8 frame)."""
    from dgdehaze_core.physics.guided_filter import smooth_base

    image, depth = middlebury_scene
    clear = image.astype(np.float32) / 255.0
    airlight = np.array([0.86, 0.88, 0.9], np.float32)
    filled = _filled(depth)
    t = np.clip(transmission_from_depth(filled, np.log(4.0) / np.median(filled)), 0.02, 1.0)[:, :, None]
    hazy = synthesize_haze(clear, -np.log(t), 1.0, airlight).astype(np.float32)
    hazy += np.random.default_rng(0).normal(0.0, 0.01, hazy.shape).astype(np.float32)  # sensor noise
    base = smooth_base(hazy, 4, 0.032 ** 2)
    exact = invert_scattering(hazy, t, airlight)
    np.testing.assert_allclose(invert_scattering_detail_limited(hazy, base, t, airlight, 1.0 / 0.05), exact,
                               atol=1e-5)
    gain = 2.0
    limited = invert_scattering_detail_limited(hazy, base, t, airlight, gain)
    assert limited.min() >= 0.0 and limited.max() <= 1.0
    expected = (base - airlight) / np.clip(t, 0.05, 1.0) + airlight + gain * (hazy - base)
    inside = ((expected > 0.0) & (expected < 1.0)).all(axis=2) & (t[:, :, 0] < 1.0 / gain)
    assert inside.mean() > 0.3, "much of the frame is in fog denser than the gain and unclipped"
    np.testing.assert_allclose(limited[inside], expected[inside], atol=1e-5)
    noise = np.abs(exact - clear)[t[:, :, 0] < 0.1].mean()
    assert np.abs(limited - clear)[t[:, :, 0] < 0.1].mean() < 0.7 * noise, "less noise where the fog is dense"
