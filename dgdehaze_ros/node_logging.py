"""Which node a Python log line comes from, in a process of several nodes (two cameras' nodes on one executor).

The core logs with Python's `logging` (`dgdehaze_core.*`: backend and engine-cache lines, pipeline warnings, the
frame worker's `processing failed`), not with the node's rclpy logger, so its lines do not say which node they
belong to. Every record logged on a node's own threads (`<logger name>-worker`, `<logger name>-loader`) or during
one of its lifecycle transitions has its message begin with `[<the node's logger name>] ` (`[front.dgdehaze] `),
the name rclpy prints on the node's own lines: whatever handler and format shows it (the node's `main()`, a
process's own `logging.basicConfig`, pytest's caplog). Other records are left as they are.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterator

_THREAD_NODES: dict[str, str] = {}
"""A node's thread name -> the node's logger name. Entries stay after the node is destroyed: a load it abandoned
still runs on (and logs) under its name, and a later node of that name has the same threads."""
_transition = threading.local()
_install_lock = threading.Lock()
_installed = False


def attribute_threads(node: str, *thread_names: str) -> None:
    """Records logged on the threads named `thread_names` name `node` (a logger name); installs the record factory
    that does it, once per process, over whatever factory the process had."""
    global _installed
    with _install_lock:
        _THREAD_NODES.update(dict.fromkeys(thread_names, node))
        if not _installed:
            logging.setLogRecordFactory(_naming_factory(logging.getLogRecordFactory()))
            _installed = True


@contextlib.contextmanager
def transition_of(node: str) -> Iterator[None]:
    """Records logged on this thread meanwhile name `node`: a lifecycle transition, which runs on the caller's thread
    (the executor's, or `create_node`'s), where the core logs the backend it chose and the models it loaded."""
    outer = getattr(_transition, "node", None)
    _transition.node = node
    try:
        yield
    finally:
        _transition.node = outer


def _naming_factory(make_record: Any) -> Any:
    """`make_record` (a LogRecord factory), its records' messages prefixed with the node they come from."""
    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = make_record(*args, **kwargs)
        node = getattr(_transition, "node", None) or _THREAD_NODES.get(threading.current_thread().name)
        if node:
            made.msg = f"[{node}] {made.msg}"
        return made
    return record
