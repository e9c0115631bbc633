"""argparse types shared by the commands."""
from __future__ import annotations

import argparse
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
