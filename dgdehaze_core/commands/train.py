"""`dgdehaze train --config training/lite.yaml`: self-supervised training from unpaired clear and hazy images.

Under `torchrun --nproc_per_node=N -m dgdehaze_core.cli train ...` the same recipe trains data-parallel on N
processes (training/distributed.py, docs/SCALING.md)."""
from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from dgdehaze_core.commands.argument_types import path_argument
from dgdehaze_core.inference.provenance import weights_line, weights_record
from dgdehaze_core.io.atomic_files import (check_writable_file, check_writable_place, refuse_input_as_output,
                                           refuse_inside, refusing_json)
from dgdehaze_core.io.json_stdout import is_stdout
from dgdehaze_core.io.tables import emit, write_json
from dgdehaze_core.models import CHECKPOINT_SUFFIXES
from dgdehaze_core.training.initial_weights import init_weights_file
from dgdehaze_core.training.recipe import Recipe, load_recipe
from dgdehaze_core.training.run_control import RUN_FILES, refuse_another_run_s_file
from dgdehaze_core.training.trainer import Trainer, export_weights

LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train the dehazer and depth network from unpaired clear and hazy images",
        description="Train a model from a YAML recipe (training/*.yaml). Writes last.pt (resumable), best.pt, "
                    "train.csv and val.csv to --out; Ctrl-C or SIGTERM stops after the step under way and saves "
                    "last.pt (a second one stops at once, without saving).")
    add_run_arguments(parser, "training/lite.yaml", "loss.dark_channel=0",
                      "when done, write the last iteration's weights here (no optimiser state; outside the run "
                      "folder), e.g. dgdehaze_core/weights/dgdehaze_lite.pt; best.pt stays in the run folder",
                      " and the same clear-depth network file")
    parser.set_defaults(func=run)


def add_run_arguments(parser: argparse.ArgumentParser, recipe_example: str, set_example: str,
                      export_help: str, resume_inputs: str = "") -> None:
    """The options every training command takes: recipe, run folder, resume, device, overrides, threads, export;
    `resume_inputs` ends --resume's help with what else a resumed run needs unchanged."""
    parser.add_argument("--config", type=path_argument, required=True, help=f"the recipe, e.g. {recipe_example}")
    parser.add_argument("--out", type=path_argument, default=None,
                        help="run folder (default: runs/<recipe name> in the working folder)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last.pt, with the same recipe (only iterations, "
                             "never below the saved one, device, num_workers and the *_every fields may change)"
                             f"{resume_inputs}")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the recipe's)")
    parser.add_argument("--iterations", type=int, default=None, help="override the recipe's iteration count")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override a recipe field, e.g. --set {set_example} (repeatable)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: library default)")
    parser.add_argument("--export", type=path_argument, default=None, help=export_help)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.add_argument("--json", type=path_argument, default=None,
                        help="also write the run's figures (loss, validation) to this JSON file (-: to stdout, "
                             "the table going to stderr)")


def say_export_replaces(export: Path | None, message: str) -> None:
    """Warn `message` (its `{path}`: `export`; `{held}`: ", which holds" and what `weights_line` says of the
    weights there, where it says anything) when the --export file `export` exists: a run replaced the weights
    there, perhaps those a node runs (docs/TRAINING.md, step 5), without a word."""
    if export is None or not export.is_file():
        return
    held = ""
    with contextlib.suppress(ValueError, OSError):  # not a weights file this package reads
        held = f", which holds {weights_line(weights_record(export))}"
    LOG.warning(message.format(path=export, held=held))


def report(iterations: int, first_loss: float, last_loss: float, validation: Mapping[str, Mapping[str, float]],
           validation_prefix: str, title: str, json_path: str | None, export: Callable[[], None] | None,
           export_path: Path | None = None) -> None:
    """Print the run's figures as a table (row `loss`, and a row per validation set under `validation_prefix`),
    then run `export` (--export, writing `export_path`, with a warning when that replaces a file) if given, and only
    then write the figures to `json_path` if given: an export that
    fails (a full disk) leaves no --json of this run beside exit status 2, and its OSError says that the run is
    saved and that a resume (which finds the run at its end) writes the export again."""
    table: dict[str, dict[str, object]] = {"loss": {"iterations": iterations, "first": first_loss,
                                                    "last": last_loss}}
    table.update({f"{validation_prefix}/{name}": dict(figures) for name, figures in validation.items()})
    emit(table, title)
    if export is not None:
        try:
            say_export_replaces(export_path, "replacing {path}{held}")
            export()
        except OSError as exc:
            raise type(exc)(f"{exc}; the run is saved: the same command with --resume writes the export again") \
                from None
    if json_path is not None:
        write_json(json_path, table)


def prepare_run(args: argparse.Namespace) -> list[str]:
    """Check the common options and set torch's threads; the recipe overrides to apply. SIGTERM stops a run as
    `dgdehaze` handles it (`exits.report_errors`: exit 143), after the step under way once training has begun."""
    overrides = list(args.overrides)
    if args.iterations is not None:
        if args.iterations < 1:
            raise ValueError("--iterations must be at least 1")
        overrides.append(f"iterations={args.iterations}")
    if args.threads < 0:
        raise ValueError("--threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    return overrides


def check_outputs(args: argparse.Namespace, run_dir: Path, export_suffixes: Sequence[str] = CHECKPOINT_SUFFIXES,
                  export_kind: str = "a weights file", kept_inputs: Mapping[str, str | Path] | None = None) -> None:
    """Before any training: the run folder must take new files, --json must not be one of the files the run writes
    there (a fresh run's do not exist yet, so no other check refuses them: its figures would replace last.pt), and
    --export must be a file that can be written under a name of `export_suffixes` (what `export_kind` is loaded
    from), not the recipe nor one of `kept_inputs` (what each is: its file, which the run reads, and --resume or
    the judging of the run's model needs again), outside the run folder (where it would replace last.pt, which
    --resume needs, or best.pt) and not another run's checkpoint; a warning when it exists (`say_export_replaces`)."""
    check_writable_place(run_dir, "--out", inside=True)
    if args.json is not None and not is_stdout(args.json):
        with refusing_json():
            refuse_input_as_output(args.json, [run_dir / name for name in (*RUN_FILES, ".lock", "tensorboard")],
                                   "--json", what="the run's own")
    if args.export is None:
        return
    for what, path in {"--config": args.config, **(kept_inputs or {})}.items():
        refuse_input_as_output(args.export, [path], "--export", what=what)
    refuse_inside(args.export, run_dir, "--export", "the run folder", " (last.pt, best.pt)")
    refuse_another_run_s_file(args.export, "--export")
    check_writable_file(args.export, "--export", export_suffixes, export_kind)
    say_export_replaces(args.export, "--export {path} exists{held}: it is replaced when the run ends (give "
                                     "another --export to keep it)")


def _kept_inputs(recipe: Recipe) -> dict[str, Path]:
    """The recipe's files that --export must not replace: the clear-depth network (a resume reads it again) and the
    weights the run starts from (the shipped lite, for finetune.yaml: the model the adapted one is judged against)."""
    kept = {"the recipe's clear_depth network": Path(recipe.clear_depth)} if recipe.clear_depth else {}
    if recipe.init_weights:
        try:
            kept["the recipe's init_weights"] = init_weights_file(recipe.init_weights)
        except FileNotFoundError:  # a model that ships no weights: the run says so before its first step
            pass
    return kept


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.config, prepare_run(args))
    run_dir = args.out or Path("runs") / recipe.name  # under the working folder, as --help says
    check_outputs(args, run_dir, kept_inputs=_kept_inputs(recipe))
    trainer = Trainer(recipe, run_dir, device=args.device, resume=args.resume)
    result = trainer.train(progress=not args.no_progress)
    if not trainer.rank.writer:  # a torchrun job: rank 0 reports and exports
        return 0

    def export() -> None:
        export_weights(result.last_checkpoint, args.export)
        LOG.info("exported %s to %s", result.last_checkpoint, args.export)
    report(result.iterations, result.first_loss, result.last_loss, result.best_validation, "best",
           f"trained {recipe.name} in {result.run_dir} (best: the validation of best.pt)", args.json,
           export if args.export is not None else None, args.export)
    return 0
