"""The latest-frame worker keeps no backlog: a slow consumer sees the newest item, older ones are counted dropped."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from dgdehaze_core.inference.latest_frame_worker import LatestFrameWorker, StillStopping


def test_slow_processing_keeps_only_the_newest_item_and_counts_drops() -> None:
    seen: list[int] = []
    release = threading.Event()

    def process(item: int) -> None:
        release.wait(2.0)
        seen.append(item)

    worker: LatestFrameWorker[int] = LatestFrameWorker(process)
    worker.start()
    worker.submit(0)
    assert wait_busy(worker, 2.0)  # item 0 is now in progress
    replaced = [worker.submit(i) for i in range(1, 50)]
    assert replaced == [False] + [True] * 48
    counts = worker.counts()
    assert counts.pending == 1 and counts.busy and counts.dropped == 48
    release.set()
    assert worker.wait_idle(2.0)
    assert seen == [0, 49]
    counts = worker.counts()
    assert (counts.submitted, counts.processed, counts.dropped, counts.pending) == (50, 2, 48, 0)
    assert worker.stop()


def test_an_item_the_process_skips_is_counted_skipped_not_processed() -> None:
    worker: LatestFrameWorker[int] = LatestFrameWorker(lambda item: item >= 0)  # False: a bad frame, skipped
    worker.start()
    for item in (-1, 3, -2):
        worker.submit(item)
        assert worker.wait_idle(2.0)
    counts = worker.counts()
    assert (counts.submitted, counts.processed, counts.skipped, counts.failed) == (3, 1, 2, 0)
    assert worker.stop()


def test_a_failing_item_is_counted_and_the_worker_keeps_running() -> None:
    seen: list[int] = []

    def process(item: int) -> None:
        if item < 0:
            raise ValueError("bad item")
        seen.append(item)

    worker: LatestFrameWorker[int] = LatestFrameWorker(process)
    worker.start()
    worker.submit(-1)
    assert worker.wait_idle(2.0)
    worker.submit(7)
    assert worker.wait_idle(2.0)
    assert seen == [7] and worker.counts().failed == 1 and worker.running
    assert worker.stop() and not worker.running


def test_a_restart_after_a_stop_that_timed_out_gets_a_live_worker() -> None:
    seen: list[int] = []
    release = threading.Event()
    worker = busy_with_a_slow_item(release, seen)
    assert wait_busy(worker, 2.0) and not worker.stop(timeout=0.1)  # item 0 is in progress: stop gives up waiting
    threading.Timer(0.2, release.set).start()
    worker.start()  # waits for item 0 to finish, then starts a fresh thread
    worker.submit(1)
    assert worker.wait_idle(2.0)
    assert seen == [0, 1] and worker.running
    assert worker.stop()


def test_a_restart_while_the_item_a_stop_gave_up_on_still_runs_is_refused_within_its_timeout() -> None:
    """`start` waited without limit for that item: a deactivate and activate of the node on a stuck frame hung."""
    seen: list[int] = []
    release = threading.Event()
    worker = busy_with_a_slow_item(release, seen)
    assert wait_busy(worker, 2.0) and not worker.stop(timeout=0.1)
    started = time.monotonic()
    with pytest.raises(StillStopping, match="still processing its last item"):
        worker.start(timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert worker.running and worker.submit(1) is False, "not started: an item offered now is dropped"
    release.set()
    worker.start(timeout=5.0)
    worker.submit(2)
    assert worker.wait_idle(2.0) and seen == [0, 2]
    assert [t.name for t in threading.enumerate()].count("latest-frame-worker") == 1
    assert worker.stop()


def test_an_item_offered_while_stopped_is_dropped_not_processed_after_a_restart() -> None:
    seen: list[int] = []
    worker: LatestFrameWorker[int] = LatestFrameWorker(seen.append)
    assert worker.submit(1) is False  # before the first start
    worker.start()
    assert worker.wait_idle(2.0) and seen == []
    worker.submit(2)
    assert worker.wait_idle(2.0) and worker.stop()
    worker.submit(3)  # a frame arriving while the node deactivates
    worker.start()  # the next activate
    assert worker.wait_idle(2.0) and seen == [2], "the frame from before the deactivate is not processed"
    worker.submit(4)
    assert worker.wait_idle(2.0) and worker.stop()
    assert seen == [2, 4]
    counts = worker.counts()
    assert (counts.submitted, counts.processed, counts.dropped) == (4, 2, 2)


def test_a_ctrl_c_during_stop_leaves_the_item_in_progress_counted_running(terminal_signals) -> None:
    """A KeyboardInterrupt (a second Ctrl-C as dgdehaze_node stops) cutting `stop`'s wait short marked the thread
    ended on Python 3.11 while its item still ran: `running` said False, so the node's executable exited through
    the interpreter with the frame inside native code, and a `start` ran a second worker beside it."""
    release, seen = threading.Event(), []
    worker = busy_with_a_slow_item(release, seen)
    assert wait_busy(worker, 2.0)
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt):
        worker.stop(timeout=5.0)
    assert worker.running, "the item in progress still runs"
    threading.Timer(0.3, release.set).start()
    worker.start()  # waits for item 0, then starts the only worker
    worker.submit(1)
    assert worker.wait_idle(2.0) and seen == [0, 1]
    assert [t.name for t in threading.enumerate()].count("latest-frame-worker") == 1
    assert worker.stop() and not worker.running


def busy_with_a_slow_item(release: threading.Event, seen: list[int]) -> LatestFrameWorker[int]:
    """A started worker given item 0, which waits (up to 10 s) for `release`; each item is put in `seen` once
    processed."""
    def process(item: int) -> None:
        if item == 0:
            release.wait(10.0)
        seen.append(item)

    worker: LatestFrameWorker[int] = LatestFrameWorker(process)
    worker.start()
    worker.submit(0)
    return worker


def wait_busy(worker: LatestFrameWorker[int], timeout: float) -> bool:
    """Whether the worker's thread took an item within `timeout` s: a fixed sleep was too short where a loaded host
    starts the thread late, and the item a test meant to be in progress was still waiting (or never taken)."""
    deadline = time.monotonic() + timeout
    while not worker.counts().busy and time.monotonic() < deadline:
        time.sleep(0.01)
    return worker.counts().busy
