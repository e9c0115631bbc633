"""Which node a Python log line comes from, and the core's lines of a node on that node's rclpy logger.

The core logs with Python's `logging` (`dgdehaze_core.*`: backend and engine-cache lines, pipeline warnings, the
frame worker's `processing failed`), not with the node's rclpy logger. A record logged on a node's own threads
(`<logger name>-worker`, `<logger name>-loader`) or during one of its lifecycle transitions belongs to that node:
its message begins with `[<the node's logger name>] ` (`[front.dgdehaze] `), the name rclpy prints on the node's
own lines, whatever handler and format shows it (a process's own `logging.basicConfig`, pytest's caplog). One of
`dgdehaze_core` or below also goes to the node's rclpy logger, as `<python logger>: <message>` at its level (debug
to fatal), which prints it, publishes it on /rosout (rqt_console) and writes it to the log file under
`~/.ros/log`: a handler of the process's own that prints to the console passes `not_on_a_node_logger` records
only, so as not to print those a second time (the node's `main()` does). Other records are left as they are.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Iterator

import rclpy.logging
from rclpy.logging import LoggingSeverity

ROUTED = "dgdehaze_core"
"""The Python logger whose records (its own and its children's) of a node also go to the node's rclpy logger."""
NODE_ATTRIBUTE = "ros_node"
"""The attribute of a LogRecord that holds the logger name of the node it belongs to, where it belongs to one."""
_SEVERITIES = tuple(severity for severity in LoggingSeverity if severity > LoggingSeverity.UNSET)
_THREAD_NODES: dict[str, str] = {}
"""A node's thread name -> the node's logger name. Entries stay after the node is destroyed: a load it abandoned
still runs on (and logs) under its name, and a later node of that name has the same threads."""
_transition = threading.local()
_install_lock = threading.Lock()
_installed = False


def attribute_threads(node: str, *thread_names: str) -> None:
    """Records logged on the threads named `thread_names` belong to `node` (a logger name); installs, once per
    process, the record factory that tells it (over whatever factory the process had) and the handler of ROUTED
    that hands its records of a node to the node's rclpy logger."""
    global _installed
    with _install_lock:
        _THREAD_NODES.update(dict.fromkeys(thread_names, node))
        if not _installed:
            logging.setLogRecordFactory(_naming_factory(logging.getLogRecordFactory()))
            logging.getLogger(ROUTED).addHandler(_ToNodeLoggers())
            _installed = True


@contextlib.contextmanager
def transition_of(node: str) -> Iterator[None]:
    """Records logged on this thread meanwhile belong to `node`: a lifecycle transition, which runs on the caller's
    thread (the executor's, or `create_node`'s), where the core logs the backend it chose and the models it loaded."""
    outer = getattr(_transition, "node", None)
    _transition.node = node
    try:
        yield
    finally:
        _transition.node = outer


def not_on_a_node_logger(record: logging.LogRecord) -> bool:
    """A filter for a handler of the process's own (`handler.addFilter(not_on_a_node_logger)`): whether `record`
    is one that no node's rclpy logger prints, so that a console handler does not print the others twice."""
    return not (hasattr(record, NODE_ATTRIBUTE) and (record.name == ROUTED or record.name.startswith(f"{ROUTED}.")))


def _naming_factory(make_record: Any) -> Any:
    """`make_record` (a LogRecord factory), its records of a node marked with it (NODE_ATTRIBUTE) and their messages
    prefixed with it. A message that is no str stays unformatted until a handler formats it (`_NamedMessage`), as
    logging does: the factory runs inside the caller's log call, where an object's failing `str` must not raise."""
    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = make_record(*args, **kwargs)
        node = getattr(_transition, "node", None) or _THREAD_NODES.get(threading.current_thread().name)
        if node:
            setattr(made, NODE_ATTRIBUTE, node)
            made.msg = f"[{node}] {made.msg}" if isinstance(made.msg, str) else _NamedMessage(node, made.msg)
        return made
    return record


class _NamedMessage:
    """A log record's message that is no str (an exception, any object), prefixed with its node's name when the
    record is formatted (`LogRecord.getMessage` calls `str`), where logging handles what that raises."""

    def __init__(self, node: str, message: object) -> None:
        self.node, self.message = node, message

    def __str__(self) -> str:
        return f"[{self.node}] {self.message}"


class _ToNodeLoggers(logging.Handler):
    """The handler of ROUTED: a record of a node goes to the node's rclpy logger at its level, as `<python logger>:
    <message>` (the node's name, which rclpy prints, taken off the message) with its traceback. It propagates on to
    the process's own handlers either way."""

    def emit(self, record: logging.LogRecord) -> None:
        node = getattr(record, NODE_ATTRIBUTE, None)
        if node is None:
            self._last_resort(record)
            return
        try:  # the default format: the message and any traceback
            text = f"{record.name}: {self.format(record).removeprefix(f'[{node}] ')}"
            # a logger of its own each time: rclpy's refuses one call site that logs at several severities
            rclpy.logging.get_logger(node).log(text, _severity(record.levelno))
        except Exception:
            self.handleError(record)

    def _last_resort(self, record: logging.LogRecord) -> None:
        """Hand a record of no node that no other handler takes to `logging.lastResort` (WARNING and up on stderr),
        as Python does where no handler is found: this one, there for the records of nodes, must not silence the
        others in a process that configures no logging."""
        logger: Any = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return
            logger = logger.parent if logger.propagate else None
        if logging.lastResort is not None and record.levelno >= logging.lastResort.level:
            logging.lastResort.handle(record)


def _severity(level: int) -> LoggingSeverity:
    """rclpy's severity of a Python level: the highest at or below it (DEBUG below DEBUG)."""
    return max((severity for severity in _SEVERITIES if severity <= level), default=LoggingSeverity.DEBUG)
