"""The dual-network option of the dehazer trainer: a clear-depth network makes the haze and teaches the hazy one."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dgdehaze_core.data_paths import REPO_DIR
from dgdehaze_core.models.clear_depth import ClearDepthArchitecture, ClearDepthNet, save_clear_depth
from dgdehaze_core.training.datasets import RandomCrops
from dgdehaze_core.training.recipe import load_recipe
from dgdehaze_core.training.trainer import Trainer

SMOKE = REPO_DIR / "training" / "smoke.yaml"


@pytest.fixture()
def clear_depth_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    network = ClearDepthNet(ClearDepthArchitecture(widths=(8, 16), blocks=(0, 0)))
    return save_clear_depth(network.eval(), (64, 64), tmp_path / "clear_depth.pt")


def _crops(recipe, count: int = 2) -> torch.Tensor:
    crops = RandomCrops(recipe.clear, 64, 160, (1.0, 2.0), 0, "clear")
    return torch.stack([crops[index] for index in range(count)])


def test_the_clear_depth_network_makes_the_haze(shared_data: Path, clear_depth_file: Path, tmp_path: Path):
    torch.set_num_threads(1)
    recipe = load_recipe(SMOKE, [f"clear_depth={clear_depth_file}"])
    trainer = Trainer(recipe, tmp_path / "run", device="cpu")
    prior_only = Trainer(load_recipe(SMOKE), tmp_path / "ablation", device="cpu")
    batch = _crops(recipe)
    haze = trainer.synthesize(batch)
    with torch.no_grad():
        clear_depth = trainer.clear_depth(batch)
    for used, predicted in zip(haze["depth"], clear_depth):
        correlation = np.corrcoef(used.flatten().numpy(), predicted.flatten().numpy())[0, 1]
        assert correlation > 0.999
    beta = -torch.log(haze["transmission"]) / haze["depth"]
    assert (beta.std(dim=(1, 2, 3)) < 1e-4 * beta.mean(dim=(1, 2, 3))).all()
    assert (haze["depth"] - prior_only.synthesize(batch)["depth"]).abs().mean() > 0.05


def test_training_with_a_clear_depth_teacher_keeps_the_teacher_fixed(shared_data: Path, clear_depth_file: Path,
                                                                     tmp_path: Path):
    torch.set_num_threads(1)
    recipe = load_recipe(SMOKE, [f"clear_depth={clear_depth_file}"])
    trainer = Trainer(recipe, tmp_path / "run", device="cpu")
    before = {name: value.clone() for name, value in trainer.clear_depth.state_dict().items()}
    row = trainer.step(_crops(recipe), _crops(recipe))
    assert np.isfinite(row["depth_consistency"]) and row["depth_consistency"] > 0
    assert all(torch.equal(before[name], value) for name, value in trainer.clear_depth.state_dict().items())


def test_a_clear_depth_network_with_a_coarser_stride_than_the_crop_is_refused(shared_data: Path, tmp_path: Path):
    coarse = ClearDepthNet(ClearDepthArchitecture(widths=(8, 8, 8, 8, 8, 8, 8), blocks=(0,) * 7))
    path = save_clear_depth(coarse, (128, 128), tmp_path / "coarse.pt")
    with pytest.raises(ValueError, match="stride"):
        Trainer(load_recipe(SMOKE, [f"clear_depth={path}"]), tmp_path / "run", device="cpu")
