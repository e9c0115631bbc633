"""Atomic file writes: a reader sees the old file or the complete new one, never half of one, also after a power
cut (the new file's data, a new folder's files and the rename itself are synced to disk before the write returns).

Checkpoints, engines, reports and bags are written to a temporary sibling and renamed into place. Each write holds
an advisory lock (`fcntl.flock`) on a lock file beside its temporary sibling for as long as it runs: what a killed
process left beside a target (a half-written bag folder can take hundreds of MB) is removed by the next write of
that target, and an old folder it had set aside without putting the new one in its place is put back, but only
once that lock can be taken, so a writer still at work (in another container or on another machine sharing the
folder) loses nothing.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from dgdehaze_core.io.file_paths import IMAGE_SUFFIXES, VIDEO_SUFFIXES, file_suffix, missing
from dgdehaze_core.io.json_stdout import is_stdout, json_stream

NAME_BYTES = 100
"""How much of the target's name (in UTF-8 bytes) the temporary siblings' names repeat, beside a hash of all of it
(a file name holds at most 255 bytes)."""


def check_writable_file(path: str | os.PathLike[str], flag: str, suffixes: Sequence[str] = (),
                        kind: str = "it") -> Path:
    """`path` as a Path when a file can be written there; else, before any work is done, ValueError for a folder
    or OSError naming `flag` when the nearest existing folder takes no new file (read-only, /proc, no folder).

    suffixes: where the file, `kind`, is read back by its suffix (weights, exports), the ones it may end in: any
    other name is refused (ValueError), as it would be read as another kind of file, or replace one (a checkpoint
    under `--out best.pt`)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder: give the file to write")
    if suffixes and file_suffix(path) not in suffixes:
        raise ValueError(f"{flag} {path}: {kind} is read only from a file named *{' or *'.join(suffixes)}, and this "
                         f"name would be taken for another kind of file (or replace one): give a {suffixes[0]} name")
    return check_writable_place(path, flag)


def check_folder_path(path: str | os.PathLike[str], flag: str) -> Path:
    """`path` as a Path unless it, or a folder above it, exists as something other than a folder, or is a link that
    leads to none (NotADirectoryError naming `flag`)."""
    path = Path(path)
    for place in (path, *path.parents):
        if place.exists() or place.is_symlink():
            if place.is_dir():
                return path
            if not place.exists():  # a link to a folder not there (a drive not mounted), or a loop of links
                raise NotADirectoryError(f"{flag} {missing(place, 'folder')}")
            where = (("is a file" if place.is_file() else "is not a folder") if place == path
                     else f"lies under {place}, {'a file' if place.is_file() else 'no folder'}")
            raise NotADirectoryError(f"{flag} {path} {where}: give a folder")
    return path


def check_writable_place(path: str | os.PathLike[str], flag: str, inside: bool = False) -> Path:
    """`path` as a Path when the folder it goes in (`inside`: `path` itself, a folder whose files its writer writes
    one by one, which must then be or become a folder: `check_folder_path`) or, where that does not exist yet, the
    nearest existing one above it takes new files, as an atomic write of `path`, file or folder, needs (or of each
    file in it; a link's: beside what it points at, `replaced_path`); else OSError naming `flag`."""
    path = check_folder_path(path, flag) if inside else Path(path)
    folder = path.absolute() if inside else replaced_path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    try:
        with tempfile.NamedTemporaryFile(prefix=".dgdehaze-probe-", dir=folder):
            pass
    except OSError as exc:
        raise OSError(f"{flag} {path} cannot be written: {exc.strerror or exc} in {folder}") from None
    return path


def _real_path(path: str | os.PathLike[str]) -> Path:
    """`path` with `~` expanded and its links followed; a loop of links left as it is (Path.resolve raised a
    RuntimeError on it, 'Symlink loop from ...'), for the reading to name."""
    return Path(os.path.realpath(Path(path).expanduser()))


def refuse_input_as_output(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], flag: str,
                           what: str = "the input") -> None:
    """ValueError, before any work, when `output` is one of `inputs` (the same path, or the same file through a
    link): writing it would destroy what the command reads (or writes elsewhere: `what` says which). A loop of
    links is left to the reading to name (Path.resolve raised a RuntimeError on it, 'Symlink loop from ...')."""
    target = _real_path(output)
    for item in inputs:
        source = _real_path(item)
        if target == source or (target.exists() and source.exists() and os.path.samefile(target, source)):
            raise ValueError(f"{flag} {output} would overwrite {what} {item}: give another path")


def refuse_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str], flag: str, what: str,
                  why: str = "") -> None:
    """ValueError, before any work, when `path` is `folder` or lies inside it (links resolved): an output written
    there would overwrite what the folder holds or be read as part of it (`what` names the folder, `why` says more
    in the message)."""
    if _real_path(path).is_relative_to(_real_path(folder)):
        raise ValueError(f"{flag} {path} lies in {what} {folder}{why}: write it elsewhere")


JSON_CHECK_BYTES = 64 * 2**20
"""An existing --json target larger than this is taken as no figures file (a bag, weights) without reading it."""


def is_figures_table(data: object) -> bool:
    """Whether parsed JSON is a table of figures as every --json is written (`tables.write_json`): an object of
    objects, {row: {column: value}}."""
    return isinstance(data, dict) and all(isinstance(row, dict) for row in data.values())


def check_replaceable_json(path: str | os.PathLike[str], flag: str) -> None:
    """ValueError when `path` exists and holds no table of figures (a JSON object of objects, as every --json is
    written: `tables.write_json`): a figures file may be written over, and an empty one (`mktemp`'s); a bag, weights
    or an image named by mistake may not, nor other JSON, such as a labelled set's COCO labels."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    if path.stat().st_size > JSON_CHECK_BYTES:
        raise ValueError(f"{flag} {path} exists and is larger than {JSON_CHECK_BYTES // 2**20} MiB, more than a "
                         "--json writes (it would be overwritten): give a new file or one a --json wrote")
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, OSError):
        data = None
    else:
        if is_figures_table(data):
            return
        raise ValueError(f"{flag} {path} exists and holds JSON that is no table of figures (labels, a record: it "
                         "would be overwritten): give a new file or one a --json wrote")
    raise ValueError(f"{flag} {path} exists and holds no JSON (it would be overwritten): give a new file or a "
                     "JSON one")


class JsonRefused(ValueError):
    """A --json output refused before any work (`check_json_output`, `refusing_json`): its message says why, so that
    a failed run adds nothing about the file (`cli.run_parsed`)."""


@contextlib.contextmanager
def refusing_json() -> Iterator[None]:
    """Checks of a --json output: a ValueError or OSError raised in the block (a refusal, naming the flag) is raised
    again as JsonRefused with the same message."""
    try:
        yield
    except JsonRefused:
        raise
    except (ValueError, OSError) as exc:
        raise JsonRefused(str(exc)) from exc


def check_json_output(path: str | os.PathLike[str], flag: str = "--json",
                      inputs: Iterable[str | os.PathLike[str]] = (), what: str = "the input") -> Path:
    """`path` when a JSON file can be written there (`check_writable_file`), is not named as an image or a video
    (which every folder listing reads as one: figures written into a set's folder would break the set), replaces no
    file that holds other than JSON (`check_replaceable_json`) and is none of `inputs` (`refuse_input_as_output`);
    else JsonRefused, before any work. "-" (standard output) is taken, with no file to check, where the command
    keeps stdout for the JSON alone (`json_stdout.json_on_stdout`), and refused elsewhere."""
    with refusing_json():
        if is_stdout(path):
            if json_stream() is None:
                raise ValueError(f"{flag} -: this command writes its JSON to a file only (it prints other lines to "
                                 "stdout): give a file")
            return Path(path)
        check_writable_file(path, flag)
        if file_suffix(path) in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
            raise ValueError(f"{flag} {path}: a file so named is read as an image or a video (a folder of them takes "
                             "it in), not as JSON: give a .json name")
        check_replaceable_json(path, flag)
        refuse_input_as_output(path, inputs, flag, what)
        return Path(path)


def _prefix(target: Path) -> str:
    """".NAME~HASH.": the start of every temporary sibling of `target` and of no other target's."""
    name = os.fsencode(target.name)  # a name that is no UTF-8 (Latin-1 from an old camera) as the disk holds it
    short = name[:NAME_BYTES].decode("utf-8", "ignore")
    return f".{short}~{hashlib.sha1(name).hexdigest()[:8]}."


LOCK_SUFFIX = ".lock"
"""How every lock file `new_lock` makes ends; `free_locks` finds them by it."""
UNLOCKED_SUFFIX = ".new"
"""What a new lock file's name ends with after LOCK_SUFFIX until it is locked (`new_lock`): no `free_locks` finds
it then."""
UNLOCKED_GRACE_S = 60.0
"""How old a lock file still under its UNLOCKED_SUFFIX name, and free, must be for `free_locks` to remove it: its
maker locks and renames it within microseconds, so one that old was left by a process killed in between."""


def new_lock(folder: Path, prefix: str) -> tuple[int, Path]:
    """A new lock file, `folder`/`prefix`<random>LOCK_SUFFIX, held (`fcntl.flock`) by the descriptor returned with
    it: made under another name and renamed into place once locked, so that no `free_locks` of another process
    finds it free, takes it for a dead process's and unlinks it in between (what it guards would be left without a
    lock to be found by). The caller drops it with `drop_lock` once what it guards is gone."""
    while True:
        fd, unlocked = tempfile.mkstemp(prefix=prefix, suffix=LOCK_SUFFIX + UNLOCKED_SUFFIX, dir=folder)
        lock = Path(unlocked[:-len(UNLOCKED_SUFFIX)])
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not os.path.lexists(lock):  # mkstemp's name is unique with its own suffix only
                os.rename(unlocked, lock)
                return fd, lock
        except BaseException:
            drop_lock(fd, Path(unlocked))
            raise
        drop_lock(fd, Path(unlocked))


def drop_lock(fd: int, lock: Path) -> None:
    """Unlink the lock file `lock` (`new_lock`), then close `fd`, its descriptor, which frees the lock: no other
    process takes a lock file that is gone."""
    lock.unlink(missing_ok=True)
    os.close(fd)


def free_locks(folder: Path, prefix: str) -> Iterator[Path]:
    """The lock files `new_lock` made in `folder` with `prefix` whose lock is free (the process that made it was
    killed, or cut short before it dropped it), each yielded while this process holds its lock, so that no other
    takes it too, and unlinked once the caller has removed what it guards (not where the caller stops between).
    A new lock file a process killed before locking it left (`new_lock`; it guards nothing yet) is removed."""
    for unlocked in _lock_files(folder, prefix, LOCK_SUFFIX + UNLOCKED_SUFFIX):
        with _taken_if_free(unlocked) as free, contextlib.suppress(OSError):  # (removed meanwhile by another)
            if free and time.time() - unlocked.stat().st_mtime > UNLOCKED_GRACE_S:
                unlocked.unlink()
    for lock in _lock_files(folder, prefix):
        with _taken_if_free(lock) as free:
            if free:
                yield lock
                lock.unlink(missing_ok=True)


def _lock_files(folder: Path, prefix: str, suffix: str = LOCK_SUFFIX) -> Iterator[Path]:
    """The files of `folder` named `prefix`...`suffix`: the lock files `new_lock` makes there with `prefix`."""
    return folder.glob(glob.escape(prefix) + "*" + suffix)


@contextlib.contextmanager
def _taken_if_free(lock: Path) -> Iterator[bool]:
    """Whether this process took the lock of the lock file `lock` (free: the process that held it is gone), held
    for the block; False when another process holds it, or the file went meanwhile or is another user's."""
    try:
        fd = os.open(lock, os.O_RDWR)  # opened for writing: an NFS mount's flock is a POSIX write lock
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its process is still at work
            taken = False
        else:
            taken = True
        yield taken
    finally:
        os.close(fd)


def remove_leftovers(target: Path) -> None:
    """Remove the temporary siblings of `target` whose writer is gone (its lock can be taken); put back an old
    folder it had set aside when `target` itself is missing. Each write of `target` does so first."""
    for lock in free_locks(target.parent, _prefix(target)):
        stem = str(lock)[:-len(LOCK_SUFFIX)]
        kept = Path(stem + ".old") / target.name
        with contextlib.suppress(OSError):
            if kept.exists() and not os.path.lexists(target):
                os.replace(kept, target)
        for leftover in map(Path, glob.glob(glob.escape(stem) + ".part*") + [stem + ".old"]):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            elif os.path.lexists(leftover):
                leftover.unlink(missing_ok=True)


def write_under_way(target: Path) -> bool:
    """Whether a write of `target` still holds its lock (a lock file `remove_leftovers` found held and left):
    its process is at work, or still ending."""
    return any(_lock_files(target.parent, _prefix(target)))


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to disk; a file system that cannot sync a folder (some network
    mounts) is left as it is."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """`_fsync` every file and folder under `folder`, the folder last."""
    for root, folders, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                _fsync(Path(root, name))
        for name in folders:
            _fsync(Path(root, name))
    _fsync(folder)


def replaced_path(target: str | os.PathLike[str]) -> Path:
    """What an atomic write of `target` replaces (`atomic_path`), its temporary siblings beside it: `target`, or
    where it points (followed to its end) where it is a symbolic link."""
    return Path(os.path.realpath(target)) if os.path.islink(target) else Path(target)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it over `target`, on error remove it.

    The temporary path ends with the target's suffix (or `suffix`) so that writers which pick a format by
    extension (OpenCV, torch) behave the same. Works for files and for directories. A `target` that is a symbolic
    link is followed: what it points at is replaced and the link kept (renamed over, the link itself would be
    replaced beside the old output, which its target kept).
    """
    target = replaced_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    fd, lock = new_lock(target.parent, _prefix(target))
    stem = str(lock)[:-len(LOCK_SUFFIX)]
    tmp = Path(stem + ".part" + (suffix if suffix is not None else target.suffix)[:20])
    aside = Path(stem + ".old")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp} for {target}")
        if tmp.is_file():
            _fsync(tmp)
            os.replace(tmp, target)
        else:
            if tmp.is_dir() and not tmp.is_symlink():
                _fsync_tree(tmp)
            if target.is_dir():  # set the old folder aside, put the new one in its place, then drop the old one
                aside.mkdir()
                os.replace(target, aside / target.name)
                os.replace(tmp, target)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(tmp, target)
        _fsync(target.parent)  # the rename itself
    finally:
        if os.path.lexists(aside / target.name) and not os.path.lexists(target):
            os.replace(aside / target.name, target)  # stopped between the two renames (Ctrl-C): the old one back
        shutil.rmtree(aside, ignore_errors=True)
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.lexists(tmp):
            tmp.unlink()
        drop_lock(fd, lock)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `target` atomically and return the path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 `text` to `target` atomically and return the path."""
    return atomic_write_bytes(target, text.encode("utf-8"))
