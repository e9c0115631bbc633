"""Recording one evaluation for docs/RESULTS.md: `dgdehaze eval ARGS --json docs/results/NAME.json` run here, and
NAME.meta.json beside it: the command, the code's commit, when it ran, how long it took, the machine's load, and the
weights each method ran (file, sha256, training iterations and commit, and the weights a fine-tune started from), as
the eval's own read of each file found them when it loaded it."""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.evaluation.results_tables import FIGURES_SHA256, RESULTS_DIR
from dgdehaze_core.io.atomic_files import atomic_write_text
from dgdehaze_core.io.file_digest import file_sha256

if TYPE_CHECKING:
    from dgdehaze_core.evaluation.methods import Method

LOG = logging.getLogger(__name__)


def parsed_eval_args(eval_args: list[str]) -> argparse.Namespace:
    """`eval_args` as `dgdehaze eval` reads them (any spelling it takes: `--opt value`, `--opt=value`, repeats);
    ValueError for arguments it refuses."""
    from dgdehaze_core.cli import build_parser

    try:
        return build_parser().parse_args(["eval", *eval_args])
    except SystemExit:  # argparse printed why
        raise ValueError(f"dgdehaze eval refuses the arguments {shlex.join(eval_args)}") from None


def detector_of(args: argparse.Namespace) -> str | None:
    """Which detector an eval with the parsed `args` runs, and how (`detection.precision`); None when it detects
    nothing."""
    from dgdehaze_core.commands.evaluate import DETECTING, parse_measures
    from dgdehaze_core.datasets.paths import DEFAULT_DETECTOR
    from dgdehaze_core.detection.precision import runs_float_rebuild

    if not set(DETECTING) & set(parse_measures(args.measure)):
        return None
    weights = Path(args.detector or DEFAULT_DETECTOR)
    how = "its float rebuild" if runs_float_rebuild(weights, args.detector_precision, "cpu") else "as it is"
    return f"`{_shown(weights)}`, {how} (--detector-precision {args.detector_precision})"


def _weights_of(methods: Sequence[Method]) -> dict[str, dict[str, Any]]:
    """The weights each method of an eval ran, by method name: the record it kept of the file as it loaded it
    (`Method.weights`: sha256 and what the file says of its training or export) under the file's path as shown
    here."""
    from dgdehaze_core.models import MODEL_CONFIGS, shipped_weights_path

    weights = {}
    for method in methods:
        if method.weights is not None:
            source = method.spec.source
            path = shipped_weights_path(source) if source in MODEL_CONFIGS else Path(source)
            weights[method.name] = {**method.weights, "path": _shown(path)}  # the record's file name, shown whole
    return weights


def _shown(path: Path) -> str:
    """A path relative to the repository where it lies inside it (or beside it, as ../shared/data does)."""
    resolved = path.resolve()
    for base, prefix in ((REPO_DIR, ""), (REPO_DIR.parent, "../")):
        if resolved.is_relative_to(base):
            return prefix + str(resolved.relative_to(base))
    return str(path)


def record(name: str, eval_args: list[str], results_dir: Path = RESULTS_DIR) -> int:
    """Run `dgdehaze eval EVAL_ARGS --json results_dir/NAME.json` and write NAME.meta.json; eval's exit code. The
    figures land in NAME.json only after their provenance is in NAME.meta.json: never figures without it."""
    from dgdehaze_core.cli import run_parsed
    from dgdehaze_core.commands.evaluate import evaluate
    from dgdehaze_core.training.run_files import source_commit

    parsed = parsed_eval_args(eval_args)
    if parsed.json is not None:
        raise ValueError("record writes --json itself; leave it out of the eval arguments")
    json_path = results_dir / f"{name}.json"
    results_dir.mkdir(parents=True, exist_ok=True)
    command = ["dgdehaze", "eval", *eval_args, "--json", _shown(json_path)]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    commit = source_commit()  # the code that runs: a commit made while eval runs did not make its figures
    load_before = os.getloadavg()[0]
    begin = time.perf_counter()
    figures = results_dir / f".{name}.unrecorded.json"  # eval's own --json is written atomically
    ran: list[Method] = []
    eval_run = argparse.Namespace(**{**vars(parsed), "json": figures,
                                     "func": lambda args: ran.extend(evaluate(args))})  # keeps the methods it ran
    try:
        code = run_parsed(eval_run)
        seconds = time.perf_counter() - begin
        if code != 0:
            return code
        now = source_commit()
        if now != commit and not commit.endswith("+dirty"):
            LOG.warning("the code changed while %s ran (commit %s at its start, %s now): recorded as %s+dirty",
                        name, commit, now, commit)
            commit += "+dirty"
        _write_meta(results_dir / f"{name}.meta.json", command, commit, started, seconds, load_before, parsed,
                    _weights_of(ran), file_sha256(figures))
        os.replace(figures, json_path)  # a stop before this leaves a meta that names other figures: refused on read
    finally:
        figures.unlink(missing_ok=True)
    LOG.info("recorded %s in %.0f s", name, seconds)
    return 0


def _write_meta(path: Path, command: list[str], commit: str, started: str, seconds: float, load_before: float,
                args: argparse.Namespace, weights: dict[str, dict[str, Any]], figures_sha256: str) -> None:
    data = [_shown(Path(folder)) for folder in args.dataset or []]
    data += [f"--include {value}" for value in args.include or []]
    data += [f"--subset {value}" for value in args.subset or []]
    data += [f"--limit {args.limit}"] if args.limit else []
    meta = {"command": shlex.join(command), "commit": commit, "started": started,
            "seconds": round(seconds, 1), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU",
            "data": data or ["every applicable set in ../shared/data"],
            "weights": weights, FIGURES_SHA256: figures_sha256}
    detector = detector_of(args)
    if detector is not None:
        meta["detector"] = detector
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")
