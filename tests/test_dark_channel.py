"""The dark channel prior on real images: synthetic haze over real depth, and the real paired sets."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from dgdehaze_core.evaluation.metrics import psnr, ssim
from dgdehaze_core.io.images import read_image
from dgdehaze_core.physics.dark_channel import DarkChannelDehazer, dark_channel, haze_density
from dgdehaze_core.physics.scattering import synthesize_haze


def _hazy_from_true_depth(image: np.ndarray, depth: np.ndarray, beta: float) -> np.ndarray:
    filled = np.where(np.isfinite(depth), depth, np.nanmax(depth)).astype(np.float32)
    hazy = synthesize_haze(image.astype(np.float32) / 255.0, filled[:, :, None], beta,
                           np.array([0.9, 0.9, 0.9], np.float32))
    return np.clip(hazy * 255.0 + 0.5, 0, 255).astype(np.uint8)


def test_dcp_dehazes_synthetic_haze_and_recovers_depth_order(middlebury_scene):
    image, depth = middlebury_scene
    hazy = _hazy_from_true_depth(image, depth, beta=0.25)
    result = DarkChannelDehazer().dehaze(hazy)
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
    assert psnr(result.image, image) > psnr(hazy, image) + 3.0
    assert ssim(result.image, image) > ssim(hazy, image)
    valid = np.isfinite(depth)
    rho, _ = spearmanr(result.depth[valid], depth[valid])  # scipy 1.8 (Humble's) has no .statistic
    assert rho > 0.5, f"DCP relative depth should rank like the true depth (Spearman {rho:.2f})"
    assert np.isfinite(result.depth).all() and (result.transmission > 0).all() and (result.transmission <= 1).all()


def test_haze_density_grows_with_haze(middlebury_scene):
    image, depth = middlebury_scene
    densities = [haze_density(image)] + [haze_density(_hazy_from_true_depth(image, depth, b)) for b in (0.05, 0.2, 0.5)]
    assert densities == sorted(densities) and densities[-1] - densities[0] > 0.3


@pytest.mark.parametrize("subset, margin", [("sots-indoor", 5.0), ("o-haze", 1.5)])
def test_dcp_beats_the_hazy_input_on_real_pairs(shared_data, subset, margin):
    folder = shared_data / "paired" / subset
    gains = []
    for hazy_path in sorted((folder / "hazy").iterdir())[:6]:
        clear_path = next((folder / "clear").glob(hazy_path.stem.split("_")[0] + ".*"))
        hazy, clear = read_image(hazy_path), read_image(clear_path)
        gains.append(psnr(DarkChannelDehazer().dehaze(hazy).image, clear) - psnr(hazy, clear))
    assert np.mean(gains) > margin


def test_dark_channel_of_clear_outdoor_image_is_low(shared_data):
    clear = read_image(next((shared_data / "clear" / "kitti").glob("*.jpg")))
    hazy = read_image(next((shared_data / "hazy-real" / "urhi").glob("*.png")))
    assert dark_channel(clear).mean() < dark_channel(hazy).mean()


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 3, 3), (5, 1, 3)])
def test_tiny_images_give_a_correct_result(shape):
    frame = np.full(shape, 120, np.uint8)
    result = DarkChannelDehazer().dehaze(frame)
    assert result.image.shape == shape and np.isfinite(result.depth).all()


def test_grayscale_and_16_bit_frames_are_converted():
    gray16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    result = DarkChannelDehazer().dehaze(gray16)
    assert result.image.shape == (48, 64, 3)


@pytest.mark.parametrize("kwargs", [{"patch": 4}, {"omega": 0.0}, {"t0": 1.5}, {"eps": 0.0}, {"eps": float("nan")},
                                    {"eps": float("inf")}, {"top_fraction": 0.0}, {"top_fraction": 5.0},
                                    {"top_fraction": float("nan")}, {"patch": 15.0}, {"subsample": 2.5}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        DarkChannelDehazer(**kwargs)


@pytest.mark.parametrize("radius, eps, subsample, refused", [
    (4, float("nan"), 4, "eps must be a finite number > 0, got nan"), (4, 0.0, 4, "eps .* got 0.0"),
    (4, -1e-3, 4, "eps .* got -0.001"), (4, float("inf"), 4, "eps .* got inf"),
    (0, 1e-3, 4, "radius must be an integer >= 1, got 0"), (-5, 1e-3, 4, "radius .* got -5"),
    (2.5, 1e-3, 4, "radius .* got 2.5"), (True, 1e-3, 4, "radius .* got True"),
    (8, 1e-3, 0, "subsample must be an integer >= 1, got 0"), (8, 1e-3, -2, "subsample .* got -2"),
    (8, 1e-3, 2.5, "subsample .* got 2.5")])
def test_the_guided_filters_refuse_a_window_out_of_range(shared_data, radius, eps, subsample, refused):
    """guided_filter and fast_guided_filter took any eps (NaN turned every value NaN, 0 or a negative one divides
    by a zero or negative variance) and ran a radius below 1 as 1; the fast one divided by a step of 0 and ran a
    negative one as a 1x1 grid. They now refuse as check_window does, while the windows they fit to the image (a
    radius larger than a tiny image, one below the grid step) still run."""
    from dgdehaze_core.physics.guided_filter import fast_guided_filter, gray_guide, guided_filter

    guide = gray_guide(read_image(shared_data / "paired" / "sots-outdoor" / "hazy" / "0016_0.8_0.08.jpg"))
    source = np.clip(guide * 1.2 - 0.1, 0.0, 1.0)
    with pytest.raises(ValueError, match=refused):
        fast_guided_filter(guide, source, radius, eps, subsample)
    if subsample == 4:
        with pytest.raises(ValueError, match=refused):
            guided_filter(guide, source, radius, eps)
        with pytest.raises(ValueError, match=refused):
            DarkChannelDehazer(radius=radius, eps=eps)
    else:
        with pytest.raises(ValueError, match=refused):
            DarkChannelDehazer(subsample=subsample)
    tiny = np.s_[:3, :2]
    for filtered, size in ((guided_filter(guide[tiny], source[tiny], 60, 1e-3), (3, 2)),
                           (fast_guided_filter(guide[tiny], source[tiny], 60, 1e-3, 4), (3, 2)),
                           (fast_guided_filter(guide, source, 3, 1e-3, 4), guide.shape)):
        assert filtered.shape == size and np.isfinite(filtered).all() and np.abs(filtered - 0.5).max() < 1.0


def test_dcp_reads_a_coloured_airlight_and_the_optical_depth_of_haze_over_true_depth(middlebury_scene):
    """Bluish haze (BGR airlight 0.95, 0.85, 0.7) over the scene's true depth: the prior finds that airlight in
    the frame's channel order, a transmission near the true exp(-beta * d), a depth in units of optical depth
    (-ln t, so about beta * d), the frame's own haze density, and a clearer image. A grey airlight cannot tell
    the blue channel from the red one."""
    image, depth = middlebury_scene
    beta, airlight = 0.25, np.array([0.95, 0.85, 0.7], np.float32)
    filled = np.where(np.isfinite(depth), depth, np.nanmax(depth)).astype(np.float32)
    hazy = np.clip(synthesize_haze(image.astype(np.float32) / 255.0, filled[:, :, None], beta, airlight) * 255.0
                   + 0.5, 0, 255).astype(np.uint8)
    result = DarkChannelDehazer().dehaze(hazy)
    assert np.abs(result.airlight - airlight).max() < 0.1 and result.airlight[0] > result.airlight[1] > \
        result.airlight[2]
    valid = np.isfinite(depth)
    assert np.abs(result.transmission - np.exp(-beta * filled))[valid].mean() < 0.07
    assert 0.85 < np.median(result.depth[valid] / (beta * depth[valid])) < 1.2
    assert result.haze_density == pytest.approx(haze_density(hazy))
    assert psnr(result.image, image) > psnr(hazy, image) + 4.0
    exact = DarkChannelDehazer(subsample=1).dehaze(hazy).transmission
    assert np.percentile(np.abs(result.transmission - exact), 99) < 0.02, \
        "the subsampled refinement is the guided filter's, edges included (its coefficients apply to the full guide)"


def test_the_dark_channel_is_the_least_channel_over_the_whole_patch(shared_data):
    """The dark channel of a real hazy frame against a plain minimum filter over `patch` x `patch` windows (its
    border mirrored), for the default patch and a small one."""
    from scipy.ndimage import minimum_filter

    frame = read_image(next((shared_data / "hazy-real" / "urhi").glob("*.png")))
    for patch in (15, 3):
        np.testing.assert_array_equal(dark_channel(frame, patch),
                                      minimum_filter(frame.min(axis=2), size=patch, mode="reflect"))


def test_dcp_transmission_never_falls_below_its_floor_on_real_dense_haze(shared_data):
    """Where the haze is as dense as the prior can tell (bright sky in real fog), t stops at t0, the floor the
    result reports: below it the inversion amplifies noise without bound."""
    frame = read_image(shared_data / "hazy-real" / "o-haze" / "08_outdoor_hazy.jpg")
    result = DarkChannelDehazer().dehaze(frame)
    assert result.transmission.min() == pytest.approx(result.transmission_floor)
    assert (result.transmission <= result.transmission_floor + 1e-6).mean() > 0.01, "the floor is reached"


def _guided_filter_by_the_paper(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He, Sun and Tang's Algorithm 1 in float64 with scipy's box mean over (2r + 1)^2 windows, border mirrored."""
    from scipy.ndimage import uniform_filter

    def box(x: np.ndarray) -> np.ndarray:
        return uniform_filter(x, size=2 * radius + 1, mode="reflect")

    guide, source = guide.astype(np.float64), source.astype(np.float64)
    mean_i, mean_p = box(guide), box(source)
    a = (box(guide * source) - mean_i * mean_p) / (box(guide * guide) - mean_i ** 2 + eps)
    b = mean_p - a * mean_i
    return box(a) * guide + box(b)


def test_the_guided_filters_are_he_et_al_s_on_a_real_frame(shared_data):
    """The guided filter of the DCP's raw transmission by its frame's gray image, and the self-guided smoother of
    the frame's channels (the inversion's base layer), against the paper's algorithm; the subsampled filter stays
    close to the exact one."""
    from dgdehaze_core.physics.guided_filter import SelfGuidedSmoother, fast_guided_filter, gray_guide, guided_filter

    frame = read_image(shared_data / "paired" / "sots-outdoor" / "hazy" / "0016_0.8_0.08.jpg")
    guide = gray_guide(frame)
    source = 1.0 - 0.95 * dark_channel(frame).astype(np.float32) / 255.0
    for radius, eps in ((8, 1e-3), (20, 1e-4)):
        expected = _guided_filter_by_the_paper(guide, source, radius, eps)
        np.testing.assert_allclose(guided_filter(guide, source, radius, eps), expected, atol=2e-3)
        assert np.abs(fast_guided_filter(guide, source, radius, eps, 4) - expected).mean() < 0.01
    scaled = frame.astype(np.float32) / 255.0
    smoothed = SelfGuidedSmoother(4, 0.032 ** 2)(scaled)
    for channel in range(3):
        np.testing.assert_allclose(smoothed[:, :, channel], _guided_filter_by_the_paper(
            scaled[:, :, channel], scaled[:, :, channel], 4, 0.032 ** 2), atol=2e-3)
