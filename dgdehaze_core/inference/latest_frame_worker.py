"""A worker thread that processes only the newest item: no backlog, however slow the processing.

A camera delivers frames at its own rate; when inference is slower, queuing frames only adds latency and memory.
`LatestFrameWorker.submit` puts an item in a one-slot mailbox and returns at once; an item still waiting when a
newer one arrives is replaced and counted as dropped. The worker thread takes whatever is newest when it is free.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

LOG = logging.getLogger(__name__)

Item = TypeVar("Item")


class StillStopping(RuntimeError):
    """`LatestFrameWorker.start` found the previous thread still busy with its last item after a stop."""


@dataclass(frozen=True)
class WorkerCounts:
    """Counters since start: submitted = processed + skipped + failed + dropped + pending (+ one in progress)."""

    submitted: int
    processed: int
    dropped: int
    failed: int
    skipped: int
    pending: int
    busy: bool


class LatestFrameWorker(Generic[Item]):
    """Run `process(item)` in one background thread on the newest submitted item only.

    An item for which `process` returns False was taken but not processed (a bad frame it skipped): counted
    `skipped`, not `processed`. Exceptions from `process` are logged and counted (`failed`); the worker keeps
    running.
    """

    def __init__(self, process: Callable[[Item], bool | None], name: str = "latest-frame-worker") -> None:
        self._process = process
        self._name = name
        self._condition = threading.Condition()
        self._slot: Item | None = None
        self._has_item = False
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        """The worker thread, until it has finished its last item after a stop (it clears this itself)."""
        self._submitted = self._processed = self._dropped = self._failed = self._skipped = 0

    def start(self, timeout: float = 5.0) -> None:
        """Start the thread (no-op when running). A thread still finishing its last item after a `stop` that
        timed out is waited for first, up to `timeout` seconds, so that a restart never runs two workers; when it
        still runs then, `StillStopping` is raised and nothing is started (call `start` again later)."""
        with self._condition:
            if self._thread is not None and not self._stopping:
                return
            if not self._condition.wait_for(lambda: self._thread is None, timeout):
                raise StillStopping(f"{self._name} is still processing its last item after a stop that timed out; "
                                    f"not started (waited {timeout:g} s)")
            self._stopping = False
            self._slot, self._has_item = None, False  # nothing offered while stopped is processed after a restart
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop after the item in progress (a waiting one is discarded as dropped); False if it did not finish. A
        KeyboardInterrupt ends the wait early, and `running` still tells whether the item runs on."""
        with self._condition:
            self._stopping = True
            if self._has_item:
                self._dropped += 1
            self._slot, self._has_item = None, False
            self._condition.notify_all()
            # not Thread.join: one a KeyboardInterrupt cuts short marks the thread ended (Python 3.11)
            if not self._condition.wait_for(lambda: self._thread is None, timeout):
                LOG.warning("%s did not stop within %.1f s", self._name, timeout)
                return False
        return True

    def submit(self, item: Item) -> bool:
        """Offer the newest item; returns True when it replaced an unprocessed one (counted as dropped). An item
        offered while the worker is stopped (not started, or stopping) is dropped at once: a frame that arrives
        during a deactivate is never processed after the next activate."""
        with self._condition:
            if self._thread is None or self._stopping:
                self._submitted += 1
                self._dropped += 1
                return False
            replaced = self._has_item
            self._slot, self._has_item = item, True
            self._submitted += 1
            if replaced:
                self._dropped += 1
            self._condition.notify()
            return replaced

    def counts(self) -> WorkerCounts:
        with self._condition:
            return WorkerCounts(self._submitted, self._processed, self._dropped, self._failed, self._skipped,
                                int(self._has_item), self._busy)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is pending or in progress (for tests and orderly shutdown)."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._has_item and not self._busy, timeout)

    @property
    def running(self) -> bool:
        """Whether the worker thread runs: started and not yet done with its last item after a stop."""
        return self._thread is not None

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._has_item or self._stopping)
                if self._stopping:
                    self._thread = None
                    self._condition.notify_all()
                    return
                item, self._slot, self._has_item = self._slot, None, False
                self._busy = True
            try:
                processed = self._process(item) is not False  # type: ignore[arg-type]
                failed = False
            except Exception:  # a failed frame must not end the worker
                LOG.exception("%s: processing failed", self._name)
                processed, failed = False, True
            with self._condition:
                self._busy = False
                if failed:
                    self._failed += 1
                elif processed:
                    self._processed += 1
                else:
                    self._skipped += 1
                self._condition.notify_all()
