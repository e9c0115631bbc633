"""The GPU-machine kit: tools/device_kit.py packs what a recipe reads, tools/device_train.sh trains from it.

Run here on the CPU with the smoke recipe: the packed data must give the trainer the same images (scaled as it
scales them) and validation pairs, and the training script must bring back a resumable run and loadable weights.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.images import read_image
from dgdehaze_core.models import load_model
from dgdehaze_core.training.datasets import collect_images, load_rgb, validation_pairs
from dgdehaze_core.training.recipe import load_recipe
from test_tools_cli import WITHOUT_TORCH

SMOKE = REPO_DIR / "training" / "smoke.yaml"


def _pack(kit: Path, *recipes: Path, torch: bool = True) -> subprocess.CompletedProcess:
    """tools/device_kit.py run on `recipes` into `kit`; without `torch`, where torch cannot be imported."""
    return subprocess.run([sys.executable, *([] if torch else ["-c", WITHOUT_TORCH]),
                           str(REPO_DIR / "tools" / "device_kit.py"), *map(str, recipes), "--out", str(kit)],
                          capture_output=True, text=True, timeout=300)


def _pack_here(kit: Path, *recipes: Path) -> int:
    """tools/device_kit.py's main run in this process on `recipes` into `kit`: a pack whose exit code and output a
    test does not check, without a Python and torch start of its own."""
    path = list(sys.path)
    sys.path.insert(0, str(REPO_DIR / "tools"))
    try:
        import device_kit
    finally:
        sys.path[:] = path  # as it was: the tool puts the repository first as it is imported
    return device_kit.main([*map(str, recipes), "--out", str(kit)])


@pytest.fixture(scope="module")
def smoke_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dgdehaze_core.datasets.paths import shared_data_dir
    if shared_data_dir() is None:
        pytest.skip("../shared/data is absent: the kit is packed from it")
    kit = tmp_path_factory.mktemp("kit")
    packed = _pack(kit, SMOKE)
    assert packed.returncode == 0, packed.stderr
    return kit


def _training_env(**values: str) -> dict[str, str]:
    """The environment of a device_train.sh run here: the CPU, and one torch thread per trainer. At torch's default
    (a thread per core) the trainers side by side of device_train_jobs.py, or one beside the other xdist worker,
    asked for more threads than the host's cores, and each iteration waited on threads not running (ten times
    slower on two cores); the GPU machines the scripts are for train on the GPU."""
    return {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "OMP_NUM_THREADS": "1", **values}


def _recipe_with_data(data: Path):
    previous = os.environ.get("DGDEHAZE_DATA")
    os.environ["DGDEHAZE_DATA"] = str(data)
    try:
        recipe = load_recipe(SMOKE)
        return recipe, collect_images(recipe.clear, "clear") + collect_images(recipe.hazy, "hazy"), \
            validation_pairs(recipe.validation)
    finally:
        if previous is None:
            del os.environ["DGDEHAZE_DATA"]
        else:
            os.environ["DGDEHAZE_DATA"] = previous


def test_the_kit_gives_the_trainer_the_same_images(smoke_kit: Path, shared_data: Path) -> None:
    recipe, original, original_pairs = _recipe_with_data(shared_data)
    _, packed, packed_pairs = _recipe_with_data(smoke_kit / "data")
    relative = [image.path.relative_to(shared_data) for image, _, _ in original]
    assert [image.path.relative_to(smoke_kit / "data") for image, _, _ in packed] == relative
    assert [weight for _, weight, _ in packed] == [weight for _, weight, _ in original]
    for (source, _, _), (copy, _, _) in zip(original, packed):
        expected = load_rgb(source.path, recipe.max_side)
        stored = read_image(copy.path)[:, :, ::-1]
        assert stored.shape == expected.shape and max(stored.shape[:2]) <= recipe.max_side
        difference = np.abs(stored.astype(int) - expected.astype(int))
        if source.path.suffix.lower() == ".png":
            assert difference.max() == 0, source.path
        else:  # a second JPEG pass at the shared data's quality: small next to what the crops' haze does
            psnr = 10 * np.log10(255.0 ** 2 / np.mean(difference.astype(float) ** 2))
            assert psnr > 35.0, (source.path, psnr)
    assert [p.name for p in packed_pairs] == [p.name for p in original_pairs]
    for source, copy in zip(original_pairs, packed_pairs):
        assert copy.hazy.read_bytes() == source.hazy.read_bytes()
        assert copy.clear.read_bytes() == source.clear.read_bytes()
    manifest = json.loads((smoke_kit / "manifest.json").read_text())
    assert manifest["files"] == len(original) + 2 * len(original_pairs)
    assert manifest["kit_bytes"] == sum(p.stat().st_size for p in (smoke_kit / "data").rglob("*") if p.is_file())


def test_a_recipe_reading_outside_the_shared_data_is_refused_and_the_earlier_kit_kept(tmp_path: Path,
                                                                                       shared_data: Path) -> None:
    """The refusal came after the earlier kit's data and manifest were deleted."""
    images = tmp_path / "mine"
    images.mkdir()
    shutil.copy(shared_data / "paired" / "sots-outdoor" / "clear" / "0016.jpg", images)
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(SMOKE.read_text().replace("${DATA}/clear/bdd", str(images)))
    kit = tmp_path / "kit"
    (kit / "data").mkdir(parents=True)
    (kit / "data" / "image.png").write_bytes(b"packed earlier")
    (kit / "manifest.json").write_text("{}")
    packed = _pack(kit, recipe)
    assert packed.returncode == 2
    assert "is not under the shared data folder" in packed.stderr
    assert sorted(path.name for path in kit.iterdir()) == ["data", "manifest.json"]
    assert (kit / "data" / "image.png").read_bytes() == b"packed earlier"


def test_a_recipe_the_kit_cannot_read_ends_in_one_line_and_keeps_the_kit(tmp_path: Path) -> None:
    """Refused before torch is imported: a mistyped path waited seconds for it (the recipe's model names)."""
    kit = tmp_path / "kit"
    (kit / "data").mkdir(parents=True)
    (kit / "manifest.json").write_text("{}")
    for recipe, reason in ((tmp_path / "none.yaml", "no such recipe"),
                           (REPO_DIR / "training" / "depth_kitti.yaml", "train-depth")):
        refused = _pack(kit, recipe, torch=False)
        assert refused.returncode == 2 and refused.stderr.startswith("device_kit.py: error: "), refused.stderr
        assert reason in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert sorted(path.name for path in kit.iterdir()) == ["data", "manifest.json"]


def test_device_train_brings_back_a_resumable_run_and_fails_when_its_weights_cannot_be_exported(
        smoke_kit: Path, tmp_path: Path) -> None:
    """The export's failure was not the script's: the call exited 0 with no NAME.pt to bring back. The run, brought
    back whether or not its weights are exported, trained in a folder of its own under $TMPDIR, left there after its
    files were brought back (a checkpoint of 4.8 MB in /tmp for every call, and every test run). The weights the
    script exports are loaded in the side-by-side jobs' test below, whose jobs train through this script: a call of
    its own here repeated a training and an export for that alone."""
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    (out / "smoke.pt").mkdir(parents=True)  # no file can be written there
    scratch.mkdir()
    # torch makes its compile cache's folder under $TMPDIR on first use, unless given one (as this test's process
    # gives its children once torch made it here)
    env = _training_env(OUT=str(out), KIT=str(smoke_kit), TMPDIR=str(scratch),
                        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "torch_cache"))
    trained = subprocess.run(["bash", str(REPO_DIR / "tools" / "device_train.sh"), str(SMOKE), "2", "5"],
                             cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=400)
    assert trained.returncode == 1, trained.stdout + trained.stderr
    assert "its weights could not be exported to smoke.pt" in trained.stderr
    run = out / "smoke"
    assert {p.name for p in run.iterdir()} >= {"last.pt", "recipe.yaml", "train.csv", "val.csv"}
    assert "2 iterations" in (out / "smoke.log").read_text()
    assert not [p for p in scratch.iterdir() if p.is_dir()], "the run's folder is removed once its files are in $OUT"


def test_device_train_refuses_without_a_kit(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "KIT": str(tmp_path / "no-kit")}
    refused = subprocess.run(["bash", str(REPO_DIR / "tools" / "device_train.sh"), str(SMOKE), "3", "1"],
                             cwd=REPO_DIR, env=env, capture_output=True, text=True)
    assert refused.returncode == 2
    assert "pack the recipe's data with tools/device_kit.py" in refused.stderr
    assert not list(tmp_path.iterdir())
    unfinished = tmp_path / "unfinished"
    (unfinished / "data").mkdir(parents=True)  # packing was cut short: no manifest.json yet
    env["KIT"] = str(unfinished)
    refused = subprocess.run(["bash", str(REPO_DIR / "tools" / "device_train.sh"), str(SMOKE), "3", "1"],
                             cwd=REPO_DIR, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "no finished kit" in refused.stderr


def test_the_kit_refuses_a_folder_that_is_no_kit_and_deletes_nothing(tmp_path: Path) -> None:
    """Refused before torch is imported (it waited seconds for it, reading the recipe and its images' lists)."""
    precious = tmp_path / "data" / "demo.mcap"
    precious.parent.mkdir()
    precious.write_bytes(b"a recording")
    refused = _pack(tmp_path, SMOKE, torch=False)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines() == [
        f"device_kit.py: error: {tmp_path} holds files and is no kit (no manifest.json): give a new folder or an "
        "earlier kit"], "one line, as the tool's other refusals"
    assert precious.read_bytes() == b"a recording"
    cut = tmp_path / "cut"  # a kit whose packing was cut short: data/ and runs/, no manifest.json yet
    for folder in ("data/clear", "runs/smoke"):
        (cut / folder).mkdir(parents=True)
    (cut / ".packing").touch()
    assert _pack_here(cut, SMOKE) == 0 and (cut / "manifest.json").is_file()


def test_a_kit_whose_runs_would_not_travel_is_refused_and_left_unfinished(tmp_path: Path, shared_data: Path) -> None:
    """Only data/ was counted against the device tool's 64 MiB, not the runs put at runs/NAME/ to be resumed that
    travel with it: such a kit was reported as fitting and finished, and the device tool then refused it."""
    kit = tmp_path / "kit"
    (kit / "runs" / "smoke").mkdir(parents=True)
    (kit / "manifest.json").write_text("{}")
    with (kit / "runs" / "smoke" / "last.pt").open("wb") as checkpoint:
        checkpoint.truncate(64 * 2**20)  # a sparse file: its size counts, no disk is used
    refused = _pack(kit, SMOKE)
    assert refused.returncode == 2, refused.stderr
    assert f"{kit} is too large to travel" in refused.stderr.strip().splitlines()[-1]
    assert not (kit / "manifest.json").exists() and (kit / ".packing").exists()
    (kit / "runs" / "smoke" / "last.pt").unlink()
    assert _pack_here(kit, SMOKE) == 0 and (kit / "manifest.json").is_file()
    manifest = json.loads((kit / "manifest.json").read_text())
    assert manifest["kit_bytes"] == sum(p.stat().st_size for p in (kit / "data").rglob("*") if p.is_file())


def test_jobs_side_by_side_are_timed_tied_to_one_schedule_and_packed_one_archive_each(
        smoke_kit: Path, tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    (work / "calibration-with").mkdir(parents=True)  # an earlier call's folder on a machine that stayed warm
    env = _training_env(OUT=str(out), KIT=str(smoke_kit), WORK=str(work))
    fast = ["val_every=10", "checkpoint_every=10"]
    # 11 calibration iterations: the rows train.csv logs at 10 and 11 (every 10th and the last) time the job
    command = [sys.executable, str(REPO_DIR / "tools" / "device_train_jobs.py"), "--minutes", "3",
               "--calibration", "11", "--job", "with", str(SMOKE), "10", *fast, "--job", "without", str(SMOKE), "20",
               *fast, "depth_guidance=false", "--tie", "with,without"]
    trained = subprocess.run(command, cwd=REPO_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    summary = {job["name"]: job for job in json.loads((out / "jobs.json").read_text())["jobs"]}
    assert summary["with"]["iterations"] == summary["without"]["iterations"] == 10  # the smaller cap, tied
    assert summary["with"]["rate"] > 0 and all(job["exit"] == 0 for job in summary.values())
    assert sorted(p.name for p in out.iterdir()) == ["jobs.json", "with.tgz", "without.tgz"]
    assert not list(work.glob("call-*/calibration-*/*.pt")), "the calibration runs, only timed, export no weights"
    with tarfile.open(out / "without.tgz") as archive:
        archive.extractall(tmp_path / "back", filter="data")
    model = load_model(tmp_path / "back" / "without" / "without.pt")
    assert model.config_name == "lite" and not model.depth_guidance
    assert "10 iterations" in (tmp_path / "back" / "without" / "without.log").read_text()
    refused = subprocess.run([*command[:3], "1", "--job", "a", str(SMOKE), "100", "--tie", "a,b"], cwd=REPO_DIR,
                             env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "--tie names no job b" in refused.stderr


def test_jobs_refuse_more_archives_than_come_back_and_a_missing_out_in_one_line(tmp_path: Path) -> None:
    jobs = [word for index in range(8) for word in ("--job", f"j{index}", str(SMOKE), "10")]
    command = [sys.executable, str(REPO_DIR / "tools" / "device_train_jobs.py"), "--minutes", "1"]
    env = {**os.environ, "OUT": str(tmp_path), "WORK": str(tmp_path / "work")}
    many = subprocess.run([*command, *jobs], env=env, capture_output=True, text=True, timeout=60)
    assert many.returncode == 1 and many.stderr.strip().splitlines() == [
        "8 jobs: the device tool brings back 8 files, one archive per job and jobs.json, so at most 7 jobs run at once"]
    env.pop("OUT")
    no_out = subprocess.run([*command, *jobs[:4]], env=env, capture_output=True, text=True, timeout=60)
    assert no_out.returncode == 1 and "Traceback" not in no_out.stderr and "OUT must name" in no_out.stderr
    assert not (tmp_path / "work").exists()


def test_the_jobs_archives_together_fit_what_the_device_tool_brings_back() -> None:
    sys.path.insert(0, str(REPO_DIR / "tools"))
    try:
        import device_train_jobs
    finally:
        sys.path.remove(str(REPO_DIR / "tools"))
    for jobs in range(1, 8):
        per_job = device_train_jobs.archive_bytes(15.5, jobs)
        assert per_job <= 15.5 * 2**20 and jobs * per_job + 2**20 <= 64 * 2**20
    assert device_train_jobs.archive_bytes(15.5, 1) == 15.5 * 2**20
