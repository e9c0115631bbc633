"""Reading torch checkpoint files without running code in them, with errors of one line.

Every `.pt` the package reads goes through torch's restricted unpickler (`weights_only=True`): a file whose pickle
would call a function outside torch's safe set is refused before anything in it runs. Torch explains such a
refusal in several paragraphs; `load_error_line` keeps the sentence that names what was refused.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

REFUSAL_MARKERS = ("Trying to load unsupported GLOBAL", "Unsupported global", "Unsupported operand",
                   "Unsupported class")


def load_error_line(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str:
    """One line saying why torch could not read a checkpoint."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith(REFUSAL_MARKERS)), lines[-1])
        return f"refused: loading it would run code outside torch's safe set ({detail.rstrip('.')})"
    if path is not None and Path(path).is_file() and not zipfile.is_zipfile(path):
        return "truncated, or not a torch checkpoint (no zip archive in it)"
    return text.splitlines()[0] if text else type(exc).__name__


def read_checkpoint(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """The contents of a torch checkpoint file, read with `weights_only=True` onto the CPU; ValueError in one line
    naming the file and the reason when it cannot be read (missing, truncated, foreign, or unsafe)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated, foreign and unsafe files
        raise ValueError(f"{path} is not a readable {what}: {load_error_line(exc, path)}") from None
