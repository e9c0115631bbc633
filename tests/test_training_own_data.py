"""Training on your own photos as docs/TRAINING.md walks it ("Adapting lite to your camera's fog"): a copy of
training/finetune.yaml with a folder of your own fog photos, the mistakes made editing it, and the awkward files
such a folder holds, and the trained weights put to use. Seconds each: one run of training/smoke.yaml of one
iteration (`exported_run`) serves the tests that need a real run; the others stop before training."""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR, shared_data_dir
from dgdehaze_core.io.checkpoints import read_checkpoint
from dgdehaze_core.models import shipped_weights_path

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


def _smoke_with_my_fog(tmp_path: Path, fog: Path) -> Path:
    """training/smoke.yaml (3 clear and 7 hazy photos: decoded in a second) with `fog` as one more hazy source, as
    docs/TRAINING.md step 2 adds a folder of one's own."""
    recipe = tmp_path / "my_fog.yaml"
    text = (REPO_DIR / "training" / "smoke.yaml").read_text(encoding="utf-8")
    hazy = "    - path: ${DATA}/hazy-real/urhi"
    assert hazy in text
    recipe.write_text(text.replace(hazy, f"{hazy}\n    - path: {fog}\n      weight: 2.0", 1), encoding="utf-8")
    return recipe


@needs_data
def test_every_unreadable_photo_in_my_folder_is_named_at_once(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of one's own photos holds a few that do not read (a copy cut short, an empty file): the run stopped
    at the first, naming it alone, after decoding every clear image (20 s with finetune.yaml's), and each rerun
    found the next one."""
    assert DATA is not None
    fog = tmp_path / "fog"
    fog.mkdir()
    photos = sorted((DATA / "hazy-real" / "urhi").glob("*.png"))[:2]
    for photo in photos:
        shutil.copy(photo, fog / photo.name)
    whole = (DATA / "hazy-real" / "o-haze" / "08_outdoor_hazy.jpg").read_bytes()
    (fog / "cut_short.jpg").write_bytes(whole[:len(whole) // 3])
    (fog / "empty.png").write_bytes(b"")
    (fog / "not_a_photo.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    run = tmp_path / "run"
    assert main(["train", "--config", str(_smoke_with_my_fog(tmp_path, fog)), "--out", str(run)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("dgdehaze train: error: 3 of the 5 image files to train on do not read"), error
    for name in ("cut_short.jpg", "empty.png", "not_a_photo.jpg"):
        assert str(fog / name) in error, error
    assert "(0 bytes)" in error and "run with -v" not in error
    assert not run.exists()


@dataclass(frozen=True)
class ExportedRun:
    """A run of training/smoke.yaml (one iteration) exported onto `deployed`, which held the shipped lite weights, as
    a node deployed by docs/TRAINING.md step 5 would run them; `messages`: what it logged, in order."""

    run: Path
    deployed: Path
    messages: list[str]


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory: pytest.TempPathFactory) -> ExportedRun:
    if DATA is None or not (DATA / "hazy-real" / "urhi").is_dir():
        pytest.skip("needs ../shared/data (hazy-real/urhi)")
    folder = tmp_path_factory.mktemp("exported")
    deployed = folder / "my_lite.pt"
    shutil.copy(shipped_weights_path("lite"), deployed)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        assert main(["train", "--config", str(REPO_DIR / "training" / "smoke.yaml"), "--out", str(folder / "run"),
                     "--iterations", "1", "--no-progress", "--export", str(deployed)]) == 0
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return ExportedRun(folder / "run", deployed, [record.getMessage() for record in records])


def test_export_onto_weights_a_node_runs_says_what_it_replaces_before_the_run(exported_run: ExportedRun) -> None:
    """docs/TRAINING.md step 5 points the node's `weights` at the file `--export` wrote; the next run exported with
    the same command line replaced those weights when it ended, without a word (`dgdehaze export` warns)."""
    deployed, messages = exported_run.deployed, exported_run.messages
    held = "4500 training iterations of recipe lite"
    warned = [index for index, message in enumerate(messages) if str(deployed) in message and held in message]
    started = next(index for index, message in enumerate(messages) if message.startswith("training smoke"))
    assert len(warned) == 2 and warned[0] < started < warned[1], messages
    assert "replaced when the run ends" in messages[warned[0]] and "another --export" in messages[warned[0]]
    assert messages[warned[1]].startswith(f"replacing {deployed}")
    assert read_checkpoint(deployed, "weights")["meta"]["recipe"] == "smoke"


def test_a_run_folder_given_as_the_method_names_its_weights(exported_run: ExportedRun, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`--method runs/my_camera` (the run folder, not a file in it) was 'unknown dehazing method', naming dcp, lite
    and base alone."""
    assert DATA is not None
    photo = DATA / "hazy-real" / "urhi" / "YST_Bing_667.png"
    for command in (["dehaze", str(photo), "--out", str(tmp_path / "out")],
                    ["eval", "--dataset", str(DATA / "paired" / "sots-outdoor"), "--measure", "quality"]):
        assert main([*command, "--method", str(exported_run.run)]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert (f"{exported_run.run} is a training run's folder: give its best.pt (the best validation) or "
                f"last.pt (the last iteration)") in error, error
    assert not (tmp_path / "out").exists()


def test_relative_weights_in_a_node_parameters_file_say_where_they_were_looked_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/TRAINING.md step 5: a relative `weights` is taken from the node's working folder. One written relative
    to the parameters file beside it was refused as "no such file 'my_lite.pt'", which did not say where it was
    looked for."""
    mine = tmp_path / "mine"
    mine.mkdir()
    shutil.copy(shipped_weights_path("lite"), mine / "my_lite.pt")
    params = mine / "my_dgdehaze.yaml"
    params.write_text("/**:\n  ros__parameters:\n    weights: my_lite.pt\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    bag = REPO_DIR / "data" / "demo" / "rural_fog_day"
    assert main(["bag-eval", str(bag), "--node", "--params-file", str(params), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (f"weights: no such file 'my_lite.pt' in the working folder {tmp_path} (a relative path is taken from "
            "there: give an absolute one)") in error, error
    assert not (tmp_path / "out").exists()
