"""Training runs: checkpoints, logs, resume, Ctrl-C and SIGTERM, and the run folder kept free for the next run."""
from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from dgdehaze_core.cli import main
from dgdehaze_core.cpu_threads import available_cpus
from dgdehaze_core.exits import Terminated
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.models import load_model
from dgdehaze_core.training.recipe import load_recipe, recipe_from_dict
from dgdehaze_core.training.run_control import (StepBoundaryStop, check_same_data, file_fingerprint, load_resumable,
                                                quiet_loader_worker, run_folder_lock)
from dgdehaze_core.training.trainer import LOSS_NAMES, Trainer


SMOKE = REPO_DIR / "training" / "smoke.yaml"


def _iterations(csv_path: Path) -> list[int]:
    with open(csv_path, newline="") as handle:
        return [int(row["iteration"]) for row in csv.DictReader(handle)]


def test_train_command_writes_checkpoints_logs_and_resumes(smoke_recipe, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "--config", str(SMOKE), "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args + ["--iterations", "4"]) == 0
    assert _iterations(out / "train.csv") == [1, 2, 3, 4]
    assert main(args + ["--iterations", "4"]) == 2  # a fresh run never overwrites an existing one
    recorded = (out / "recipe.yaml").read_text()
    rerun = load_recipe(out / "recipe.yaml")  # the model card's "the run folder keeps the recipe it ran"
    assert dataclasses.replace(rerun, source_file=None) == dataclasses.replace(
        load_recipe(SMOKE, ["iterations=4"]), source_file=None)
    assert main(args + ["--iterations", "6", "--resume", "--set", "lr=0.05"]) == 2  # not the run's recipe
    assert main(args + ["--iterations", "3", "--resume"]) == 2  # at iteration 4 already: refused, not "done"
    assert (out / "recipe.yaml").read_text() == recorded
    started = torch.load(out / "last.pt", map_location="cpu", weights_only=True)["meta"]
    exported = tmp_path / "weights.pt"
    figures = tmp_path / "figures.json"
    assert main(args + ["--iterations", "6", "--resume", "--export", str(exported), "--json", str(figures)]) == 0
    assert _iterations(out / "train.csv") == [1, 2, 3, 4, 5, 6]
    assert _iterations(out / "val.csv").count(6) == 2  # the set and the mean
    checkpoint = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    assert checkpoint["training"]["iteration"] == 6
    meta = checkpoint["meta"]  # the figures of the weights in the file, and separately the best iteration's
    with open(out / "val.csv", newline="") as handle:
        logged = [row for row in csv.DictReader(handle) if row["iteration"] == "6" and row["set"] == "mean"]
    assert meta["validation_iteration"] == 6
    assert meta["commit"] == started["commit"] and started["resumes"] == []  # the run's start; each resume listed
    assert [leg["iteration"] for leg in meta["resumes"]] == [4]
    assert meta["validation"]["mean"]["psnr"] == pytest.approx(float(logged[0]["psnr"]), abs=1e-4)
    assert meta["best_iteration"] in (3, 4, 6) and "mean" in meta["best_validation"]
    written = json.loads(figures.read_text())
    assert written["loss"]["iterations"] == 6 and math.isfinite(written["loss"]["last"])
    with open(out / "train.csv", newline="") as handle:
        totals = {int(row["iteration"]): float(row["total"]) for row in csv.DictReader(handle)}
    # the run's first loss, not the resumed part's (iteration 5's); a resume finding the run done says them too
    assert (written["loss"]["first"], written["loss"]["last"]) == pytest.approx((totals[1], totals[6]), rel=1e-5)
    assert main(args + ["--iterations", "6", "--resume", "--json", str(figures)]) == 0
    assert json.loads(figures.read_text())["loss"] == written["loss"]
    assert written["best/mean"]["psnr"] == pytest.approx(meta["best_validation"]["mean"]["psnr"])
    model = load_model(exported)
    assert model.config_name == "lite" and "training" not in torch.load(exported, weights_only=True)
    assert torch.equal(model.state_dict()["dehazer.mix_gate"], checkpoint["state_dict"]["dehazer.mix_gate"])


class _InterruptedTrainer(Trainer):
    """Gets a real Ctrl-C (SIGINT) in the middle of step `stop_at`, after that step's haze was drawn."""

    stop_at = 2

    def synthesize(self, clear: torch.Tensor, known_depth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        haze = super().synthesize(clear, known_depth)
        if self.iteration == self.stop_at:
            os.kill(os.getpid(), signal.SIGINT)
        return haze


def test_an_interrupted_run_resumes_to_the_same_weights(smoke_recipe, tmp_path: Path, terminal_signals) -> None:
    recipe = recipe_from_dict({"name": "r", "iterations": 5, "crop_size": 64, "batch_size": 2, "max_side": 128,
                               "num_workers": 0, "checkpoint_every": 100, "net_depth_after": 2, "device": "cpu",
                               "data": {"clear": [str(s.path) for s in smoke_recipe.clear],
                                        "hazy": [str(s.path) for s in smoke_recipe.hazy]}}, tmp_path)
    straight = Trainer(recipe, tmp_path / "straight")
    straight.train(progress=False)
    with pytest.raises(KeyboardInterrupt):
        _InterruptedTrainer(recipe, tmp_path / "broken").train(progress=False)
    saved = torch.load(tmp_path / "broken" / "last.pt", map_location="cpu", weights_only=True)
    assert saved["training"]["iteration"] == 3, "the step under way finishes, then the run saves and stops"
    resumed = Trainer(recipe, tmp_path / "broken", resume=True)
    resumed.train(progress=False)
    assert resumed.iteration == 5
    for name, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name


def test_tensorboard_keeps_one_point_a_step_across_a_crash_and_nothing_of_a_run_that_saved_nothing(
        smoke_recipe, tmp_path: Path) -> None:
    """Where tensorboard is installed: a run that failed before its first checkpoint left its events, so its folder
    stayed and the next run's curves held the failed one's; a run resumed after a crash showed the steps it ran
    again twice. (The tests of failed runs leaving no folder, above and below, fail there too without the fix.)"""
    pytest.importorskip("torch.utils.tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Crash(Trainer):
        def step(self, clear: torch.Tensor, real_hazy: torch.Tensor) -> dict[str, float]:
            if self.iteration == 5:  # steps 1..5 logged, last.pt of step 4
                raise RuntimeError("out of memory")
            return super().step(clear, real_hazy)

    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="the loss became nan"):
        Trainer(load_recipe(SMOKE, ["checkpoint_every=100", "lr=100000.0"]), out, device="cpu").train(progress=False)
    assert not out.exists()
    with pytest.raises(RuntimeError, match="out of memory"):
        Crash(smoke_recipe, out, device="cpu").train(progress=False)
    Trainer(smoke_recipe, out, device="cpu", resume=True).train(progress=False)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [event.step for event in events.Scalars("train/total")] == [1, 2, 3, 4, 5, 6]


def test_a_second_signal_stops_at_once_and_the_handlers_are_restored(terminal_signals) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StepBoundaryStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    saved: list[int] = []
    with pytest.raises(Terminated):  # dgdehaze exits 143, "terminated (SIGTERM)", not 130 as for Ctrl-C
        stop.after_step(7, lambda: saved.append(7) or Path("last.pt"))
    assert saved == [7]
    StepBoundaryStop().after_step(8, lambda: saved.append(8) or Path("last.pt"))  # nothing asked: nothing done
    assert saved == [7]


def test_an_export_that_would_replace_the_recipe_or_the_run_s_checkpoint_is_refused_before_training(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    recipe = tmp_path / "smoke.yaml"
    recipe.write_text(SMOKE.read_text())
    run = tmp_path / "run"
    for command in ("train", "train-depth"):
        for export, message in ((recipe, f"--export {recipe} would overwrite --config"),
                                (run / "last.pt", f"--export {run / 'last.pt'} lies in the run folder"),
                                (tmp_path, f"--export {tmp_path} is a folder"),
                                (tmp_path / "lite.onnx", "is read only from a file named *.pt"),
                                (tmp_path / "depth.pth", f"--export {tmp_path / 'depth.pth'}: a clear-depth network "
                                                         "is read only from a file named *.pt")):
            if export.suffix == ".pth" and command == "train":
                continue  # the paper's .pth weights load as a dehazer's
            config = recipe if command == "train" else REPO_DIR / "training" / "depth_kitti.yaml"
            if export == recipe and command == "train-depth":
                export, message = config, f"--export {config} would overwrite --config"
            assert main([command, "--config", str(config), "--out", str(run), "--export", str(export),
                         "--no-progress"]) == 2
            assert message in capsys.readouterr().err, (command, export)
    assert not run.exists() and recipe.read_text() == SMOKE.read_text()
    # the run's clear-depth network was replaced by the dehazer's weights: the run could not be resumed
    teacher = tmp_path / "clear_depth.pt"
    teacher.write_bytes((REPO_DIR / "dgdehaze_core" / "weights" / "clear_depth_kitti.pt").read_bytes())
    assert main(["train", "--config", str(recipe), "--out", str(run), "--export", str(teacher), "--no-progress",
                 "--iterations", "1", "--set", f"clear_depth={teacher}"]) == 2
    assert f"--export {teacher} would overwrite the recipe's clear_depth network" in capsys.readouterr().err
    assert not run.exists()
    assert teacher.read_bytes() == (REPO_DIR / "dgdehaze_core" / "weights" / "clear_depth_kitti.pt").read_bytes()


def test_an_export_onto_another_run_s_checkpoint_is_refused_before_training(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """Only the run's own folder was refused: --export OTHER/last.pt replaced another run's resumable state with
    bare weights (its --resume then failed: 'holds no training state') and OTHER/best.pt its best weights."""
    other = tmp_path / "other"
    other.mkdir()
    files = {name: name.encode() for name in ("last.pt", "best.pt", "recipe.yaml")}
    for name, data in files.items():
        (other / name).write_bytes(data)
    (tmp_path / "link").symlink_to(other)
    for command, config in (("train", SMOKE), ("train-depth", REPO_DIR / "training" / "depth_kitti.yaml")):
        for export in (other / "last.pt", other / "best.pt", tmp_path / "link" / "last.pt"):
            assert main([command, "--config", str(config), "--out", str(tmp_path / "run"), "--export", str(export),
                         "--no-progress"]) == 2
            assert (f"--export {export} would replace {export.name} of the training run in {other}"
                    in capsys.readouterr().err), (command, export)
    assert {path.name: path.read_bytes() for path in other.iterdir()} == files
    assert not (tmp_path / "run").exists()


def test_an_export_onto_the_weights_the_run_starts_from_is_refused_before_training(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A fine-tune exported onto its init_weights (--help's example, dgdehaze_core/weights/dgdehaze_lite.pt, with
    finetune.yaml's `init_weights: lite`) replaced the model it is judged against: `--method lite,mine=...` then
    compared the adapted model with itself, and the node's empty `weights` no longer went back to the shipped one."""
    start = tmp_path / "start.pt"
    shipped = (REPO_DIR / "dgdehaze_core" / "weights" / "dgdehaze_lite.pt").read_bytes()
    start.write_bytes(shipped)
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "--export", str(start),
                 "--set", f"init_weights={start}", "--no-progress"]) == 2
    assert f"--export {start} would overwrite the recipe's init_weights {start}" in capsys.readouterr().err
    assert start.read_bytes() == shipped and not (tmp_path / "run").exists()


def test_a_json_that_is_one_of_the_run_s_own_files_is_refused_before_training(shared_data: Path, tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    """A fresh run's files do not exist before it: --json RUN/last.pt passed every check, and the figures replaced
    the checkpoint when the run ended, so that it could no longer be resumed."""
    run = tmp_path / "run"
    for command, config in (("train", SMOKE), ("train-depth", REPO_DIR / "training" / "depth_kitti.yaml")):
        for name in ("last.pt", "best.pt", "train.csv", "recipe.yaml"):
            assert main([command, "--config", str(config), "--out", str(run), "--json", str(run / name),
                         "--no-progress"]) == 2
            assert f"--json {run / name} would overwrite the run's own {run / name}" in capsys.readouterr().err
    assert not run.exists()


def test_an_export_that_fails_when_the_run_is_done_leaves_no_json_of_the_run(shared_data: Path, tmp_path: Path,
                                                                              small_disk) -> None:
    """--export is written when the run is done, and a disk filled meanwhile fails it (exit 2): the --json was
    written just before, so that a failed run left fresh figures. A 64 kB tmpfs (`small_disk`) takes the probe of
    the checks before training but no whole weights file."""
    depth = REPO_DIR / "training" / "depth_kitti.yaml"
    # train-depth's validation (the recipe's whole LiDAR sequence) is left out and its step made small (a quarter of
    # the frame size, half the batch): the figures and the step are not what fails
    small_depth = ["--set", "validation=[]", "--set", "width=192", "--set", "height=64", "--set", "batch_size=2"]
    for command, config, extra in (("train", SMOKE, []), ("train-depth", depth, small_depth)):
        figures = tmp_path / f"{command}.json"
        result = small_disk.run(
            [sys.executable, "-m", "dgdehaze_core.cli", command, "--config", str(config), "--out",
             str(tmp_path / command), "--iterations", "1", "--threads", "1", "--no-progress", *extra,
             "--export", str(small_disk.folder / "weights.pt"), "--json", str(figures)],
            "64k", cwd=REPO_DIR, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_DIR)})
        assert result.returncode == 2 and "no space left on device" in result.stderr, result.stderr
        # it said no more: a user took hours of training for lost, though last.pt holds it and a resume exports it
        assert "the run is saved: the same command with --resume writes the export" in result.stderr
        assert "iterations" in result.stdout, "the figures are still printed"
        assert not figures.exists(), command


def test_a_run_folder_that_takes_no_file_is_named_before_training(shared_data: Path, read_only_folder: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """Python's '[Errno 30] Read-only file system: PATH' was all a run folder that takes no file got."""
    for command, config in (("train", SMOKE), ("train-depth", REPO_DIR / "training" / "depth_kitti.yaml")):
        for out in (read_only_folder, read_only_folder / "run"):
            assert main([command, "--config", str(config), "--out", str(out), "--no-progress"]) == 2
            assert f"--out {out} cannot be written: Read-only file system" in capsys.readouterr().err, command


def test_an_ignored_signal_stays_ignored_and_loader_workers_leave_stopping_to_the_trainer(
        terminal_signals) -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a run started with nohup or in the background
    try:
        with StepBoundaryStop():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        quiet_loader_worker(0)  # what a forked DataLoader worker runs first
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)  # the first passes
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class _OpenFiles(torch.utils.data.Dataset):
    """One item: the files the process that loads it (a DataLoader worker) holds open."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> list[str]:
        return [os.path.realpath(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]


def test_a_loader_worker_does_not_hold_the_run_folder_s_lock(tmp_path: Path) -> None:
    """A forked worker inherited the lock's descriptor: a run killed at once (SIGKILL, the OOM killer) left its
    workers holding the folder until they noticed, seconds later, and a --resume meanwhile was refused: 'another
    training (pid N) is writing into', N a process that no longer was."""
    run = tmp_path / "run"
    with run_folder_lock(run):
        loader = torch.utils.data.DataLoader(_OpenFiles(), batch_size=None, num_workers=1,
                                             worker_init_fn=quiet_loader_worker)
        held = next(iter(loader))
        assert str(run / ".lock") not in held and held
        with pytest.raises(FileExistsError, match="another training"), run_folder_lock(run):
            pass  # this process still holds it


def test_sigterm_to_the_process_group_stops_a_run_with_loader_workers_after_its_step_and_it_resumes(
        shared_data: Path, tmp_path: Path) -> None:
    """systemd stops a service by sending SIGTERM to every process of it (`kill -- -PGID` does the same): the
    DataLoader workers died of it at once, and the step under way failed, 'DataLoader worker (pid N) is killed by
    signal: Terminated', exit 2, with the steps since the last checkpoint lost."""
    import subprocess
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "dgdehaze_core.cli", "train", "--config", str(SMOKE), "--out", str(out),
               "--no-progress", "--threads", "1", "--set", "num_workers=2", "--set", "checkpoint_every=1000",
               "--set", "val_every=1000"]
    run = subprocess.Popen(command + ["--iterations", "100000"], cwd=REPO_DIR, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    assert run.stderr is not None
    for line in run.stderr:  # the workers have forked
        if "training smoke on cpu" in line:
            break
    time.sleep(2.0)
    os.killpg(run.pid, signal.SIGTERM)
    stderr = run.stderr.read()
    assert run.wait(60) == 128 + signal.SIGTERM, stderr
    assert "error" not in stderr and stderr.splitlines()[-1] == "dgdehaze train: terminated (SIGTERM)", stderr
    stopped = re.search(r"stopped at iteration (\d+): saved", stderr)
    assert stopped, stderr
    iteration = int(stopped.group(1))
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["training"]["iteration"] == iteration
    # the resume in this process: a second Python and torch start would add nothing to what it checks
    assert main(command[3:] + ["--iterations", str(iteration + 1), "--resume"]) == 0
    assert _iterations(out / "train.csv") == list(range(1, iteration + 2))


def test_a_checkpoint_from_before_a_recipe_field_existed_resumes_and_another_recipe_does_not(
        smoke_recipe, tmp_path: Path) -> None:
    current = smoke_recipe.as_dict()
    older = copy.deepcopy(current)
    for source in older["clear"]:
        del source["prior_depth"]  # a source field added since
    del older["loss"]["detector_features"]  # a loss term added since
    del older["val_output"]
    torch.save({"training": {"recipe": older}}, tmp_path / "old.pt")
    assert load_resumable(tmp_path / "old.pt", "training", current)
    older["loss"]["cycle"] = 3.0
    torch.save({"training": {"recipe": older}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"another recipe: loss\.cycle 3\.0 -> 1\.0 \("):  # the leaf, not the section
        load_resumable(tmp_path / "other.pt", "training", current)
    older["loss"]["cycle"] = current["loss"]["cycle"]
    older["clear"][0]["weight"] = 2.0
    torch.save({"training": {"recipe": older}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"another recipe: clear\[0\]\.weight 2\.0 -> 1\.0 \("):
        load_resumable(tmp_path / "other.pt", "training", current)


def test_weights_that_went_nan_are_never_saved(smoke_recipe, tmp_path: Path) -> None:
    recipe = recipe_from_dict({"name": "r", "iterations": 3, "crop_size": 64, "batch_size": 2, "max_side": 128,
                               "num_workers": 0, "checkpoint_every": 1, "device": "cpu",
                               "data": {"clear": [str(s.path) for s in smoke_recipe.clear],
                                        "hazy": [str(s.path) for s in smoke_recipe.hazy]}}, tmp_path)
    trainer = Trainer(recipe, tmp_path / "run")
    next(trainer.model.parameters()).register_hook(lambda grad: grad * float("nan"))  # a finite loss, NaN gradients
    with pytest.raises(RuntimeError, match="weights became NaN or infinite at iteration 0"):
        trainer.train(progress=False)
    assert not (tmp_path / "run" / "last.pt").exists()
    # the adversarial discriminator's too: its NaN weights were saved, and the next step's loss went NaN, naming as
    # the checkpoint to resume from the last.pt that held them
    trainer = Trainer(dataclasses.replace(recipe, loss=dataclasses.replace(recipe.loss, adversarial=0.1)),
                      tmp_path / "adversarial")
    next(trainer.discriminator.parameters()).register_hook(lambda grad: grad * float("nan"))
    with pytest.raises(RuntimeError, match="weights became NaN or infinite at iteration 0"):
        trainer.train(progress=False)
    assert not (tmp_path / "adversarial" / "last.pt").exists()


def test_without_out_a_run_goes_to_runs_in_the_working_folder(shared_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # an installed package: not into site-packages beside the code
    assert main(["train", "--config", str(SMOKE), "--iterations", "1", "--no-progress", "--threads", "1"]) == 0
    assert (tmp_path / "runs" / load_recipe(SMOKE).name / "last.pt").is_file()


def test_a_finished_run_without_last_pt_and_a_folder_in_use_are_refused(smoke_recipe, tmp_path: Path) -> None:
    from dgdehaze_core.training.run_control import run_folder_lock

    out = tmp_path / "run"
    args = ["train", "--config", str(SMOKE), "--out", str(out), "--no-progress", "--threads", "1", "--iterations", "2"]
    assert main(args) == 0
    shutil.copytree(out, tmp_path / "copied")
    (out / "last.pt").unlink()  # deleted to save space: best.pt and the logs are what the run left
    kept = {name: (out / name).read_bytes() for name in ("best.pt", "train.csv", "recipe.yaml")}
    assert main(args) == 2
    left = (f"{out} holds an earlier run's best.pt, recipe.yaml, train.csv, val.csv but no last.pt to resume from: "
            f"choose another --out folder, or move them away; its best.pt can start a new run from its weights "
            f"(--set init_weights={out / 'best.pt'})")
    with pytest.raises(FileExistsError, match=f"^{re.escape(left)}$"):
        Trainer(smoke_recipe, out, device="cpu").train(progress=False)
    with pytest.raises(FileNotFoundError, match=f"^nothing to resume: {re.escape(left)}$"):  # said only 'no checkpoint'
        Trainer(smoke_recipe, out, device="cpu", resume=True).train(progress=False)
    assert {name: (out / name).read_bytes() for name in kept} == kept
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "next"), "--no-progress", "--threads", "1",
                 "--iterations", "1", "--set", f"init_weights={out / 'best.pt'}"]) == 0  # as the message says
    started = torch.load(tmp_path / "next" / "last.pt", weights_only=True)["meta"]["started_from"]
    assert started["sha256"] == hashlib.sha256(kept["best.pt"]).hexdigest()
    copied = tmp_path / "copied" / "last.pt"  # a copy cut short: --resume said why, a fresh run said --resume
    copied.write_bytes(copied.read_bytes()[:100_000])
    with pytest.raises(ValueError, match="truncated, .*; the run cannot be continued: start a new run in another "
                                         "--out folder$"):
        Trainer(smoke_recipe, tmp_path / "copied", device="cpu", resume=True).train(progress=False)
    assert copied.stat().st_size == 100_000
    busy = tmp_path / "busy"
    with run_folder_lock(busy):  # as a training started into the same --out a moment before holds it
        with pytest.raises(FileExistsError, match=f"another training \\(pid {os.getpid()}\\) is writing into"):
            Trainer(smoke_recipe, busy, device="cpu").train(progress=False)
        assert main(["train", "--config", str(SMOKE), "--out", str(busy), "--no-progress", "--iterations", "1"]) == 2
        assert not (busy / "recipe.yaml").exists()
    assert main(["train", "--config", str(SMOKE), "--out", str(busy), "--no-progress", "--iterations", "1"]) == 0


def test_a_run_saved_without_gradient_scaling_resumes_where_fp16_scales_gradients(smoke_recipe,
                                                                                   tmp_path: Path) -> None:
    """A run begun on CPU (or a bf16 GPU) saves an empty GradScaler state, which an fp16-only GPU's enabled scaler
    refused to load; the CPU's own enabled scaler stands for that GPU's here."""
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1",
                 "--iterations", "2"]) == 0
    trainer = Trainer(smoke_recipe, tmp_path / "run", device="cpu", resume=True)
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)
    trainer.load_last()
    assert trainer.iteration == 2 and trainer.scaler.is_enabled()


def test_a_resume_refuses_another_clear_depth_network_at_the_recipe_s_path(shared_data: Path, tmp_path: Path) -> None:
    """The recipe names its clear-depth network by path: a network retrained into that path continued the run with
    another teacher, unnoticed."""
    from dgdehaze_core.datasets.paths import WEIGHTS_DIR

    teacher = tmp_path / "clear_depth.pt"
    teacher.write_bytes((WEIGHTS_DIR / "clear_depth_kitti.pt").read_bytes())
    args = ["train", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1",
            "--set", f"clear_depth={teacher}"]
    assert main(args + ["--iterations", "1"]) == 0
    assert main(args + ["--iterations", "2", "--resume"]) == 0  # the same file: resumes
    teacher.write_bytes((WEIGHTS_DIR / "clear_depth_kitti_nuscenes.pt").read_bytes())
    with pytest.raises(ValueError, match="clear-depth network at .*clear_depth.pt is another file"):
        Trainer(load_recipe(SMOKE, [f"clear_depth={teacher}", "iterations=3"]), tmp_path / "run",
                resume=True).train(progress=False)
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]["iteration"] == 2


def test_resume_needs_a_checkpoint(smoke_recipe, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(smoke_recipe, tmp_path / "none", resume=True).train(progress=False)


def test_a_run_that_fails_before_its_first_checkpoint_leaves_its_folder_to_the_next_run(
        smoke_recipe, tmp_path: Path) -> None:
    """A loss that went NaN before the first last.pt left recipe.yaml and the logs behind: the next run into the
    folder was refused, and so was --resume; the message promised a last.pt that did not exist."""
    out = tmp_path / "run"
    diverging = load_recipe(SMOKE, ["lr=100000.0", "checkpoint_every=100", "iterations=20"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="the loss became nan") as failed:
            Trainer(diverging, out, device="cpu").train(progress=False)
    assert "no checkpoint was saved yet" in str(failed.value) and "keeps the last" not in str(failed.value)
    assert not [w for w in caught if "requires_grad" in str(w.message)]
    assert not out.exists()  # the folder this run made, with nothing but its lock, went with it
    out.mkdir()  # a folder the user made: kept, with nothing of the run in it
    with pytest.raises(RuntimeError, match="the loss became nan"):
        Trainer(diverging, out, device="cpu").train(progress=False)
    assert [path.name for path in out.iterdir()] == []  # nor its lock, once it ended
    saved_first = load_recipe(SMOKE, ["lr=100000.0", "checkpoint_every=1", "iterations=20"])
    with pytest.raises(RuntimeError, match=f"{tmp_path / 'saved' / 'last.pt'} keeps the last checkpoint: lower lr"):
        Trainer(saved_first, tmp_path / "saved", device="cpu").train(progress=False)
    args = ["train", "--config", str(SMOKE), "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args + ["--iterations", "3", "--set", "checkpoint_every=1"]) == 0
    assert _iterations(out / "train.csv") == [1, 2, 3] and _iterations(out / "val.csv") == [3, 3]
    for log in ("train.csv", "val.csv"):  # the header and the rows alike end in LF
        assert b"\r" not in (out / log).read_bytes()


class _ValidatedThenStoppedTrainer(_InterruptedTrainer):
    """Validates after every step, keeping the weights each validation saw, and gets `signals` Ctrl-C (SIGINT) in
    the middle of step `stop_at`: one stops after that step and saves, two stop at once without saving."""

    signals = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validated: dict[int, dict[str, torch.Tensor]] = {}

    def synthesize(self, clear: torch.Tensor, known_depth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.iteration == self.stop_at:
            for _ in range(self.signals - 1):
                os.kill(os.getpid(), signal.SIGINT)
        return super().synthesize(clear, known_depth)

    def _validate(self, *args: Any) -> None:
        self.validated[self.iteration] = copy.deepcopy(self.model.state_dict())
        super()._validate(*args)


def test_a_run_stopped_between_its_first_best_pt_and_its_first_last_pt_leaves_its_folder_to_the_next_run(
        smoke_recipe, tmp_path: Path, terminal_signals, caplog: pytest.LogCaptureFixture) -> None:
    """best.pt was written at each new best validation, also before the run's first last.pt: a run stopped at once
    in between (Ctrl-C twice, a kill, a crash) left best.pt alone in its folder, and the next run into it was
    refused ('holds an earlier run's best.pt') while --resume had nothing to resume. A fresh run's best.pt now
    comes with its first last.pt, as its recipe.yaml and logs do, with the weights of its best validation."""
    recipe = load_recipe(SMOKE, ["val_every=1", "checkpoint_every=100", "iterations=4", "lr=0.2"])  # best at 1
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _ValidatedThenStoppedTrainer(recipe, out, device="cpu").train(progress=False)
    assert not out.exists()  # nothing of the run: no best.pt without a last.pt to resume from
    assert "SIGINT again: stopping at once, mid-step; no checkpoint was saved yet: the --out folder takes a new " \
           "run" in caplog.messages, "it said 'last.pt keeps the last checkpoint', of a last.pt never saved"
    args = ["train", "--config", str(SMOKE), "--out", str(out), "--no-progress", "--threads", "1",
            "--iterations", "2", "--set", "val_every=1"]
    assert main(args) == 0 and (out / "best.pt").is_file()
    stopped = _ValidatedThenStoppedTrainer(recipe, tmp_path / "stopped", device="cpu")
    stopped.signals = 1
    with pytest.raises(KeyboardInterrupt):
        stopped.train(progress=False)
    best = torch.load(tmp_path / "stopped" / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(tmp_path / "stopped" / "last.pt", map_location="cpu", weights_only=True)
    assert last["training"]["iteration"] == 3 and sorted(stopped.validated) == [1, 2, 3]
    chosen = best["meta"]["best_iteration"]
    assert best["meta"]["iterations"] == chosen == last["meta"]["best_iteration"] < 3
    for name, value in stopped.validated[chosen].items():  # the weights validated then, not those of last.pt
        assert torch.equal(value, best["state_dict"][name]), name
    assert Trainer(recipe, tmp_path / "stopped", device="cpu", resume=True).train(progress=False).iterations == 4
    (tmp_path / "stopped" / "best.pt").unlink()  # as a run stopped between its first last.pt and best.pt after it
    longer = dataclasses.replace(recipe, iterations=6)
    resumed = Trainer(longer, tmp_path / "stopped", device="cpu", resume=True).train(progress=False)
    assert resumed.best_checkpoint == tmp_path / "stopped" / "best.pt", "no best.pt, yet best figures reported"
    best = torch.load(tmp_path / "stopped" / "best.pt", map_location="cpu", weights_only=True)["meta"]
    assert best["best_iteration"] == best["iterations"] > 4 and resumed.best_validation == best["best_validation"]


def test_a_run_that_fails_on_its_data_or_has_nothing_to_resume_leaves_no_folder(smoke_recipe,
                                                                                tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "new" / "run"
    args = ["train", "--config", str(SMOKE), "--out", str(out), "--no-progress", "--iterations", "1"]
    for change in (f"data.clear=[{tmp_path / 'missing'}]", f"data.hazy=[{broken}]",
                   f"data.validation=[{tmp_path / 'missing'}]"):
        assert main(args + ["--set", change]) == 2
        assert not (tmp_path / "new").exists(), change
    assert main(args + ["--resume"]) == 2
    assert not (tmp_path / "new").exists()


def test_an_out_that_is_a_file_and_a_last_pt_that_is_a_folder_are_named(smoke_recipe, tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match=f"--out {file} is a file: give a folder"):
        Trainer(smoke_recipe, file, device="cpu").train(progress=False)
    with pytest.raises(NotADirectoryError, match=f"--out {file / 'run'} lies under {file}, a file: give a folder"):
        Trainer(smoke_recipe, file / "run", device="cpu").train(progress=False)
    (tmp_path / "run" / "last.pt").mkdir(parents=True)
    for resume in (False, True):
        with pytest.raises(IsADirectoryError, match="last.pt is not a file"):
            Trainer(smoke_recipe, tmp_path / "run", device="cpu", resume=resume).train(progress=False)


def test_a_resume_refuses_changed_training_images_and_a_last_pt_from_before_still_resumes(
        shared_data: Path, tmp_path: Path) -> None:
    """The samples are drawn by index from the image lists: a replaced image continued another stream."""
    clear = tmp_path / "clear"
    shutil.copytree(shared_data / "clear" / "bdd", clear)
    first = sorted(clear.iterdir())[0]
    original = first.read_bytes()
    overrides = [f"data.clear=[{clear}]"]
    assert main(["train", "--config", str(SMOKE), "--out", str(tmp_path / "run"), "--no-progress", "--threads", "1",
                 "--iterations", "2", "--set", overrides[0]]) == 0
    first.write_bytes((shared_data / "clear" / "bdd" / sorted(clear.iterdir())[1].name).read_bytes())
    with pytest.raises(ValueError, match=f"training data changed since it was saved: clear \\(3 -> 3 files: "
                                         f"clear/{first.name} {len(original)} -> "):
        Trainer(load_recipe(SMOKE, overrides + ["iterations=3"]), tmp_path / "run", resume=True).train(False)
    last = tmp_path / "run" / "last.pt"
    assert torch.load(last, weights_only=True)["training"]["iteration"] == 2
    first.write_bytes(original)
    Trainer(load_recipe(SMOKE, overrides + ["iterations=3"]), tmp_path / "run", resume=True).train(False)
    state = torch.load(last, weights_only=True)
    del state["training"]["data"]  # as a last.pt saved before the image lists were
    torch.save(state, last)
    first.unlink()
    Trainer(load_recipe(SMOKE, overrides + ["iterations=4"]), tmp_path / "run", resume=True).train(False)
    assert torch.load(last, weights_only=True)["training"]["data"]["clear"][0][0] != f"clear/{first.name}"


def test_a_resume_keeps_the_rows_of_a_log_whose_columns_have_changed_since(smoke_recipe, tmp_path: Path) -> None:
    """A train.csv written by an older version (a loss since retired, none yet for a loss added since): the resume
    rewrote its rows under the current header and raised ValueError on the retired column."""
    out = tmp_path / "run"
    args = ["train", "--config", str(SMOKE), "--out", str(out), "--no-progress", "--threads", "1"]
    assert main(args + ["--iterations", "2"]) == 0
    with open(out / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    added = next(name for name in LOSS_NAMES if rows[0][name])  # a loss the older version did not log
    older = [{**{k: v for k, v in row.items() if k != added}, "retired": f"0.{i}"} for i, row in enumerate(rows)]
    with open(out / "train.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(older[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(older)
    assert main(args + ["--iterations", "3", "--resume"]) == 0
    with open(out / "train.csv", newline="") as handle:
        kept = list(csv.DictReader(handle))
    assert [int(row["iteration"]) for row in kept] == [1, 2, 3]
    assert [row["retired"] for row in kept] == ["0.0", "0.1", ""]  # the old values stay, the new row has none
    assert [row[added] for row in kept[:2]] == ["", ""] and kept[2][added] != ""
    assert all(kept[i][k] == v for i, row in enumerate(older) for k, v in row.items())


def test_a_resume_drops_a_log_row_cut_short_as_it_was_written(smoke_recipe, tmp_path: Path) -> None:
    """A row cut short by a full disk ('1' of '12,...') or the NUL bytes a power cut leaves at a log's end: the
    resume kept the first as a second iteration 1 and failed on the second (int() of NUL bytes)."""
    out = tmp_path / "run"
    args = ["train", "--config", str(SMOKE), "--out", str(out), "--no-progress", "--threads", "1",
            "--set", "checkpoint_every=10", "--set", "val_every=100"]
    assert main(args + ["--iterations", "10"]) == 0
    with open(out / "train.csv", "a", newline="") as handle:
        handle.write("11,0.5\n1")  # row 11, logged after last.pt of iteration 10, and row 12 cut short
    with open(out / "val.csv", "ab") as handle:
        handle.write(b"\0" * 64)
    assert main(args + ["--iterations", "11", "--resume"]) == 0
    assert _iterations(out / "train.csv") == list(range(1, 12))
    assert _iterations(out / "val.csv") == [10, 10, 11, 11]  # the set and the mean


class _SignalledTwiceAsItSaves(Trainer):
    """Gets Ctrl-C twice (a stop at once) as its first last.pt is written, before the logs held until then."""

    def save_last(self) -> Path | None:
        saved = super().save_last()
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return saved


def test_a_stop_at_once_while_a_checkpoint_is_written_stops_once_its_files_are_written(
        smoke_recipe, tmp_path: Path, terminal_signals) -> None:
    """The second Ctrl-C stopped between a fresh run's first last.pt and the logs it held until then: the resumed
    run's train.csv began at the step after that last.pt, the rows of the steps it holds lost."""
    out = tmp_path / "run"
    recipe = load_recipe(SMOKE, ["checkpoint_every=4", "val_every=100"])
    with pytest.raises(KeyboardInterrupt):
        _SignalledTwiceAsItSaves(recipe, out).train(progress=False)
    assert {"last.pt", "recipe.yaml", "train.csv", "val.csv"} <= {path.name for path in out.iterdir()}
    assert _iterations(out / "train.csv") == [1, 2, 3, 4]
    Trainer(recipe, out, resume=True).train(progress=False)
    assert _iterations(out / "train.csv") == [1, 2, 3, 4, 5, 6]


def test_more_loader_workers_than_cores_start_one_a_core(smoke_recipe, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Each data loader worker is a process holding the training data: a recipe's `num_workers: 100000` forked until
    the machine ran out of memory (its OOM killer took whatever it chose). Torch warns of more workers than cores
    but starts them all; a run starts one a core, says so, and trains the same batches."""
    cpus = available_cpus()
    recipe = dataclasses.replace(smoke_recipe, iterations=1, num_workers=cpus + 3, val_every=1000)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*worker processes in total", category=UserWarning)
        with caplog.at_level(logging.WARNING, "dgdehaze_core.training.run_control"):
            Trainer(recipe, tmp_path / "run").train(progress=False)
    assert f"num_workers {cpus + 3} is more than the {cpus} CPU cores this process may use: {cpus} data loader " \
           "workers" in caplog.text
    assert _iterations(tmp_path / "run" / "train.csv") == [1]


def test_a_last_pt_holding_a_tensor_or_a_training_state_without_its_fields_is_one_error(
        smoke_recipe, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A last.pt holding a plain tensor ended --resume in an IndexError traceback, and one whose training state
    lacks a field the trainer reads (its weights, its optimizer) in a KeyError traceback."""
    run = tmp_path / "run"
    run.mkdir()
    for state, reason in ((torch.zeros(3), "is not a resumable training checkpoint: it holds no training state"),
                          ({"training": {"recipe": smoke_recipe.as_dict()}},
                           "is not a resumable checkpoint of this trainer: its training state does not read "
                           "(KeyError: 'state_dict')")):
        torch.save(state, run / "last.pt")
        assert main(["train", "--config", str(SMOKE), "--out", str(run), "--resume"]) == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith(
            f"dgdehaze train: error: {run / 'last.pt'} {reason}")
    assert not {"train.csv", "val.csv", "best.pt"} & {path.name for path in run.iterdir()}


def test_a_run_resumes_up_to_its_own_iteration_and_no_further_back(smoke_recipe, tmp_path: Path) -> None:
    """A last.pt at iteration N loads for `--iterations N`, as the refusal of fewer advises ("resume with
    --iterations N or more"); fewer than it reached is refused."""
    current = smoke_recipe.as_dict()
    torch.save({"training": {"recipe": current, "iteration": current["iterations"]}}, tmp_path / "last.pt")
    assert load_resumable(tmp_path / "last.pt", "training", current)["training"]["iteration"] == current["iterations"]
    with pytest.raises(ValueError, match=f"it is at iteration {current['iterations']} already"):
        load_resumable(tmp_path / "last.pt", "training", {**current, "iterations": current["iterations"] - 1})


def test_the_same_training_images_in_another_order_are_another_stream(shared_data: Path, tmp_path: Path) -> None:
    """The samples are drawn by index: the same files listed in another order would continue another stream."""
    files = [(f"bdd/{path.name}", path) for path in sorted((shared_data / "clear" / "bdd").iterdir())]
    saved = {"clear": file_fingerprint(files)}
    check_same_data(tmp_path / "last.pt", saved, {"clear": file_fingerprint(files)})
    with pytest.raises(ValueError, match="the same files in another order"):
        check_same_data(tmp_path / "last.pt", saved, {"clear": file_fingerprint(files[::-1])})


def test_a_last_pt_whose_fields_were_edited_to_other_types_is_refused_at_load_naming_the_field(
        smoke_recipe, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A hand-edited last.pt whose training.data was a string resumed and failed later with an AttributeError
    traceback where the data was compared; one whose iteration was text said only "invalid literal for int()"."""
    run = tmp_path / "run"
    run.mkdir()
    recipe = smoke_recipe.as_dict()
    for training, reason in (({"data": "clear"}, "its training.data holds str, not a mapping"),
                             ({"data": {"clear": "bdd"}},
                              "its training.data is not each kind's list of (file name, bytes)"),
                             ({"iteration": "2"}, "its training.iteration holds str, not a whole number"),
                             ({"best_validation": []}, "its training.best_validation holds list, not a mapping"),
                             ({"scaler": []}, "its training.scaler holds list, not a mapping"),
                             ({"best_score": "x"}, "its training.best_score holds str, not a number"),
                             ({"rank_random_states": {}}, "its training.rank_random_states holds dict, not a list"),
                             ({"generator": [1]}, "its training.generator holds list, not a tensor")):
        torch.save({"state_dict": {}, "meta": {}, "training": {"recipe": recipe, **training}}, run / "last.pt")
        assert main(["train", "--config", str(SMOKE), "--out", str(run), "--resume"]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"dgdehaze train: error: {run / 'last.pt'} is not a resumable training checkpoint: {reason} (edited by "
            "hand?); the run cannot be continued: start a new run in another --out folder")
