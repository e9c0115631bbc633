"""`dgdehaze train-depth --config training/depth_kitti.yaml`: a depth network learned from clear video alone."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from dgdehaze_core.commands.train import add_run_arguments, check_outputs, prepare_run, report
from dgdehaze_core.training.depth_recipe import load_depth_recipe
from dgdehaze_core.training.depth_trainer import DepthTrainer, export_clear_depth

LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-depth", help="train a depth network self-supervised on calibrated clear video (monodepth2-style)",
        description="Train a depth and a pose network from consecutive frames (no ground-truth depth) with a YAML "
                    "recipe (training/depth_*.yaml). Writes last.pt (resumable, and readable by dgdehaze eval as "
                    "a depth method), train.csv and val.csv to --out; Ctrl-C or SIGTERM stops after the step under way "
                    "and saves last.pt.")
    add_run_arguments(parser, "training/depth_kitti.yaml", "smoothness=0.01",
                      "when done, write the depth network alone here (outside the run folder), e.g. "
                      "dgdehaze_core/weights/clear_depth_kitti.pt")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    recipe = load_depth_recipe(args.config, prepare_run(args))
    run_dir = args.out or Path("runs") / recipe.name  # under the working folder, as --help says
    check_outputs(args, run_dir, (".pt",), "a clear-depth network")
    result = DepthTrainer(recipe, run_dir, device=args.device, resume=args.resume).train(
        progress=not args.no_progress)

    def export() -> None:
        export_clear_depth(result.last_checkpoint, args.export)
        LOG.info("exported the depth network of %s to %s", result.last_checkpoint, args.export)
    report(result.iterations, result.first_loss, result.last_loss, result.validation, "last",
           f"trained {recipe.name} in {result.run_dir} (last: the LiDAR validation of last.pt, for the record)",
           args.json, export if args.export is not None else None, args.export)
    return 0
