"""docs/images/boundary-constraint.jpg: lite without the boundary constraint and with it, side by side.

Each row is one photo: the input, `lite` with the network's transmission alone (radiance_floor None), `lite` as
shipped (raised to the boundary constraint, `physics.boundary_constraint`). Each label gives the share of pixels
the output newly crushes to black or blows out to white (`eval --measure clear`'s `crushed` and `blown`). The
default photos are validation data: a clear frame of the kitti-seq drive and a DAWN photo of the split's learn part.

    .venv/bin/python tools/boundary_figure.py [PHOTO ...] [--weights lite] [--out docs/images/boundary-constraint.jpg]

--out is written in the format its suffix names; one OpenCV does not write, an unwritable place and an input photo
are refused, as is a photo that cannot be read, before a model loads.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.datasets.paths import REPO_DIR  # noqa: E402
from dgdehaze_core.inference.pipeline import load_pipeline  # noqa: E402
from tools.figure_sheet import figure_photos, labelled, write_sheet  # noqa: E402
from tools.tool_cli import one_line_errors  # noqa: E402

PHOTOS = (("depth", "kitti-seq", "2011_09_26", "2011_09_26_drive_sfnd_sync", "image_02", "data", "0000000040.jpg"),
          ("detection", "dawn-fog", "foggy-004.jpg"))
"""A clear frame of the validation drive (a truck in shadow) and a DAWN learn photo with wet road glare."""


def _extremes(output: np.ndarray, frame: np.ndarray) -> str:
    """The shares of `frame`'s pixels that `output` newly crushes to 0 or blows to 255 in any channel."""
    from dgdehaze_core.evaluation.clear_eval import image_changes  # imports torch: after the checks

    changes = image_changes(output, frame)
    return f"crushed {100 * changes['crushed']:.1f} %, blown {100 * changes['blown']:.1f} %"


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Write the figure to --out and print its path; every photo is read before a model loads."""
    args, photos = figure_photos(argv, __doc__, REPO_DIR / "docs" / "images" / "boundary-constraint.jpg", PHOTOS,
                                 "default: a kitti-seq frame and a DAWN photo of $DGDEHAZE_DATA or ../shared/data")
    unbounded = load_pipeline(args.weights, radiance_floor=None)
    bounded = load_pipeline(args.weights)
    rows = []
    for photo, frame in photos.items():
        before, after = unbounded(frame).image, bounded(frame).image
        rows.append(np.hstack([
            labelled(frame, photo.name),
            labelled(before, f"network's transmission: {_extremes(before, frame)}"),
            labelled(after, f"radiance floor {bounded.radiance_floor:g}: {_extremes(after, frame)}")]))
    write_sheet(rows, args.out)
    print(args.out)


if __name__ == "__main__":
    sys.exit(main())
