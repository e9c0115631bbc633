"""argparse types shared by the commands."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable


def with_reason(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` for argparse's type=: its ValueError's reason reaches the user (argparse prints only "invalid
    value" for a ValueError)."""
    def parsed(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parsed


def path_argument(text: str) -> Path:
    """A path for argparse's type=: an empty one (an unset shell variable, `--out "$OUT"`) is refused, where Path("")
    would be the current folder, read or written into without a word."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (an unset variable?): give a file or folder, . for this one")
    return Path(text)
