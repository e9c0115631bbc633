"""Scattering accuracy: the pair's fitted A and t on haze synthesized from a known depth, and on real SOTS pairs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.evaluation.scattering_eval import ScatteringFit, fit_scattering, scattering_errors
from dgdehaze_core.io.images import ImageError
from dgdehaze_core.physics.scattering import synthesize_haze

CLEAR_DEPTH_WEIGHTS = Path(__file__).parents[1] / "dgdehaze_core" / "weights" / "clear_depth_kitti.pt"


def _hazed(clear_bgr: np.ndarray, depth: np.ndarray, beta: float, airlight: float) -> tuple[np.ndarray, np.ndarray]:
    """uint8 haze of a clear frame from a known depth (unknown depth: far), and its true transmission."""
    depth = np.where(np.isfinite(depth), depth, np.nanmax(depth)).astype(np.float32)
    clear = clear_bgr.astype(np.float32) / 255.0
    transmission = np.exp(-beta * depth)
    hazy = synthesize_haze(clear, depth[:, :, None], beta, np.full(3, airlight, np.float32))
    return np.clip(hazy * 255.0 + 0.5, 0, 255).astype(np.uint8), transmission


def test_the_fit_recovers_the_airlight_and_transmission_haze_was_made_with(middlebury_scene) -> None:
    clear, depth = middlebury_scene
    hazy, true_t = _hazed(clear, depth, beta=0.6, airlight=0.83)
    fit = fit_scattering(hazy, clear)
    assert fit.airlight == pytest.approx(0.83, abs=0.011)
    valid = np.isfinite(fit.transmission)
    assert valid.mean() > 0.8
    assert np.median(np.abs(fit.transmission[valid] - true_t[valid])) < 0.01
    assert fit.rmse < 0.004                                         # uint8 rounding only
    exact = scattering_errors(true_t, np.full(3, 0.83, np.float32), fit)
    assert exact["airlight_error"] < 0.011 and abs(exact["t_bias"]) < 0.01
    thinner = scattering_errors(np.clip(true_t + 0.1, 0, 1), np.full(3, 0.73, np.float32), fit)
    assert thinner["airlight_error"] == pytest.approx(0.1, abs=0.011)
    assert thinner["t_bias"] == pytest.approx(0.1, abs=0.02) and thinner["t_mae"] == pytest.approx(0.1, abs=0.02)


def test_bad_input_gets_a_clear_message(middlebury_scene) -> None:
    clear, _ = middlebury_scene
    with pytest.raises(ImageError, match="one size"):
        fit_scattering(clear[:10], clear)
    fit = fit_scattering(clear, clear)
    with pytest.raises(ImageError, match="does not match"):
        scattering_errors(np.ones((4, 4), np.float32), np.ones(3), fit)
    undetermined = ScatteringFit(airlight=1.0, transmission=np.full((4, 4), np.nan, np.float32), rmse=0.0)
    with pytest.raises(ValueError, match="determines no transmission"):
        scattering_errors(np.ones((4, 4), np.float32), np.ones(3), undetermined)
    assert np.all(fit.transmission[np.isfinite(fit.transmission)] == 1.0)   # no haze: t = 1 wherever determined


def test_eval_scattering_on_real_sots_pairs(sots_pairs: Path, tmp_path: Path) -> None:
    out = tmp_path / "scattering.json"
    assert main(["eval", "--dataset", str(sots_pairs), "--measure", "scattering", "--method", "hazy,dcp",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert list(rows) == ["dcp"]                                    # the input estimates no A or t
    dcp = rows["dcp"]
    assert dcp["pairs"] == 2 and dcp["fit_rmse"] < 0.02             # SOTS follows the model it was made with
    assert 0.0 <= dcp["airlight_error"] < 0.2 and 0.0 < dcp["t_mae"] < 0.3
    assert abs(dcp["t_bias"]) <= dcp["t_mae"]


def test_a_depth_network_gets_no_scattering_row_its_t_of_1_is_no_estimate(sots_pairs: Path, tmp_path: Path) -> None:
    """A clear-depth checkpoint returns t = 1 and A = 1: it got rows (t_mae 0.5 on real pairs) as though it had
    estimated them; alone it is refused for what it lacks."""
    depth_network = f"clear-depth={CLEAR_DEPTH_WEIGHTS}"
    out = tmp_path / "scattering.json"
    assert main(["eval", "--dataset", str(sots_pairs), "--measure", "scattering", "--method", f"dcp,{depth_network}",
                 "--limit", "1", "--json", str(out)]) == 0
    assert list(json.loads(out.read_text())) == ["dcp"]
    assert main(["eval", "--dataset", str(sots_pairs), "--measure", "scattering", "--method", depth_network,
                 "--limit", "1"]) == 2
