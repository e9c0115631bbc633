"""Recipes for self-supervised depth (`dgdehaze train-depth`): a YAML file read into a validated `DepthRecipe`.

A recipe names its video (KITTI raw folders: consecutive frames with their calibration; or a mapping `path`,
`intrinsics` [fx, fy, cx, cy] in the files' pixels, optional `include` pattern, `crop` [left, top, right, bottom],
`frame_offsets` of its own and `input_bits`, the significant bits of its 16-bit frames, for any other folder of
consecutive frames), the training size and frame offsets, the depth network's architecture, the optimisation and
the loss switches. Ground-truth depth is never read for training: `validation` names KITTI folders whose LiDAR is
only reported (val.csv) while training. Paths follow `recipe.expand_path` (`${DATA}/...`); `overrides`
("iterations=100", "architecture.input_scale=2") change fields before validation.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from dgdehaze_core.models.clear_depth import ClearDepthArchitecture, architecture_from_dict
from dgdehaze_core.training.recipe import (FLOAT32_MAX, RecipeError, check_batch_memory, check_run_name, check_seed,
                                           checked_fields, expand_path, plain_data, read_recipe_file,
                                           recipe_input_bits)
from dgdehaze_core.training.video_frames import FrameFolder


@dataclass(frozen=True)
class DepthRecipe:
    """Everything that defines one self-supervised depth run."""

    name: str
    sequences: tuple[Path | FrameFolder, ...]
    iterations: int
    validation: tuple[Path, ...] = ()
    camera: str = "02"
    width: int = 416
    height: int = 128
    frame_offsets: tuple[int, ...] = (-1, 1)
    min_frame_change: float = 0.0
    max_frame_change: float = 1.0
    architecture: ClearDepthArchitecture = field(default_factory=ClearDepthArchitecture)
    pose_widths: tuple[int, ...] = (16, 32, 64, 128, 128, 128)
    batch_size: int = 4
    lr: float = 1e-4
    lr_decay_at: float = 0.75
    lr_decay: float = 0.1
    scales: int = 1
    ssim_weight: float = 0.85
    smoothness: float = 1e-3
    automask: bool = True
    min_reprojection: bool = True
    augment: bool = True
    seed: int = 0
    device: str = "cpu"
    num_workers: int = 0
    log_every: int = 10
    checkpoint_every: int = 100
    val_every: int = 500
    source_file: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (paths as strings, tuples as lists) for checkpoints and model cards."""
        return plain_data(dataclasses.asdict(self))

    def as_recipe_file(self) -> dict[str, Any]:
        """What a run folder's recipe.yaml holds (paths expanded), which `load_depth_recipe` reads back to this
        recipe."""
        fields = self.as_dict()
        del fields["source_file"]
        return fields


_FIELDS = {f.name: f for f in dataclasses.fields(DepthRecipe)}
KITTI_CAMERAS = ("00", "01", "02", "03")
"""The cameras of a KITTI raw drive (image_00 ... image_03)."""
_PATH_LISTS = ("validation",)
_INT_TUPLES = ("frame_offsets", "pose_widths")


_REQUIRED_DEFAULTS = {"name": "", "iterations": 0}
"""Type witnesses for the fields without a default."""


def _scalar(key: str, value: Any) -> Any:
    default = _REQUIRED_DEFAULTS.get(key, _FIELDS[key].default)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise RecipeError(f"'{key}' must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise RecipeError(f"'{key}' must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise RecipeError(f"'{key}' must be a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise RecipeError(f"'{key}' must be a string, got {value!r}")
    return str(value)


def _paths(key: str, value: Any, base: Path) -> tuple[Path, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecipeError(f"'{key}' must be a list of folders, got {value!r}")
    return tuple(expand_path(v, base) for v in value)


def _numbers(key: str, value: Any, count: int) -> tuple[float, ...]:
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise RecipeError(f"'{key}' must be a list of {count} finite numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _sequence(value: Any, base: Path) -> Path | FrameFolder:
    """One `sequences` entry: a KITTI raw folder, or a mapping for a plain folder of consecutive frames."""
    if isinstance(value, str):
        return expand_path(value, base)
    if not isinstance(value, dict) or not isinstance(value.get("path"), str) or "intrinsics" not in value:
        raise RecipeError(f"a 'sequences' entry must be a KITTI raw folder or a mapping with 'path' and "
                          f"'intrinsics', got {value!r}")
    unknown = set(value) - {"path", "intrinsics", "include", "crop", "frame_offsets", "input_bits"}
    if unknown:
        raise RecipeError(f"unknown 'sequences' field(s) {sorted(unknown)}; known: crop, frame_offsets, include, "
                          "input_bits, intrinsics, path")
    fx, fy, cx, cy = _numbers("intrinsics", value["intrinsics"], 4)
    if not (fx > 0 and fy > 0):
        raise RecipeError(f"'intrinsics' needs positive focal lengths, got {value['intrinsics']!r}")
    crop = None
    if value.get("crop") is not None:
        crop_box = _ints("crop", value["crop"])
        if len(crop_box) != 4:
            raise RecipeError(f"'crop' must be [left, top, right, bottom] in pixels, got {value['crop']!r}")
        left, top, right, bottom = crop_box
        if not (0 <= left < right and 0 <= top < bottom):
            raise RecipeError(f"'crop' must be [left, top, right, bottom] with left < right and top < bottom, got "
                              f"{value['crop']!r}")
        crop = (left, top, right, bottom)
    include = value.get("include", "*")
    if not isinstance(include, str) or not include:
        raise RecipeError(f"'include' must be one file pattern, got {include!r}")
    offsets = _ints("frame_offsets", value["frame_offsets"]) if value.get("frame_offsets") is not None else None
    return FrameFolder(expand_path(value["path"], base), (fx, fy, cx, cy), include, crop, offsets,
                       recipe_input_bits(value, "sequences"))


def _ints(key: str, value: Any) -> tuple[int, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise RecipeError(f"'{key}' must be a non-empty list of integers, got {value!r}")
    return tuple(value)


def _architecture(value: Any) -> ClearDepthArchitecture:
    if not isinstance(value, dict):
        raise RecipeError(f"'architecture' must be a mapping, got {value!r}")
    known = {f.name for f in dataclasses.fields(ClearDepthArchitecture)}
    unknown = set(value) - known
    if unknown:
        raise RecipeError(f"unknown architecture field(s) {sorted(unknown)}; known: {sorted(known)}")
    merged = {**ClearDepthArchitecture().as_dict(), **value}
    for key in ("widths", "blocks"):
        _ints(f"architecture.{key}", merged[key])
    if isinstance(merged["input_scale"], bool) or not isinstance(merged["input_scale"], int):
        raise RecipeError(f"'architecture': input_scale must be 1 or 2, got {merged['input_scale']!r}")
    try:
        architecture = architecture_from_dict(merged)
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"'architecture': {exc}") from None
    if len(architecture.widths) != len(architecture.blocks) or len(architecture.widths) < 2:
        raise RecipeError("'architecture': widths and blocks must have the same length, at least 2")
    if architecture.input_scale not in (1, 2) or not 0 < architecture.min_depth < architecture.max_depth < math.inf:
        raise RecipeError("'architecture': input_scale must be 1 or 2 and 0 < min_depth < max_depth, finite")
    if min(architecture.widths) < 1 or min(architecture.blocks) < 0:
        raise RecipeError(f"'architecture': widths must be at least 1 and blocks at least 0, got widths "
                          f"{list(architecture.widths)}, blocks {list(architecture.blocks)}")
    return architecture


def depth_recipe_from_dict(raw: Any, base: Path, overrides: Iterable[str] = ()) -> DepthRecipe:
    """Validate a depth recipe given as a dict (as read from YAML); relative paths resolve against `base`."""
    raw = checked_fields(raw, overrides, set(_FIELDS))
    if "name" not in raw or "iterations" not in raw or "sequences" not in raw:
        raise RecipeError("the recipe needs 'name', 'iterations' and 'sequences'")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _PATH_LISTS:
            fields[key] = _paths(key, value, base)
        elif key == "sequences":
            if not isinstance(value, (str, list)):
                raise RecipeError(f"'sequences' must be a list, got {value!r}")
            fields[key] = tuple(_sequence(entry, base) for entry in ([value] if isinstance(value, str) else value))
        elif key in _INT_TUPLES:
            fields[key] = _ints(key, value)
        elif key == "architecture":
            fields[key] = _architecture(value)
        else:
            fields[key] = _scalar(key, value)
    recipe = DepthRecipe(**fields)
    _check(recipe)
    return recipe


def _check(recipe: DepthRecipe) -> None:
    if not recipe.sequences:
        raise RecipeError("'sequences' must name at least one folder")
    check_run_name(recipe.name)
    check_seed(recipe.seed)
    if min(recipe.pose_widths) < 1:
        raise RecipeError(f"'pose_widths' must all be at least 1 (channels of the pose network's layers), got "
                          f"{list(recipe.pose_widths)}")
    for key in ("iterations", "width", "height", "batch_size", "log_every", "checkpoint_every", "val_every"):
        if getattr(recipe, key) < 1:
            raise RecipeError(f"'{key}' must be at least 1, got {getattr(recipe, key)}")
    if not 1 <= recipe.scales <= 4:
        raise RecipeError(f"'scales' must lie in 1..4, got {recipe.scales}")
    stride = recipe.architecture.stride
    if recipe.width % stride or recipe.height % stride:
        raise RecipeError(f"'width' and 'height' must be multiples of the depth network's stride ({stride}), got "
                          f"{recipe.width}x{recipe.height}")
    check_batch_memory(recipe.batch_size, 1 + len(recipe.frame_offsets), recipe.height, recipe.width)
    if recipe.batch_size * (recipe.width // stride) * (recipe.height // stride) < 2:
        raise RecipeError(f"a batch of one {recipe.width}x{recipe.height} frame, one stride ({stride}) square, leaves "
                          "the depth network's deepest batch norm one value per channel to train on: raise "
                          "'batch_size' to 2 or 'width' or 'height'")
    for offsets in (recipe.frame_offsets, *(s.frame_offsets for s in recipe.sequences
                                            if isinstance(s, FrameFolder) and s.frame_offsets)):
        if (0 in offsets or len(set(offsets)) != len(offsets) or len(offsets) != len(recipe.frame_offsets)
                or [o < 0 for o in offsets] != [o < 0 for o in recipe.frame_offsets]):
            raise RecipeError(f"'frame_offsets' must be distinct and non-zero, and a sequence's as many as the "
                              f"recipe's {list(recipe.frame_offsets)} with their signs in their order (the pose "
                              f"network is told which sources come earlier by the recipe's), got {list(offsets)}")
    if not 0 < recipe.lr <= FLOAT32_MAX:
        raise RecipeError(f"'lr' must be > 0 and a float32 (at most {FLOAT32_MAX:.3g}), got {recipe.lr}")
    for key in ("lr_decay", "lr_decay_at"):
        if not 0 < getattr(recipe, key) <= 1:
            raise RecipeError(f"'{key}' must lie in (0, 1], got {getattr(recipe, key)}")
    if not 0 <= recipe.ssim_weight <= 1:
        raise RecipeError(f"'ssim_weight' must lie in [0, 1], got {recipe.ssim_weight}")
    for key in ("smoothness", "min_frame_change"):
        if getattr(recipe, key) < 0:
            raise RecipeError(f"'{key}' must be >= 0, got {getattr(recipe, key)}")
    if not recipe.min_frame_change < recipe.max_frame_change <= 1:
        raise RecipeError(f"'max_frame_change' must lie above 'min_frame_change' and at most 1, got "
                          f"{recipe.max_frame_change}")
    if recipe.num_workers < 0:
        raise RecipeError(f"'num_workers' must be >= 0, got {recipe.num_workers}")
    if recipe.camera not in KITTI_CAMERAS:
        raise RecipeError(f"'camera' must be a KITTI camera, {', '.join(KITTI_CAMERAS)} (quoted in YAML: '02' unquoted "
                          f"is the number 2), got {recipe.camera!r}")
    if recipe.device not in ("auto", "cpu", "cuda") and not recipe.device.startswith("cuda:"):
        raise RecipeError(f"'device' must be auto, cpu, cuda or cuda:N, got {recipe.device!r}")


def load_depth_recipe(path: str | Path, overrides: Iterable[str] = ()) -> DepthRecipe:
    """Read and validate a YAML depth recipe; RecipeError (a ValueError) names the file and the problem."""
    return read_recipe_file(path, depth_recipe_from_dict, overrides)
