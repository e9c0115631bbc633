"""Environment variables a tool gives its own ROS context, for as long as that context starts only.

rcl reads the discovery range and the security settings from the environment in `rclpy.init`, and the middleware
its profiles and transports when a context's first node is created; neither takes them as arguments. A tool that
sets them for its own context (a private localhost-only domain, a Fast DDS profile) sets them around those two
calls with `scoped_environ`, so that they never stay in its caller's environment (a test, or a script that starts
other ROS nodes afterwards). Its child processes get them in their own `env` instead. The domain of such a graph
comes from `reserve_domain`.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import tempfile
from pathlib import Path
from typing import IO, Iterator, Mapping


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


PRIVATE_DOMAINS = range(100, 201)
"""The ROS_DOMAIN_IDs a tool takes for a graph of its own (`reserve_domain`); tests' own domains lie below."""
_held: dict[range, IO[str]] = {}


def reserve_domain(domains: range = PRIVATE_DOMAINS) -> int:
    """A ROS_DOMAIN_ID of `domains` that no other process of this machine holds: a lock (flock) on a file named
    after it in the temporary folder, held until this process reserves another of `domains` or ends, so that a
    replay, a node benchmark, a QoS probe or a test session never shares its DDS graph with another one running
    beside it (a test worker's, or a second user's). The search starts at a number drawn from the OS, not from
    `random`, which a training run seeds: two processes seeded alike drew the same domain and took each other's
    nodes' outputs."""
    earlier = _held.pop(domains, None)
    if earlier is not None:
        earlier.close()
    start = secrets.randbelow(len(domains))
    for offset in range(len(domains)):
        domain = domains[(start + offset) % len(domains)]
        handle = open(Path(tempfile.gettempdir()) / f"dgdehaze-ros-domain-{domain}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _held[domains] = handle
        return domain
    raise RuntimeError(f"every ROS domain {domains.start}..{domains.stop - 1} is held by another replay, node "
                       "benchmark, QoS probe or test session on this machine")
