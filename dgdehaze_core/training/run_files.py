"""What a training run keeps beside its checkpoints: the recipe it ran, its CSV logs (TensorBoard's too when
installed), and the code's commit and the hardware it ran on. Both trainings (`trainer`, `depth_trainer`) write their
run folders through it, and recorded figures name their commit with `source_commit`.
"""
from __future__ import annotations

import csv
import io
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.atomic_files import atomic_write_text


SOURCE_PATHS = ("dgdehaze_core", "data/splits", "tools")
"""What a recorded figure or weights file comes from: the package, the splits that say which files judge, and the
scripts that run and choose (a change to any of them marks the commit '+dirty')."""


def source_commit() -> str:
    """The git commit of the code (with '+dirty' for uncommitted changes to SOURCE_PATHS), $DGDEHAZE_COMMIT, or
    'unknown'; the last two also where the package lies in a git work tree that does not track it (installed into
    a virtual environment inside another project's repository, whose commit says nothing of this code)."""
    try:
        subprocess.run(["git", "ls-files", "--error-unmatch", "--", SOURCE_PATHS[0]], cwd=REPO_DIR,
                       capture_output=True, timeout=10, check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *SOURCE_PATHS], cwd=REPO_DIR,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("DGDEHAZE_COMMIT", "unknown")


def hardware_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


class CsvLog:
    """Append rows to a CSV file with a fixed header (lines end in LF); on resume, rows past the resumed iteration
    are dropped, and so is a last row without its line end (cut short as it was written: a full disk, or the NUL
    bytes a power cut leaves), which could read as an earlier iteration ('1' of '12,...'); a log written by an older
    version keeps its rows whole: its header becomes `columns` followed by the columns it holds that `columns` lacks
    (a loss since retired; the cells of a column it lacks stay empty).
    A fresh run's log (`resume_from` None) is held in memory until `keep` (its first checkpoint): a run that fails
    before it has one leaves no log behind, so its --out folder takes a new run."""

    def __init__(self, path: Path, columns: list[str], resume_from: int | None) -> None:
        self.path = path
        self.columns = columns
        self.held: list[dict[str, Any]] | None = None
        """The rows of a log not yet written (a fresh run before its first checkpoint), else None."""
        if resume_from is None:
            self.held = []
        elif path.exists():
            with open(path, newline="") as handle:
                text = handle.read()
            reader = csv.DictReader(io.StringIO(text[:text.rfind("\n") + 1]))  # only rows written whole
            rows = [row for row in reader if int(row["iteration"]) <= resume_from]
            self.columns = [*columns, *(name for name in reader.fieldnames or () if name not in columns)]
            self._rewrite(rows)
        else:
            self._rewrite([])

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.path, buffer.getvalue())

    def write(self, row: dict[str, Any]) -> None:
        row = {k: row.get(k, "") for k in self.columns}
        if self.held is not None:
            self.held.append(row)
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.columns, lineterminator="\n").writerow(row)

    def keep(self) -> None:
        """Write the header and the rows held so far (nothing when the log is on disk already)."""
        if self.held is not None:
            self._rewrite(self.held)
            self.held = None


def write_recipe(run_dir: Path, fields: Mapping[str, Any]) -> None:
    """The run folder's recipe.yaml: the recipe the run ran."""
    import yaml

    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(dict(fields), sort_keys=False))


def keep_run_files(run_dir: Path, fields: Mapping[str, Any], logs: Sequence[CsvLog]) -> None:
    """At a fresh run's first checkpoint, its recipe.yaml and the logs held until then (nothing once they are on
    disk), so that a run folder holds a run's files only once it holds a last.pt to resume from."""
    if any(log.held is not None for log in logs):
        write_recipe(run_dir, fields)
        for log in logs:
            log.keep()


def tensorboard_writer(run_dir: Path, resumed_from: int | None) -> Any:
    """A TensorBoard writer when the tensorboard package is installed, else None (the CSV logs always exist). A
    resumed run's (`resumed_from`: the iteration of its last.pt) hides the events of the steps it runs again."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"), purge_step=None if resumed_from is None else resumed_from + 1)


def close_tensorboard(board: Any, made: bool, saved: bool) -> None:
    """Close `board` (None: nothing); when the run that `made` its folder ends without a checkpoint (`saved`
    False), remove the folder as well, as the logs and recipe.yaml of such a run never appear (`keep_run_files`)."""
    if board is None:
        return
    board.close()
    if made and not saved:
        shutil.rmtree(board.log_dir, ignore_errors=True)
