"""The detector-feature loss: the shipped YOLOv8n backbone, frozen, compares a dehazed image with the clear one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.images import bgr_to_rgb_float
from dgdehaze_core.training.detector_features import DetectorFeatures, detector_feature_loss
from dgdehaze_core.training.recipe import load_recipe
from dgdehaze_core.training.trainer import Trainer

SMOKE = REPO_DIR / "training" / "smoke.yaml"


@pytest.fixture(scope="module")
def backbone() -> DetectorFeatures:
    return DetectorFeatures()


@pytest.fixture()
def cones(middlebury_scene) -> tuple[torch.Tensor, torch.Tensor]:
    """Middlebury 'cones' (RGB in [0, 1], 1x3xHxW) cropped to 256x320 and its true depth in metres (NaN filled)."""
    image, depth = middlebury_scene
    rgb = torch.from_numpy(bgr_to_rgb_float(image)[:256, :320]).permute(2, 0, 1)[None]
    depth = torch.from_numpy(np.nan_to_num(depth[:256, :320], nan=float(np.nanmax(depth))))[None, None]
    return rgb, depth


def test_features_are_the_backbone_levels_the_neck_reads(backbone, cones) -> None:
    rgb, _ = cones
    p3, p4, p5 = backbone(rgb)
    assert [f.shape[-2:] for f in (p3, p4, p5)] == [(32, 40), (16, 20), (8, 10)]
    assert [f.shape[1] for f in (p3, p4, p5)] == [64, 128, 256]


def test_loss_is_zero_on_the_clear_image_and_grows_with_haze(backbone, cones) -> None:
    rgb, depth = cones
    assert detector_feature_loss(backbone, rgb, rgb).item() == 0.0
    losses = []
    for beta in (0.2, 0.6, 1.5):  # haze from the true depth (1.4-8 m here), light to dense
        t = torch.exp(-beta * depth)
        hazy = rgb * t + 0.9 * (1 - t)
        losses.append(detector_feature_loss(backbone, hazy, rgb).item())
    assert 0 < losses[0] < losses[1] < losses[2], losses


def test_backbone_stays_frozen_and_passes_gradients_to_its_input(backbone, cones) -> None:
    rgb, depth = cones
    hazy = (rgb * torch.exp(-0.6 * depth) + 0.9 * (1 - torch.exp(-0.6 * depth))).requires_grad_(True)
    backbone.train()
    assert not backbone.training
    detector_feature_loss(backbone, hazy, rgb).backward()
    assert hazy.grad is not None and hazy.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())


def test_trainer_logs_the_term_and_leaves_the_detector_untouched(shared_data, tmp_path) -> None:
    recipe = load_recipe(SMOKE, ["loss.detector_features=0.5", "iterations=2", "val_every=10"])
    trainer = Trainer(recipe, tmp_path / "run", device="cpu")
    before = {k: v.clone() for k, v in trainer.detector_features.state_dict().items()}
    trainer.train(progress=False)
    after = trainer.detector_features.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    column = rows[0].split(",").index("detector_features")
    assert all(float(row.split(",")[column]) > 0 for row in rows[1:])
