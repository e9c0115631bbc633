"""Tables of figures for the CLI: one row per method or backend, printed and written as JSON.

Every command that prints figures (`eval`, `bench`, `bag-eval`) goes through `emit`, so the printed table and the
`--json` file always carry the same keys: {row name: {column name: value}}. `--json -` writes the JSON to
standard output instead (`json_stdout`).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

from dgdehaze_core.io.atomic_files import atomic_write_text
from dgdehaze_core.io.json_stdout import is_stdout, json_stream

Table = Mapping[str, Mapping[str, object]]


def _cell(value: object) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def format_table(table: Table, title: str = "") -> str:
    """A fixed-width text table with the row names in the first column."""
    columns: list[str] = []
    for row in table.values():
        columns.extend(c for c in row if c not in columns)
    header = ["", *columns]
    body = [[name, *(_cell(row.get(c, "")) for c in columns)] for name, row in table.items()]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in body)
    return "\n".join(lines)


def json_safe(value: object) -> object:
    """JSON for `value`: NaN (a figure that could not be computed, `n/a` in the table) as null, an infinite figure
    as the string the table prints ("inf", "-inf"; Python's float() reads it back); a numpy number as the Python
    number it holds."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | Path, table: Table) -> Path:
    """Write the table atomically as JSON (NaN as null, infinities as "inf" and "-inf"); to standard output when
    `path` is "-" (`json_stdout.json_on_stdout`'s, where it runs inside one)."""
    text = json.dumps(json_safe(table), indent=2, sort_keys=False) + "\n"
    if is_stdout(path):
        stream = json_stream() or sys.stdout
        stream.write(text)
        stream.flush()
        return Path(path)
    return atomic_write_text(path, text)


def emit(table: Table, title: str = "", json_path: str | Path | None = None) -> str:
    """Print the table to stdout (the CLI's output, not a log) and write it to `json_path` if given."""
    text = format_table(table, title)
    try:
        print(text)
    except UnicodeEncodeError:  # a name stdout cannot encode: one that is no UTF-8 (a Latin-1 file name, held with
        encoding = sys.stdout.encoding or "utf-8"  # surrogates), or a CJK one on a Latin-1 stdout
        print(text.encode(encoding, "backslashreplace").decode(encoding))
    if json_path is not None:
        write_json(json_path, table)
    return text
