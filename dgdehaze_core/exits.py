"""How a command ends: SIGTERM interrupts it as Ctrl-C does (`Terminated`), so that the writes under way are
removed, and bad input ends it with one line on stderr and exit status 2 instead of a traceback (`report_errors`),
for `dgdehaze`, the training loop's stop at a step boundary and the scripts in tools/ alike; and the process exits
without a last walk over every object it holds (`skip_exit_collection`)."""
from __future__ import annotations

import atexit
import contextlib
import gc
import signal
import sys
import threading
from types import FrameType
from typing import Callable, Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a container stopping) raised in the main thread, so that every write under way is
    removed by its `finally` as on Ctrl-C instead of being left half-written."""


_SIGTERM_RECEIVED = threading.Event()
"""Set by `sigterm_interrupts`' handler: a library that catches the interrupt and raises a plain KeyboardInterrupt
of its own (Ray's `wait` and `get`) still has the command end as terminated."""


def interruption(signum: int) -> type[KeyboardInterrupt]:
    """What a stop by signal `signum` raises in the main thread: `Terminated` for SIGTERM (exit 143), else
    KeyboardInterrupt (exit 130)."""
    return Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def _terminate(signum: int, frame: FrameType | None) -> None:
    _SIGTERM_RECEIVED.set()
    raise Terminated


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM interrupts like Ctrl-C (unless it is ignored, as under nohup, or this is not
    the main thread); the handler before is put back after."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    _SIGTERM_RECEIVED.clear()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def report_errors(label: str, run: Callable[[], int | None], verbose: bool | None = None) -> int:
    """`run()`'s exit status (None as 0). Bad input or an output that cannot be written (ValueError, OSError such as
    a missing file or a read-only or full disk, RuntimeError) prints `LABEL: error: MESSAGE` on one line of stderr
    and returns 2 instead of a traceback: the message's first line and how many more there are (`verbose` False:
    the command has -v, which raises the error instead; None: no -v, the lines joined). SIGTERM returns 143 and
    Ctrl-C 130, after the atomic writes under way were removed (`sigterm_interrupts`)."""
    try:
        with sigterm_interrupts():
            return int(run() or 0)
    except (ValueError, OSError, RuntimeError) as exc:
        if verbose:
            raise
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
        if verbose is None:
            message = " ".join(lines)
        else:
            message = lines[0] + (f" (and {len(lines) - 1} more lines: run with -v)" if len(lines) > 1 else "")
        print(f"{label}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return stopped(label, exc)


def stopped(label: str, stop: KeyboardInterrupt) -> int:
    """Say on stderr that `stop` (Ctrl-C, or SIGTERM under `sigterm_interrupts`) ended `label`, and return the
    exit status a shell gives that signal: 143 for SIGTERM, 130 for Ctrl-C."""
    if isinstance(stop, Terminated) or _SIGTERM_RECEIVED.is_set():
        print(f"{label}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(f"{label}: interrupted", file=sys.stderr)
    return 130


def skip_exit_collection() -> None:
    """Have the interpreter, as the process exits, skip its last garbage collection (the objects are frozen by an
    exit handler, which runs before it): that collection walks the millions of objects torch and the other
    libraries made, half a second of CPU after each `dgdehaze` command and the node, for memory the system takes
    back whole anyway. Objects in reference cycles then get no finalizer at exit (nothing of this package's relies
    on one: its writes are atomic and closed by `finally` and `with`). Registered once, however often called."""
    if not getattr(skip_exit_collection, "registered", False):
        atexit.register(gc.freeze)
        skip_exit_collection.registered = True
