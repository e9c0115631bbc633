"""Reading the YAML a user gives (recipes, split files, a YOLO set's data.yaml) with the errors PyYAML's own reading
lacks: every way a document defeats it is a `yaml.YAMLError`, which each caller turns into one line naming its file.

PyYAML reads nested lists and mappings recursively, so a file of a few thousand `[` ended in Python's RecursionError,
which named no file. And it keeps an alias (`*name`) as one more reference to the node it names, which is cheap to
read but not to walk: nine lines of nine aliases each ("billion laughs") hold 9**9 values, and the recipe's checks,
which walk every value, took two minutes to refuse such a file (and would take hours at a few lines more).
"""
from __future__ import annotations

from typing import Any

import yaml

MAX_VALUES = 1_000_000
"""The most values a document may hold, each list and mapping under an alias counted as often as it is used (the
largest shipped file, a split of a few hundred photo names, holds about a thousand)."""


def load_yaml(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """`text` read as YAML by `loader` (PyYAML's safe one: no tag runs code); yaml.YAMLError when it does not read,
    nests its lists or mappings too deeply to read, holds one inside itself, or holds more than MAX_VALUES values."""
    try:
        document = yaml.load(text, Loader=loader)
        size = _size(document, {})
    except RecursionError:
        raise yaml.YAMLError("its lists or mappings are nested too deeply to read") from None
    if size > MAX_VALUES:
        raise yaml.YAMLError(f"its aliases (*name) expand it to {size:.3g} values, beyond the {MAX_VALUES} a file may "
                             "hold")
    return document


def yaml_error_line(error: yaml.YAMLError) -> str:
    """`error` on one line, with the line and column PyYAML marks its problem at (1-based, as editors count) and
    what it was reading, where it marks them: its own text runs to several lines, the first of which names neither
    (the one-line errors of the command line showed "while parsing a flow sequence" alone)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return " ".join(str(error).split())
    mark = error.problem_mark
    line = f"line {mark.line + 1}, column {mark.column + 1}: {error.problem or error.context}"
    if error.problem and error.context:
        where = error.context_mark
        line += f" ({error.context}{'' if where is None else f' at line {where.line + 1}, column {where.column + 1}'})"
    return line


def _size(value: Any, sizes: dict[int, int | None]) -> int:
    """How many values `value` holds, itself included, a list or mapping found again through an alias counted
    again; `sizes`: those of the lists and mappings sized already, by id (None while one is being sized: found again
    inside itself, which is a yaml.YAMLError)."""
    if not isinstance(value, (list, dict)):
        return 1
    key = id(value)
    if key in sizes:
        size = sizes[key]
        if size is None:
            raise yaml.YAMLError("a list or mapping in it holds itself, through an alias (*name): it has no end")
        return size
    sizes[key] = None
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    sizes[key] = 1 + sum(_size(item, sizes) for item in items)
    return sizes[key]
