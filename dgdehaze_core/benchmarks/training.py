"""`dgdehaze bench train`: what one training step of a recipe costs on this machine, and how many operations it
dispatches.

On a GPU a small model's step is bound by launching its many small operations from Python, not by arithmetic:
`dispatched_ops` (the tensor operations one step sends to PyTorch's dispatcher, the forward, the backward and the
optimizer's) counts that work wherever the benchmark runs, and `step_ms_median` measures it. The step is the
trainer's own (`Trainer.step`) on random crops of the recipe's crop size, halfway through its schedule (warm-up
and the teacher's ramp behind it); no training data is read and nothing is written.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from dgdehaze_core.benchmarks.networks import BenchSettings, Row
from dgdehaze_core.benchmarks.timing import count_dispatched
from dgdehaze_core.training.recipe import load_recipe
from dgdehaze_core.training.trainer import Trainer


def bench_training(recipe_path: Path, batches: list[int], device: str, settings: BenchSettings) -> dict[str, Row]:
    """One row per batch size, `train/NAME@DEVICE/batchB`: the step's median and p95 time, steps and crops (clear
    and hazy) per second, and the operations one step dispatches."""
    rows: dict[str, Row] = {}
    for batch in batches:
        recipe = load_recipe(recipe_path, [f"batch_size={batch}"])
        with tempfile.TemporaryDirectory(prefix="dgdehaze-bench-train-") as run_dir:
            rows.update(_bench_batch(Trainer(recipe, run_dir, device=device), batch, settings))
    return rows


def _bench_batch(trainer: Trainer, batch: int, settings: BenchSettings) -> dict[str, Row]:
    recipe = trainer.recipe
    trainer.iteration = recipe.iterations // 2
    generator = torch.Generator().manual_seed(recipe.seed)
    shape = (batch, 3, recipe.crop_size, recipe.crop_size)
    clear = torch.rand(shape, generator=generator)
    if trainer.clear_depth is not None:  # crops of a prior-depth source: the depth plane is NaN
        clear = torch.cat([clear, torch.full((batch, 1, *shape[2:]), float("nan"))], 1)
    hazy = torch.rand(shape, generator=generator)
    clear, hazy = clear.to(trainer.device), hazy.to(trainer.device)

    def step() -> None:
        trainer.step(clear, hazy)  # its figures for the log are read from the device: the step has finished

    timing = settings.measure(step)
    steps_per_s = timing["fps"]
    return {f"train/{recipe.name}@{trainer.device.type}/batch{batch}": {
        "step_ms_median": timing["latency_ms_median"], "step_ms_p95": timing["latency_ms_p95"],
        "steps_per_s": steps_per_s, "crops_per_s": steps_per_s * 2 * batch,
        "dispatched_ops": float(count_dispatched(step)), "runs": timing["runs"]}}
