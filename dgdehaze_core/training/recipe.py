"""Training recipes: a YAML file read into a validated `Recipe`, with clear errors for every bad field.

A recipe names its data (folders of unpaired clear images, of unpaired hazy images, and optional paired
validation folders), the model, the optimisation, the haze synthesis ranges and one weight per loss. Paths may start
with `${DATA}` (the shared real-data folder, see `datasets.paths.shared_data_dir`); other relative paths are taken
relative to the recipe file. `overrides` ("loss.dark_channel=0", "iterations=200") change fields before validation,
which is how the command line runs ablations without a new file.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, TypeVar

import yaml

from dgdehaze_core.datasets.paths import shared_data_dir
from dgdehaze_core.datasets.splits import SplitError, expand_patterns, judging_parts
from dgdehaze_core.evaluation.metrics import SSIM_MIN_SIDE
from dgdehaze_core.io.file_paths import VIDEO_SUFFIXES, missing
from dgdehaze_core.io.images import SAMPLE_BITS
from dgdehaze_core.io.yaml_text import load_yaml, yaml_error_line
from dgdehaze_core.training.bag_frames import is_bag_path, recording_kind

FLOAT32_MAX = 3.4028234663852886e38
"""The largest float32: a learning rate beyond it overflowed in the first step (torch's error, after work began)."""
T = TypeVar("T")

RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A recipe's `name`: the run folder `runs/NAME` when no --out is given, so one folder name, no path."""
MIN_VAL_MAX_SIDE = 64
"""The smallest `val_max_side`: SSIM on the validation pairs needs 7 pixels on the short side, and a 4:3 pair
scaled to 64 on its long side keeps 48."""


class RecipeLoader(yaml.SafeLoader):
    """YAML as PyYAML reads it, but for numbers in exponent notation without a dot (`1e-3`), which YAML 1.1 leaves
    as strings and YAML 1.2 and every user read as numbers, and for a key given twice in one mapping, which YAML
    forbids and PyYAML takes the last of (an `iterations: 500` added above the recipe's own would be dropped)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: its keys may be given again after it
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):  # refused by PyYAML's own construct_mapping
                continue
            line = key_node.start_mark.line + 1
            if key in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice, on lines {lines[key]} and {line}: give it once")
            lines[key] = line
        return super().construct_mapping(node, deep)


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_yaml(text: str) -> Any:
    """`text` read as YAML by `RecipeLoader` (`yaml_text.load_yaml`: a yaml.YAMLError for any document it cannot
    read whole)."""
    return load_yaml(text, RecipeLoader)


def plain_data(value: Any) -> Any:
    """`value` with paths as strings and tuples as lists, all the way down: what YAML and checkpoints hold."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_data(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class ImageSource:
    """A folder of images (searched recursively, hidden files left out), a video file, or a bag (a rosbag2 folder
    with metadata.yaml, a .mcap/.db3 file or a ROS 1 .bag file: `training.bag_frames`); every `frame_step`-th
    frame of the video or bag, or image of the folder in name order, is taken; `include` keeps only names of a
    folder matching one of its glob patterns (`@FILE:PART` in the recipe: a part of a split file, see
    `datasets.splits`), before the step. `topic` names a bag's image topic (needed when it has several; refused on
    a folder or a video); empty: the bag's only image topic with messages. `input_bits` gives the significant bits
    of a folder's or bag's 16-bit samples, as the node's input_bits (12 for a 12-bit camera's 0..4095; refused on a
    video, whose frames are 8-bit).

    `weight` is the share of draws this source gets relative to the other sources of the same kind. A validation
    source scores every pair of its paired folder (`include` chooses them): `weight` and `frame_step` are refused.
    `prior_depth` keeps the prior depth field for this clear source's haze even when the recipe names a
    `clear_depth` network (a network that learned from driving video knows nothing of rooms).
    """

    path: Path
    include: tuple[str, ...] = ()
    weight: float = 1.0
    frame_step: int = 1
    prior_depth: bool = False
    topic: str = ""
    input_bits: int = SAMPLE_BITS


@dataclass(frozen=True)
class LossWeights:
    """One weight per loss (0 switches a loss off); see `losses` for what each one measures."""

    cycle: float = 1.0
    cycle_physics: float = 1.0
    transmission: float = 1.0
    airlight: float = 0.5
    depth_consistency: float = 0.2
    reconstruction: float = 1.0
    depth_transmission: float = 0.1
    dark_channel: float = 0.02
    smooth_transmission: float = 0.02
    smooth_depth: float = 0.02
    dcp_teacher: float = 0.5
    adversarial: float = 0.0
    detector_features: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """Everything that defines one training run."""

    name: str
    clear: tuple[ImageSource, ...]
    hazy: tuple[ImageSource, ...]
    iterations: int
    validation: tuple[ImageSource, ...] = ()
    model: str = "lite"
    depth_guidance: bool = True
    init_weights: str = ""
    """The weights the run's model starts from: a model name with shipped weights ("lite": `shipped_weights_path`)
    or a checkpoint file (.pt, as `load_model` reads it; a run's last.pt or best.pt too), which must hold the
    recipe's `model` and `depth_guidance`; the optimizer starts fresh. Empty: from scratch (random weights). A
    resumed run (--resume) continues from its last.pt and ignores this field. See `training.initial_weights`."""
    guide_trains_depth: bool = True
    """Whether the dehazing losses also train the depth network through the depth the dehazer reads (the joint
    training of the paper). False detaches that guide: the depth network learns only from its own losses
    (depth_consistency, depth_transmission, smooth_depth) while the dehazer still reads its depth."""
    crop_size: int = 160
    batch_size: int = 8
    max_side: int = 640
    zoom_range: tuple[float, float] = (1.0, 2.0)
    lr: float = 5e-4
    weight_decay: float = 1e-4
    warmup_iterations: int = 100
    teacher_iterations: int = 1000
    teacher_floor: float = 0.2
    net_depth_after: int = 500
    net_depth_fraction: float = 0.5
    clear_depth: str = ""
    """A clear-depth checkpoint (`dgdehaze train-depth`): its depth of each whole clear image, cropped with the
    image, makes the synthetic haze instead of the prior field and the dehazer's own depth network, and is what
    depth_consistency distils the hazy depth network towards (the paper's dual network). Clear sources marked
    `prior_depth` keep the prior. Empty: off."""
    clear_depth_scaling: str = "range"
    """How a crop's clear-image depth becomes the synthesis' relative depth: "range" maps its nearest and farthest
    points to the prior's [near, 1] (the depth ratios change with the crop); "farthest" divides by its farthest
    point, so that the haze and the depth the hazy network is taught keep the clear network's ratios."""
    beta_indoor: tuple[float, float] = (0.6, 1.8)
    beta_outdoor: tuple[float, float] = (0.2, 1.2)
    outdoor_fraction: float = 0.3
    airlight: tuple[float, float] = (0.7, 1.0)
    airlight_jitter: float = 0.04
    seed: int = 0
    amp: bool = True
    device: str = "auto"
    num_workers: int = 2
    log_every: int = 10
    val_every: int = 500
    checkpoint_every: int = 250
    val_max_side: int = 640
    val_output: str = "physics"
    loss: LossWeights = field(default_factory=LossWeights)
    source_file: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (paths as strings) for checkpoints and model cards."""
        return plain_data(dataclasses.asdict(self))

    def as_recipe_file(self) -> dict[str, Any]:
        """The recipe in the layout a recipe file has (`data` and `loss` sections; paths expanded, split parts as
        the names they stood for): what a run folder's recipe.yaml holds, which `load_recipe` reads back to this
        recipe."""
        fields = self.as_dict()
        del fields["source_file"]
        fields["data"] = {kind: fields.pop(kind) for kind in ("clear", "hazy", "validation")}
        return fields


class RecipeError(ValueError):
    """A recipe that cannot be used, with the field and the reason."""


def recipe_input_bits(item: dict[str, Any], key: str) -> int:
    """The `input_bits` of a recipe's source mapping (`key` names it): the significant bits of its 16-bit samples,
    as the node's input_bits (default 16); RecipeError unless an integer in 8..16."""
    bits = item.get("input_bits", SAMPLE_BITS)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 8 <= bits <= 16:
        raise RecipeError(f"'input_bits' in '{key}' must be an integer in 8..16 (the significant bits of 16-bit "
                          f"samples), got {bits!r}")
    return bits


_SCALARS = {f.name: f for f in dataclasses.fields(Recipe)
            if f.name not in ("clear", "hazy", "validation", "loss", "source_file")}


def expand_path(path: str, base: Path) -> Path:
    """A recipe path: `${DATA}/...` in the shared data folder, a relative path against `base`."""
    if path.startswith("${DATA}"):
        data = shared_data_dir()
        if data is None:
            raise RecipeError(f"{path} needs the shared data folder: set DGDEHAZE_DATA or provide ../shared/data")
        return data / path[len("${DATA}"):].lstrip("/")
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (base / candidate)


def _sources(key: str, raw: Any, base: Path, required: bool) -> tuple[ImageSource, ...]:
    if raw is None or raw == []:
        if required:
            raise RecipeError(f"'{key}' must list at least one folder")
        return ()
    if not isinstance(raw, list):
        raise RecipeError(f"'{key}' must be a list of folders, videos or bags (a path or {{path, include, weight, "
                          f"frame_step, prior_depth, topic, input_bits}}), got {raw!r}")
    sources = []
    for item in raw:
        if isinstance(item, str):
            item = {"path": item}
        if not isinstance(item, dict) or "path" not in item:
            raise RecipeError(f"each entry of '{key}' needs a 'path', got {item!r}")
        unknown = set(item) - {"path", "include", "weight", "frame_step", "prior_depth", "topic", "input_bits"}
        if unknown:
            raise RecipeError(f"unknown field(s) {sorted(unknown)} in an entry of '{key}'")
        include = item.get("include") or []
        if isinstance(include, str):
            include = [include]
        if not isinstance(include, list) or not all(isinstance(pattern, str) for pattern in include):
            raise RecipeError(f"'include' in '{key}' must be a pattern or a list of patterns, got {include!r}")
        weight = item.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < math.inf:
            raise RecipeError(f"'weight' in '{key}' must be a positive finite number, got {weight!r}")
        frame_step = item.get("frame_step", 1)
        if isinstance(frame_step, bool) or not isinstance(frame_step, int) or frame_step < 1:
            raise RecipeError(f"'frame_step' in '{key}' must be an integer >= 1, got {frame_step!r}")
        prior = item.get("prior_depth", False)
        if not isinstance(prior, bool):
            raise RecipeError(f"'prior_depth' in '{key}' must be true or false, got {prior!r}")
        if prior and key != "data.clear":
            raise RecipeError(f"'prior_depth' applies to clear sources only (the haze made from them), not '{key}'")
        if key == "data.validation" and (weight != 1 or frame_step != 1):
            raise RecipeError(f"'weight' and 'frame_step' share out and thin the training draws; '{key}' scores every "
                              "pair of its folder: choose the pairs with 'include'")
        path = expand_path(str(item["path"]), base)
        if include and recording_kind(path):
            raise RecipeError(f"'include' in '{key}' chooses a folder's images by name; {item['path']} is a video or "
                              "a bag, whose frames 'frame_step' chooses")
        topic = item.get("topic", "")
        if not isinstance(topic, str):
            raise RecipeError(f"'topic' in '{key}' must be a topic name, got {topic!r}")
        if topic and (path.suffix.lower() in VIDEO_SUFFIXES or path.is_dir() and not is_bag_path(path)):
            raise RecipeError(f"'topic' in '{key}' names a bag's image topic; {item['path']} is a video or a folder "
                              "without a bag's metadata.yaml")
        bits = recipe_input_bits(item, key)
        if bits != SAMPLE_BITS and path.suffix.lower() in VIDEO_SUFFIXES:
            raise RecipeError(f"'input_bits' in '{key}' gives the significant bits of 16-bit samples; {item['path']} "
                              "is a video, whose frames are 8-bit")
        judging = judging_parts(include)
        if judging:
            raise RecipeError(f"'include' in '{key}': the judging photos never train: {', '.join(judging)}")
        try:
            patterns = expand_patterns(include, base)
        except SplitError as exc:
            raise RecipeError(f"'include' in '{key}': {exc}") from None
        sources.append(ImageSource(path, tuple(patterns), float(weight), frame_step, prior, topic, bits))
    return tuple(sources)


def set_dotted(raw: dict[str, Any], override: str) -> None:
    """Apply one "section.key=VALUE" override (VALUE read as YAML) to a raw recipe dict."""
    if "=" not in override:
        raise RecipeError(f"an override must read KEY=VALUE, got {override!r}")
    key, text = override.split("=", 1)
    try:
        value = read_yaml(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"override {override!r}: the value is not valid YAML ({yaml_error_line(exc)}); quote a "
                          "string that holds { } [ ] , or : (\"${DATA}/x\")") from None
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"cannot override {key!r}: {part!r} is not a section")
    node[parts[-1]] = value


def _range(name: str, value: Any, low: float, high: float) -> tuple[float, float]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, float)) for v in value)):
        raise RecipeError(f"'{name}' must be a pair [low, high], got {value!r}")
    a, b = float(value[0]), float(value[1])
    if not low <= a <= b <= high:
        raise RecipeError(f"'{name}' must satisfy {low} <= low <= high <= {high}, got [{a}, {b}]")
    return a, b


def recipe_from_dict(raw: dict[str, Any], base: Path, overrides: Iterable[str] = ()) -> Recipe:
    """Validate a recipe given as a dict (as read from YAML); relative paths resolve against `base`."""
    raw = checked_fields(raw, overrides, set(_SCALARS) | {"data", "loss"})
    data = raw.pop("data", None)
    if not isinstance(data, dict):
        raise RecipeError("the recipe needs a 'data' section with 'clear', 'hazy' and optionally 'validation'")
    unknown = set(data) - {"clear", "hazy", "validation"}
    if unknown:
        raise RecipeError(f"unknown field(s) in 'data': {sorted(unknown)}")
    loss_raw = raw.pop("loss", {}) or {}
    if not isinstance(loss_raw, dict):
        raise RecipeError("'loss' must map loss names to weights")
    loss_names = {f.name for f in dataclasses.fields(LossWeights)}
    unknown = set(loss_raw) - loss_names
    if unknown:
        raise RecipeError(f"unknown loss(es) {sorted(unknown)}; known: {sorted(loss_names)}")
    for name, weight in loss_raw.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
            raise RecipeError(f"loss weight '{name}' must be a finite number >= 0, got {weight!r}")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        default = _SCALARS[key].default
        if isinstance(default, tuple):
            fields[key] = value
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise RecipeError(f"'{key}' must be true or false, got {value!r}")
            fields[key] = value
        elif isinstance(default, int) or key == "iterations":
            if not isinstance(value, int) or isinstance(value, bool):
                raise RecipeError(f"'{key}' must be an integer, got {value!r}")
            fields[key] = value
        elif isinstance(default, float):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise RecipeError(f"'{key}' must be a finite number, got {value!r}")
            fields[key] = float(value)
        else:
            if not isinstance(value, str):
                raise RecipeError(f"'{key}' must be a string, got {value!r}")
            fields[key] = value
    if "name" not in fields or "iterations" not in fields:
        raise RecipeError("the recipe needs 'name' and 'iterations'")
    if fields.get("clear_depth"):
        fields["clear_depth"] = str(expand_path(fields["clear_depth"], base))
    if fields.get("init_weights") and fields["init_weights"] not in _model_names():
        fields["init_weights"] = str(expand_path(fields["init_weights"], base))
    fields["zoom_range"] = _range("zoom_range", fields.get("zoom_range", (1.0, 2.0)), 0.25, 8.0)
    fields["beta_indoor"] = _range("beta_indoor", fields.get("beta_indoor", (0.6, 1.8)), 0.0, 10.0)
    fields["beta_outdoor"] = _range("beta_outdoor", fields.get("beta_outdoor", (0.2, 1.2)), 0.0, 10.0)
    fields["airlight"] = _range("airlight", fields.get("airlight", (0.7, 1.0)), 0.0, 1.0)
    recipe = Recipe(
        clear=_sources("data.clear", data.get("clear"), base, required=True),
        hazy=_sources("data.hazy", data.get("hazy"), base, required=True),
        validation=_sources("data.validation", data.get("validation"), base, required=False),
        loss=LossWeights(**{k: float(v) for k, v in loss_raw.items()}),
        **fields)
    _check(recipe)
    return recipe


def _model_names() -> tuple[str, ...]:
    """The model configurations a recipe trains. `dgdehaze_core.models` imports torch (seconds): imported here, a
    recipe file that is missing or misread is refused without it (tools/device_kit.py), and this module imports no
    torch."""
    from dgdehaze_core.models import MODEL_CONFIGS
    return tuple(MODEL_CONFIGS)


def check_run_name(name: str) -> None:
    """RecipeError unless `name` is one folder name (RUN_NAME): it is the default run folder runs/NAME."""
    if not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise RecipeError(f"'name' names the run folder runs/NAME: letters, digits, '.', '_' and '-', not a path, "
                          f"got {name!r}")


def check_batch_memory(batch_size: int, images: int, height: int, width: int) -> None:
    """RecipeError when one batch's images alone, `batch_size` samples of `images` float32 colour images of
    `width`x`height`, would take more than this machine's memory, so that no step could run: a 'batch_size' of
    10**22 ended in an OverflowError and one of 10**8 in a MemoryError, after the data was read, with tracebacks."""
    needed = batch_size * images * 3 * height * width * 4
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        raise RecipeError(f"a batch of {batch_size} samples ('batch_size') of {images} {width}x{height} image(s) "
                          f"needs {needed / 2**30:.3g} GiB for its images alone, more than this machine's "
                          f"{memory / 2**30:.3g} GiB of memory")


def check_seed(seed: int) -> None:
    """RecipeError unless `seed` is one torch's generators take (0 .. 2**63 - 1)."""
    if not 0 <= seed < 2**63:
        raise RecipeError(f"'seed' must lie in 0 .. 2**63 - 1, got {seed}")


def _check(recipe: Recipe) -> None:
    positive = ("iterations", "crop_size", "batch_size", "max_side", "log_every", "val_every", "checkpoint_every",
                "val_max_side")
    for key in positive:
        if getattr(recipe, key) < 1:
            raise RecipeError(f"'{key}' must be at least 1, got {getattr(recipe, key)}")
    check_run_name(recipe.name)
    if recipe.model not in _model_names():  # `paper` builds, but has no transmission or airlight for the losses
        raise RecipeError(f"'model' must be one of {', '.join(_model_names())} (the paper's released network is run, "
                          f"not trained, here), got {recipe.model!r}")
    if recipe.val_max_side < MIN_VAL_MAX_SIDE:
        raise RecipeError(f"'val_max_side' must be at least {MIN_VAL_MAX_SIDE} (the validation's SSIM needs "
                          f"{SSIM_MIN_SIDE} pixels on a pair's short side), got {recipe.val_max_side}")
    for key in ("warmup_iterations", "teacher_iterations", "net_depth_after", "num_workers"):
        if getattr(recipe, key) < 0:
            raise RecipeError(f"'{key}' must be >= 0, got {getattr(recipe, key)}")
    if recipe.crop_size % 16:
        raise RecipeError(f"'crop_size' must be a multiple of 16 (the network stride), got {recipe.crop_size}")
    if recipe.crop_size > recipe.max_side:
        raise RecipeError(f"'crop_size' ({recipe.crop_size}) cannot exceed 'max_side' ({recipe.max_side})")
    if not 0 < recipe.lr <= FLOAT32_MAX or recipe.weight_decay < 0:  # torch's optimiser holds it in float32
        raise RecipeError(f"'lr' must be > 0 and a float32 (at most {FLOAT32_MAX:.3g}) and 'weight_decay' >= 0, got "
                          f"{recipe.lr} and {recipe.weight_decay}")
    check_seed(recipe.seed)
    check_batch_memory(recipe.batch_size, 1, recipe.crop_size, recipe.crop_size)
    for key in ("teacher_floor", "net_depth_fraction", "outdoor_fraction"):
        if not 0.0 <= getattr(recipe, key) <= 1.0:
            raise RecipeError(f"'{key}' must lie in [0, 1], got {getattr(recipe, key)}")
    if not 0.0 <= recipe.airlight_jitter <= 0.3:
        raise RecipeError(f"'airlight_jitter' must lie in [0, 0.3], got {recipe.airlight_jitter}")
    if recipe.device not in ("auto", "cpu", "cuda") and not recipe.device.startswith("cuda:"):
        raise RecipeError(f"'device' must be auto, cpu, cuda or cuda:N, got {recipe.device!r}")
    if recipe.clear_depth_scaling not in ("range", "farthest"):
        raise RecipeError(f"'clear_depth_scaling' must be 'range' or 'farthest', got {recipe.clear_depth_scaling!r}")
    if recipe.val_output not in ("physics", "clear"):
        raise RecipeError(f"'val_output' must be 'physics' (J from t and A) or 'clear' (decoder), got "
                          f"{recipe.val_output!r}")


RECIPE_KINDS = {"data": ("dgdehaze train", "the dehazer, from unpaired images"),
                "sequences": ("dgdehaze train-depth", "depth from clear video")}
"""The field that marks each kind of recipe: the command that reads it, and what it trains."""


def check_field_names(raw: Any, where: str = "") -> None:
    """RecipeError naming the place of the first mapping key in `raw` (the recipe as read, all the way down) that
    is no name: YAML reads an unquoted number, true/false or yes/no/on/off as a value, which no field is."""
    if isinstance(raw, list):
        for index, item in enumerate(raw):
            check_field_names(item, f"{where}[{index}]")
    elif isinstance(raw, dict):
        for key, value in raw.items():
            if not isinstance(key, str):
                raise RecipeError(f"{key!r} in {f'{where!r}' if where else 'the recipe'} is no field name (YAML "
                                  "reads an unquoted number, true/false or yes/no/on/off as a value): quote it, or "
                                  "remove it")
            check_field_names(value, f"{where}.{key}" if where else key)


def checked_fields(raw: Any, overrides: Iterable[str], known: set[str]) -> dict[str, Any]:
    """A copy of `raw`, a recipe as read from YAML, with `overrides` (`--set KEY=VALUE`) applied; RecipeError
    unless it is a mapping of field names, all of them in `known`."""
    if not isinstance(raw, dict):
        raise RecipeError(f"a recipe must be a mapping of fields, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for override in overrides:
        set_dotted(raw, override)
    check_field_names(raw)
    check_known_fields(raw, known)
    return raw


def check_known_fields(raw: Mapping[str, Any], known: set[str]) -> None:
    """RecipeError when `raw` holds fields outside `known`: naming the command a recipe of the other kind belongs
    to (a train-depth recipe given to train, or the reverse), else listing the unknown and the known fields."""
    unknown = set(raw) - known
    if not unknown:
        return
    for field_name, (command, what) in RECIPE_KINDS.items():
        if field_name in unknown:
            raise RecipeError(f"a `{command}` recipe ({what}: it has '{field_name}'), which this command does not "
                              f"read: run `{command} --config` with it")
    raise RecipeError(f"unknown recipe field(s): {sorted(unknown)}; known: {sorted(known)}")


def read_recipe_file(path: str | Path, from_dict: Callable[[Any, Path, Iterable[str]], T],
                     overrides: Iterable[str] = ()) -> T:
    """A YAML recipe file read by `from_dict` (raw data, the file's folder, overrides), with `source_file` set;
    RecipeError (a ValueError) names the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise RecipeError(f"{path} is a folder: give a recipe file (a YAML file, such as those in training/)")
    if not path.is_file():
        raise FileNotFoundError(missing(path, "recipe"))
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path} is not UTF-8 text, as YAML is: {exc}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path} is not valid YAML: {yaml_error_line(exc)}") from None
    if raw is None:  # what YAML reads from an empty file, or one of comments alone
        raise RecipeError(f"{path} is empty (or holds only comments): a recipe is a mapping of fields, as those in "
                          "training/ are")
    try:
        recipe = from_dict(raw, path.resolve().parent, overrides)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    return dataclasses.replace(recipe, source_file=path)  # type: ignore[type-var]


def load_recipe(path: str | Path, overrides: Iterable[str] = ()) -> Recipe:
    """Read and validate a YAML recipe; RecipeError (a ValueError) names the file and the problem."""
    return read_recipe_file(path, recipe_from_dict, overrides)
