"""Write data/splits/dawn-fog.yaml: the DAWN fog photos a recipe may learn from, those that choose the recipe, and
those that only judge. Run once; the committed file is the split (re-running gives the same file).

Each kind of photo (foggy-, haze-, mist-; a group of near-copies counts as its first member's kind) is shuffled with
a fixed seed and cut into learn 40 %, validation 10 %, judge 50 %, so each part has the three kinds in the same
proportions. Photos that are near-copies of each other (16x16 grey thumbnails correlating above 0.97; DAWN has
some, across kinds too) are kept in one part, so a judged photo has no twin in training.

    .venv/bin/python tools/make_dawn_split.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.io.atomic_files import atomic_write_text, check_writable_file, refuse_inside  # noqa: E402
from dgdehaze_core.io.images import ImageError, read_image  # noqa: E402
from tools.tool_cli import DAWN_FOG_SPLIT, one_line_errors, shared_data  # noqa: E402

SEED = 17
SHARES = (("learn", 0.4), ("validation", 0.1), ("judge", 0.5))
TWIN_CORRELATION = 0.97
HEADER = """\
# DAWN Fog photos (../shared/data/detection/dawn-fog): which may be learnt from, which choose, which judge.
# Written by tools/make_dawn_split.py (seed {seed}; per kind foggy/haze/mist: learn 40 %, validation 10 %, judge 50 %;
# near-copies kept in one part). learn: unpaired hazy training images only, their boxes never read in training (they
# may validate recipes that do not learn from DAWN). validation: choosing a recipe or a setting (never in a shipped
# table). judge: the only DAWN figures docs/RESULTS.md reports.
"""


def thumbnails(paths: list[Path]) -> np.ndarray:
    """Each photo as a 16x16 grey thumbnail, standardised to mean 0 and deviation 1 (one row each); ImageError for
    one that does not decode whole (`read_image`: a truncated JPEG too, which cv2.imread fills in grey)."""
    rows = []
    for path in paths:
        try:
            image = cv2.cvtColor(read_image(path), cv2.COLOR_BGR2GRAY)
        except ImageError as exc:
            raise ImageError(f"{exc} (truncated or damaged?): a split lists only whole photos; restore it from "
                             "DAWN as downloaded") from None
        grey = cv2.resize(image, (16, 16), interpolation=cv2.INTER_AREA)
        values = grey.astype(np.float64).ravel()
        rows.append((values - values.mean()) / (values.std() + 1e-6))
    return np.array(rows)


def twin_groups(paths: list[Path]) -> list[list[Path]]:
    """Paths grouped so that near-copies share a group (connected components of the twin relation)."""
    thumbs = thumbnails(paths)
    twins = thumbs @ thumbs.T / thumbs.shape[1] > TWIN_CORRELATION
    group = list(range(len(paths)))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(twins, 1))):
        group[root(int(j))] = root(int(i))
    members: dict[int, list[Path]] = {}
    for i, path in enumerate(paths):
        members.setdefault(root(i), []).append(path)
    return list(members.values())


def split(folder: Path) -> dict[str, list[str]]:
    """Part name -> the sorted names of its photos, every part non-empty; ValueError (ImageError) for a folder
    without enough DAWN photos `KIND-NNN.jpg` to fill every part."""
    if not folder.is_dir():
        raise ImageError(f"no such folder: {folder}")
    photos = sorted(folder.glob("*-*.jpg"))
    if not photos:
        raise ImageError(f"{folder} holds no DAWN photos (KIND-NNN.jpg)")
    parts: dict[str, list[str]] = {name: [] for name, _ in SHARES}
    rng = np.random.default_rng(SEED)
    every = twin_groups(photos)
    for kind in ("foggy", "haze", "mist"):
        groups = [group for group in every if group[0].name.startswith(f"{kind}-")]
        order = rng.permutation(len(groups))
        total = sum(len(g) for g in groups)
        bounds, filled = np.cumsum([share for _, share in SHARES]) * total, 0
        for index in order:
            part = next(i for i, bound in enumerate(bounds) if filled < round(bound))
            parts[SHARES[part][0]].extend(p.name for p in groups[index])
            filled += len(groups[index])
    empty = [name for name, names in parts.items() if not names]
    if empty:
        raise ImageError(f"{folder}: its {len(photos)} photo(s) leave the part(s) {', '.join(empty)} empty (a split "
                         "file's parts hold at least one name): give the whole DAWN fog folder")
    return {name: sorted(names) for name, names in parts.items()}


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Write the split to --out (checked before a photo is read) and print each part's size."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="the shared data folder (default: $DGDEHAZE_DATA, else ../shared/data)")
    parser.add_argument("--out", type=Path, default=DAWN_FOG_SPLIT, help="default: data/splits/dawn-fog.yaml")
    args = parser.parse_args(argv)
    args.data = shared_data(args.data)
    folder = args.data / "detection" / "dawn-fog"
    refuse_inside(args.out, folder, "--out", "the input folder")
    check_writable_file(args.out, "--out")
    parts = split(folder)
    body = yaml.safe_dump({"dataset": "detection/dawn-fog", "parts": parts}, sort_keys=False, width=120)
    atomic_write_text(args.out, HEADER.format(seed=SEED) + body)
    print(", ".join(f"{name} {len(names)}" for name, names in parts.items()), "->", args.out)


if __name__ == "__main__":
    sys.exit(main())
