"""The tools' child processes (the node under test, the QoS probe's subscriber): their stderr goes to a temporary
file (`tempfile.TemporaryFile()` as Popen's stderr), and `stop` ends one within a bound.

A pipe that nobody reads blocks its writer once it holds 64 KiB, and reading a pipe to its end waits until the child
exits, which a node that never started properly does not do; a file does neither, and `log_tail` reads its end
whether the child is running or not.
"""
from __future__ import annotations

import os
import signal
import subprocess
from typing import IO

STOP_TIMEOUT_S = 10.0
"""Seconds a child gets to end after its stop signal before it is killed."""


def stop(process: subprocess.Popen, stop_signal: int = signal.SIGINT, timeout: float = STOP_TIMEOUT_S) -> None:
    """End `process` if it is still running: `stop_signal`, then SIGKILL if it has not ended within `timeout` s.
    Returns once it has ended and been reaped."""
    if process.poll() is not None:
        return
    process.send_signal(stop_signal)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(log: IO[bytes], chars: int = 2000) -> str:
    """About the last `chars` characters written to the binary file `log` so far, decoded (bad bytes replaced)."""
    log.seek(0, os.SEEK_END)
    log.seek(max(0, log.tell() - chars))
    return log.read().decode(errors="replace")
