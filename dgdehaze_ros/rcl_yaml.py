"""YAML read as ROS 2's parameters file parser (rcl_yaml_param_parser, over libyaml) reads it, where PyYAML's YAML
1.1 would read the same text otherwise.

rcl gives each scalar that is not quoted (nor tagged `!!str`) a type by its own rules, whatever its YAML tag: the
words `y`/`yes`/`true`/`on` and `n`/`no`/`false`/`off` (three spellings each) are booleans, then C's `strtol`
(base 0: decimal, `0x` hexadecimal, a leading 0 octal) makes an int64 and C's `strtod` a double (exponents without
a dot, `inf`, `nan`, hexadecimal floats; not on overflow), and the rest is a string: `~`, `null`, `1_0`,
`2024-01-01` and `1:30` are strings, and an empty value refuses the file. Documents after a `---` continue the
first; an alias refuses the file.
"""
from __future__ import annotations

import math
import re
from typing import Any

import yaml

from dgdehaze_core.io.yaml_text import yaml_error_line

TRUE_WORDS = frozenset({"Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})
FALSE_WORDS = frozenset({"N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"})
YAML_SPECIALS = {f"{sign}.{word}": float(f"{sign}{word[:3]}") for sign in ("", "+", "-")
                 for word in ("inf", "Inf", "INF")} | {f".{word}": math.nan for word in ("nan", "NaN", "NAN")}
"""The YAML spellings of infinity and NaN rcl takes besides strtod's own."""
INT64 = range(-2 ** 63, 2 ** 63)
_STRTOL = re.compile(r"\s*[+-]?(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_STRTOD = re.compile(r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?|inf(?:inity)?|nan(?:\([0-9a-z_]*\))?"
                     r"|0x(?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)", re.IGNORECASE)
_STR_TAG = "tag:yaml.org,2002:str"
_UNTYPED = "!rcl-untyped"


class RclYamlError(ValueError):
    """Text that rcl's parser refuses, with the reason and the line."""


def load_documents(text: str) -> list[Any]:
    """The documents of `text`, each mapping a dict and each sequence a list, the scalars typed as rcl types them.
    RclYamlError where rcl refuses the text (a YAML error, an alias, a value left empty, a key that is no scalar)."""
    try:
        return [_value(node) for node in yaml.compose_all(text, Loader=_Composer)]
    except yaml.YAMLError as exc:
        raise RclYamlError(yaml_error_line(exc)) from None


class _Composer(yaml.SafeLoader):
    """libyaml's events as PyYAML composes them, each scalar left untyped unless tagged `!!str` (rcl reads other
    tags as if they were not there), and an alias refused."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"an alias (*{event.anchor}), which ROS 2's parameters "
                                              "file parser refuses: a node does not start with this file",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        return _UNTYPED if kind is yaml.ScalarNode else super().resolve(kind, value, implicit)


def _value(node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        mapping = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise RclYamlError(f"a key that is a list or a mapping (line {key.start_mark.line + 1}), which ROS "
                                   "2's parameters file parser refuses")
            mapping[key.value] = _value(value)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        return [_value(item) for item in node.value]
    if node.tag == _STR_TAG or node.style in ("'", '"'):
        return node.value
    if not node.value:
        raise RclYamlError(f"no value at line {node.start_mark.line + 1}, which ROS 2's parameters file parser "
                           "refuses (quote it, '', for an empty string)")
    return scalar(node.value)


def scalar(text: str) -> bool | int | float | str:
    """`text`, an unquoted scalar, as rcl types it."""
    if text in TRUE_WORDS or text in FALSE_WORDS:
        return text in TRUE_WORDS
    if _STRTOL.fullmatch(text):
        digits = text.strip()
        whole = int(digits, 8) if re.fullmatch(r"[+-]?0[0-7]+", digits) else int(digits, 0)
        if whole in INT64:
            return whole
    if text in YAML_SPECIALS:
        return YAML_SPECIALS[text]
    if _STRTOD.fullmatch(text):
        number = _strtod(text.strip().lower())
        if number is not None:
            return number
    return text


def _strtod(word: str) -> float | None:
    """The double strtod reads from `word` (lower case, a whole number strtod takes), None where it overflows or
    underflows to zero (ERANGE, which rcl reads as a string)."""
    hexadecimal = "x" in word
    number = float.fromhex(word) if hexadecimal else float(re.sub(r"\(.*\)", "", word))
    mantissa = re.split("p" if hexadecimal else "e", word.split("x")[-1])[0]
    if math.isinf(number) and "inf" not in word:
        return None
    if number == 0 and re.search("[1-9a-f]" if hexadecimal else "[1-9]", mantissa):
        return None
    return number
