"""docs/images/dense-fog-noise.jpg: dense fog dehazed with the exact inversion and with the noise limit, side by side.

Each row is one photo: the hazy input, `lite` with the exact inversion J = (I - A)/t + A (max_detail_gain None),
`lite` as shipped (fine detail amplified at most MAX_DETAIL_GAIN times), then a 2x crop of the sky of the last
two, where the grain shows. The label gives each image's noise (`noise_sigma`, 8-bit levels).

    .venv/bin/python tools/noise_figure.py [PHOTO ...] [--weights lite] [--out docs/images/dense-fog-noise.jpg]

--out is written in the format its suffix names (.jpg at quality 92, .png, ...); one OpenCV does not write, an
unwritable place and an input photo are refused, as is a photo that cannot be read, before a model loads.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.inference.pipeline import load_pipeline  # noqa: E402
from dgdehaze_core.datasets.paths import REPO_DIR  # noqa: E402
from tools.figure_sheet import HEIGHT, figure_photos, labelled, write_sheet  # noqa: E402
from tools.tool_cli import one_line_errors  # noqa: E402

PHOTOS = (("detection", "dawn-fog", "haze-032.jpg"), ("detection", "dawn-fog", "foggy-061.jpg"))
"""The two densest DAWN photos of the split's learn part (lowest mean transmission under the shipped lite)."""


def _sky_crop(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    crop = image[height // 8: height // 8 + HEIGHT // 4, width // 3: width // 3 + HEIGHT // 4]
    return cv2.resize(crop, (HEIGHT // 2, HEIGHT // 2), interpolation=cv2.INTER_NEAREST)


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Write the figure to --out and print its path; every photo is read before a model loads."""
    args, photos = figure_photos(argv, __doc__, REPO_DIR / "docs" / "images" / "dense-fog-noise.jpg", PHOTOS,
                                 "default: two DAWN fog photos of $DGDEHAZE_DATA or ../shared/data")
    from dgdehaze_core.evaluation.no_reference_eval import noise_sigma  # imports torch: after the checks

    exact = load_pipeline(args.weights, max_detail_gain=None)
    limited = load_pipeline(args.weights)
    rows = []
    for photo, hazy in photos.items():
        raw, kept = exact(hazy).image, limited(hazy).image
        crops = np.vstack([_sky_crop(raw), _sky_crop(kept)])
        rows.append(np.hstack([
            labelled(hazy, f"{photo.name}: noise {noise_sigma(hazy):.2f}"),
            labelled(raw, f"exact inversion: {noise_sigma(raw):.2f}"),
            labelled(kept, f"noise limit {limited.max_detail_gain:g}x: {noise_sigma(kept):.2f}"),
            cv2.resize(crops, (HEIGHT // 2, HEIGHT), interpolation=cv2.INTER_NEAREST)]))
    write_sheet(rows, args.out)
    print(args.out)


if __name__ == "__main__":
    sys.exit(main())
