"""Failures a training run survives to save: a data loader worker killed (the OOM killer, kill -9) and a step out of
memory save last.pt at the last completed step and end with one line; a bug still propagates as it is."""
from __future__ import annotations

import faulthandler
import logging
import multiprocessing
import multiprocessing.util
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dgdehaze_core.cli import main
from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.training.depth_trainer import DepthTrainer
from dgdehaze_core.training.recipe import Recipe, load_recipe, recipe_from_dict
from dgdehaze_core.training.run_files import CsvLog
from dgdehaze_core.training.survivable_failures import (LoaderWorkerDied, LoaderWorkers, OutOfMemoryBetweenSteps,
                                                        moving_batch, survived_out_of_memory, validation_cut_off)
from dgdehaze_core.training.trainer import Trainer

SMOKE = REPO_DIR / "training" / "smoke.yaml"


def loader_worker_pids() -> list[int]:
    """The pids of this process's DataLoader workers (torch names them pt_data_worker). A child that ends between
    the listing and the reading of its name (the git runs that give a run's commit) is none of them."""
    pids = []
    for child in psutil.Process().children():
        try:
            if child.name() == "pt_data_worker":
                pids.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return pids


def a_loader_worker(trainer: Trainer | DepthTrainer) -> int:
    """The pid of a worker of `trainer`'s own data loaders (not one an earlier test's loader left)."""
    return trainer.loader_workers.processes[0].pid


def kill_and_wait(pid: int, signum: int = signal.SIGKILL) -> None:
    """Send `signum` to child `pid` and wait until it has ended (not reaped: its status stays for its parent)."""
    os.kill(pid, signum)
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        time.sleep(0.005)


def _small_recipe(num_workers: int, iterations: int = 4, validation: bool = False) -> Recipe:
    """Four steps of smoke.yaml's data, the depth network's own depth from step 2 on, no checkpoint on the way;
    with `validation`, smoke.yaml's pairs at 64 pixels every 2 steps."""
    smoke = load_recipe(SMOKE)
    data = {"clear": [str(s.path) for s in smoke.clear], "hazy": [str(s.path) for s in smoke.hazy]}
    if validation:
        data["validation"] = [str(s.path) for s in smoke.validation]
    return recipe_from_dict({"name": "r", "iterations": iterations, "crop_size": 64, "batch_size": 2, "max_side": 128,
                             "num_workers": num_workers, "checkpoint_every": 100, "net_depth_after": 1,
                             "val_every": 2, "val_max_side": 64, "device": "cpu", "data": data}, REPO_DIR)


@pytest.fixture(scope="module")
def straight_weights(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The weights `_small_recipe` ends with, run without a stop."""
    straight = Trainer(_small_recipe(0), tmp_path_factory.mktemp("straight") / "run")
    straight.train(progress=False)
    return straight.model.state_dict()


def assert_same_weights(expected: dict[str, torch.Tensor], trainer: Trainer) -> None:
    for name, value in expected.items():
        assert torch.equal(value, trainer.model.state_dict()[name]), name


def _resumed_from_iteration(recipe: Any, folder: Path, iteration: int) -> Trainer:
    """The run in `folder`, whose last.pt a survived failure saved at `iteration`, resumed to its end."""
    assert torch.load(folder / "last.pt", weights_only=True)["training"]["iteration"] == iteration
    resumed = Trainer(recipe, folder, resume=True)
    resumed.train(progress=False)
    return resumed


class _WorkerKilledTrainer(Trainer):
    """A data loader worker is killed (SIGKILL) in the middle of step 2, after that step's haze was drawn: torch's
    SIGCHLD handler raised its death there, mid-step."""

    def synthesize(self, clear: torch.Tensor, known_depth: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        haze = super().synthesize(clear, known_depth)
        if self.iteration == 1:
            kill_and_wait(a_loader_worker(self))
        return haze


def test_a_loader_worker_killed_mid_step_saves_that_step_and_the_run_resumes_to_the_same_weights(
        straight_weights: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """The run ended with torch's 'DataLoader worker (pid N) is killed by signal: Killed.' raised mid-step and lost
    every step since its last checkpoint (none here). The resumed run has no workers: a batch is the same whichever
    process loads it."""
    with pytest.raises(RuntimeError) as failed:
        _WorkerKilledTrainer(_small_recipe(1), tmp_path / "killed").train(progress=False)
    message = str(failed.value)
    assert re.fullmatch(r"a data loader worker \(pid \d+\) was killed by SIGKILL, most likely by the kernel's OOM "
                        r"killer as memory ran out \(fewer workers need less: --resume --set num_workers=N; a "
                        r"smaller batch_size needs a new run\); saved \S+last.pt at iteration 2: --resume continues "
                        r"from it", message), message
    saved = torch.load(tmp_path / "killed" / "last.pt", map_location="cpu", weights_only=True)
    assert saved["training"]["iteration"] == 2, "the step under way finishes, then the run saves and ends"
    assert (tmp_path / "killed" / "recipe.yaml").is_file()
    resumed = Trainer(_small_recipe(0), tmp_path / "killed", resume=True)
    resumed.train(progress=False)
    assert resumed.iteration == 4
    assert_same_weights(straight_weights, resumed)


def test_dgdehaze_train_whose_loader_worker_is_killed_exits_2_with_one_line_and_resumes(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`kill -9` of a worker of a running `dgdehaze train`: the user saw a torch traceback ('Exception ignored in
    _MultiProcessingDataLoaderIter.__del__') and 'error: [Errno 104] Connection reset by peer', and last.pt was
    never written."""
    out = tmp_path / "run"
    args = ["train", "--config", str(SMOKE), "--out", str(out), "--no-progress", "--threads", "1",
            "--set", "num_workers=1", "--set", "checkpoint_every=1000", "--set", "val_every=1000"]

    earlier = set(loader_worker_pids())

    def kill_a_worker_mid_run() -> None:
        while not (started := set(loader_worker_pids()) - earlier):  # the run's loaders have started
            time.sleep(0.01)
        time.sleep(0.5)
        os.kill(min(started), signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker_mid_run, daemon=True)
    killer.start()
    assert main(args + ["--iterations", "1000"]) == 2
    killer.join()
    stderr = capsys.readouterr().err
    last_line = stderr.strip().splitlines()[-1]
    ended = re.fullmatch(r"dgdehaze train: error: a data loader worker \(pid \d+\) was killed by SIGKILL, most "
                         r"likely by the kernel's OOM killer as memory ran out .*; saved (\S+) at iteration (\d+): "
                         r"--resume continues from it", last_line)
    assert ended and Path(ended.group(1)) == out / "last.pt", stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    iteration = int(ended.group(2))
    assert torch.load(out / "last.pt", map_location="cpu", weights_only=True)["training"]["iteration"] == iteration
    assert main(args + ["--iterations", str(iteration + 1), "--resume"]) == 0
    with open(out / "train.csv") as log:
        assert [int(row.split(",")[0]) for row in log.read().splitlines()[1:]] == list(range(1, iteration + 2))


class _WorkerKilledAfterTheLastStepTrainer(Trainer):
    """A worker of the hazy images' loader is killed (SIGKILL) as the last step's checkpoint is written, after the
    last batch was fetched."""

    def _checkpoint(self, logs: list[CsvLog]) -> Path | None:
        if self.iteration == self.recipe.iterations:
            kill_and_wait(self.loader_workers.processes[-1].pid)
        return super()._checkpoint(logs)


def test_a_loader_worker_killed_after_the_last_step_leaves_the_run_finished(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A worker that ends once the last batch was fetched costs the run nothing: it ends as finished, its files
    written, with one warning naming the worker (the OOM killer's work: memory is short)."""
    trainer = _WorkerKilledAfterTheLastStepTrainer(_small_recipe(1, iterations=1), tmp_path / "run")
    assert trainer.train(progress=False).iterations == 1
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["training"]["iteration"] == 1
    assert (tmp_path / "run" / "best.pt").is_file()
    notes = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(notes) == 1 and re.fullmatch(r"a data loader worker \(pid \d+\) was killed by SIGKILL, .*, once its "
                                            r"loader's last batch was out: no batch was lost", notes[0]), notes


class _OutOfMemoryTrainer(Trainer):
    """Step 3's forward pass (batch-norm statistics moved, haze drawn) asks the CPU allocator for more memory than
    the address space holds: its real out-of-memory RuntimeError."""

    def loss_terms(self, clear: torch.Tensor, real_hazy: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(clear, real_hazy)
        if self.iteration == 2:
            torch.empty(2 ** 62, dtype=torch.uint8)
        return terms


class _ShapeErrorTrainer(Trainer):
    """A bug in step 2's forward pass: a shape error, which must propagate as it is, nothing saved."""

    def loss_terms(self, clear: torch.Tensor, real_hazy: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(clear, real_hazy)
        if self.iteration == 1:
            torch.ones(2, 3) @ torch.ones(2, 3)
        return terms


def test_a_step_out_of_memory_saves_the_step_before_it_and_a_bug_is_not_caught(
        straight_weights: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """The run ended with the allocator's error and lost the steps since its last checkpoint, although the failed
    step had moved no weight. The saved state is the step's start (haze generator, batch-norm statistics), so the
    resumed run ends with the weights of one never stopped."""
    recipe = _small_recipe(0)
    with pytest.raises(RuntimeError, match=r"^mat1 and mat2 shapes cannot be multiplied"):
        _ShapeErrorTrainer(recipe, tmp_path / "bug").train(progress=False)
    assert not (tmp_path / "bug").exists()
    with pytest.raises(RuntimeError, match=r"^step 3 ran out of memory \(it could not allocate 4611686018427387904 "
                                           r"bytes\) in its forward or backward pass, before its weights moved; the "
                                           r"weights of iteration 2 are intact; saved \S+last.pt at iteration 2: "
                                           r"--resume continues from it$"):
        _OutOfMemoryTrainer(recipe, tmp_path / "oom").train(progress=False)
    assert_same_weights(straight_weights, _resumed_from_iteration(recipe, tmp_path / "oom", 2))


class _ValidationOutOfMemoryTrainer(Trainer):
    """The validation of iteration `out_at` asks the CPU allocator for more memory than the address space holds (on a
    GPU, validation at full image size runs out where the training crops fit)."""

    out_at = 2

    def _validate(self, validation: list[Any], val_log: CsvLog, board: Any) -> None:
        if self.iteration == self.out_at:
            torch.empty(2 ** 62, dtype=torch.uint8)
        super()._validate(validation, val_log, board)


def test_a_validation_out_of_memory_saves_its_iteration_and_the_run_resumes_to_the_same_weights(
        straight_weights: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """Out of memory outside a step's forward and backward pass ended the run with the allocator's traceback and
    lost every step since its last checkpoint (none here), though validation moves no training state. The resumed
    run validates as had it not stopped."""
    recipe = _small_recipe(0, validation=True)
    with pytest.raises(RuntimeError, match=r"^the validation of iteration 2, which runs each pair whole at up to "
                                           r"val_max_side \(64\) pixels on its long side, ran out of memory \(it "
                                           r"could not allocate 4611686018427387904 bytes\): free the memory another "
                                           r"process holds or resume on another --device \(a smaller val_max_side "
                                           r"needs a new run\); saved \S+last.pt at iteration 2: --resume continues "
                                           r"from it$"):
        _ValidationOutOfMemoryTrainer(recipe, tmp_path / "oom").train(progress=False)
    assert_same_weights(straight_weights, _resumed_from_iteration(recipe, tmp_path / "oom", 2))
    with open(tmp_path / "oom" / "val.csv") as log:
        validated = [row.split(",")[:2] for row in log.read().splitlines()[1:]]
    assert validated == [["2", "sots-outdoor"], ["2", "mean"], ["4", "sots-outdoor"], ["4", "mean"]], \
        "the validation that ran out of memory runs first as the run resumes"


class _LastValidationOutOfMemoryTrainer(_ValidationOutOfMemoryTrainer):
    """The validation of the last iteration, 1, runs out of memory."""

    out_at = 1


def test_a_run_resumed_at_its_last_iteration_saves_the_validation_it_redoes(tmp_path: Path) -> None:
    """A run whose last validation ran out of memory takes no step as it resumes, so only the save after the
    validation it redoes records it: without it last.pt still said that validation had not run, and each --resume
    ran it again, a row more in val.csv each time."""
    recipe = _small_recipe(0, iterations=1, validation=True)
    with pytest.raises(RuntimeError, match=r"^the validation of iteration 1, .* at iteration 1: --resume"):
        _LastValidationOutOfMemoryTrainer(recipe, tmp_path / "oom").train(progress=False)
    Trainer(recipe, tmp_path / "oom", resume=True).train(progress=False)
    assert torch.load(tmp_path / "oom" / "last.pt", weights_only=True)["training"]["last_validation_iteration"] == 1


def test_out_of_memory_between_steps_is_survived_and_a_bug_is_not() -> None:
    """What `survived_out_of_memory` guards (a validation, a batch moved to the device) moves no training state: the
    allocator's error becomes the one line of a survived failure; any other error propagates as it is."""
    with pytest.raises(OutOfMemoryBetweenSteps, match=r"^moving a batch ran out of memory \(it could not allocate "
                                                      r"4611686018427387904 bytes\): free memory$"):
        with survived_out_of_memory("moving a batch", "free memory"):
            torch.empty(2 ** 62, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match=r"^mat1 and mat2 shapes cannot be multiplied"):
        with survived_out_of_memory("moving a batch", "free memory"):
            torch.ones(2, 3) @ torch.ones(2, 3)
    with pytest.raises(OutOfMemoryBetweenSteps, match=r"^moving the batch of step 8 to cpu ran out of memory .*: "
                                                      r"free .* or resume on another --device \(a smaller batch_size "
                                                      r"needs a new run\)$"):
        with moving_batch(7, torch.device("cpu")):  # both trainers' batch move
            torch.empty(2 ** 62, dtype=torch.uint8)


def test_a_resumed_run_redoes_the_validation_of_its_iteration_only_where_it_is_due_and_missing() -> None:
    """`validation_cut_off`: a run resumed at a validation point (every val_every, and the last iteration) whose
    validation had not run validates first; one validated there already, or resumed between validation points,
    does not (val.csv would hold a row twice, or one a run never stopped lacks)."""
    assert validation_cut_off(4, 2, val_every=2, iterations=10)
    assert not validation_cut_off(4, 4, val_every=2, iterations=10), "validated before it was cut"
    assert not validation_cut_off(5, 4, val_every=2, iterations=10), "not a validation point"
    assert validation_cut_off(7, 6, val_every=2, iterations=7), "the last iteration validates"


def _sleep(ready: Any) -> None:
    faulthandler.disable()  # pytest's, inherited: it would print this process's stack for SIGBUS and SIGSEGV
    ready.set()
    time.sleep(60)


@pytest.mark.parametrize(("end", "said"), [
    (signal.SIGBUS, "was killed by SIGBUS, most likely as shared memory (/dev/shm; a container's --shm-size) ran out"),
    (signal.SIGSEGV, "was killed by SIGSEGV"), (None, "ended with exit status 3")])
def test_a_worker_s_end_is_named_with_its_signal_or_status(end: int | None, said: str) -> None:
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    worker = context.Process(target=os._exit if end is None else _sleep, args=(3,) if end is None else (ready,))
    worker.start()
    if end is None:
        worker.join()
    else:
        assert ready.wait(30)
        kill_and_wait(worker.pid, end)
    workers = LoaderWorkers()
    workers.processes.append(worker)
    assert workers.death() == f"a data loader worker (pid {worker.pid}) {said}"


class _Numbers(Dataset):
    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(index)


def test_workers_of_two_loaders_killed_end_the_run_with_one_error_and_no_torch_traceback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The OOM killer may end more than one worker before the run fetches its next batch (the dehazing trainer
    zips two loaders): the first was named and reaped, the others left unreaped to torch's SIGCHLD handler, which
    raised their deaths as the loaders shut down, each an 'Exception ignored in
    _MultiProcessingDataLoaderIter.__del__' traceback beside the one-line error."""
    ignored: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    workers = LoaderWorkers()
    pairs = zip(*(workers.batches(DataLoader(_Numbers(), batch_size=2, num_workers=2)) for _ in range(2)))
    next(pairs)
    for process in (workers.processes[0], workers.processes[-1]):  # one worker of each loader
        kill_and_wait(process.pid)
    with pytest.raises(LoaderWorkerDied, match=r"^a data loader worker \(pid \d+\) was killed by SIGKILL"):
        next(pairs)
    del pairs  # the other loader shuts down too
    assert not ignored, [f"{hook.exc_value!r} in {hook.object!r}" for hook in ignored]


def test_a_worker_of_the_second_of_two_zipped_loaders_killed_at_its_shutdown_is_warned_of(
        caplog: pytest.LogCaptureFixture) -> None:
    """The dehazing trainer zips two loaders: the first ends the zip and shuts its workers down, the second is shut
    down as the zip is let go. A worker of the second that ended after its last batch (killed at that shutdown)
    passed silently, though such a death is warned of (docs/TRAINING.md); the first loader's end says nothing of
    it, and the warning comes once."""
    workers = LoaderWorkers()
    loaders = [workers.batches(DataLoader(_Numbers(), batch_size=16, num_workers=1)) for _ in range(2)]
    assert len(list(zip(*loaders))) == 4
    second = workers.processes[-1]
    kill_and_wait(second.pid)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    loaders[1].close()
    notes = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(notes) == 1 and notes[0].startswith(f"a data loader worker (pid {second.pid}) was killed by SIGKILL"), \
        notes
    assert notes[0].endswith("once its loader's last batch was out: no batch was lost"), notes


class _Unreadable(_Numbers):
    def __getitem__(self, index: int) -> torch.Tensor:
        raise RuntimeError(f"sample {index} does not decode")


def test_a_data_error_without_workers_shows_at_once() -> None:
    """A fetch that fails is given a second to show a worker's end (a killed worker's sockets close a moment before
    the kernel reports it): a run loading in its own process (`num_workers: 0`), which has no worker to wait for,
    held every data error back that second too."""
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="sample 0 does not decode"):
        next(LoaderWorkers().batches(DataLoader(_Unreadable(), batch_size=2)))
    assert time.monotonic() - started < 0.5


def test_a_worker_killed_after_another_s_death_was_noted_shows_no_torch_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The OOM killer ends one worker, the run notes it and shuts its loaders down, and ends another meanwhile:
    torch's SIGCHLD handler, back in place once the failed loader's batches ended, raised that death wherever the
    run was (saving last.pt) or, within a loader's shutdown, as an 'Exception ignored in
    _MultiProcessingDataLoaderIter.__del__' traceback."""
    ignored: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    workers = LoaderWorkers()
    pairs = zip(*(workers.batches(DataLoader(_Numbers(), batch_size=2, num_workers=2)) for _ in range(2)))
    next(pairs)
    kill_and_wait(workers.processes[0].pid)
    with pytest.raises(LoaderWorkerDied):
        next(pairs)
    kill_and_wait(workers.processes[-1].pid)  # the other loader's, not yet shut down
    del pairs
    assert not ignored, [f"{hook.exc_value!r} in {hook.object!r}" for hook in ignored]



def _killed_as_it_exits(worker_id: int) -> None:
    """A loader worker's start: it is killed (SIGKILL) as it exits, when its loader shuts its workers down."""
    multiprocessing.util.Finalize(None, os.kill, args=(os.getpid(), signal.SIGKILL), exitpriority=0)


def test_a_worker_killed_as_the_loader_shuts_down_after_its_last_batch_costs_no_batch(
        caplog: pytest.LogCaptureFixture) -> None:
    """The OOM killer ending a worker as the loader shut down after its last batch (the fetch after the run's last
    step) raised its death: a run that had completed every step ended with exit status 2, saying it was cut short."""
    workers = LoaderWorkers()
    loader = DataLoader(_Numbers(), batch_size=32, num_workers=2, worker_init_fn=_killed_as_it_exits)
    assert len(list(workers.batches(loader))) == 2
    assert all(process.exitcode == -signal.SIGKILL for process in workers.processes)
    assert [record.getMessage().split(", most likely")[0] for record in caplog.records] == [
        f"a data loader worker (pid {workers.processes[0].pid}) was killed by SIGKILL"], "one note"


def test_torch_s_sigchld_handler_is_back_once_the_last_open_loader_s_batches_have_ended() -> None:
    """While a loader's batches run, a worker's end is noted (`LoaderWorkers`); once every loader's batches have
    ended (the dehazing trainer zips two), torch's handler is back, for loaders used outside `batches` (an
    evaluation after the run)."""
    iter(DataLoader(_Numbers(), num_workers=1))  # torch sets its handler with a process's first loader workers
    torch_s = signal.getsignal(signal.SIGCHLD)
    workers = LoaderWorkers()
    first, second = (workers.batches(DataLoader(_Numbers(), batch_size=32, num_workers=1)) for _ in range(2))
    next(first), next(second)
    assert signal.getsignal(signal.SIGCHLD) != torch_s
    assert len(list(first)) == 1 and signal.getsignal(signal.SIGCHLD) != torch_s, "the other's batches go on"
    assert len(list(second)) == 1 and signal.getsignal(signal.SIGCHLD) == torch_s


def test_a_loader_whose_worker_died_is_shut_down_as_the_death_is_raised() -> None:
    """The loader of a worker that died was shut down only when the error's traceback (holding the batches' frame)
    was let go, after the run saved and ended, torch's SIGCHLD handler back by then: its other workers ran on
    meanwhile, and one of them killed too (the OOM killer goes on) was torch's to raise."""
    workers = LoaderWorkers()
    batches = workers.batches(DataLoader(_Numbers(), batch_size=2, num_workers=2))
    next(batches)
    kill_and_wait(workers.processes[0].pid)
    with pytest.raises(LoaderWorkerDied) as died:
        next(batches)
    assert died.value.__traceback__ is not None and not workers.processes[1].is_alive()
