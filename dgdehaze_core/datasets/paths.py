"""Where the data lives: the shared real-data folder, and the files shipped inside the package."""
from __future__ import annotations

import logging
import os
from pathlib import Path

LOG = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = PACKAGE_DIR / "weights"
DEFAULT_DETECTOR = WEIGHTS_DIR / "yolov8n_int8.onnx"
"""The shipped offline detector (COCO YOLOv8n, dynamically quantised int8 ONNX; weights/README.md)."""
REPO_DIR = PACKAGE_DIR.parent


def shared_data_dir() -> Path | None:
    """The real-data folder: $DGDEHAZE_DATA where it is set, else ../shared/data beside the repository; None when
    that folder is absent. A $DGDEHAZE_DATA that is no folder (a mistyped path, a kit not unpacked) gives None with
    a warning, never the folder beside the repository: data chosen elsewhere would be read in its place."""
    given = os.environ.get("DGDEHAZE_DATA")
    if given:
        if Path(given).is_dir():
            return Path(given)
        LOG.warning("DGDEHAZE_DATA=%s is not a folder: no shared data folder is used", given)
        return None
    default = REPO_DIR.parent / "shared" / "data"
    return default if default.is_dir() else None
