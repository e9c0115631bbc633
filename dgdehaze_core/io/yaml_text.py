"""Reading the YAML a user gives (recipes, split files, a YOLO set's data.yaml) with the errors PyYAML's own reading
lacks: every way a document defeats it is a `yaml.YAMLError`, which each caller turns into one line naming its file.

PyYAML reads nested lists and mappings recursively, so a file of a few thousand `[` ended in Python's RecursionError,
which named no file.
"""
from __future__ import annotations

from typing import Any

import yaml


def load_yaml(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader) -> Any:
    """`text` read as YAML by `loader` (PyYAML's safe one: no tag runs code); yaml.YAMLError when it does not read
    or nests its lists or mappings too deeply to read."""
    try:
        return yaml.load(text, Loader=loader)
    except RecursionError:
        raise yaml.YAMLError("its lists or mappings are nested too deeply to read") from None
