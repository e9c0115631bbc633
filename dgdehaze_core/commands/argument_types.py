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
    would be the current folder, read or written into without a word; a leading ~ the shell left (`--out=~/x`, a
    quoted '~/x') is the home folder, as in a recipe or a node parameter, not a folder named ~."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path (an unset variable?): give a file or folder, . for this one")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~name of a user this machine does not have
        raise argparse.ArgumentTypeError(f"{text}: no home folder for {text.split('/')[0]}") from None
