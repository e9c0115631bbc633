"""The dual-network option of the dehazer trainer: a clear-depth network makes the haze and teaches the hazy one."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.models.clear_depth import ClearDepthArchitecture, ClearDepthNet, save_clear_depth
from dgdehaze_core.training.datasets import RandomCrops
from dgdehaze_core.training.recipe import RecipeError, load_recipe, recipe_from_dict
from dgdehaze_core.training.trainer import Trainer

SMOKE = REPO_DIR / "training" / "smoke.yaml"


@pytest.fixture()
def clear_depth_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    network = ClearDepthNet(ClearDepthArchitecture(widths=(8, 16), blocks=(0, 0)))
    return save_clear_depth(network.eval(), (64, 64), tmp_path / "clear_depth.pt")


def _crops(dataset: RandomCrops, count: int = 2) -> torch.Tensor:
    return torch.stack([dataset[index] for index in range(count)])


def test_the_clear_depth_network_makes_the_haze_from_its_depth_of_the_whole_image(shared_data: Path,
                                                                                 clear_depth_file: Path,
                                                                                 tmp_path: Path):
    torch.set_num_threads(1)
    recipe = load_recipe(SMOKE, [f"clear_depth={clear_depth_file}"])
    trainer = Trainer(recipe, tmp_path / "run", device="cpu")
    prior_only = Trainer(load_recipe(SMOKE), tmp_path / "ablation", device="cpu")
    crops = RandomCrops(recipe.clear, 64, 160, (1.0, 1.0), 0, "clear", trainer.depth_of)
    plain = RandomCrops(recipe.clear, 64, 160, (1.0, 1.0), 0, "clear")
    batch = _crops(crops)
    assert batch.shape == (2, 4, 64, 64) and torch.equal(batch[:, :3], _crops(plain))
    for crop in batch:  # the depth channel is the same window of the network's depth of the whole image
        found = [i for i, image in enumerate(crops.images)
                 if _window_of(image, crop[:3]) is not None]
        assert len(found) == 1
        image, depths = crops.images[found[0]], crops.depths[found[0]]
        flipped, top, left = _window_of(image, crop[:3])
        window = depths[top:top + 64, left:left + 64]
        assert np.allclose(crop[3].numpy(), window[:, ::-1] if flipped else window, atol=1e-5)
        assert np.allclose(depths, trainer.depth_of(image), atol=1e-5)
    haze = trainer.synthesize(batch[:, :3], batch[:, 3:])
    for used, predicted in zip(haze["depth"], batch[:, 3:]):
        correlation = np.corrcoef(used.flatten().numpy(), predicted.flatten().numpy())[0, 1]
        assert correlation > 0.999
    beta = -torch.log(haze["transmission"]) / haze["depth"]
    assert (beta.std(dim=(1, 2, 3)) < 1e-4 * beta.mean(dim=(1, 2, 3))).all()
    assert (haze["depth"] - prior_only.synthesize(batch[:, :3])["depth"]).abs().mean() > 0.05
    ratios = Trainer(load_recipe(SMOKE, [f"clear_depth={clear_depth_file}", "clear_depth_scaling=farthest"]),
                     tmp_path / "ratios", device="cpu").synthesize(batch[:, :3], batch[:, 3:])
    for used, predicted in zip(ratios["depth"], batch[:, 3:]):  # the clear network's depth over its farthest point
        assert torch.allclose(used, predicted / predicted.max(), rtol=1e-5)
        assert used.max().item() == pytest.approx(1.0)
    with pytest.raises(RecipeError, match="clear_depth_scaling"):
        load_recipe(SMOKE, ["clear_depth_scaling=median"])


def _window_of(image: np.ndarray, crop: torch.Tensor) -> tuple[bool, int, int] | None:
    """Where an unzoomed crop lies in its image (flipped or not), found by exact match; None if elsewhere."""
    pixels = (crop.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    size = pixels.shape[0]
    for flipped, patch in ((False, pixels), (True, pixels[:, ::-1])):
        rows, cols = np.nonzero((image[:image.shape[0] - size + 1, :image.shape[1] - size + 1]
                                 == patch[0, 0]).all(-1))
        for top, left in zip(rows, cols):
            if np.array_equal(image[top:top + size, left:left + size], patch):
                return flipped, int(top), int(left)
    return None


def test_a_source_marked_prior_depth_keeps_the_prior(shared_data: Path, clear_depth_file: Path, tmp_path: Path):
    torch.set_num_threads(1)
    recipe = load_recipe(SMOKE, [f"clear_depth={clear_depth_file}"])
    trainer = Trainer(recipe, tmp_path / "run", device="cpu")
    marked = [dataclasses.replace(source, prior_depth=True) for source in recipe.clear]
    batch = _crops(RandomCrops(marked, 64, 160, (1.0, 2.0), 0, "clear", trainer.depth_of))
    assert torch.isnan(batch[:, 3]).all()
    generator_state = trainer.generator.get_state()
    with_nan = trainer.synthesize(batch[:, :3], batch[:, 3:])
    trainer.generator.set_state(generator_state)
    assert torch.equal(with_nan["depth"], trainer.synthesize(batch[:, :3])["depth"])


def test_training_with_a_clear_depth_teacher_keeps_the_teacher_fixed(shared_data: Path, clear_depth_file: Path,
                                                                     tmp_path: Path):
    torch.set_num_threads(1)
    recipe = load_recipe(SMOKE, [f"clear_depth={clear_depth_file}"])
    trainer = Trainer(recipe, tmp_path / "run", device="cpu")
    before = {name: value.clone() for name, value in trainer.clear_depth.model.state_dict().items()}
    crops = RandomCrops(recipe.clear, 64, 160, (1.0, 2.0), 0, "clear", trainer.depth_of)
    row = trainer.step(_crops(crops), _crops(RandomCrops(recipe.hazy, 64, 160, (1.0, 2.0), 0, "hazy")))
    assert np.isfinite(row["depth_consistency"]) and row["depth_consistency"] > 0
    assert all(torch.equal(before[name], value) for name, value in trainer.clear_depth.model.state_dict().items())


def test_prior_depth_is_refused_on_a_hazy_source(tmp_path: Path):
    raw = {"name": "t", "iterations": 1, "data": {"clear": [str(tmp_path)],
                                                  "hazy": [{"path": str(tmp_path), "prior_depth": True}]}}
    with pytest.raises(RecipeError, match="clear sources only"):
        recipe_from_dict(raw, tmp_path)
    raw["data"]["hazy"] = [str(tmp_path)]
    raw["data"]["clear"] = [{"path": str(tmp_path), "prior_depth": "yes"}]
    with pytest.raises(RecipeError, match="true or false"):
        recipe_from_dict(raw, tmp_path)
