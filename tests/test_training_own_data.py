"""Training on your own photos as docs/TRAINING.md walks it ("Adapting lite to your camera's fog"): a copy of
training/finetune.yaml with a folder of your own fog photos, the mistakes made editing it, and the awkward files
such a folder holds. Each test stops before the first training step (seconds)."""
from __future__ import annotations

from pathlib import Path

import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR, shared_data_dir

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "hazy-real" / "urhi").is_dir(),
                                reason="needs ../shared/data (hazy-real/urhi)")


def _my_camera(tmp_path: Path) -> Path:
    """training/finetune.yaml copied as docs/TRAINING.md step 1 says, with `name: my_camera`."""
    recipe = tmp_path / "my_camera.yaml"
    text = (REPO_DIR / "training" / "finetune.yaml").read_text(encoding="utf-8")
    recipe.write_text(text.replace("name: finetune", "name: my_camera"), encoding="utf-8")
    return recipe


def test_a_recipe_typo_that_breaks_the_yaml_says_on_which_line(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    recipe = _my_camera(tmp_path)
    lines = recipe.read_text(encoding="utf-8").splitlines()
    broken = next(index for index, line in enumerate(lines) if line.startswith("crop_size:"))
    lines[broken] = "crop_size: [128"  # an unclosed list, as a hand edit leaves it
    recipe.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["train", "--config", str(recipe), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("dgdehaze train: error: ") and "is not valid YAML" in error
    assert f"line {broken + 2}, column 1" in error, error  # where PyYAML finds the list unclosed: the next line
    assert f"line {broken + 1}" in error, error  # and the list it was reading
    assert "run with -v" not in error
