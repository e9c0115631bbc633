"""Named splits of a data set: which files a recipe may learn from, which choose the recipe, which only judge.

A split file is YAML: `dataset` (the folder it splits, relative to the shared data folder), and `parts`, each part
a list of file names. Parts are disjoint; together they cover the data set (the file says which folder).

Anywhere a list of file-name globs is taken (`dgdehaze eval --include/--subset`, a recipe's `include`), the token
`@FILE:PART` stands for the names of that part, e.g. `--include @data/splits/dawn-fog.yaml:judge`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

SPLIT_TOKEN = "@"
JUDGE_PART = "judge"
"""The part of a split whose files only judge: nothing learns from them or chooses a setting on them."""


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
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SplitError(f"no split file {path}") from None
    except (OSError, yaml.YAMLError) as exc:
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


def expand_patterns(patterns: Iterable[str], base: Path | None = None) -> list[str]:
    """Globs with each `@FILE:PART` replaced by that part's file names (FILE relative to `base`, else the current
    folder); SplitError for a malformed token or an unknown part."""
    expanded: list[str] = []
    for pattern in patterns:
        if not pattern.startswith(SPLIT_TOKEN):
            expanded.append(pattern)
            continue
        file_text, colon, part = pattern[len(SPLIT_TOKEN):].rpartition(":")
        if not colon or not file_text or not part:
            raise SplitError(f"{pattern!r}: write {SPLIT_TOKEN}FILE:PART, e.g. @data/splits/dawn-fog.yaml:judge")
        file_path = Path(file_text).expanduser()
        if base is not None and not file_path.is_absolute():
            file_path = base / file_path
        expanded.extend(load_split(file_path).names(part))
    return expanded
