"""PSNR, SSIM and CIEDE2000 on known cases and against a real pair."""
from __future__ import annotations

import numpy as np
import pytest

from dgdehaze_core.evaluation.metrics import PSNR_CAP, ciede2000, psnr, ssim
from dgdehaze_core.io.images import ImageError, read_image


def test_identical_images():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert psnr(image, image) == PSNR_CAP == 100.0  # capped: one identical pair leaves a set's mean finite
    assert ssim(image, image) == pytest.approx(1.0)
    assert ciede2000(image, image) == pytest.approx(0.0, abs=1e-9)


def test_psnr_of_a_known_error():
    image = np.full((32, 32, 3), 100, np.uint8)
    shifted = image + np.uint8(10)
    expected = 10 * np.log10(1.0 / (10 / 255) ** 2)
    assert psnr(shifted, image) == pytest.approx(expected, abs=1e-9)
    one_pixel = image.copy()
    one_pixel[0, 0, 0] += 1
    assert 60.0 < psnr(one_pixel, image) < PSNR_CAP  # the cap leaves a one-level difference alone
    assert ciede2000(shifted, image) > 1.0


def test_psnr_of_a_large_nearly_identical_pair_is_capped():
    """PSNR is at most PSNR_CAP for any pair, not only an identical one: one level off in one of 3 million values
    reads 113 dB uncapped."""
    image = np.full((1000, 1000, 3), 100, np.uint8)
    one_value = image.copy()
    one_value[0, 0, 0] += 1
    assert psnr(one_value, image) == PSNR_CAP


def test_real_pair_orders_hazy_below_clear(shared_data):
    folder = shared_data / "paired" / "sots-indoor"
    hazy = read_image(folder / "hazy" / "1400_7.png") if (folder / "hazy" / "1400_7.png").exists() else None
    if hazy is None:
        pytest.skip("SOTS file 1400_7.png not present")
    clear = read_image(folder / "clear" / "1400.png")
    assert 5 < psnr(hazy, clear) < 20
    assert ssim(hazy, clear) == pytest.approx(0.69968521, abs=1e-7)  # scikit-image 0.18 (Humble's) to 0.26 alike
    assert ciede2000(hazy, clear) > 3


def test_ciede2000_is_the_mean_colour_difference_of_the_pair_in_rgb(shared_data):
    """Colour difference depends on which channel is red: the pair read as RGB by Pillow (not OpenCV's BGR), the
    mean of scikit-image's per-pixel CIEDE2000 (a hazy frame's differences are skewed: the median is far lower)."""
    from PIL import Image
    from skimage.color import deltaE_ciede2000, rgb2lab

    folder = shared_data / "paired" / "sots-indoor"
    hazy_path, clear_path = folder / "hazy" / "1400_7.png", folder / "clear" / "1400.png"
    rgb = [np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0 for path in (hazy_path, clear_path)]
    differences = deltaE_ciede2000(rgb2lab(rgb[0]), rgb2lab(rgb[1]))
    assert ciede2000(read_image(hazy_path), read_image(clear_path)) == pytest.approx(differences.mean(), rel=1e-9)
    assert np.median(differences) < 0.8 * differences.mean()


def test_mismatched_and_tiny_inputs_get_clear_errors():
    with pytest.raises(ImageError, match="differ in size"):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ImageError, match="at least 7x7"):
        ssim(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
    assert ssim(np.zeros((7, 7, 3), np.uint8), np.zeros((7, 7, 3), np.uint8)) == pytest.approx(1.0)  # one window
    opaque, clear = np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8)
    clear[:, :, 3] = 255  # the same colours: BGRA pairs differing in alpha read as 6 dB, and CIEDE2000 crashed
    for metric in (psnr, ssim, ciede2000):
        with pytest.raises(ImageError, match="two uint8 BGR frames"):
            metric(opaque, clear)
