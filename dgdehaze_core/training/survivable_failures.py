"""The failures a training loop survives to save: a data loader worker that died. It leaves the training process
with the state of its last completed step, which the trainers save as `last.pt` (as for Ctrl-C) before they end
with one line naming the cause.

- A worker killed by a signal (the kernel's OOM killer, `kill -9`) or ended with an error status: torch's DataLoader
  raises it from its SIGCHLD handler, wherever the training process is, or as the batch under way fails to arrive
  (a socket reset, 'exited unexpectedly'). `LoaderWorkers` notes an end during a step, acts on it as the next batch
  is fetched, and names the worker and its signal.

Nothing else is caught: an exception a worker raised (the data's, the code's), a bug in a step (a shape error), and
any failure in a torchrun job (whose other ranks would wait on it in a collective) propagate as they are, `last.pt`
holding the last checkpoint.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any, Iterator

from torch.utils.data import DataLoader

WORKER_END_WAIT_S = 1.0
"""How long a batch that failed to arrive (a socket reset) waits for a worker's end to show: a killed worker's
sockets close a moment before the kernel reports it ended."""


class SurvivedFailure(RuntimeError):
    """A failure that left the training process at a completed step (its message names the cause); the trainer
    saves that step and ends with `ended_by`'s one line."""


class LoaderWorkerDied(SurvivedFailure):
    """A data loader worker ended while the run needed it."""


class LoaderWorkers:
    """The worker processes of a training run's data loaders (`batches`), and what ended one.

    torch's DataLoader raises a worker's death from its SIGCHLD handler, at whatever line the training process is:
    mid-step too, a state half a step on that no checkpoint may hold. While `batches` runs, a child's end (SIGCHLD)
    is noted instead, and acted on as the next batch is fetched, between steps; torch's handler is in place only
    while a batch is fetched, where the failure reaches the fetch. Outside the main thread, where no handler runs,
    the handlers are left as they are."""

    def __init__(self) -> None:
        self.processes: list[BaseProcess] = []
        self._child_ended = False
        self._previous: Any = None
        self._main_thread = True

    def batches(self, loader: DataLoader) -> Iterator[Any]:
        """`loader`'s batches, noting the worker processes it starts; LoaderWorkerDied, as a batch is fetched, where
        one of them died (anything else a fetch raises, a worker's own exception, propagates as it is)."""
        self._main_thread = threading.current_thread() is threading.main_thread()
        before = set(multiprocessing.active_children())
        fetched = iter(loader)  # starts the workers, and torch's SIGCHLD handler with the first
        self.processes += [process for process in multiprocessing.active_children() if process not in before]
        self._note_child_ends()
        try:
            while True:
                died = self._died_meanwhile()
                try:
                    with self._torch_handling():
                        batch = next(fetched)
                except StopIteration:
                    return
                except (RuntimeError, OSError, EOFError):
                    died = self.death(WORKER_END_WAIT_S)
                    if died is None:
                        raise
                if died is not None:  # raised here, not in the except: the failed fetch's frames are let go
                    raise LoaderWorkerDied(died)
                yield batch
        finally:
            self._restore()

    def death(self, wait_s: float = 0.0) -> str | None:
        """The first worker that ended with a signal or an error status, in words (None: none, within `wait_s`)."""
        deadline = time.monotonic() + wait_s
        while True:
            for process in self.processes:
                if process.exitcode:  # reaps the worker: its status is kept here, not left to torch
                    return _ended(process.pid, process.exitcode)
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
        if self._main_thread and signal.getsignal(signal.SIGCHLD) != self._noted:
            self._previous = signal.signal(signal.SIGCHLD, self._noted)

    def _restore(self) -> None:
        if self._main_thread and signal.getsignal(signal.SIGCHLD) == self._noted:
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


def ended_by(failure: str, saved: Path | None, iteration: int, last_path: Path) -> RuntimeError:
    """The one-line error a run that a SurvivedFailure (its message `failure`) ended raises once it saved `last_path`
    (`saved`; None where no step was completed since the run began or resumed)."""
    if saved is not None:
        kept = f"saved {saved} at iteration {iteration}: --resume continues from it"
    elif last_path.is_file():
        kept = f"{last_path} holds iteration {iteration}: --resume continues from it"
    else:
        kept = "no step was completed: run again into the same --out folder"
    return RuntimeError(f"{failure}; {kept}")
