"""The training loop: dual-network self-supervised training of the depth network and the dehazer.

Each iteration draws a batch of clear crops J and a batch of real hazy crops H (unpaired):
1. synthetic branch: a depth d for J (a prior depth field, or after `net_depth_after` iterations often the depth
   network's own prediction on J; with a `clear_depth` checkpoint, that clear-image network's depth of the whole
   image J was cropped from, except for sources marked `prior_depth`),
   beta and a near-white airlight A are drawn, and I = J t + A (1 - t) with t = exp(-beta d). The model must give
   back J (decoder and physics paths), t and A, and its depth network must see d through the haze (with
   `clear_depth`, this depth_consistency term distils the hazy-image depth network towards the clear one);
2. real branch: on H the model's J, t, A must re-synthesise H, the depth network must agree with -ln t, J's dark
   channel should be dark, t and d smooth except at edges, and t starts near the dark channel prior (a teacher
   whose weight decays to `teacher_floor` over `teacher_iterations`);
3. optionally a PatchGAN scores the dehazed H against real clear J.

Runs on any device (AMP on CUDA: bfloat16 where supported, else float16 with loss scaling), seeds everything,
writes `last.pt` (resumable, with the names and sizes of the training images: a resume refuses changed data) and
`best.pt` (best validation) atomically, logs `train.csv` and `val.csv` (and TensorBoard when installed), and shows a
tqdm bar. A fresh run's `recipe.yaml`, logs and `best.pt` appear with its first `last.pt`, so that a run which fails
or is killed before that leaves its --out folder free for the next.
"""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from dgdehaze_core.devices import resolve_device
from dgdehaze_core.evaluation.metrics import psnr, ssim
from dgdehaze_core.inference.backends.selection import model_digest, state_digest
from dgdehaze_core.inference.pipeline import pipeline_from_model
from dgdehaze_core.io.checkpoints import read_checkpoint, write_checkpoint
from dgdehaze_core.io.file_digest import file_sha256
from dgdehaze_core.models import DGDehazeNet, build_model, checkpoint_state, save_checkpoint
from dgdehaze_core.models.clear_depth import ClearDepthPredictor
from dgdehaze_core.physics.scattering import synthesize_haze
from dgdehaze_core.training import distributed, losses
from dgdehaze_core.training.datasets import (DecodeCache, RandomCrops, TrainingImage, ValidationPair,
                                             collect_images, load_validation)
from dgdehaze_core.training.detector_features import DetectorFeatures, detector_feature_loss
from dgdehaze_core.training.discriminator import PatchDiscriminator
from dgdehaze_core.training.initial_weights import FROM_SCRATCH, start_from
from dgdehaze_core.training.priors import dcp_teacher, normalise_depth, prior_depth
from dgdehaze_core.training.recipe import ImageSource, LossWeights, Recipe
from dgdehaze_core.training.run_control import (LIST, MAPPING, NUMBER, TENSOR, TEXT, WHOLE_NUMBER, FieldType,
                                                RunHistory, StepBoundaryStop, StepTally, check_finite_loss,
                                                check_finite_weights, check_listed_data, file_fingerprint,
                                                load_optimizer_state, load_resumable, open_run_folder,
                                                loader_workers, quiet_loader_worker, run_folder_lock, seed_everything,
                                                step_figures)
from dgdehaze_core.training.run_files import (CsvLog, close_tensorboard, hardware_name, keep_run_files,
                                              tensorboard_writer, write_recipe)
from dgdehaze_core.training.survivable_failures import (OUT_OF_MEMORY_REMEDY, JobLoaderWorkerDied, LoaderWorkers,
                                                        StepStart, ending_on_survived_failure, moving_batch,
                                                        survived_out_of_memory, undone_on_out_of_memory,
                                                        validation_cut_off)

LOG = logging.getLogger(__name__)

LOSS_NAMES = tuple(f.name for f in fields(LossWeights))
LAST_PT_FIELDS: dict[str, FieldType] = {
    "training.scaler": MAPPING, "training.best_score": NUMBER, "training.best_validation": MAPPING,
    "training.best_iteration": WHOLE_NUMBER, "training.last_validation": MAPPING,
    "training.last_validation_iteration": WHOLE_NUMBER, "training.clear_depth_sha256": TEXT,
    "training.rank_random_states": LIST, "training.discriminator": MAPPING, "training.disc_optimizer": MAPPING,
    "training.generator": TENSOR, "training.torch_rng": TENSOR, "meta.started_from": MAPPING}
"""The fields of last.pt this trainer's resume reads beside run_control's RESUMED_FIELDS (`load_resumable`)."""


def validate(model: DGDehazeNet, pairs: list[ValidationPair], device: torch.device) -> dict[str, dict[str, float]]:
    """PSNR/SSIM per validation set (name before '/') for both output paths, and their mean over the sets.

    The images come from the deployed pipeline (`pipeline_from_model`), so the figures are what `dgdehaze eval`
    and the node would give at the validation size."""
    was_training = model.training
    per_set: dict[str, dict[str, list[float]]] = {}
    paths = {output: pipeline_from_model(model, backend="torch", device=str(device), output=output)
             for output in ("physics", "decoder")}
    try:
        for pair in pairs:
            figures = per_set.setdefault(pair.name.split("/")[0], {})
            for output, pipeline in paths.items():
                result = pipeline(pair.hazy).image
                suffix = "" if output == "physics" else "_clear"
                figures.setdefault("psnr" + suffix, []).append(psnr(result, pair.clear))
                figures.setdefault("ssim" + suffix, []).append(ssim(result, pair.clear))
    finally:
        model.train(was_training)
    table = {name: {k: float(np.mean(v)) for k, v in figures.items()} for name, figures in per_set.items()}
    if table:
        keys = next(iter(table.values())).keys()
        table["mean"] = {k: float(np.mean([figures[k] for figures in table.values()])) for k in keys}
    return table


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_validation: dict[str, dict[str, float]] = field(default_factory=dict)
    first_loss: float = math.nan
    last_loss: float = math.nan


class Trainer:
    """Trains `recipe` into `run_dir` (last.pt, best.pt, train.csv, val.csv, recipe.yaml)."""

    def __init__(self, recipe: Recipe, run_dir: str | Path, device: str | None = None, resume: bool = False) -> None:
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.rank = distributed.Rank.from_environment()
        self.device = distributed.device_for(self.rank, resolve_device(device or recipe.device))
        self.resume = resume
        seed_everything(recipe.seed)
        self.model = build_model(recipe.model, depth_guidance=recipe.depth_guidance).to(self.device)
        self.model.guide_trains_depth = recipe.guide_trains_depth
        self.started_from: dict[str, Any] = FROM_SCRATCH
        """Where the model's weights started (`initial_weights.start_from`); a resumed run's as its last.pt says."""
        if recipe.init_weights and not resume:  # a resumed run continues from last.pt (`load_last`)
            self.started_from = start_from(self.model, recipe.init_weights, recipe.model, recipe.depth_guidance)
        if recipe.crop_size % self.model.stride:
            raise ValueError(f"crop_size {recipe.crop_size} must be a multiple of the {recipe.model} model's stride "
                             f"({self.model.stride})")
        self.clear_depth: ClearDepthPredictor | None = None
        self.clear_depth_sha256 = ""
        """The clear-depth network file's digest: a resume refuses another file at the recipe's path."""
        if recipe.clear_depth:
            self.clear_depth = ClearDepthPredictor.from_checkpoint(recipe.clear_depth, self.device)
            self.clear_depth.model.requires_grad_(False)
            self.clear_depth_sha256 = file_sha256(recipe.clear_depth)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                           foreach=True)
        self.discriminator: PatchDiscriminator | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None
        if recipe.loss.adversarial > 0:
            self.discriminator = PatchDiscriminator().to(self.device)
            self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=recipe.lr, betas=(0.5, 0.999),
                                                   foreach=True)
        self.detector_features: DetectorFeatures | None = None
        if recipe.loss.detector_features > 0:
            self.detector_features = DetectorFeatures().to(self.device)
        self.amp_dtype: torch.dtype | None = None
        if recipe.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.generator = torch.Generator().manual_seed(self._generator_seed())
        self.forward_model: torch.nn.Module = self.model
        """What the step runs the batch through: the model, or the model under DDP in a torchrun job."""
        self.iteration = 0
        self.best_score = -math.inf
        self.best_validation: dict[str, dict[str, float]] = {}
        self.best_iteration = 0
        self.last_validation: dict[str, dict[str, float]] = {}
        self.last_validation_iteration = 0
        self.held_best: dict[str, Any] | None = None
        """A fresh run's best.pt before its first last.pt (`checkpoint_state`), written with it: a best.pt alone
        would keep the next run out of a folder that holds nothing to resume."""
        self.history = RunHistory()
        """Its commit, resumes, seconds and training images (`images_fingerprint`), saved in its checkpoints."""
        self.resumed_buffers: dict[str, torch.Tensor] | None = None
        """This rank's own buffers from a torchrun job's last.pt, put back once DDP has wrapped the model."""
        self.step_start = StepStart([self.model, self.discriminator], [self.generator, torch.default_generator])
        """What a step's forward pass moves of what last.pt holds, put back when it runs out of memory."""
        self.loader_workers = LoaderWorkers()

    # -- checkpoints -------------------------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def _score_key(self) -> str:
        """The validation figure best.pt is chosen on: the PSNR of the output the recipe validates."""
        return "psnr" if self.recipe.val_output == "physics" else "psnr_clear"

    def meta(self) -> dict[str, Any]:
        return {"recipe": self.recipe.name, "recipe_fields": self.recipe.as_dict(), "iterations": self.iteration,
                "validation": self.last_validation, "validation_iteration": self.last_validation_iteration,
                "best_validation": self.best_validation, "best_iteration": self.best_iteration,
                "hardware": hardware_name(self.device), **self.history.meta(), "started_from": self.started_from,
                "torch": str(torch.__version__), "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def _generator_seed(self) -> int:
        """The haze synthesis draws' seed: the recipe's in one process; in a torchrun job each rank's own."""
        return self.recipe.seed + 1_000_003 * self.rank.rank

    def save_last(self) -> Path | None:
        """Write the resumable training state atomically (the previous last.pt survives until the new one is whole);
        in a torchrun job every rank calls it, hands over its random state and its own buffers (the batch-norm
        statistics its last forward pass moved on its own batch, which the haze synthesis's depth network reads
        before DDP's next forward gives every rank rank 0's), and rank 0 writes (None elsewhere).
        OSError naming last.pt when it cannot be written (a full disk: ENOSPC)."""
        own = {"generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()}
        if self.rank.distributed:
            own["buffers"] = {name: buffer.detach().cpu() for name, buffer in self.model.named_buffers()}
        random_states = distributed.gather(own, self.rank)
        if not self.rank.writer:
            return None
        state = {"config": self.model.config_name, "depth_guidance": self.model.depth_guidance,
                 "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                 "meta": self.meta(),
                 "training": {"iteration": self.iteration, "optimizer": self.optimizer.state_dict(),
                              "scaler": self.scaler.state_dict(), "best_score": self.best_score,
                              "best_validation": self.best_validation, "best_iteration": self.best_iteration,
                              "last_validation": self.last_validation,
                              "last_validation_iteration": self.last_validation_iteration,
                              "elapsed": self.history.elapsed, **self.history.losses(),
                              "clear_depth_sha256": self.clear_depth_sha256, "rank_random_states": random_states,
                              "data": self.history.data, "recipe": self.recipe.as_dict()}}
        if self.discriminator is not None and self.disc_optimizer is not None:
            state["training"]["discriminator"] = self.discriminator.state_dict()
            state["training"]["disc_optimizer"] = self.disc_optimizer.state_dict()
        return write_checkpoint(state, self.last_path)

    def load_last(self) -> None:
        state = load_resumable(self.last_path, "training", self.recipe.as_dict(), LAST_PT_FIELDS)
        training = state["training"]
        saved_teacher = training.get("clear_depth_sha256", self.clear_depth_sha256)
        if saved_teacher != self.clear_depth_sha256:
            raise ValueError(f"cannot resume {self.last_path}: the clear-depth network at {self.recipe.clear_depth} "
                             f"is another file than the run began with (sha256 {self.clear_depth_sha256[:12]}, was "
                             f"{saved_teacher[:12]}); put that file back, or start a new run in another --out folder")
        self.model.load_state_dict(state["state_dict"])
        load_optimizer_state(self.optimizer, training["optimizer"])
        if training["scaler"]:  # empty when saved where fp16 gradient scaling was off (CPU, bf16)
            self.scaler.load_state_dict(training["scaler"])
        if self.discriminator is not None and "discriminator" in training:
            self.discriminator.load_state_dict(training["discriminator"])
            load_optimizer_state(self.disc_optimizer, training["disc_optimizer"])
        self.iteration = int(training["iteration"])
        self.best_score = float(training["best_score"])
        self.best_validation = training["best_validation"]
        self.best_iteration = int(training["best_iteration"])
        if self.best_iteration and self.rank.writer and not self.best_path.is_file():
            LOG.warning("%s is missing (a run stopped as it wrote its first checkpoint, or deleted): the best "
                        "validation of iteration %d is forgotten, and best.pt will be the best from here on",
                        self.best_path, self.best_iteration)
            self.best_score, self.best_validation, self.best_iteration = -math.inf, {}, 0
        elif self.best_iteration:
            self._adopt_a_later_best()
        self.last_validation = training.get("last_validation", {})
        self.last_validation_iteration = int(training.get("last_validation_iteration", 0))
        self.history.resume(state)
        self.started_from = state.get("meta", {}).get("started_from", FROM_SCRATCH)  # before init_weights: scratch
        self._resume_random_state(training.get("rank_random_states") or [  # a last.pt from before: rank 0's alone
            {"generator": training["generator"], "torch_rng": training["torch_rng"]}])
        LOG.info("resumed %s at iteration %d", self.last_path, self.iteration)

    def _adopt_a_later_best(self) -> None:
        """best.pt is written as its validation ends, last.pt at the next checkpoint: a run stopped in between
        (killed, out of memory) left a best.pt from after last.pt, which the resumed run knew nothing of. Its
        record is taken as the best so far, so that the file and the record agree and only a better validation
        replaces it (the resumed run may not reach that score again: its weights came from the steps it re-runs)."""
        try:
            meta = read_checkpoint(self.best_path).get("meta", {})
        except (OSError, ValueError):
            return
        later = int(meta.get("best_iteration", 0))
        table = meta.get("best_validation") or {}
        if later > self.iteration and self._score_key in table.get("mean", {}):
            LOG.info("%s is from iteration %d, after %s's %d (a run stopped between the two): kept as the best so "
                     "far", self.best_path, later, self.last_path, self.iteration)
            self.best_score = float(table["mean"][self._score_key])
            self.best_validation, self.best_iteration = table, later

    def _resume_random_state(self, saved: list[dict[str, torch.Tensor]]) -> None:
        """The random state of this rank from last.pt's, in rank order (one process continues rank 0's). A torchrun
        job of another size than the one that saved cannot continue the same draws: every rank takes rank 0's
        torch state and reseeds its haze generator for the resumed iteration."""
        if self.rank.distributed and len(saved) != self.rank.world_size:
            LOG.warning("%s holds the random state of %d rank(s), the job has %d: the ranks are reseeded, so the "
                        "resumed run draws other haze than an uninterrupted one", self.last_path, len(saved),
                        self.rank.world_size)
            torch.set_rng_state(saved[0]["torch_rng"])
            self.generator.manual_seed(self._generator_seed() + self.iteration)
            return
        self.generator.set_state(saved[self.rank.rank]["generator"])
        torch.set_rng_state(saved[self.rank.rank]["torch_rng"])
        self.resumed_buffers = saved[self.rank.rank].get("buffers") if self.rank.distributed else None

    def _restore_rank_buffers(self) -> None:
        """Put back this rank's own buffers of a resumed torchrun job (`save_last`), after DDP's wrapping gave every
        rank rank 0's: the uninterrupted job's ranks each held their own until the next forward pass. Nothing for
        a last.pt from before they were saved, one process, or a job of another size (rank 0's for all)."""
        if self.resumed_buffers is None:
            return
        with torch.no_grad():
            for name, buffer in self.model.named_buffers():
                buffer.copy_(self.resumed_buffers[name])
        self.resumed_buffers = None

    # -- one iteration -----------------------------------------------------------------------------------------
    def _uniform(self, batch: int, low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(batch, generator=self.generator)).to(self.device)

    def depth_of(self, image: np.ndarray) -> np.ndarray:
        """The clear-depth network's depth of a whole RGB uint8 training image (what `RandomCrops` crops)."""
        if self.clear_depth is None:
            raise RuntimeError("this recipe names no clear_depth network")
        return self.clear_depth(np.ascontiguousarray(image[:, :, ::-1]))

    @torch.no_grad()
    def synthesize(self, clear: torch.Tensor, known_depth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """A hazy batch from clear crops: its depth, beta, airlight, transmission and image.

        `known_depth` (B,1,H,W, NaN for a crop without one) is the clear-depth network's depth of each crop; it
        replaces the prior where given."""
        recipe, batch = self.recipe, clear.shape[0]
        depth = prior_depth(clear, self.generator)
        if known_depth is not None:
            known = torch.isfinite(known_depth).flatten(1).all(1)
            if known.any():
                known_depth = torch.nan_to_num(known_depth, nan=1.0).float()
                if recipe.clear_depth_scaling == "farthest":
                    scaled = known_depth / known_depth.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
                else:
                    scaled = normalise_depth(known_depth, near=depth.amin(dim=(1, 2, 3), keepdim=True))
                depth = torch.where(known.view(-1, 1, 1, 1), scaled, depth)
        elif self.iteration >= recipe.net_depth_after and recipe.net_depth_fraction > 0:
            self.model.depth_net.eval()
            predicted = normalise_depth(self.model.depth_net(clear).float(), near=depth.amin(dim=(1, 2, 3),
                                                                                              keepdim=True))
            self.model.depth_net.train()
            use_net = (torch.rand(batch, generator=self.generator) < recipe.net_depth_fraction).to(self.device)
            depth = torch.where(use_net.view(-1, 1, 1, 1), predicted, depth)
        outdoor = (torch.rand(batch, generator=self.generator) < recipe.outdoor_fraction).to(self.device)
        beta = torch.where(outdoor, self._uniform(batch, *recipe.beta_outdoor),
                           self._uniform(batch, *recipe.beta_indoor))
        grey = self._uniform(batch, *recipe.airlight).view(-1, 1, 1, 1)
        jitter = (torch.rand(batch, 3, 1, 1, generator=self.generator) * 2 - 1).to(self.device) * recipe.airlight_jitter
        airlight = (grey + jitter).clamp(0.0, 1.0)
        beta = beta.view(-1, 1, 1, 1)
        transmission = torch.exp(-beta * depth)
        hazy = synthesize_haze(clear, depth, beta, airlight).clamp(0.0, 1.0)
        return {"depth": depth, "airlight": airlight, "transmission": transmission, "hazy": hazy}

    def teacher_weight(self) -> float:
        recipe = self.recipe
        if recipe.teacher_iterations == 0:
            return recipe.loss.dcp_teacher * recipe.teacher_floor
        progress = min(1.0, self.iteration / recipe.teacher_iterations)
        return recipe.loss.dcp_teacher * (1.0 - (1.0 - recipe.teacher_floor) * progress)

    def loss_terms(self, clear: torch.Tensor, real_hazy: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every loss with a non-zero weight, unweighted, as float32 scalars. `clear` is RGB, or RGB and the
        clear-depth network's depth (the crops of `RandomCrops` with `depth_of`)."""
        weights = self.recipe.loss
        clear, known_depth = (clear[:, :3], clear[:, 3:]) if clear.shape[1] == 4 else (clear, None)
        synthetic = self.synthesize(clear, known_depth)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            both = self.forward_model(torch.cat([synthetic["hazy"], real_hazy]))
        batch = clear.shape[0]
        syn = {name: value[:batch] for name, value in both.items()}
        real = {name: value[batch:] for name, value in both.items()}
        terms: dict[str, torch.Tensor] = {}
        if weights.cycle:
            terms["cycle"] = losses.cycle_loss(syn["clear"], clear)
        restored = losses.physics_restore(synthetic["hazy"], syn["transmission"], syn["airlight"])
        if weights.cycle_physics:
            terms["cycle_physics"] = losses.cycle_loss(restored, clear)
        if weights.detector_features and self.detector_features is not None:
            terms["detector_features"] = detector_feature_loss(self.detector_features, restored, clear)
        if weights.transmission:
            terms["transmission"] = losses.transmission_loss(syn["transmission"], synthetic["transmission"])
        if weights.airlight:
            terms["airlight"] = losses.airlight_loss(syn["airlight"], synthetic["airlight"])
        if weights.depth_consistency:
            terms["depth_consistency"] = losses.depth_consistency_loss(syn["depth"], synthetic["depth"])
        if weights.reconstruction:
            terms["reconstruction"] = losses.reconstruction_loss(real["clear"], real["transmission"],
                                                                 real["airlight"], real_hazy)
        if weights.depth_transmission:
            terms["depth_transmission"] = losses.depth_transmission_loss(real["depth"], real["transmission"])
        if weights.dark_channel:
            terms["dark_channel"] = losses.dark_channel_loss(real["clear"])
        if weights.smooth_transmission:
            terms["smooth_transmission"] = losses.edge_aware_smoothness(real["transmission"], real_hazy)
        if weights.smooth_depth:
            terms["smooth_depth"] = losses.edge_aware_smoothness(losses.centred_log_depth(real["depth"]), real_hazy)
        if weights.dcp_teacher:
            teacher_t, teacher_a = dcp_teacher(real_hazy)
            terms["dcp_teacher"] = losses.teacher_loss(real["transmission"], real["airlight"], teacher_t, teacher_a)
        if weights.adversarial and self.discriminator is not None:
            self._fake_for_discriminator = real["clear"].detach()
            with autocast:
                scores = self.discriminator(real["clear"])
            terms["adversarial"] = losses.generator_loss(scores)
        return terms

    def weighted_total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = self.recipe.loss
        total = torch.zeros((), device=self.device)
        for name, value in terms.items():
            weight = self.teacher_weight() if name == "dcp_teacher" else getattr(weights, name)
            total = total + weight * value
        return total

    def learning_rate(self) -> float:
        """Linear warm-up, then cosine decay to 5 % of the recipe's rate."""
        recipe = self.recipe
        if self.iteration < recipe.warmup_iterations:
            return recipe.lr * (self.iteration + 1) / recipe.warmup_iterations
        span = max(1, recipe.iterations - recipe.warmup_iterations)
        progress = min(1.0, (self.iteration - recipe.warmup_iterations) / span)
        return recipe.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def step(self, clear: torch.Tensor, real_hazy: torch.Tensor) -> dict[str, float]:
        """One optimisation step; returns the unweighted terms, the weighted total and the learning rate."""
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        with undone_on_out_of_memory(self.step_start, self.iteration):  # no weight has moved within
            terms = self.loss_terms(clear, real_hazy)
            total = self.weighted_total(terms)
            check_finite_loss(total, terms, self.iteration, self.last_path)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        check_finite_weights(self.model.parameters(), self.iteration, self.last_path)
        if self.discriminator is not None and self.disc_optimizer is not None:
            self._discriminator_step(clear[:, :3])
        self.iteration += 1
        return {**step_figures({**terms, "total": total}), "lr": lr}

    def _discriminator_step(self, clear: torch.Tensor) -> None:
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            loss = losses.discriminator_loss(self.discriminator(clear),
                                             self.discriminator(self._fake_for_discriminator))
        self.disc_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(self.discriminator, self.rank)
        self.disc_optimizer.step()
        check_finite_weights(self.discriminator.parameters(), self.iteration, self.last_path)

    # -- the loop ----------------------------------------------------------------------------------------------
    def _loader(self, dataset: RandomCrops, workers: int) -> Iterator[torch.Tensor]:
        recipe = self.recipe
        indices = distributed.Shard(self.iteration, recipe.iterations, recipe.batch_size, self.rank)
        loader = DataLoader(dataset, batch_size=recipe.batch_size, sampler=indices, num_workers=workers,
                            pin_memory=self.device.type == "cuda", drop_last=True, persistent_workers=False,
                            generator=torch.Generator().manual_seed(recipe.seed),  # not the global RNG
                            worker_init_fn=quiet_loader_worker)
        for batch in self.loader_workers.batches(loader):
            with moving_batch(self.iteration, self.device):
                moved = batch.to(self.device, non_blocking=True)
            yield moved

    def train(self, progress: bool = True) -> TrainResult:
        """Run the recipe to its last iteration (from last.pt with `resume`); in a torchrun job every rank calls
        this and rank 0 writes the run folder."""
        distributed.start(self.rank, self.device)
        try:
            with run_folder_lock(self.run_dir, self.rank.writer):
                return self._train(progress and self.rank.writer)
        finally:
            distributed.stop(self.rank)

    def _train(self, progress: bool) -> TrainResult:
        recipe, writer = self.recipe, self.rank.writer
        open_run_folder(self.run_dir, self.last_path, self.resume, self.load_last, writer)
        self.forward_model = distributed.wrap(self.model, self.rank, self.device)
        self._restore_rank_buffers()
        if self.discriminator is not None:
            distributed.share_state(self.discriminator, self.rank)
        decoded: DecodeCache = {}  # a source listed as clear and as hazy is decoded once
        # both listed before either is decoded: a hazy source's mistake (a path typo, a topic its bag lacks) is
        # reported at once, not after every clear image was read
        clear_listed, hazy_listed = collect_images(recipe.clear, "clear"), collect_images(recipe.hazy, "hazy")
        listed = {"clear": images_fingerprint((image for image, _, _ in clear_listed), recipe.clear),
                  "hazy": images_fingerprint((image for image, _, _ in hazy_listed), recipe.hazy)}
        if self.resume:  # a changed listing (a bag recorded again, an image replaced) is refused before decoding
            check_listed_data(self.last_path, self.history.resumed_data, listed)
        clear_data = RandomCrops(recipe.clear, recipe.crop_size, recipe.max_side, recipe.zoom_range, recipe.seed,
                                 "clear", self.depth_of if self.clear_depth is not None else None, cache=decoded,
                                 listed=clear_listed)
        hazy_data = RandomCrops(recipe.hazy, recipe.crop_size, recipe.max_side, recipe.zoom_range, recipe.seed,
                                "hazy", cache=decoded, listed=hazy_listed)
        self.history.record_data({"clear": decoded_entries(listed["clear"], clear_listed, clear_data.sources),
                                  "hazy": decoded_entries(listed["hazy"], hazy_listed, hazy_data.sources)},
                                 self.last_path if self.resume else None)
        validation = (load_validation(recipe.validation, recipe.val_max_side)
                      if recipe.validation and writer else [])
        resumed = self.iteration if self.resume else None
        train_log = val_log = board = None
        board_made = not (self.run_dir / "tensorboard").exists()
        if writer:
            if self.resume:  # a fresh run's recipe.yaml comes with its first checkpoint (`keep_run_files`)
                write_recipe(self.run_dir, recipe.as_recipe_file())
            train_log = CsvLog(self.run_dir / "train.csv", ["iteration", "total", *LOSS_NAMES, "lr", "seconds"],
                               resumed)
            val_log = CsvLog(self.run_dir / "val.csv",
                             ["iteration", "set", "psnr", "ssim", "psnr_clear", "ssim_clear"], resumed)
            board = tensorboard_writer(self.run_dir, resumed)
        logs = [log for log in (train_log, val_log) if log is not None]
        bar = tqdm(total=recipe.iterations, initial=self.iteration, desc=f"train {recipe.name}", unit="it",
                   disable=not progress, dynamic_ncols=True)
        LOG.info("training %s on %s (%s), %d -> %d iterations, AMP %s%s", recipe.name, self.device,
                 hardware_name(self.device), self.iteration, recipe.iterations, self.amp_dtype,
                 f", rank {self.rank.rank} of {self.rank.world_size}" if self.rank.distributed else "")
        tally = StepTally(self.history)
        stop = StepBoundaryStop(self._agree_at_step_boundary, self.last_path)
        try:
            with stop:
                workers = loader_workers(recipe.num_workers)

                def validate_here() -> None:
                    with survived_out_of_memory(
                            f"the validation of iteration {self.iteration}, which runs each pair whole at up to "
                            f"val_max_side ({recipe.val_max_side}) pixels on its long side,",
                            f"{OUT_OF_MEMORY_REMEDY} (a smaller val_max_side needs a new run)"):
                        self._validate(validation, val_log, board)
                    tally.pause_done()

                def steps() -> None:
                    if recipe.validation and self.resume and validation_cut_off(
                            self.iteration, self.last_validation_iteration, recipe.val_every, recipe.iterations):
                        if validation:
                            validate_here()
                        save()  # with its figures (a run resumed at its last iteration takes no step to save them)
                    for clear, hazy in zip(self._loader(clear_data, workers), self._loader(hazy_data, workers)):
                        row = self.step(clear, hazy)
                        tally.step_done(row["total"])
                        bar.update(1)
                        done = self.iteration == recipe.iterations
                        if train_log is not None and (self.iteration % recipe.log_every == 0 or done):
                            bar.set_postfix(loss=f"{row['total']:.4f}")
                            train_log.write({"iteration": self.iteration, "seconds": round(self.history.elapsed, 2),
                                             **row})
                            if board is not None:
                                for name, value in row.items():
                                    board.add_scalar(f"train/{name}", value, self.iteration)
                        if validation and (self.iteration % recipe.val_every == 0 or done):
                            validate_here()
                        if self.iteration % recipe.checkpoint_every == 0 or done:
                            with stop.saving():
                                self._checkpoint(logs)
                        if not done:
                            stop.after_step(self.iteration, lambda: self._checkpoint(logs))

                def save() -> Path | None:
                    with stop.saving():
                        saved = self._checkpoint(logs)
                        # no rank ends before rank 0 has written: torchrun ends the job as the first rank exits
                        distributed.barrier(self.rank)
                    return saved

                ending_on_survived_failure(steps, save, lambda: self.iteration, self.last_path,
                                           propagate=self.rank.distributed)
        finally:
            bar.close()
            close_tensorboard(board, board_made, saved=train_log is not None and train_log.held is None)
        distributed.share_buffers(self.model, self.rank)
        if writer and not validation:
            save_checkpoint(self.model, self.best_path, self.meta())
        if self.rank.distributed:
            LOG.info("rank %d of %d: weights sha256 %s", self.rank.rank, self.rank.world_size,
                     model_digest(self.model))
            if self.discriminator is not None:
                LOG.info("rank %d of %d: discriminator sha256 %s", self.rank.rank, self.rank.world_size,
                         state_digest(self.discriminator))
        return TrainResult(self.run_dir, self.iteration, self.last_path,
                           self.best_path if self.best_path.exists() else None, self.best_validation,
                           self.history.first_loss, self.history.last_loss)

    def _agree_at_step_boundary(self, requested: bool) -> bool:
        """`StepBoundaryStop`'s agreement: whether any rank was asked to stop; in a torchrun job the same collective
        carries a data loader worker's death noted during the step on any rank, raised on every rank as
        JobLoaderWorkerDied, so that every rank saves and ends at this boundary (one rank raising at its next fetch
        left the others waiting in DDP's all-reduce until torchrun tore the job down)."""
        died = self.loader_workers.death() if self.rank.distributed else None
        stop, died_on = distributed.step_boundary_agreement(requested, died is not None, self.rank, self.device)
        if died_on is not None:
            raise JobLoaderWorkerDied(died if died is not None
                                      else f"a data loader worker of rank {died_on} died (that rank's line names it)")
        return stop

    def _checkpoint(self, logs: list[CsvLog]) -> Path | None:
        """`save_last`, and on the rank that writes `keep_run_files` and the best.pt held until then."""
        saved = self.save_last()
        if saved is not None:
            keep_run_files(self.run_dir, self.recipe.as_recipe_file(), logs)
            if self.held_best is not None:
                write_checkpoint(self.held_best, self.best_path)
                self.held_best = None
        return saved

    def _validate(self, validation: list[ValidationPair], val_log: CsvLog, board: Any) -> None:
        table = validate(self.model, validation, self.device)
        for name, figures in table.items():
            val_log.write({"iteration": self.iteration, "set": name, **{k: round(v, 4) for k, v in figures.items()}})
            if board is not None:
                for key, value in figures.items():
                    board.add_scalar(f"val/{name}/{key}", value, self.iteration)
        self.last_validation = table
        self.last_validation_iteration = self.iteration
        score = table["mean"][self._score_key]
        LOG.info("iteration %d validation: %s", self.iteration,
                 "; ".join(f"{n} {f['psnr']:.2f} dB/{f['ssim']:.3f} (decoder {f['psnr_clear']:.2f}/"
                           f"{f['ssim_clear']:.3f})" for n, f in table.items()))
        if score > self.best_score:
            self.best_score = score
            self.best_validation = table
            self.best_iteration = self.iteration
            best = checkpoint_state(self.model, self.meta())
            if val_log.held is not None:  # a fresh run before its first last.pt: best.pt comes with it
                self.held_best = best
            else:
                write_checkpoint(best, self.best_path)


def images_fingerprint(images: Iterable[TrainingImage], sources: Sequence[ImageSource]) -> list[tuple[str, int]]:
    """`file_fingerprint` of training images of `sources` (those listed, or those a `RandomCrops` draws from), each
    named by its source's folder name and its path below it (a video's or bag's frame after '#'), so that the data
    may lie elsewhere when the run resumes."""
    def name(path: Path, frame: int | None) -> str:
        source = next((s.path for s in sources if s.path == path or s.path in path.parents), path.parent)
        named = path.relative_to(source.parent).as_posix()
        return named if frame is None else f"{named}#{frame}"

    return file_fingerprint((name(image.path, image.frame), image.path) for image in images)


def decoded_entries(fingerprint: list[tuple[str, int]], listed: Sequence[tuple[TrainingImage, float, ImageSource]],
                    decoded: Iterable[TrainingImage]) -> list[tuple[str, int]]:
    """The entries of `fingerprint` (`images_fingerprint` of the images `listed`, in their order) of the images that
    `decoded` holds (a `RandomCrops`' sources: the listed images left once frames that do not decode are left out,
    in the same order): their fingerprint without a second stat of every file."""
    kept = set(decoded)
    return [entry for (image, _, _), entry in zip(listed, fingerprint, strict=True) if image in kept]


def export_weights(checkpoint: str | Path, target: str | Path, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write the model part of a checkpoint (no optimiser state) to `target` atomically, for shipping."""
    state = read_checkpoint(checkpoint, "training checkpoint")
    model = build_model(state["config"], depth_guidance=bool(state["depth_guidance"]))
    model.load_state_dict(state["state_dict"])
    meta = {**state.get("meta", {}), **(extra_meta or {})}
    return save_checkpoint(model, target, meta)
