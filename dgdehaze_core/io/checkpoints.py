"""Reading and writing torch checkpoint files, with errors of one line.

Every `.pt` the package reads goes through torch's restricted unpickler (`weights_only=True`): a file whose pickle
would call a function outside torch's safe set is refused before anything in it runs. Torch explains such a
refusal in several paragraphs; `load_error_line` keeps the sentence that names what was refused. Torch reads a
checkpoint's zip archive without checking the CRC-32 it stores for each tensor, so a file damaged on a disk or in
a transfer would load with wrong weights: `damage` checks them first.

Every `.pt` the package writes goes through `write_checkpoint`: atomically, and with an OSError naming the file
where torch reports a failed write (a full disk) only as an internal check that failed.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from dgdehaze_core.io.atomic_files import atomic_path
from dgdehaze_core.io.file_digest import file_sha256
from dgdehaze_core.io.file_paths import file_suffix

REFUSAL_MARKERS = ("Trying to load unsupported GLOBAL", "Unsupported global", "Unsupported operand",
                   "Unsupported class")
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
"""How a checkpoint in torch's format from before 1.6 (a pickle, no zip archive) begins: its magic number."""
WRITE_FAILURE_MARKERS = ("inline_container", "PytorchStreamWriter", "iostream error", "cannot be opened")
"""What torch's RuntimeError says when it could not write a checkpoint file (rather than serialise its state)."""
FULL_DISK_BYTES = 2 ** 20
"""A write that failed where less than this is left free on the file system is taken as a full disk."""


EXPORT_KINDS = {".onnx": "an ONNX file", ".engine": "a TensorRT engine"}
"""What an exported file is, by its suffix."""


def is_torch_file(path: str | os.PathLike[str]) -> bool:
    """Whether the file at `path` has the form of a torch checkpoint: a zip archive, or torch's legacy pickle."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as handle:
        return handle.read(len(LEGACY_MAGIC)) == LEGACY_MAGIC


def load_error_line(exc: BaseException, path: str | os.PathLike[str] | None = None) -> str:
    """One line saying why torch could not read a checkpoint; a file that has no checkpoint's form (random bytes,
    a YAML file, an export given where its weights are wanted) is said to be none before torch's reason, which for
    such a file names a pickle opcode."""
    if path is not None and Path(path).is_file():
        try:
            if not is_torch_file(path):
                export = EXPORT_KINDS.get(file_suffix(path))
                if export:
                    return f"it is {export} (an export, which runs as a --method), not a torch checkpoint (.pt)"
                return "truncated, or not a torch checkpoint (no zip archive in it)"
        except OSError:
            pass  # unreadable: torch's own error says why
    text = str(exc).strip()
    if "Weights only load failed" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith(REFUSAL_MARKERS)), lines[-1])
        return f"refused: loading it would run code outside torch's safe set ({detail.rstrip('.')})"
    return text.splitlines()[0] if text else type(exc).__name__


PROVENANCE_KEYS = ("iterations", "recipe", "commit", "saved", "recipe_fields", "started_from")
"""What a checkpoint's metadata says of how its weights were made: training iterations, recipe name, the code's
commit, when it was saved, the recipe's fields, and the weights a fine-tune started from."""


def weights_provenance(path: Path) -> dict[str, Any]:
    """A weights file's sha256 (12 hex digits) and, for a `.pt` of this package, its metadata's PROVENANCE_KEYS
    (`checkpoint_provenance`, from one read of the file); ValueError naming the file when a `.pt` does not read. The
    caller names the file as it shows it."""
    if file_suffix(path) == ".pt":
        checkpoint, sha256 = read_checkpoint_and_digest(path)
        return checkpoint_provenance(path, checkpoint, sha256)
    return {"sha256": file_sha256(path)[:12]}


def checkpoint_provenance(path: Path, checkpoint: Any, sha256: str) -> dict[str, Any]:
    """What `weights_provenance` says of the weights file `path` from what was read of it: `sha256` (the hex digest
    of the bytes `checkpoint` was loaded from, `read_checkpoint_and_digest`) cut to 12 digits and, for a `.pt`, its
    metadata's PROVENANCE_KEYS."""
    found: dict[str, Any] = {"sha256": sha256[:12]}
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if file_suffix(path) == ".pt" and isinstance(meta, dict):
        found.update({key: meta[key] for key in PROVENANCE_KEYS if key in meta})
    return found


def damage(source: str | os.PathLike[str] | bytes) -> str | None:
    """Why the zip archive of a torch checkpoint (a path, or its bytes) is damaged, on a disk or in a transfer: a
    file in it whose bytes do not match the CRC-32 the archive stores for them; None when none is, or when it is no
    zip archive (torch's legacy format, or no checkpoint: reading it says why)."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            member = archive.testzip()
    except (zipfile.BadZipFile, ValueError, NotImplementedError, EOFError):  # no archive zipfile reads: torch says why
        return None
    if member is None:
        return None
    return f"it is damaged (the bytes of its {member.split('/', 1)[-1]} do not match their checksum)"


def read_checkpoint(path: str | os.PathLike[str], what: str = "checkpoint") -> Any:
    """The contents of a torch checkpoint file, read with `weights_only=True` onto the CPU; ValueError in one line
    naming the file and the reason when it cannot be read (missing, truncated, damaged, foreign, or unsafe)."""
    return _loaded(path, what)[0]


def read_checkpoint_and_digest(path: str | os.PathLike[str], what: str = "checkpoint") -> tuple[Any, str]:
    """`read_checkpoint`'s contents and the hex sha256 of the very bytes they were loaded from: the file is read
    once, so a file replaced meanwhile cannot be named for weights that were not loaded; `read_checkpoint`'s
    ValueError when it cannot be read."""
    checkpoint, data = _loaded(path, what)
    return checkpoint, hashlib.sha256(data).hexdigest()


def _loaded(path: str | os.PathLike[str], what: str) -> tuple[Any, bytes]:
    """`read_checkpoint`'s contents, and the bytes they were loaded from."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path} is not a readable {what}: {load_error_line(exc, path)}") from None
    problem = damage(data)
    if problem:
        raise ValueError(f"{path} is not a readable {what}: {problem}: copy it again, or take an earlier checkpoint")
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated, foreign and unsafe files
        raise ValueError(f"{path} is not a readable {what}: {load_error_line(exc, path)}") from None
    return checkpoint, data


def save_error(exc: BaseException, target: str | os.PathLike[str], written: str | os.PathLike[str]) -> OSError:
    """The OSError to raise for `exc`, which `torch.save` raised while writing `written` (a temporary sibling)
    for `target`: it names `target`, with errno ENOSPC when the disk is full (an errno an OSError in the chain of
    `exc` carries, else less than FULL_DISK_BYTES free where `written` lies), as torch says only "[enforce fail at
    inline_container.cc] unexpected pos"."""
    cause: BaseException | None = exc
    while cause is not None and not (isinstance(cause, OSError) and cause.errno):
        cause = cause.__cause__ or cause.__context__
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    code = cause.errno if isinstance(cause, OSError) else None
    if code is None:
        try:
            free = shutil.disk_usage(Path(written).parent).free
        except OSError:
            free = None
        if free is not None and free < FULL_DISK_BYTES:
            code = errno.ENOSPC
    if code == errno.ENOSPC:
        return OSError(errno.ENOSPC, f"{target} could not be written: no space left on device")
    if code is not None:
        return OSError(code, f"{target} could not be written: {os.strerror(code)}")
    return OSError(f"{target} could not be written: {detail}")


def write_checkpoint(state: Any, path: str | os.PathLike[str]) -> Path:
    """Write `state` with `torch.save` to `path` atomically (a reader sees the old file or the whole new one);
    OSError naming `path` (`save_error`) when torch cannot write it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except OSError as exc:
            raise save_error(exc, path, tmp) from exc
        except RuntimeError as exc:  # torch reports a failed write as a RuntimeError
            if not any(marker in str(exc) for marker in WRITE_FAILURE_MARKERS):
                raise
            raise save_error(exc, path, tmp) from exc
    return path
