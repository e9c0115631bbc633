"""`--json -`: a command's table of figures as a JSON document on standard output, for a pipe (`| jq`).

While a command runs inside `json_on_stdout("-")`, standard output holds that document alone: whatever else it
prints there (its table, other lines, a library's log bound to stdout, a child process's output) goes to standard
error, and `tables.write_json("-", ...)` writes the JSON to the standard output as it was on entry. `export` keeps
standard output so for the one path it prints.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Iterator, TextIO

STDOUT = "-"
"""The --json name that means standard output."""

_stream: TextIO | None = None
"""Where the JSON of `--json -` goes while `json_on_stdout` runs (None outside it)."""


def is_stdout(path: str | os.PathLike[str] | None) -> bool:
    """Whether a --json `path` means standard output ("-")."""
    return path is not None and os.fspath(path) == STDOUT


def json_stream() -> TextIO | None:
    """The stream `--json -` writes to: the standard output `json_on_stdout` set aside, None outside it (where a
    command's other output would be mixed with the JSON)."""
    return _stream


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


@contextlib.contextmanager
def json_on_stdout(path: str | os.PathLike[str] | None) -> Iterator[None]:
    """Within the block, when `path` is "-", standard output is kept for the JSON document (`json_stream`) and
    everything else written to it goes to standard error: at the file descriptor where stdout has one (so a
    library's handler bound to sys.stdout and a child process move too), else (a stream of Python's alone, as a
    test's capture) for `print`. Any other `path` changes nothing."""
    global _stream
    if not is_stdout(path):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    out, err = _fileno(sys.stdout), _fileno(sys.stderr)
    if out is None or err is None:
        _stream = sys.stdout
        try:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        finally:
            _stream = None
        return
    saved = os.dup(out)
    os.dup2(err, out)
    _stream = open(saved, "w", encoding="utf-8", closefd=False)
    try:
        yield
    finally:
        sys.stdout.flush()
        _stream.close()
        _stream = None
        os.dup2(saved, out)
        os.close(saved)
