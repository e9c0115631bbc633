"""Training: haze synthesis and the priors on real images, the losses, and the guards on a step's weights."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dgdehaze_core.physics.scattering import invert_scattering
from dgdehaze_core.training.datasets import RandomCrops
from dgdehaze_core.training.priors import dcp_teacher
from dgdehaze_core.training.trainer import Trainer


def test_synthetic_haze_follows_the_scattering_model(smoke_recipe) -> None:
    trainer = Trainer(smoke_recipe, "unused", device="cpu")
    clear = RandomCrops(smoke_recipe.clear, 64, 160, (1.0, 2.0), 0, "clear")
    batch = torch.stack([clear[i] for i in range(4)])
    haze = trainer.synthesize(batch)
    depth, t, airlight = haze["depth"], haze["transmission"], haze["airlight"]
    assert depth.amax(dim=(1, 2, 3)).allclose(torch.ones(4)) and depth.min() >= 0
    beta = -torch.log(t) / depth.clamp_min(1e-3)
    far = depth > 0.5
    assert beta[far].min() >= 0.2 - 1e-3 and beta[far].max() <= 1.8 + 1e-3
    assert (airlight >= 0.7 - 0.04 - 1e-6).all() and (airlight <= 1.0).all()
    restored = invert_scattering(haze["hazy"], t, airlight, t_min=0.0)
    assert torch.allclose(restored, batch, atol=1e-4)
    assert (haze["hazy"] - batch).abs().mean() > 0.05


def test_each_synthetic_haze_takes_its_beta_from_its_scene_s_range_and_a_jittered_airlight_stays_physical(
        shared_data: Path, tmp_path: Path) -> None:
    """outdoor_fraction draws each crop's scene kind: an outdoor scene's beta from beta_outdoor, an indoor one's from
    beta_indoor, spread over the range; the jittered airlight stays within [0, 1] (a brighter one is no light)."""
    from dgdehaze_core.datasets.paths import REPO_DIR
    from dgdehaze_core.training.recipe import load_recipe

    ranges = {"beta_outdoor": (0.3, 0.4), "beta_indoor": (1.5, 1.6)}
    settings = [f"{name}=[{low},{high}]" for name, (low, high) in ranges.items()] + ["airlight=[0.98,1.0]"]
    for fraction, kind in ((1.0, "beta_outdoor"), (0.0, "beta_indoor")):
        recipe = load_recipe(REPO_DIR / "training" / "smoke.yaml", [*settings, f"outdoor_fraction={fraction}"])
        batch = torch.stack([RandomCrops(recipe.clear, 64, 160, (1.0, 1.0), 0, "clear")[i] for i in range(16)])
        haze = Trainer(recipe, tmp_path / kind, device="cpu").synthesize(batch)
        far = haze["depth"] > 0.5
        beta = -torch.log(haze["transmission"]) / haze["depth"].clamp_min(1e-3)
        per_image = torch.stack([b[f].median() for b, f in zip(beta, far)])
        low, high = ranges[kind]
        assert per_image.min() >= low - 1e-4 and per_image.max() <= high + 1e-4, (kind, per_image)
        assert per_image.max() - per_image.min() > 0.5 * (high - low), "drawn over the range"
        airlight = haze["airlight"]
        assert airlight.max() <= 1.0 and airlight.min() >= 0.98 - 0.04 - 1e-6


def test_the_prior_depth_of_a_road_photo_is_far_at_the_top_and_changes_at_the_photo_s_edges(shared_data: Path) -> None:
    """prior_depth, the depth of clear images without one: over many draws for one real KITTI road photo, the top
    rows lie farther than the bottom ones (a road seen level), and the depth changes across the photo's strongest
    vertical edges many times more than across its flattest pixels (the guided filter follows the image)."""
    import cv2

    from dgdehaze_core.training.priors import prior_depth

    photo = cv2.imread(str(sorted((shared_data / "clear" / "kitti").glob("*.jpg"))[0]))
    rgb = cv2.cvtColor(cv2.resize(photo, (256, 80), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    clear = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(255).repeat(32, 1, 1, 1)
    depth = prior_depth(clear, torch.Generator().manual_seed(0))
    assert depth.shape == (32, 1, 80, 256) and depth.min() >= 0 and depth.amax(dim=(1, 2, 3)).allclose(torch.ones(32))
    assert depth[:, :, :20].mean() > depth[:, :, -20:].mean() + 0.2
    image_change = np.abs(np.diff(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32), axis=1))
    depth_change = (depth[:, 0, :, 1:] - depth[:, 0, :, :-1]).abs().mean(0).numpy()
    edges, flat = image_change > np.quantile(image_change, 0.95), image_change < np.quantile(image_change, 0.5)
    assert depth_change[edges].mean() > 3 * depth_change[flat].mean()


def test_a_zoom_below_one_enlarges_a_smaller_window_instead_of_being_ignored(smoke_recipe) -> None:
    """The recipe takes zoom_range from 0.25, but a window was never allowed below the crop: a zoom of 0.5 gave the
    same unmagnified crops as 1.0. Enlarged twice, a crop's neighbouring pixels differ far less."""
    def roughness(zoom: float) -> float:
        crops = RandomCrops(smoke_recipe.clear, 64, 160, (zoom, zoom), 0, "clear")
        return float(np.mean([crops[i][:, :, 1:].sub(crops[i][:, :, :-1]).abs().mean() for i in range(12)]))

    assert roughness(0.5) < 0.7 * roughness(1.0)


def test_validation_pairs_that_only_judge_are_refused_as_training_images_are(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training images were checked against the judging sets, validation pairs not, though they choose best.pt:
    here a paired copy inside kitti-tiny, the depth figures' unseen drive, reached by a plain folder path."""
    import cv2

    from dgdehaze_core.datasets.splits import SplitError
    from dgdehaze_core.training.datasets import validation_pairs
    from dgdehaze_core.training.recipe import ImageSource

    monkeypatch.setenv("DGDEHAZE_DATA", str(tmp_path))
    folder = tmp_path / "depth" / "kitti-tiny" / "paired"
    for kind, value in (("hazy", 200), ("clear", 100)):
        (folder / kind).mkdir(parents=True)
        cv2.imwrite(str(folder / kind / "0001.png"), np.full((8, 8, 3), value, np.uint8))
    with pytest.raises(SplitError, match="validation pairs: 2 file.s. that only judge .*kitti-tiny only judges"):
        validation_pairs([ImageSource(path=folder)])
    monkeypatch.setenv("DGDEHAZE_DATA", str(tmp_path / "elsewhere"))
    assert [pair.name for pair in validation_pairs([ImageSource(path=folder)])] == ["0001"]


def test_a_best_pt_written_after_the_last_checkpoint_is_the_best_a_resumed_run_knows(smoke_recipe,
                                                                                    tmp_path: Path) -> None:
    """best.pt is written as a validation ends, last.pt at the next checkpoint: a run killed in between left a
    best.pt the resumed run knew nothing of, so a worse validation later replaced it, and last.pt named another
    iteration as the best. The resumed run now takes best.pt's record as the best so far."""
    import dataclasses

    from dgdehaze_core.io.checkpoints import read_checkpoint, write_checkpoint

    Trainer(smoke_recipe, tmp_path / "run", device="cpu").train(progress=False)
    best = read_checkpoint(tmp_path / "run" / "best.pt")
    table = copy.deepcopy(best["meta"]["best_validation"])
    table["mean"]["psnr"] = table["mean"]["psnr_clear"] = 99.0
    best["meta"].update(best_iteration=7, best_validation=table)  # as if validated after last.pt, then killed
    write_checkpoint(best, tmp_path / "run" / "best.pt")
    resumed = Trainer(dataclasses.replace(smoke_recipe, iterations=9), tmp_path / "run", device="cpu", resume=True)
    resumed.load_last()
    assert (resumed.best_iteration, resumed.best_score) == (7, 99.0)
    resumed.train(progress=False)
    assert read_checkpoint(tmp_path / "run" / "best.pt")["meta"]["best_iteration"] == 7, "no worse score replaced it"


def test_validation_time_is_left_out_of_the_training_time(smoke_recipe, tmp_path: Path) -> None:
    """train.csv's `seconds` and the weights' train_seconds counted the validations in (the depth trainer left them
    out, as StepTally.pause_done says). A validation slowed by 2 s no longer shows between two steps: the time
    counted from step 3 to step 4 is the wall time between them less the validation, however long a step takes on
    a loaded machine."""
    import csv
    import time

    stepped: dict[int, float] = {}

    class SlowValidation(Trainer):
        def step(self, *args, **kwargs):
            row = super().step(*args, **kwargs)
            stepped[self.iteration] = time.perf_counter()
            return row

        def _validate(self, *args, **kwargs):
            if self.iteration == 3:  # the validation between the two steps timed (the run's last is not)
                time.sleep(2.0)
            return super()._validate(*args, **kwargs)

    SlowValidation(smoke_recipe, tmp_path / "run", device="cpu").train(progress=False)
    with open(tmp_path / "run" / "train.csv") as rows:
        seconds = {int(row["iteration"]): float(row["seconds"]) for row in csv.DictReader(rows)}
    between = stepped[4] - stepped[3]  # the validation after step 3, then step 4
    assert smoke_recipe.val_every == 3 and seconds[4] - seconds[3] < between - 1.0, (seconds, between)


def test_dcp_teacher_tracks_the_true_transmission(middlebury_scene) -> None:
    image, depth = middlebury_scene
    valid = np.isfinite(depth)
    relative = np.where(valid, depth, np.nanmax(depth)) / np.nanmax(depth)
    clear = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255.0
    true_t = torch.exp(-1.5 * torch.from_numpy(relative)[None, None].float())
    hazy = clear * true_t + 0.9 * (1.0 - true_t)
    teacher_t, teacher_a = dcp_teacher(hazy)
    correlation = np.corrcoef(teacher_t[0, 0].numpy()[valid], true_t[0, 0].numpy()[valid])[0, 1]
    assert correlation > 0.7
    assert teacher_a.min() > 0.6 and teacher_a.max() <= 0.95


def test_box_mean_counts_only_the_pixels_inside_and_the_guided_filter_takes_each_channel_alone() -> None:
    from dgdehaze_core.training.priors import box_mean, guided_filter

    x = torch.rand(2, 3, 9, 13, dtype=torch.float64)
    radius = 2
    brute = torch.empty_like(x)
    for row in range(9):
        for col in range(13):
            window = x[:, :, max(0, row - radius):row + radius + 1, max(0, col - radius):col + radius + 1]
            brute[:, :, row, col] = window.mean((-2, -1))
    assert torch.allclose(box_mean(x, radius), brute, atol=1e-12)
    guide, source = torch.rand(2, 1, 40, 50), torch.rand(2, 3, 40, 50)  # the maps are filtered stacked
    together = guided_filter(guide, source, 6, 1e-3)
    for channel in range(3):
        alone = guided_filter(guide, source[:, channel:channel + 1], 6, 1e-3)
        assert torch.allclose(together[:, channel:channel + 1], alone, atol=1e-6)


def test_a_weight_that_became_infinite_or_nan_is_caught_in_any_tensor(tmp_path: Path) -> None:
    from dgdehaze_core.training.run_control import check_finite_weights

    weights = [torch.randn(64, 64), torch.randn(3), torch.randn(8, 8, 3, 3)]
    check_finite_weights(weights, 5, tmp_path / "last.pt")
    check_finite_weights([], 5, tmp_path / "last.pt")
    check_finite_weights([torch.full((1000,), 1e20), torch.ones(3)], 5, tmp_path / "last.pt")  # large, finite
    for bad in (math.inf, -math.inf, math.nan):
        spoilt = [w.clone() for w in weights]
        spoilt[2][4, 1, 0, 2] = bad
        with pytest.raises(RuntimeError, match="weights became NaN or infinite at iteration 5; no checkpoint"):
            check_finite_weights(spoilt, 5, tmp_path / "last.pt")


def test_a_run_resumed_from_a_checkpoint_of_the_per_tensor_optimizer_keeps_the_multi_tensor_one(smoke_recipe,
                                                                                                tmp_path: Path) -> None:
    """A last.pt saved before the trainers chose `foreach` holds foreach None in its optimizer's state: loading it
    must not bring the slower per-tensor loop back, nor lose the moments it saved."""
    trainer = Trainer(smoke_recipe, tmp_path / "run", device="cpu")
    older = torch.optim.AdamW(trainer.model.parameters(), lr=smoke_recipe.lr, foreach=None)
    trainer.model(torch.rand(1, 3, 64, 64))["clear"].mean().backward()
    older.step()
    saved = copy.deepcopy(older.state_dict())
    assert saved["param_groups"][0]["foreach"] is None
    from dgdehaze_core.training.run_control import load_optimizer_state

    load_optimizer_state(trainer.optimizer, saved)
    assert trainer.optimizer.param_groups[0]["foreach"] is True
    first = next(iter(trainer.model.parameters()))
    torch.testing.assert_close(trainer.optimizer.state[first]["exp_avg"], older.state[first]["exp_avg"])


def test_loss_falls_on_a_fixed_batch(smoke_recipe) -> None:
    trainer = Trainer(smoke_recipe, "unused", device="cpu")
    clear = RandomCrops(smoke_recipe.clear, 64, 160, (1.0, 2.0), 0, "clear")
    hazy = RandomCrops(smoke_recipe.hazy, 64, 160, (1.0, 2.0), 0, "hazy")
    clear_batch = torch.stack([clear[i] for i in range(4)])
    hazy_batch = torch.stack([hazy[i] for i in range(4)])
    totals = []
    for _ in range(20):
        trainer.generator.manual_seed(0)  # the same synthetic haze every step
        totals.append(trainer.step(clear_batch, hazy_batch)["total"])
    assert np.isfinite(totals).all()
    assert np.mean(totals[-5:]) < 0.75 * np.mean(totals[:3]), totals
