"""Walking a data folder through symlinked subfolders: a set is often linked into place (a KITTI date folder, a
data set linked into a training folder), and pathlib's rglob (Python < 3.13) does not enter linked folders."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator


def linked_folders(root: str | Path) -> Iterator[tuple[Path, list[str]]]:
    """(folder, its file names) for `root` and every folder under it, symlinked ones followed, each real folder
    once (a link back up the tree ends there); hidden folders (`.name`) are left out, and folders come in sorted
    order. Nothing for a missing `root`."""
    seen = set()
    for current, folders, files in os.walk(root, followlinks=True):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        real = os.path.realpath(current)
        if real in seen:
            folders.clear()
            continue
        seen.add(real)
        yield Path(current), files


def linked_rglob(root: str | Path, pattern: str) -> list[Path]:
    """`Path(root).rglob(pattern)`, sorted, through symlinked subfolders too (`linked_folders`), without what is
    hidden or lies in a hidden folder below `root` (macOS' ._ sidecars, a .Trash copy of a drive)."""
    return sorted({match for folder, _ in linked_folders(root) for match in folder.glob(pattern)
                   if not any(part.startswith(".") for part in match.relative_to(root).parts)})
