"""Ultralytics imported offline: it downloads nothing and pip-installs nothing while the package runs.

Ultralytics reads its environment once, when first imported: `YOLO_OFFLINE` stops its online checks and downloads,
`YOLO_AUTOINSTALL=false` stops `check_requirements` from running pip (which it otherwise does when, for example,
`PIL.Image.open` meets a file it cannot identify and it reaches for a HEIF plugin). Values the user set are kept.
"""
from __future__ import annotations

import os
from types import ModuleType

OFFLINE_ENVIRONMENT = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false"}


def offline_ultralytics() -> ModuleType:
    """The `ultralytics` package, imported (the first time) with OFFLINE_ENVIRONMENT."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    import ultralytics

    return ultralytics
