"""Named splits of a data set: which files a recipe may learn from, which choose the recipe, which only judge.

A split file is YAML: `dataset` (the folder it splits, relative to the shared data folder), and `parts`, each part
a list of file names. Parts are disjoint; together they cover the data set (the file says which folder).

Anywhere a list of file-name globs is taken (`dgdehaze eval --include/--subset`, a recipe's `include`), the token
`@FILE:PART` stands for the names of that part, e.g. `--include @data/splits/dawn-fog.yaml:judge`, and `@LIST.txt`
for the images a Pascal VOC image set lists (`ImageSets/Main/test.txt`: one image id, its file name without the
suffix, at the start of each line), e.g. `--include @RTTS/ImageSets/Main/test.txt`.

The training loaders refuse what only judges (`judging_files`): the judge part of each split in data/splits/, and
the sets that judge whole (WHOLLY_JUDGING), wherever a recipe's folders or globs reach them in the shared data folder.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from dgdehaze_core.io.file_paths import listing
from dgdehaze_core.datasets.paths import REPO_DIR, shared_data_dir
from dgdehaze_core.io.images import images_under
from dgdehaze_core.io.yaml_text import load_yaml

LOG = logging.getLogger(__name__)

SPLIT_TOKEN = "@"
ID_LIST_SUFFIX = ".txt"
"""A `@FILE` ending so is a Pascal VOC image set: image ids, one a line."""
JUDGE_PART = "judge"
"""The part of a split whose files only judge: nothing learns from them or chooses a setting on them."""
SPLITS_DIR = REPO_DIR / "data" / "splits"
WHOLLY_JUDGING = ("depth/kitti-tiny",)
"""Sets (relative to the shared data folder) that only judge, every file: kitti-tiny's drive is the depth and
visibility figures' unseen drive (docs/DEPTH.md)."""


class SplitError(ValueError):
    """A split file or a reference to one that cannot be used, with the reason."""


@dataclass(frozen=True)
class Split:
    """A data set's parts: part name -> file names."""

    dataset: str
    parts: dict[str, tuple[str, ...]]

    def names(self, part: str) -> tuple[str, ...]:
        if part not in self.parts:
            raise SplitError(f"split of {self.dataset} has no part {part!r}; parts: {', '.join(self.parts)}")
        return self.parts[part]


def load_split(path: str | Path) -> Split:
    """Read and check a split file: every part a non-empty list of names, no name in two parts."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SplitError(f"no split file {path}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SplitError(f"{path} is not a readable YAML split file: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("parts"), dict) or not raw["parts"]:
        raise SplitError(f"{path}: a split file needs 'dataset' and a non-empty mapping 'parts'")
    parts: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for part, names in raw["parts"].items():
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise SplitError(f"{path}: part {part!r} must be a non-empty list of file names")
        patterned = [name for name in names if any(char in name for char in "*?[")]
        if patterned:  # the names are matched as globs: a pattern would reach into another part
            raise SplitError(f"{path}: part {part!r} names {patterned[0]!r}: split entries are file names, "
                             "without * ? or [")
        for name in names:
            if name in owner:
                raise SplitError(f"{path}: {name} is in both {owner[name]!r} and {part!r}: parts must be disjoint")
            owner[name] = str(part)
        parts[str(part)] = tuple(names)
    return Split(str(raw.get("dataset", "")), parts)


def judging_parts(patterns: Iterable[str]) -> list[str]:
    """The patterns among `patterns` that name a judging part (`...:judge`), for the callers that must refuse them."""
    return [pattern for pattern in patterns if pattern.endswith(f":{JUDGE_PART}")]


def load_id_list(path: Path) -> tuple[str, ...]:
    """The image ids of a Pascal VOC image set (`ImageSets/Main/test.txt`): the first word of each line that has one
    (a class's list, `car_test.txt`, follows each id with its 1/-1/0 flag: every image listed is in the set);
    SplitError for a file that does not read, lists none, or names an id with glob characters."""
    try:
        ids = tuple(line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.split())
    except FileNotFoundError:
        raise SplitError(f"no image set file {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"{path} is not a readable image set (one image id a line): {exc}") from None
    if not ids:
        raise SplitError(f"{path} lists no image ids (one a line, as a Pascal VOC ImageSets/Main/*.txt)")
    patterned = [name for name in ids if any(char in name for char in "*?[")]
    if patterned:
        raise SplitError(f"{path} lists {patterned[0]!r}: image ids are file names without their suffix, without "
                         "* ? or [")
    return ids


def _referenced_file(text: str, base: Path | None) -> Path:
    path = Path(text).expanduser()
    return base / path if base is not None and not path.is_absolute() else path


def expand_patterns(patterns: Iterable[str], base: Path | None = None) -> list[str]:
    """Globs with each `@FILE:PART` replaced by that part's file names and each `@LIST.txt` by `ID.*` for each id it
    lists (FILE relative to `base`, else the current folder); SplitError for a malformed token, an unknown part or a
    list that does not read."""
    expanded: list[str] = []
    for pattern in patterns:
        if not pattern.startswith(SPLIT_TOKEN):
            expanded.append(pattern)
            continue
        body = pattern[len(SPLIT_TOKEN):]
        if body.lower().endswith(ID_LIST_SUFFIX):
            expanded.extend(f"{name}.*" for name in load_id_list(_referenced_file(body, base)))
            continue
        file_text, colon, part = body.rpartition(":")
        if not colon or not file_text or not part:
            raise SplitError(f"{pattern!r}: write {SPLIT_TOKEN}FILE:PART, e.g. @data/splits/dawn-fog.yaml:judge, "
                             f"or {SPLIT_TOKEN}LIST{ID_LIST_SUFFIX} for a Pascal VOC image set")
        expanded.extend(load_split(_referenced_file(file_text, base)).names(part))
    return expanded


def warn_absent_split_names(patterns: Iterable[str], folder: Path, what: str) -> None:
    """A warning for each `@FILE:PART` or `@LIST.txt` among `patterns` (given as `what`, e.g. '--include') whose part
    or list names files that are not anywhere in `folder`, naming how many and the first few: a copy of a set that
    lacks some of a part's files matches only the rest, and figures over it are not the part's. SplitError as
    `expand_patterns`."""
    present = None
    for pattern in patterns:
        if pattern.startswith(SPLIT_TOKEN):
            if present is None:
                files = images_under(folder)
                present = {path.name for path in files} | {f"{path.stem}.*" for path in files}
            absent = [name for name in expand_patterns([pattern]) if name not in present]
            if absent:
                LOG.warning("%s %s names %d file(s) that are not in %s, so the figures are over the rest of it, "
                            "not the whole part: %s", what, pattern, len(absent), folder, listing(absent))


def judging_files(paths: Iterable[Path], data_dir: Path | None = None,
                  splits_dir: Path = SPLITS_DIR) -> dict[Path, str]:
    """The paths among `paths` (files or folders) that only judge, each with the reason: under a WHOLLY_JUDGING
    set, or in a split's data set and named in its judge part. Sets lie in `data_dir` (the shared data folder when
    None); a copy elsewhere is not recognised."""
    data_dir = data_dir or shared_data_dir()
    if data_dir is None:
        return {}
    rules = [((data_dir / name).resolve(), None, f"{name} only judges") for name in WHOLLY_JUDGING]
    for split_file in sorted(splits_dir.glob("*.yaml")):
        split = load_split(split_file)
        if split.dataset and JUDGE_PART in split.parts:
            rules.append(((data_dir / split.dataset).resolve(), frozenset(split.parts[JUDGE_PART]),
                          f"the judge part of {split_file.name}; learn from its other parts, e.g. include: "
                          f"@data/splits/{split_file.name}:learn"))
    judged = {}
    for path in paths:
        resolved = Path(os.path.realpath(path))  # a loop of links (read later, to say so) raises no error here
        for folder, names, reason in rules:
            if resolved.is_relative_to(folder) and (names is None or resolved.name in names):
                judged[Path(path)] = reason
                break
    return judged


def refuse_judging_files(paths: Iterable[Path], what: str) -> None:
    """SplitError naming the first of `paths` that only judges (`judging_files`), why, and how many do."""
    judged = judging_files(paths)
    if judged:
        first, reason = next(iter(judged.items()))
        raise SplitError(f"{what}: {len(judged)} file(s) that only judge may not train or choose a setting, "
                         f"e.g. {first} ({reason})")
