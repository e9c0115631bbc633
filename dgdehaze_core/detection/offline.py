"""Ultralytics imported offline: it downloads nothing and pip-installs nothing while the package runs.

Ultralytics reads its environment once, when first imported: `YOLO_OFFLINE` stops its online checks and downloads,
`YOLO_AUTOINSTALL=false` stops `check_requirements` from running pip (which it otherwise does when, for example,
`PIL.Image.open` meets a file it cannot identify and it reaches for a HEIF plugin). Values the user set are kept.
An Ultralytics older than ULTRALYTICS_FLOOR is refused here, naming its version, before any of it runs. Its log
goes to standard error, as every log of the package's does: on standard output its lines ("Loading ... for ONNX
Runtime inference") came before the table a command prints there, in a file the table is written to.
"""
from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

from packaging.version import Version

from dgdehaze_core.cpu_threads import threads_kept

OFFLINE_ENVIRONMENT = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}

ULTRALYTICS_FLOOR = "8.4.175"
"""The oldest Ultralytics release the package works with (requirements-ros.txt; docs/DEPLOYMENT.md, "Versions on a
ROS install"): from 8.4.175 each tracker numbers its own tracks from 1, as `tracking.BoxTracker` takes them; before,
every tracker of the process drew from one count, which another tracker's start or reset set back to 0 (a stream's
ids then depend on the other streams, and a new object's track is dropped for as many frames as ids collide).
Older releases also lack `BaseBackend.read_metadata` (before 8.4.127), the `split` of `check_det_dataset` (8.4.92),
the `quantize` option (8.4.80) and `ultralytics.nn.backends` (8.4.23)."""


class _StandardError:
    """sys.stderr as it stands at each write (one a test's capture or a command's redirect replaced since)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class UltralyticsTooOld(RuntimeError):
    """The installed Ultralytics is older than ULTRALYTICS_FLOOR."""


def offline_ultralytics() -> ModuleType:
    """The `ultralytics` package, imported (the first time) with OFFLINE_ENVIRONMENT; UltralyticsTooOld, naming the
    installed version and the floor, for a release older than ULTRALYTICS_FLOOR."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    with threads_kept():  # its import sets OpenCV's threads and OMP_NUM_THREADS for the whole process
        import ultralytics
    for handler in logging.getLogger("ultralytics").handlers:  # its own, bound to standard output; not a
        if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _StandardError):  # subclass's
            handler.setStream(_StandardError())  # (pytest's log capture, say), which keeps its own stream

    if Version(ultralytics.__version__).release < Version(ULTRALYTICS_FLOOR).release:  # a suffix (.dev0) aside
        raise UltralyticsTooOld(f"Ultralytics {ultralytics.__version__} is installed, older than {ULTRALYTICS_FLOOR}, "
                                f"the oldest release dgdehaze works with: pip install -U 'ultralytics>="
                                f"{ULTRALYTICS_FLOOR}' (requirements-ros.txt)")
    return ultralytics
