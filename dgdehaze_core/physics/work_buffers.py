"""Work arrays a per-frame computation keeps from frame to frame instead of allocating them afresh.

A multi-megabyte array allocated afresh is fresh pages from the kernel, each faulted in on first write, unless the
C allocator kept the memory of the last frame's. glibc keeps it in the main thread's heap (`process_memory`), but
not reliably in a heap of another thread: those hold at most 64 MiB each, and one that a frame's freed arrays empty
is unmapped, so a thread whose frame works on more than that (a 1920x1080 band of the physics inversion) faulted
megabytes in again on every frame. Arrays kept here are allocated once per shape and never freed in between.
"""
from __future__ import annotations

import numpy as np


class WorkBuffers:
    """Arrays by name, each allocated again only when the shape or dtype asked for changes. One user at a time:
    an array handed out is overwritten by the next call that asks for its name."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
        """The array kept as `name`, of `shape` and `dtype`, with whatever it held last (uninitialised when new)."""
        array = self._arrays.get(name)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype)
        return array


def fresh(name: str, shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> np.ndarray:
    """A `WorkBuffers` call that keeps nothing: a new array each time (for a one-off call)."""
    return np.empty(shape, dtype)
