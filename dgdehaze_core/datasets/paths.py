"""Where the data lives: the shared real-data folder, and the files shipped inside the package."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = PACKAGE_DIR / "weights"
DEFAULT_DETECTOR = WEIGHTS_DIR / "yolov8n_int8.onnx"
"""The shipped offline detector (COCO YOLOv8n, dynamically quantised int8 ONNX; weights/README.md)."""
REPO_DIR = PACKAGE_DIR.parent


def shared_data_dir() -> Path | None:
    """The real-data folder: $DGDEHAZE_DATA, else ../shared/data beside the repository; None when absent."""
    candidates = [os.environ.get("DGDEHAZE_DATA"), REPO_DIR.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None
