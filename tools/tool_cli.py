"""What the scripts in tools/ share as command lines: one-line errors instead of tracebacks, and the checks an output
path must pass before any work is done.

A tool decorates its `main(argv)` with `one_line_errors` and ends with `sys.exit(main())`; it checks each output with
`check_image_output` or `atomic_files.check_json_output` (and `atomic_files.refuse_inside` where an output must stay
out of an input folder) right after parsing its arguments, so that a typo in a path costs no model load and no pass
over the data. A tool imports the modules that import torch (which takes seconds) inside `main`, after those
checks, so that a refusal comes at once.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Callable, Iterable

import cv2

from dgdehaze_core.datasets.paths import REPO_DIR, shared_data_dir
from dgdehaze_core.exits import report_errors
from dgdehaze_core.io.atomic_files import check_writable_file, refuse_input_as_output

DAWN_FOG_SPLIT = REPO_DIR / "data" / "splits" / "dawn-fog.yaml"
"""Which DAWN fog photos learn, choose and judge; named from the repository so a tool finds it from any folder."""

Main = Callable[[list[str] | None], int | None]
"""A tool's entry point: its arguments (None: sys.argv[1:]) -> its exit status (None as 0)."""


def one_line_errors(main: Main) -> Callable[[list[str] | None], int]:
    """`main` returning its exit status, with logging set up as `dgdehaze` sets it up (INFO, `LEVEL name: text`).

    Bad input or an output that cannot be written prints `TOOL: error: MESSAGE` on one line of stderr and returns 2
    instead of a traceback, Ctrl-C 130 and SIGTERM 143, as `dgdehaze` does (`dgdehaze_core.exits.report_errors`)."""
    tool = Path(main.__code__.co_filename).name

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return report_errors(tool, lambda: main(argv))

    return run


def check_image_output(path: Path, flag: str, inputs: Iterable[Path] = ()) -> Path:
    """`path` when OpenCV writes an image of its suffix's format there and it is none of `inputs`; else ValueError
    (a suffix such as .txt, a folder, an input) or OSError (a place that takes no new file), before any work."""
    if not cv2.haveImageWriter(str(path)):
        raise ValueError(f"{flag} {path}: OpenCV writes no image format of suffix {path.suffix!r}: give a .png or "
                         ".jpg file")
    check_writable_file(path, flag)
    refuse_input_as_output(path, inputs, flag)
    return path


def shared_data(given: Path | None, *parts: str) -> Path:
    """`given` (a tool's --data) as it is, else `parts` under the shared data folder ($DGDEHAZE_DATA, else
    ../shared/data beside the repository, from whichever folder the tool runs); FileNotFoundError without one."""
    if given is not None:
        return given
    shared = shared_data_dir()
    if shared is None:
        raise FileNotFoundError("no shared data folder: give --data, set DGDEHAZE_DATA or provide ../shared/data")
    return shared.joinpath(*parts)
