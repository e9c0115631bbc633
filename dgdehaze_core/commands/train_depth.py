"""`dgdehaze train-depth --config training/depth_kitti.yaml`: a depth network learned from clear video alone."""
from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path

import torch

from dgdehaze_core.data_paths import REPO_DIR
from dgdehaze_core.training.depth_recipe import load_depth_recipe
from dgdehaze_core.training.depth_trainer import DepthTrainer, export_clear_depth

LOG = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-depth", help="train a depth network self-supervised on calibrated clear video (monodepth2-style)",
        description="Train a depth and a pose network from consecutive frames (no ground-truth depth) with a YAML "
                    "recipe (training/depth_*.yaml). Writes last.pt (resumable, and readable by dgdehaze eval as "
                    "a depth method), train.csv and val.csv to --out; Ctrl-C or SIGTERM saves last.pt first.")
    parser.add_argument("--config", type=Path, required=True, help="the recipe, e.g. training/depth_kitti.yaml")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<recipe name>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the recipe's)")
    parser.add_argument("--iterations", type=int, default=None, help="override the recipe's iteration count")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, e.g. --set smoothness=0.01 (repeatable)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: library default)")
    parser.add_argument("--export", type=Path, default=None,
                        help="when done, write the depth network alone here, e.g. dgdehaze_core/weights/"
                             "depth_kitti.pt")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    parser.set_defaults(func=run)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.iterations is not None:
        if args.iterations < 1:
            raise ValueError("--iterations must be at least 1")
        overrides.append(f"iterations={args.iterations}")
    if args.threads < 0:
        raise ValueError("--threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = load_depth_recipe(args.config, overrides)
    run_dir = args.out or REPO_DIR / "runs" / recipe.name
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    result = DepthTrainer(recipe, run_dir, device=args.device, resume=args.resume).train(
        progress=not args.no_progress)
    LOG.info("done: %d iterations in %s (loss %.4f -> %.4f)", result.iterations, result.run_dir, result.first_loss,
             result.last_loss)
    if args.export is not None:
        export_clear_depth(result.last_checkpoint, args.export)
        LOG.info("exported the depth network of %s to %s", result.last_checkpoint, args.export)
    return 0
