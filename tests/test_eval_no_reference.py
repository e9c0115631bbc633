"""No-reference haze density on real photos: FADE (fade-python) and the dark-channel density."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from dgdehaze_core.evaluation.methods import MethodSpec, load_method
from dgdehaze_core.evaluation.no_reference_eval import (evaluate_haze, fade_density, fade_unavailable_reason,
                                                        noise_sigma)
from dgdehaze_core.io.images import ImageError, read_image


def test_fade_is_installed_and_ranks_a_real_hazy_image_above_its_clear_image(shared_data: Path):
    assert fade_unavailable_reason() is None
    folder = shared_data / "paired" / "sots-indoor"
    clear = read_image(folder / "clear" / "1400.png")
    hazy = read_image(folder / "hazy" / "1400_7.png")
    assert fade_density(clear) < 0.6 < 1.0 < fade_density(hazy)


def test_dcp_lowers_both_densities_on_a_real_hazy_photo(shared_data: Path):
    photo = shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png"
    methods = [load_method(MethodSpec("hazy", "hazy")), load_method(MethodSpec("dcp", "dcp"))]
    table = evaluate_haze([photo], methods)
    assert table["dcp"]["fade"] < table["hazy"]["fade"]
    assert table["dcp"]["dark_channel"] < table["hazy"]["dark_channel"]
    assert table["hazy"]["images"] == 1
    # dividing by the transmission amplifies the photo's noise: the output's noise over the input's
    hazy = read_image(photo)
    amplified = noise_sigma(methods[1].dehaze(hazy).image) / noise_sigma(hazy)
    assert table["dcp"]["noise_ratio"] == pytest.approx(amplified) and amplified > 1.2
    assert table["hazy"]["noise_ratio"] == 1.0


def test_no_images_is_a_clear_error():
    with pytest.raises(ImageError, match="no hazy images"):
        evaluate_haze([], [load_method(MethodSpec("hazy", "hazy"))])


def test_a_black_photo_is_left_out_of_the_figures_it_has_none_of_and_counted(shared_data: Path, tmp_path: Path,
                                                                             caplog):
    photo = tmp_path / "YST_Bing_667.png"
    shutil.copy(shared_data / "hazy-real" / "urhi" / photo.name, photo)
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((64, 64, 3), np.uint8))  # FADE and the noise estimate are NaN on it
    methods = [load_method(MethodSpec("hazy", "hazy"))]
    alone = evaluate_haze([photo], methods)["hazy"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's "mean of empty slice" printed in eval's output
        both = evaluate_haze([photo, black], methods)["hazy"]
    assert both["fade"] == pytest.approx(alone["fade"]) and both["noise_sigma"] == pytest.approx(alone["noise_sigma"])
    assert both["dark_channel"] == pytest.approx(alone["dark_channel"] / 2)  # the black photo's 0 counts
    assert (both["images"], both["skipped"], alone["skipped"]) == (2, 1, 0)
    assert f"{black} through hazy: noise_sigma, noise_ratio, fade not finite" in caplog.text


def test_the_noise_of_a_real_photo_does_not_depend_on_the_grey_level_of_a_flat_region_beside_it(shared_data: Path):
    photo = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    half = photo.shape[0] // 2 // 8 * 8
    alone = noise_sigma(photo[half:])
    for level in (0, 128, 255):  # a sky blown out to white, a grey wall, a black night sky: no detail either way
        flat = photo.copy()
        flat[:half] = level
        assert noise_sigma(flat) == pytest.approx(alone, rel=0.02), level
    rng = np.random.default_rng(0)
    grain = np.clip(128 + rng.normal(0, 3, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert noise_sigma(grain) == pytest.approx(3, rel=0.05)


def test_the_noise_of_a_real_photo_is_scikit_image_s_estimate(shared_data: Path):
    """Donoho's estimate from the finest diagonal db2 coefficients, as scikit-image's estimate_sigma makes it (each
    channel alone, as scikit-image 0.18 takes it): on white noise any orthonormal wavelet reads the same sigma, on a
    real photo's texture another wavelet (haar: 13 % more here) does not."""
    from skimage.restoration import estimate_sigma

    photo = read_image(shared_data / "hazy-real" / "urhi" / "YST_Bing_667.png")
    expected = np.mean([estimate_sigma(photo[:, :, c].astype(np.float64)) for c in range(3)])
    assert noise_sigma(photo) == pytest.approx(expected, rel=0.01)


def test_a_noiseless_input_has_no_noise_figure_rather_than_a_ratio_of_zero(tmp_path: Path, caplog):
    """A smooth synthetic frame has no finest-scale detail to measure noise from, like a flat one: its noise and
    the input's own ratio are left out and named; before, round-off (~1e-12 levels) made the ratio read 0, as if
    dehazing had removed noise."""
    flat = tmp_path / "flat.png"
    cv2.imwrite(str(flat), np.tile(np.linspace(60, 200, 96).astype(np.uint8)[None, :, None], (64, 1, 3)))
    table = evaluate_haze([flat], [load_method(MethodSpec("hazy", "hazy"))])
    assert np.isnan(table["hazy"]["noise_sigma"]) and np.isnan(table["hazy"]["noise_ratio"])
    assert f"{flat} through hazy: noise_sigma, noise_ratio" in caplog.text


def test_a_photo_too_small_for_fade_keeps_its_other_figures_and_is_named(shared_data: Path, tmp_path: Path, caplog):
    photo = tmp_path / "YST_Bing_667.png"
    shutil.copy(shared_data / "hazy-real" / "urhi" / photo.name, photo)
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="FADE needs at least 8x8 pixels, got 6x6"):
        fade_density(read_image(tiny))
    methods = [load_method(MethodSpec("hazy", "hazy"))]
    alone = evaluate_haze([photo], methods)["hazy"]
    both = evaluate_haze([photo, tiny], methods)["hazy"]
    assert both["fade"] == pytest.approx(alone["fade"]) and both["skipped"] == 1
    assert both["noise_sigma"] != pytest.approx(alone["noise_sigma"])  # its noise is measured: it counts there
    assert f"{tiny} through hazy: fade not finite" in caplog.text
