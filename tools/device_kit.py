"""Pack what a training recipe reads into the repository, so that a GPU machine lent through the `device` tool
(which receives the repository and nothing beside it, 64 MiB in all) can train it with `tools/device_train.sh`.

Every image a recipe's clear, hazy and validation sources select is copied from the shared data folder into
`.device/data/`, under the same relative path, so that `DGDEHAZE_DATA=.device/data` makes the recipe's `${DATA}`
paths find them and its `include` patterns select the same files. Training images are stored scaled as the trainer
scales them (long side at most the recipe's `max_side`, INTER_AREA), PNG files losslessly and JPEG files again at
quality 95 (the shared data's own quality; the second pass leaves them above 35 dB PSNR of the trainer's image);
validation pairs are copied as they are. Video sources are copied whole. The kit and the repository's files must
fit the device tool's 64 MiB together, runs put at `.device/runs/NAME/` to be resumed included: this tool says
so and exits 2 when they would not, leaving the kit unfinished (no manifest.json, so `device_train.sh` refuses it).

    .venv/bin/python tools/device_kit.py training/lite.yaml [training/lite_no_depth.yaml ...]
    # then, through the device tool: run(command="bash tools/device_train.sh training/lite.yaml 3000 8",
    #                                    carry=[".device"])
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.datasets.paths import REPO_DIR, shared_data_dir  # noqa: E402
from dgdehaze_core.io.atomic_files import atomic_path  # noqa: E402
from dgdehaze_core.training.recipe import Recipe, load_recipe  # noqa: E402
from tools.tool_cli import one_line_errors  # noqa: E402

LOG = logging.getLogger("device_kit")
PACKING = ".packing"
"""Marks a kit being packed, from before its old data goes until its manifest.json is written."""
KIT_DIR = REPO_DIR / ".device"
TRANSFER_LIMIT = 64 * 2**20
"""The device tool's limit on what travels: tracked and untracked files of the repository plus the carried kit."""
JPEG_QUALITY = 95
MANIFEST_BYTES = 4096
"""Room kept for manifest.json, written once the kit is known to fit."""


def tracked_bytes() -> int:
    """Bytes of the repository's files that travel without being carried (tracked and untracked, not ignored)."""
    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_DIR,
                             check=True, capture_output=True).stdout.decode().split("\0")
    return sum((REPO_DIR / name).stat().st_size for name in listing if name and (REPO_DIR / name).is_file()
               and not (REPO_DIR / name).is_relative_to(KIT_DIR))


def kit_path(source: Path, data: Path, kit_data: Path) -> Path:
    """Where a shared-data file goes in the kit; a file outside the shared data folder cannot travel this way."""
    try:
        return kit_data / source.resolve().relative_to(data.resolve())
    except ValueError:
        raise ValueError(f"{source} is not under the shared data folder {data}: the kit holds shared data only "
                         "(files inside the repository travel anyway)") from None


def pack_image(source: Path, target: Path, max_side: int) -> None:
    """`source` scaled as the trainer scales it, written atomically in its own format."""
    from dgdehaze_core.training.datasets import load_rgb  # imports torch: here, after main's checks
    image = load_rgb(source, max_side)[:, :, ::-1]
    parameters = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if source.suffix.lower() in (".jpg", ".jpeg") else []
    with atomic_path(target) as tmp:
        if not cv2.imwrite(str(tmp), image, parameters):
            raise OSError(f"could not write {target}")


def copy_file(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def recipe_files(recipe: Recipe) -> tuple[set[Path], set[Path]]:
    """(training images and videos to scale or copy, validation files to copy as they are) of one recipe."""
    from dgdehaze_core.training.datasets import collect_images, validation_pairs  # imports torch: after main's checks
    training: set[Path] = set()
    for kind, sources in (("clear", recipe.clear), ("hazy", recipe.hazy)):
        training.update(image.path for image, _, _ in collect_images(sources, kind))
    validation = {path for pair in validation_pairs(recipe.validation) for path in (pair.hazy, pair.clear)}
    return training, validation


@dataclass
class KitPlan:
    """What a kit will hold: each training file with the largest side the recipes scale it to, and the validation
    files copied as they are, every one checked to lie under the shared data folder `data`."""

    data: Path
    max_side: dict[Path, int]
    validation: set[Path]


def plan_kit(recipes: list[Recipe]) -> KitPlan:
    """The files `recipes` read; FileNotFoundError without shared data, ValueError for a file the kit cannot hold
    (outside the shared data). Reads no image and touches no kit."""
    data = shared_data_dir()
    if data is None:
        raise FileNotFoundError("no shared data folder: set DGDEHAZE_DATA or provide ../shared/data")
    max_side: dict[Path, int] = {}
    validation: set[Path] = set()
    for recipe in recipes:
        training, checked = recipe_files(recipe)
        validation |= checked
        for path in training:
            max_side[path] = max(max_side.get(path, 0), recipe.max_side)
    validation -= set(max_side)
    for path in [*max_side, *validation]:
        kit_path(path, data, Path())
    return KitPlan(data, max_side, validation)


def pack(plan: KitPlan, recipes: list[Recipe], kit: Path) -> dict[str, object]:
    """Copy every file of `plan` into `kit`/data; the manifest (also written as `kit`/manifest.json). ValueError,
    with no manifest written, when the kit (its runs/ too) and the repository would not travel together."""
    kit_data = kit / "data"
    for path in tqdm(sorted(plan.max_side), desc="training images", unit="file"):
        target = kit_path(path, plan.data, kit_data)
        if path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            pack_image(path, target, plan.max_side[path])
        else:
            copy_file(path, target)
    for path in sorted(plan.validation):
        copy_file(path, kit_path(path, plan.data, kit_data))
    kit_bytes = sum(p.stat().st_size for p in kit.rglob("*") if p.is_file() and p.name != PACKING)
    manifest = {"recipes": [str(r.source_file) for r in recipes], "files": len(plan.max_side) + len(plan.validation),
                "kit_bytes": kit_bytes, "repository_bytes": tracked_bytes()}
    total = kit_bytes + int(manifest["repository_bytes"])
    LOG.info("%d files, kit %.1f MiB + repository %.1f MiB = %.1f MiB of the device tool's %d MiB",
             manifest["files"], kit_bytes / 2**20, int(manifest["repository_bytes"]) / 2**20, total / 2**20,
             TRANSFER_LIMIT // 2**20)
    if total + MANIFEST_BYTES > TRANSFER_LIMIT:
        raise ValueError(f"{kit} is too large to travel ({total / 2**20:.1f} MiB with the repository, runs/ "
                         f"included): pack fewer recipes at once or move finished runs out of {kit / 'runs'}")
    with atomic_path(kit / "manifest.json") as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    """Pack the kit; 0, or 2 with one line when --out is no kit, the kit would not travel or a recipe is bad."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipes", nargs="+", type=Path, help="training recipes (training/*.yaml)")
    parser.add_argument("--out", type=Path, default=KIT_DIR, help="the kit's folder (default: .device, ignored by "
                        "git; name it in the device tool's carry)")
    args = parser.parse_args(argv)
    kit = any((args.out / name).is_file() for name in ("manifest.json", PACKING))  # finished, or cut short
    if args.out.is_dir() and any(args.out.iterdir()) and not kit:  # first: reading a recipe imports torch (seconds)
        raise ValueError(f"{args.out} holds files and is no kit (no manifest.json): give a new folder or an earlier "
                         "kit")
    recipes = [load_recipe(path) for path in args.recipes]
    plan = plan_kit(recipes)  # a recipe the kit cannot hold is refused before the earlier kit is touched
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / PACKING).touch()
    (args.out / "manifest.json").unlink(missing_ok=True)  # written last: a kit without it is unfinished
    if (args.out / "data").exists():
        shutil.rmtree(args.out / "data")
    pack(plan, recipes, args.out)
    (args.out / PACKING).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
