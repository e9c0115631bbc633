"""The `dgdehaze` command line: one subcommand per module in `dgdehaze_core.commands`."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from pathlib import Path

from dgdehaze_core import __version__
from dgdehaze_core.exits import report_errors, sigterm_interrupts, skip_exit_collection, stopped
from dgdehaze_core.io.atomic_files import JsonRefused, check_json_output, refuse_input_as_output, refusing_json
from dgdehaze_core.io.json_stdout import is_stdout, json_on_stdout
from dgdehaze_core.process_memory import keep_frame_memory

COMMANDS = {"dehaze": "dehaze", "bench": "bench", "bag-eval": "bag_eval", "train": "train",
            "train-depth": "train_depth", "eval": "evaluate", "export": "export"}
"""Command name -> module of `dgdehaze_core.commands`, each with `register(subparsers)` that sets `func` on its
parser."""
OUTPUT_OPTIONS = ("out", "export")
"""The path options that name what a command writes (the others name what it reads), as their namespace keys."""
VERBOSE_HELP = "log debug messages, and show an error whole, with its traceback"


def _unavailable(subparsers: argparse._SubParsersAction, command: str, missing: str) -> None:
    """A command whose module needs a package this installation lacks (rosbags on a training machine, say): it
    stays listed, and running it says what to install, while every other command works."""
    parser = subparsers.add_parser(command, help=f"(unavailable: needs the Python package {missing!r})",
                                   add_help=False)
    parser.add_argument("arguments", nargs=argparse.REMAINDER)

    def refuse(args: argparse.Namespace) -> int:
        raise RuntimeError(f"this command needs the Python package {missing!r}, which is not installed here "
                           "(pip install -r requirements.txt installs every command's packages)")
    parser.set_defaults(func=refuse)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dgdehaze", description="Depth-guided dehazing for robot cameras.")
    parser.add_argument("--version", action="version", version=f"dgdehaze {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, module in COMMANDS.items():
        try:
            importlib.import_module(f"dgdehaze_core.commands.{module}").register(subparsers)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.split(".")[0] == "dgdehaze_core":
                raise
            _unavailable(subparsers, command, exc.name.split(".")[0])
    for command_parser in subparsers.choices.values():
        # after the command too, where an error's "run with -v" has it added; unset there, the one before holds
        command_parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                    help=VERBOSE_HELP)
    return parser


def _path_arguments(args: argparse.Namespace) -> dict[str, list[Path]]:
    """The command's path-valued options and arguments but --json, by name."""
    found: dict[str, list[Path]] = {}
    for name, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        paths = [item for item in values if isinstance(item, Path)]
        if name != "json" and paths:
            found[name] = paths
    return found


FRAME_COMMANDS = ("dehaze", "eval", "bag-eval", "bench")
"""The commands that take frame after frame and keep their buffers from one to the next (`keep_frame_memory`);
training and export, whose memory is no frame's, keep glibc's own rule."""


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors from bad input or an unwritable output (a read-only or full disk) print one line
    and exit 2 instead of a traceback. Ctrl-C or SIGTERM while the commands' libraries load (torch: seconds) exits
    130 or 143 with one line, as during the command."""
    try:
        with sigterm_interrupts():
            parser = build_parser()
    except KeyboardInterrupt as exc:
        return stopped("dgdehaze", exc)
    args = parser.parse_args(argv)
    skip_exit_collection()
    if args.command in FRAME_COMMANDS:
        keep_frame_memory()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return run_parsed(args)


def run_parsed(args: argparse.Namespace) -> int:
    """Run the command of the parsed `args` (`args.func`) as `main` does, with its checks and exit status: for a
    caller that parsed them itself (`results_record`, which runs eval with a `func` that keeps what it returns).
    With `--json -` the figures' JSON is all it writes to stdout; all else it prints there goes to stderr."""
    json_path = getattr(args, "json", None)
    refused = False

    def run() -> int | None:
        nonlocal refused
        try:
            if json_path is not None:
                check_json_output(json_path)
                with refusing_json():
                    for name, paths in _path_arguments(args).items() if not is_stdout(json_path) else ():
                        refuse_input_as_output(json_path, paths, "--json",
                                               what=f"--{name}" if name in OUTPUT_OPTIONS else "the input")
            return args.func(args)
        except JsonRefused:  # here and in the commands' own checks of their --json
            refused = True
            raise

    started = time.time()
    with json_on_stdout(json_path):
        status = report_errors(f"dgdehaze {args.command}", run, verbose=args.verbose)
    if status != 0 and json_path is not None and not refused and not is_stdout(json_path):
        _say_json_is_earlier(f"dgdehaze {args.command}", Path(json_path), started)
    return status


def _say_json_is_earlier(label: str, path: Path, started: float) -> None:
    """After a failed run, say on stderr when its --json `path` was written before `started` (an earlier run's
    figures, which a script would take for this run's). The file is left as it is: nothing is lost. Nothing is said
    of a --json that is no file (a folder, refused for that before any work)."""
    try:
        written = path.stat().st_mtime
    except OSError:
        return
    if path.is_file() and written < started:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(written))
        print(f"{label}: --json {path} was not written by this run: it holds what it held before (last written "
              f"{when})", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
