"""The self-supervised depth training loop (`dgdehaze train-depth`): depth and pose networks from video alone.

Each iteration draws a batch of frame tuples (a target and its neighbours), predicts the target's disparity and
the motion to each neighbour, warps the neighbours into the target's view and minimises monodepth2's loss
(`self_supervised_depth`): per-pixel minimum reprojection with auto-masking, plus edge-aware smoothness; the
depth is scale-normalised before warping, and the reprojection is averaged over `scales` halvings.
No ground-truth depth is read for training; the recipe's `validation` folders (KITTI with LiDAR) are scored every
`val_every` iterations into val.csv, for the record only (nothing is chosen on them).

Writes to the run folder, atomically: `last.pt` (resumable; it is also a clear-depth checkpoint that
`load_clear_depth` and `dgdehaze eval` read; it keeps the frames' names and sizes, so a resume refuses changed
video), `train.csv`, `val.csv` and `recipe.yaml` (a fresh run's with its first `last.pt`). The shipped form of the
weights (no optimiser, no pose network) comes from `export_clear_depth`.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from dgdehaze_core.datasets.splits import refuse_judging_files
from dgdehaze_core.devices import resolve_device
from dgdehaze_core.evaluation.depth_datasets import DepthSet, kitti_depth_files, load_kitti
from dgdehaze_core.evaluation.depth_eval import depth_errors
from dgdehaze_core.io.checkpoints import read_checkpoint, write_checkpoint
from dgdehaze_core.models.clear_depth import (CHECKPOINT_KIND, ClearDepthNet, ClearDepthPredictor,
                                              load_clear_depth, save_clear_depth)
from dgdehaze_core.models.pose_net import PoseNet
from dgdehaze_core.training.depth_recipe import DepthRecipe
from dgdehaze_core.training.self_supervised_depth import (downscale_intrinsics, inverse_warp, reprojection_loss,
                                                          scale_normalised_depth, smoothness_loss)
from dgdehaze_core.training.run_control import (MAPPING, TENSOR, WHOLE_NUMBER, FieldType, RunHistory,
                                                StepBoundaryStop, StepTally, check_finite_loss,
                                                check_finite_weights, file_fingerprint, load_optimizer_state,
                                                load_resumable, loader_workers, open_run_folder, quiet_loader_worker,
                                                run_folder_lock, seed_everything, step_figures)
from dgdehaze_core.training.run_files import CsvLog, hardware_name, keep_run_files, write_recipe
from dgdehaze_core.training.survivable_failures import (OUT_OF_MEMORY_REMEDY, LoaderWorkers, StepStart,
                                                        ending_on_survived_failure, moving_batch,
                                                        survived_out_of_memory, undone_on_out_of_memory,
                                                        validation_cut_off)
from dgdehaze_core.training.video_frames import FrameTuples, VideoSequence, load_sequences

LOG = logging.getLogger(__name__)

LOSS_COLUMNS = ("total", "reprojection", "smoothness", "automasked")
VAL_COLUMNS = ("absrel", "rmse_log", "delta1")
LAST_PT_FIELDS: dict[str, FieldType] = {
    "training.pose": MAPPING, "training.torch_rng": TENSOR, "training.cuda_rng": ((torch.Tensor, type(None)),
                                                                                 "a tensor or None"),
    "meta.validation": MAPPING, "meta.validation_iteration": WHOLE_NUMBER}
"""The fields of last.pt this trainer's resume reads beside run_control's RESUMED_FIELDS (`load_resumable`)."""


@dataclass
class DepthTrainResult:
    run_dir: Path
    iterations: int
    last_checkpoint: Path
    first_loss: float = math.nan
    last_loss: float = math.nan
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    """The last validation's figures per folder (absrel, rmse_log, delta1), empty without validation."""


class DepthTrainer:
    """Trains a `DepthRecipe` into `run_dir`."""

    def __init__(self, recipe: DepthRecipe, run_dir: str | Path, device: str | None = None,
                 resume: bool = False) -> None:
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device or recipe.device)
        self.resume = resume
        seed_everything(recipe.seed)
        self.depth = ClearDepthNet(recipe.architecture).to(self.device)
        self.pose = PoseNet(recipe.pose_widths).to(self.device)
        self.optimizer = torch.optim.Adam([*self.depth.parameters(), *self.pose.parameters()], lr=recipe.lr,
                                          foreach=True)
        self.iteration = 0
        self.last_validation: dict[str, dict[str, float]] = {}
        self.last_validation_iteration = 0
        self.validation_sets: list[DepthSet] = []
        self.history = RunHistory()
        """Its commit, resumes, seconds and training frames, saved in its checkpoints."""
        cuda = ([torch.cuda.default_generators[torch.cuda.current_device() if self.device.index is None
                                               else self.device.index]] if self.device.type == "cuda" else [])
        self.step_start = StepStart([self.depth, self.pose], [torch.default_generator, *cuda])
        """What a step's forward pass moves of what last.pt holds, put back when it runs out of memory."""
        self.loader_workers = LoaderWorkers()

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def input_size(self) -> tuple[int, int]:
        return self.recipe.width, self.recipe.height

    def meta(self) -> dict[str, Any]:
        return {"recipe": self.recipe.name, "recipe_fields": self.recipe.as_dict(), "iterations": self.iteration,
                "validation": self.last_validation, "validation_iteration": self.last_validation_iteration,
                "hardware": hardware_name(self.device), **self.history.meta(), "torch": str(torch.__version__),
                "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    # -- checkpoints -------------------------------------------------------------------------------------------
    def save_last(self) -> Path:
        """The resumable state, atomically; it is a clear-depth checkpoint with a `training` section added. OSError
        naming last.pt when it cannot be written (a full disk: ENOSPC)."""
        state = {"kind": CHECKPOINT_KIND, "architecture": self.recipe.architecture.as_dict(),
                 "input_size": list(self.input_size),
                 "state_dict": {k: v.detach().cpu() for k, v in self.depth.state_dict().items()},
                 "meta": self.meta(),
                 "training": {"iteration": self.iteration, "pose": self.pose.state_dict(),
                              "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                              "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
                              "elapsed": self.history.elapsed, **self.history.losses(), "data": self.history.data,
                              "recipe": self.recipe.as_dict()}}
        return write_checkpoint(state, self.last_path)

    def load_last(self) -> None:
        state = load_resumable(self.last_path, "depth training", self.recipe.as_dict(), LAST_PT_FIELDS)
        training = state["training"]
        self.depth.load_state_dict(state["state_dict"])
        self.pose.load_state_dict(training["pose"])
        load_optimizer_state(self.optimizer, training["optimizer"])
        torch.set_rng_state(training["torch_rng"])
        if training.get("cuda_rng") is not None and self.device.type == "cuda":  # automasking's jitter draws on it
            torch.cuda.set_rng_state(training["cuda_rng"], self.device)
        self.iteration = int(training["iteration"])
        self.last_validation = state["meta"].get("validation", {})
        self.last_validation_iteration = int(state["meta"].get("validation_iteration", 0))
        self.history.resume(state)
        LOG.info("resumed %s at iteration %d", self.last_path, self.iteration)

    # -- one iteration -----------------------------------------------------------------------------------------
    def learning_rate(self) -> float:
        decayed = self.iteration >= int(self.recipe.lr_decay_at * self.recipe.iterations)
        return self.recipe.lr * (self.recipe.lr_decay if decayed else 1.0)

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The loss of one batch of tuples (frames/inputs (B, F, 3, H, W), frame 0 the target)."""
        frames, inputs, intrinsics = batch["frames"], batch["inputs"], batch["intrinsics"]
        disparity = self.depth.disparity(inputs[:, 0])
        poses = [self.pose.between(inputs[:, 0], inputs[:, index + 1], offset < 0)
                 for index, offset in enumerate(self.recipe.frame_offsets)]
        losses = []
        for scale in range(self.recipe.scales):
            factor = 2 ** scale
            shrunk = F.avg_pool2d(frames.flatten(0, 1), factor).unflatten(0, frames.shape[:2]) if factor > 1 else frames
            depth = scale_normalised_depth(self.depth.depth_from_disparity(
                F.avg_pool2d(disparity, factor) if factor > 1 else disparity))
            camera = downscale_intrinsics(intrinsics, factor) if factor > 1 else intrinsics
            warped = [inverse_warp(shrunk[:, index + 1], depth, pose, camera) for index, pose in enumerate(poses)]
            sources = [shrunk[:, index] for index in range(1, frames.shape[1])]
            losses.append(reprojection_loss(shrunk[:, 0], warped, sources, automask=self.recipe.automask,
                                            min_reprojection=self.recipe.min_reprojection,
                                            alpha=self.recipe.ssim_weight))
        reprojection = torch.stack([loss.loss for loss in losses]).mean()
        smoothness = smoothness_loss(disparity, frames[:, 0])
        return {"total": reprojection + self.recipe.smoothness * smoothness, "reprojection": reprojection,
                "smoothness": smoothness, "automasked": 1.0 - losses[0].mask.mean()}

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimisation step; returns the loss terms and the learning rate it ran at."""
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.depth.train()
        self.pose.train()
        with undone_on_out_of_memory(self.step_start, self.iteration):  # no weight has moved within
            terms = self.loss_terms(batch)
            check_finite_loss(terms["total"], terms, self.iteration, self.last_path)
            self.optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
        self.optimizer.step()
        check_finite_weights([*self.depth.parameters(), *self.pose.parameters()], self.iteration, self.last_path)
        self.iteration += 1
        return {**step_figures(terms), "lr": lr}

    # -- the loop ----------------------------------------------------------------------------------------------
    def _sequences(self) -> list[VideoSequence]:
        """The recipe's sequences, listed (no frame read); SplitError where a frame only judges."""
        recipe = self.recipe
        sequences = [sequence for source in recipe.sequences for sequence in load_sequences(source, recipe.camera)]
        refuse_judging_files([frame for sequence in sequences for frame in sequence.frames], "training video")
        return sequences

    def _dataset(self, sequences: list[VideoSequence]) -> FrameTuples:
        recipe = self.recipe
        return FrameTuples(sequences, recipe.width, recipe.height, recipe.frame_offsets, recipe.seed, recipe.augment,
                           recipe.min_frame_change, recipe.max_frame_change)

    def _batches(self, dataset: FrameTuples) -> Iterator[dict[str, torch.Tensor]]:
        recipe = self.recipe
        indices = range(self.iteration * recipe.batch_size, recipe.iterations * recipe.batch_size)
        loader = DataLoader(dataset, batch_size=recipe.batch_size, sampler=indices,
                            num_workers=loader_workers(recipe.num_workers), drop_last=True,
                            generator=torch.Generator().manual_seed(recipe.seed),  # not the global RNG
                            worker_init_fn=quiet_loader_worker)
        for batch in self.loader_workers.batches(loader):
            with moving_batch(self.iteration, self.device):
                moved = {key: value.to(self.device) for key, value in batch.items()}
            yield moved

    def validate(self) -> dict[str, dict[str, float]]:
        """Median-scaled AbsRel, RMSE(log), delta1 of the depth network on each validation folder's LiDAR."""
        predictor = ClearDepthPredictor(self.depth, self.input_size, self.device)
        table: dict[str, dict[str, float]] = {}
        for depth_set in self.validation_sets:
            rows = [depth_errors(predictor(sample.image), sample.depth, depth_set.max_depth)
                    for sample in depth_set.samples()]
            table[depth_set.name] = {key: float(np.mean([row[key] for row in rows])) for key in VAL_COLUMNS}
        return table

    def train(self, progress: bool = True) -> DepthTrainResult:
        """Run the recipe to its last iteration (from last.pt with `resume`)."""
        with run_folder_lock(self.run_dir):
            return self._train(progress)

    def _train(self, progress: bool) -> DepthTrainResult:
        recipe = self.recipe
        open_run_folder(self.run_dir, self.last_path, self.resume, self.load_last)
        sequences = self._sequences()
        # the frames' names and sizes are all in the listing: changed ones are refused before any frame is read
        self.history.record_data({"frames": file_fingerprint((f"{sequence.name}/{frame.name}", frame)
                                                             for sequence in sequences for frame in sequence.frames)},
                                 self.last_path if self.resume else None)
        refuse_judging_files([path for folder in recipe.validation for path in kitti_depth_files(folder)],
                             "validation LiDAR")
        # read whole now, as each validation uses every frame: a bad folder or frame fails before the training
        # frames are read (minutes for a long recording), as the judging drive does
        self.validation_sets = [load_kitti(folder).read_all() for folder in recipe.validation]
        dataset = self._dataset(sequences)
        if self.resume:  # a fresh run's recipe.yaml comes with its first checkpoint (`keep_run_files`)
            write_recipe(self.run_dir, recipe.as_recipe_file())
        resumed = self.iteration if self.resume else None
        train_log = CsvLog(self.run_dir / "train.csv", ["iteration", *LOSS_COLUMNS, "lr", "seconds"], resumed)
        val_log = CsvLog(self.run_dir / "val.csv", ["iteration", "set", *VAL_COLUMNS], resumed)
        bar = tqdm(total=recipe.iterations, initial=self.iteration, desc=f"train-depth {recipe.name}", unit="it",
                   disable=not progress, dynamic_ncols=True)
        LOG.info("training %s on %s (%s), %d -> %d iterations", recipe.name, self.device,
                 hardware_name(self.device), self.iteration, recipe.iterations)
        tally = StepTally(self.history)
        try:
            with StepBoundaryStop(last_path=self.last_path) as stop:

                def validate_here() -> None:
                    with survived_out_of_memory(f"the validation of iteration {self.iteration}", OUT_OF_MEMORY_REMEDY):
                        self._validate(val_log)
                    tally.pause_done()

                def steps() -> None:
                    if recipe.validation and self.resume and validation_cut_off(
                            self.iteration, self.last_validation_iteration, recipe.val_every, recipe.iterations):
                        validate_here()
                        save()  # with its figures (a run resumed at its last iteration takes no step to save them)
                    for batch in self._batches(dataset):
                        row = self.step(batch)
                        tally.step_done(row["total"])
                        bar.update(1)
                        done = self.iteration == recipe.iterations
                        if self.iteration % recipe.log_every == 0 or done:
                            bar.set_postfix(loss=f"{row['total']:.4f}")
                            train_log.write({"iteration": self.iteration, "seconds": round(self.history.elapsed, 2),
                                             **{k: round(v, 5) for k, v in row.items()}, "lr": row["lr"]})
                        if recipe.validation and (self.iteration % recipe.val_every == 0 or done):
                            validate_here()
                        if self.iteration % recipe.checkpoint_every == 0 or done:
                            with stop.saving():
                                self._checkpoint([train_log, val_log])
                        if not done:
                            stop.after_step(self.iteration, lambda: self._checkpoint([train_log, val_log]))

                def save() -> Path:
                    with stop.saving():
                        return self._checkpoint([train_log, val_log])

                ending_on_survived_failure(steps, save, lambda: self.iteration, self.last_path)
        finally:
            bar.close()
        return DepthTrainResult(self.run_dir, self.iteration, self.last_path, self.history.first_loss,
                                self.history.last_loss, self.last_validation)

    def _checkpoint(self, logs: list[CsvLog]) -> Path:
        """`save_last`, then `keep_run_files`."""
        saved = self.save_last()
        keep_run_files(self.run_dir, self.recipe.as_recipe_file(), logs)
        return saved

    def _validate(self, val_log: CsvLog) -> None:
        self.last_validation = self.validate()
        self.last_validation_iteration = self.iteration
        for name, figures in self.last_validation.items():
            val_log.write({"iteration": self.iteration, "set": name, **{k: round(v, 4) for k, v in figures.items()}})
            LOG.info("iteration %d, %s LiDAR (record only): AbsRel %.3f, delta1 %.3f", self.iteration, name,
                     figures["absrel"], figures["delta1"])


def export_clear_depth(checkpoint: str | Path, target: str | Path) -> Path:
    """The depth network of a training checkpoint (no pose network, no optimiser) written to `target`."""
    model, input_size = load_clear_depth(checkpoint)
    state = read_checkpoint(checkpoint, "clear-depth checkpoint")
    return save_clear_depth(model, input_size, target, state.get("meta", {}))
