"""Environment variables a tool gives its own ROS context, for as long as that context starts only.

rcl reads the discovery range and the security settings from the environment in `rclpy.init`, and the middleware
its profiles and transports when a context's first node is created; neither takes them as arguments. A tool that
sets them for its own context (a private localhost-only domain, a Fast DDS profile) sets them around those two
calls with `scoped_environ`, so that they never stay in its caller's environment (a test, or a script that starts
other ROS nodes afterwards). Its child processes get them in their own `env` instead.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping


@contextlib.contextmanager
def scoped_environ(values: Mapping[str, str]) -> Iterator[None]:
    """`values` set in os.environ inside the block; after it, whatever it raised, each of those variables is back
    to its value before (or unset again)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
