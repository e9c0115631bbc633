"""The failures a training loop survives to save: a data loader worker that died, and a step that ran out of memory
before its weights moved. Either leaves the training process with the state of its last completed step, which the
trainers save as `last.pt` (as for Ctrl-C) before they end with one line naming the cause.

- A worker killed by a signal (the kernel's OOM killer, `kill -9`) or ended with an error status: torch's DataLoader
  raises it from its SIGCHLD handler, wherever the training process is, or as the batch under way fails to arrive
  (a socket reset, 'exited unexpectedly'). `LoaderWorkers` notes an end during a step, acts on it as the next batch
  is fetched, and names the worker and its signal; in a torchrun job every rank learns of it at the step boundary
  (`JobLoaderWorkerDied`).
- Out of memory (`torch.OutOfMemoryError`, the CPU allocator's RuntimeError) in a step's forward or backward pass:
  no weight and no optimizer state has moved yet; `StepStart` puts back what the pass did move (the random
  generators' states, the batch-norm statistics), so that the saved state resumes to the run it was cut from.
- Out of memory between two steps, in work that moves no training state (`survived_out_of_memory`): a validation,
  a batch moved to the device.

Nothing else is caught: an exception a worker raised (the data's, the code's), a bug in a step (a shape error), out
of memory once the optimizer began to move the weights (its step's temporaries: a half-applied step cannot be
saved), and in a torchrun job any failure but a worker's end during a step (one rank's, whose other ranks would
wait on it in a collective: a worker that ends as a batch is fetched too) propagate as they are, `last.pt` holding the
last checkpoint.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import re
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader

LOG = logging.getLogger(__name__)

OUT_OF_MEMORY_REMEDY = "free the memory another process holds or resume on another --device"
"""What a run that ran out of memory may change as it resumes (`survived_out_of_memory`'s remedy, before what a new
run would change)."""

WORKER_END_WAIT_S = 1.0
"""How long a batch that failed to arrive (a socket reset) waits for a worker's end to show: a killed worker's
sockets close a moment before the kernel reports it ended."""


class SurvivedFailure(RuntimeError):
    """A failure that left the training process at a completed step (its message names the cause); the trainer
    saves that step and ends with `ending_on_survived_failure`'s one line."""


class LoaderWorkerDied(SurvivedFailure):
    """A data loader worker ended while the run needed it."""


class JobLoaderWorkerDied(LoaderWorkerDied):
    """A data loader worker of a torchrun job's rank ended during a step, raised on every rank at the step boundary
    that followed (the stop agreement carries it): every rank takes part in the save, none waits on another."""


class StepOutOfMemory(SurvivedFailure):
    """A step ran out of memory before its weights moved; the state of its start is back in place."""


class OutOfMemoryBetweenSteps(SurvivedFailure):
    """Work between two steps that moves no training state (a validation, a batch moved to the device) ran out of
    memory."""


class LoaderWorkers:
    """The worker processes of a training run's data loaders (`batches`), and what ended one.

    torch's DataLoader raises a worker's death from its SIGCHLD handler, at whatever line the training process is:
    mid-step too, a state half a step on that no checkpoint may hold. While `batches` runs, a child's end (SIGCHLD)
    is noted instead, and acted on as the next batch is fetched, between steps; torch's handler is in place only
    while a batch is fetched, where the failure reaches the fetch. Without workers, or outside the main thread (where
    no handler runs), the handlers are left as they are."""

    def __init__(self) -> None:
        self.processes: list[BaseProcess] = []
        self._child_ended = False
        self._previous: Any = None
        self._handling = False
        """Whether SIGCHLD is taken over (`_note_child_ends`): in the main thread, with workers."""
        self._open = 0
        """How many `batches` are under way: SIGCHLD is given back as the last of them ends."""

    def batches(self, loader: DataLoader) -> Iterator[Any]:
        """`loader`'s batches (`len(loader)` of them: a map-style dataset's), noting the worker processes it starts;
        LoaderWorkerDied, as a batch is fetched, where one of them died (anything else a fetch raises, a worker's
        own exception, propagates as it is). A worker of this loader that ends once its last batch is out (as the
        loader shuts its workers down, whether its batches ran out or were let go after the last: the second of two
        zipped loaders) costs no batch: a warning says so. Until every loader's batches have ended, the shutdown of
        its workers included, their ends are noted, not raised by torch's handler where the process is."""
        before = set(multiprocessing.active_children())
        fetched = iter(loader)  # starts the workers, and torch's SIGCHLD handler with the first
        own = [process for process in multiprocessing.active_children() if process not in before]
        self.processes += own
        self._handling = bool(self.processes) and threading.current_thread() is threading.main_thread()
        self._note_child_ends()
        self._open += 1
        out = 0
        try:
            for _ in range(len(loader)):
                died = self._died_meanwhile()
                if died is None:
                    try:
                        with self._torch_handling():
                            batch = next(fetched)
                    except StopIteration:
                        return
                    except (RuntimeError, OSError, EOFError):
                        died = self.death(WORKER_END_WAIT_S if self.processes else 0.0)  # no workers: none died
                        if died is None:
                            raise
                if died is not None:  # raised here, not in the except: the failed fetch's frames are let go
                    raise LoaderWorkerDied(died)
                out += 1
                yield batch
        finally:
            fetched = None  # shut down here where a failure or a close ends the batches, not where it is let go
            if out == len(loader):
                self._warn_of_ends_after_the_last_batch(own)
            self._open -= 1
            if not self._open:
                self._restore()

    def _warn_of_ends_after_the_last_batch(self, own: list[BaseProcess]) -> None:
        """Once a loader's last batch is out and its workers shut down: a warning naming the first of its `own`
        workers that died (another loader's are its own end's); the ends noted meanwhile are taken
        (`_died_meanwhile`)."""
        self._died_meanwhile()
        died = _first_end(own)
        if died is not None:
            LOG.warning("%s, once its loader's last batch was out: no batch was lost", died)

    def death(self, wait_s: float = 0.0) -> str | None:
        """The first worker that ended with a signal or an error status, in words (None: none, within `wait_s`).
        Every worker that ended is reaped, its status kept here: torch's SIGCHLD handler raises the end of one left
        unreaped wherever it runs next, a loader's shutdown too ('Exception ignored in ... __del__')."""
        deadline = time.monotonic() + wait_s
        while True:
            died = _first_end(self.processes)
            if died is not None:
                return died
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

    def _died_meanwhile(self) -> str | None:
        """After a child's end noted since the last fetch: the worker that died, in words; for another child's end
        the handler before is called, late."""
        if not self._child_ended:
            return None
        self._child_ended = False
        died = self.death()
        if died is None and callable(self._previous):
            self._previous(signal.SIGCHLD, None)
        return died

    def _note_child_ends(self) -> None:
        if self._handling and signal.getsignal(signal.SIGCHLD) != self._noted:
            self._previous = signal.signal(signal.SIGCHLD, self._noted)

    def _restore(self) -> None:
        if self._handling and signal.getsignal(signal.SIGCHLD) == self._noted:
            signal.signal(signal.SIGCHLD, self._previous)

    @contextlib.contextmanager
    def _torch_handling(self) -> Iterator[None]:
        self._restore()
        try:
            yield
        finally:
            self._note_child_ends()

    def _noted(self, signum: int, frame: FrameType | None) -> None:
        self._child_ended = True


def _first_end(processes: list[BaseProcess]) -> str | None:
    """The first of `processes` that ended with a signal or an error status, in words; every one that ended is
    reaped (each read of `exitcode` reaps)."""
    ended = [process for process in processes if process.exitcode]
    return _ended(ended[0].pid, ended[0].exitcode) if ended else None


def _ended(pid: int | None, exitcode: int) -> str:
    """How a worker ended (multiprocessing's `exitcode`: minus the signal that killed it, or its exit status), with
    the likely cause and the remedy where the signal tells them."""
    if exitcode > 0:
        return f"a data loader worker (pid {pid}) ended with exit status {exitcode}"
    signum = -exitcode
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    killed = f"a data loader worker (pid {pid}) was killed by {name}"
    if signum == signal.SIGKILL:
        return (f"{killed}, most likely by the kernel's OOM killer as memory ran out (fewer workers need less: "
                "--resume --set num_workers=N; a smaller batch_size needs a new run)")
    if signum == signal.SIGBUS:
        return f"{killed}, most likely as shared memory (/dev/shm; a container's --shm-size) ran out"
    return killed


class StepStart:
    """What a step moves before its optimizer does, kept as each step begins (`keep`): the buffers of `modules` (the
    batch-norm statistics a training forward pass moves) and the states of `generators`. `undo` puts them back and
    drops the gradients, so that a step that failed in its forward or backward pass leaves the state it began from:
    the state of the last completed step, whose weights and optimizer state that pass never touches."""

    def __init__(self, modules: Iterable[torch.nn.Module | None], generators: Iterable[torch.Generator]) -> None:
        present = [module for module in modules if module is not None]
        self.buffers = [buffer for module in present for buffer in module.buffers()]
        self.parameters = [parameter for module in present for parameter in module.parameters()]
        self.generators = list(generators)
        self._buffers = [buffer.detach().clone() for buffer in self.buffers]
        self._states: list[torch.Tensor] = []

    def keep(self) -> None:
        if self.buffers:
            torch._foreach_copy_(self._buffers, self.buffers)  # one multi-tensor copy, not a launch per buffer
        self._states = [generator.get_state() for generator in self.generators]

    def undo(self) -> None:
        with torch.no_grad():
            if self.buffers:
                torch._foreach_copy_(self.buffers, self._buffers)
        for generator, state in zip(self.generators, self._states):
            generator.set_state(state)
        for parameter in self.parameters:
            parameter.grad = None


def out_of_memory(exc: BaseException) -> str | None:
    """`exc` in words when it is an allocator's out of memory (torch.OutOfMemoryError: CUDA's; the CPU
    allocator's RuntimeError), else None."""
    text = str(exc)
    if not (isinstance(exc, torch.OutOfMemoryError) or "DefaultCPUAllocator" in text):
        return None
    asked = re.search(r"[Tt]ried to allocate ([\d.]+ ?\w+)", text)
    return "out of memory" + (f" (it could not allocate {asked.group(1)})" if asked else "")


@contextlib.contextmanager
def _on_out_of_memory(failure: Callable[[str], SurvivedFailure]) -> Iterator[None]:
    """Around a block: `failure(out_of_memory(...))` raised when it runs out of memory, once the allocator's error
    (and the block's tensors its traceback holds) is let go; anything else propagates as it is."""
    try:
        yield
        return
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        failed = out_of_memory(exc)
        if failed is None:
            raise
    raise failure(failed)


@contextlib.contextmanager
def undone_on_out_of_memory(start: StepStart, iteration: int) -> Iterator[None]:
    """Around a step's forward and backward pass (`start.keep()` at its beginning): StepOutOfMemory, with the step's
    start put back (`StepStart.undo`), when the block runs out of memory; anything else propagates as it is."""
    def undone(failed: str) -> StepOutOfMemory:
        start.undo()
        return StepOutOfMemory(f"step {iteration + 1} ran {failed} in its forward or backward pass, before its "
                               f"weights moved; the weights of iteration {iteration} are intact")

    start.keep()
    with _on_out_of_memory(undone):
        yield


def survived_out_of_memory(doing: str, remedy: str) -> contextlib.AbstractContextManager[None]:
    """Around work between two steps that moves no training state (no weight, optimizer state, random generator or
    batch-norm statistic): OutOfMemoryBetweenSteps, naming `doing` and what to change (`remedy`), when it runs out
    of memory; anything else propagates as it is."""
    return _on_out_of_memory(lambda failed: OutOfMemoryBetweenSteps(f"{doing} ran {failed}: {remedy}"))


def moving_batch(iteration: int, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """`survived_out_of_memory` around moving the batch of the step after `iteration` to `device`."""
    return survived_out_of_memory(f"moving the batch of step {iteration + 1} to {device}",
                                  f"{OUT_OF_MEMORY_REMEDY} (a smaller batch_size needs a new run)")


def validation_cut_off(iteration: int, validated: int, val_every: int, iterations: int) -> bool:
    """Whether a run resumed at `iteration`, whose last validation was of iteration `validated`, lacks the validation
    of `iteration` itself (every `val_every`, and at the last of `iterations`): the one that ran out of memory as the
    run was cut (`survived_out_of_memory`). Run first, it gives the resumed run the validations, val.csv rows and
    best.pt of a run never stopped."""
    return validated < iteration and (iteration % val_every == 0 or iteration == iterations)


def ending_on_survived_failure(steps: Callable[[], None], save: Callable[[], Path | None],
                               iteration: Callable[[], int], last_path: Path, propagate: bool = False) -> None:
    """Run a training loop (`steps`); where a SurvivedFailure ends it, save the last completed step (`save`, where a
    step was completed since the call: `iteration()` moved) and raise a RuntimeError of one line naming the failure
    and what `last_path` holds. `propagate`: raise the failure as it is (a torchrun job's other ranks wait on this
    one in a collective: no rank can save), but a JobLoaderWorkerDied, which every rank raises and saves. Only
    the failure's message is kept, not the exception, whose context (a step's out of memory) holds that step's
    tensors until it is let go."""
    started = iteration()
    failure, whole_job = None, False
    try:
        steps()
    except SurvivedFailure as exc:
        whole_job = isinstance(exc, JobLoaderWorkerDied)
        if propagate and not whole_job:
            raise
        failure = str(exc)
    if failure is None:
        return
    saved = save() if iteration() > started else None
    if saved is not None:
        kept = f"saved {saved} at iteration {iteration()}: --resume continues from it"
    elif whole_job and iteration() > started:  # a rank that does not write: rank 0 saved
        kept = f"rank 0 saved {last_path} at iteration {iteration()}: --resume continues from it"
    elif last_path.is_file():
        kept = f"{last_path} holds iteration {iteration()}: --resume continues from it"
    else:
        kept = "no step was completed: run again into the same --out folder"
    raise RuntimeError(f"{failure}; {kept}")
