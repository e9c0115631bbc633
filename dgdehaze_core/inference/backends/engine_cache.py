"""A cache of built inference artifacts (TensorRT engines, exported detector files), rebuilt when stale.

Building a TensorRT engine takes minutes and the result is only valid for one GPU model, one TensorRT version,
one source model and one input-shape profile at one precision. Each cached artifact therefore carries its
`CacheKey` in a JSON sidecar (`<artifact>.json`) together with the artifact's own SHA-256:

- the key differs from the one asked for (new weights, TensorRT upgrade, another GPU, other shapes): **stale**,
  rebuilt and replaced;
- the sidecar is missing or unreadable, the artifact's hash does not match, or the loader rejects the bytes:
  **corrupt**, rebuilt with a warning;
- otherwise the artifact is loaded as it is.

The artifact is written first and the sidecar second, both atomically (`atomic_files`), so a crash or a
concurrent reader never sees half a file, and an artifact without its sidecar is never trusted. Builds of one
artifact are serialised by an advisory lock (`flock` on `<artifact>.lock`, removed when the build ends), so two
nodes starting together build it once. The lock dies with its process: a build killed midway blocks no later one.

Every load touches the sidecar; a build removes the artifacts no process loaded for `keep_days`
($DGDEHAZE_ENGINE_CACHE_DAYS, 60 by default; 0 keeps everything), with their sidecars and lock files, except one
another process is building: the exports of every checkpoint a user ever ran would otherwise pile up. It also
removes the lock files no process holds, with the temporary files their builds left: what a build killed midway
left of an artifact never built again would otherwise stay. Folders a runtime fills with its own files (ONNX
Runtime's TensorRT provider: one per ONNX file) are marked when handed out (`mark_folder_used`) and removed by the
same rule (`remove_unused_folders`).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Generic, Iterator, Mapping, TypeVar

from dgdehaze_core.io.atomic_files import atomic_path, atomic_write_text, remove_leftovers
from dgdehaze_core.io.file_digest import file_sha256

LOG = logging.getLogger(__name__)

T = TypeVar("T")

SIDECAR_SUFFIX = ".json"
CACHE_FORMAT = 1
"""Bumped when the sidecar layout changes; older sidecars are then stale."""


def default_cache_dir() -> Path:
    """$DGDEHAZE_ENGINE_CACHE, else ~/.cache/dgdehaze/engines (kept across runs and package upgrades)."""
    configured = os.environ.get("DGDEHAZE_ENGINE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "dgdehaze" / "engines"


DEFAULT_KEEP_DAYS = 60.0


def default_keep_days() -> float:
    """$DGDEHAZE_ENGINE_CACHE_DAYS (0: keep everything), else DEFAULT_KEEP_DAYS; ValueError for a bad value."""
    configured = os.environ.get("DGDEHAZE_ENGINE_CACHE_DAYS", "").strip()
    try:
        days = float(configured) if configured else DEFAULT_KEEP_DAYS
    except ValueError:
        raise ValueError(f"DGDEHAZE_ENGINE_CACHE_DAYS must be a number of days, got {configured!r}") from None
    if not days >= 0:
        raise ValueError(f"DGDEHAZE_ENGINE_CACHE_DAYS must be 0 or more, got {configured!r}")
    return days


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "none"


@dataclass(frozen=True)
class CacheKey:
    """Everything a built artifact depends on.

    model_sha256: hash of the source file (ONNX or .pt); runtime: e.g. "tensorrt-10.3.0";
    device: GPU name (or "cpu"); shapes: the input profile, e.g. "hazy:1x3x256x256/1x3x480x640/1x3x1088x1920";
    precision: "fp32", "fp16" or "int8"; extra: anything else that changes the build (calibration data hash).
    """

    model_sha256: str
    runtime: str
    device: str
    shapes: str
    precision: str
    extra: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"format": CACHE_FORMAT, **asdict(self)}

    def file_stem(self, model_name: str) -> str:
        """A readable file name for the artifact: model, precision, shapes and device; the versions and hashes
        that make it stale live in the sidecar, so a rebuilt artifact replaces the old one instead of piling up."""
        return "_".join(_slug(part) for part in (model_name, self.precision, self.shapes, self.device))


def sidecar_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def _read_sidecar(artifact: Path) -> dict[str, object] | str:
    """The sidecar's record of `artifact`, or the reason there is none to trust ("missing" or "corrupt: ...")."""
    sidecar = sidecar_path(artifact)
    if not artifact.is_file():
        return "missing"
    try:
        recorded = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"corrupt: {artifact.name} has no sidecar {sidecar.name}"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"corrupt: unreadable sidecar {sidecar.name} ({exc})"
    if not isinstance(recorded, dict) or not isinstance(recorded.get("key"), dict):
        return f"corrupt: sidecar {sidecar.name} holds no key"
    return recorded


def _hash_problem(artifact: Path, recorded: dict[str, object], sha256: str | None = None) -> str | None:
    """Why `artifact` cannot be trusted against its sidecar's hash, None when it matches; `sha256`: the hash of the
    bytes read to load it, else the file's now."""
    if recorded.get("sha256") != (sha256 or file_sha256(artifact)):
        return f"corrupt: {artifact.name} does not match the hash in its sidecar"
    return None


def check_artifact(artifact: Path, key: CacheKey) -> str | None:
    """None when `artifact` is a valid build for `key`, else the reason it must be rebuilt
    (starting with "missing", "stale" or "corrupt")."""
    recorded = _read_sidecar(artifact)
    if isinstance(recorded, str):
        return recorded
    wanted = key.as_dict()
    built_for: dict[str, object] = recorded["key"]  # type: ignore[assignment]
    if built_for != wanted:
        changed = sorted(name for name in set(wanted) | set(built_for) if wanted.get(name) != built_for.get(name))
        return f"stale: {', '.join(changed)} changed"
    return _hash_problem(artifact, recorded)


def trusted_record(artifact: Path) -> dict[str, object]:
    """A prebuilt artifact's sidecar record (one copied in by hand, say: its `key`, `sha256`, `bytes` and, where its
    build knew them, the weights it was `exported_from`), once the artifact's hash matches it; ValueError saying
    why it cannot be trusted otherwise."""
    return read_trusted(artifact)[0]


def read_trusted(artifact: Path) -> tuple[dict[str, object], bytes]:
    """`trusted_record` of `artifact` and the artifact's bytes, read once: the bytes a loader is handed are those
    whose hash matched (an artifact hashed, then read again to load, could be replaced in between and run
    unchecked); ValueError saying why it cannot be trusted otherwise."""
    recorded = _read_sidecar(artifact)
    if isinstance(recorded, str):
        raise ValueError(f"{artifact}: {recorded}")
    data = artifact.read_bytes()
    problem = _hash_problem(artifact, recorded, hashlib.sha256(data).hexdigest())
    if problem:
        raise ValueError(f"{artifact}: {problem}")
    return recorded, data


def read_trusted_for(artifact: Path, key: CacheKey) -> bytes:
    """`artifact`'s bytes, read once (`read_trusted`), when its sidecar holds `key`; ValueError otherwise. An
    artifact checked (`check_artifact`) and then loaded could in between be replaced by another process's build of
    the same name for another key, which would then run in its place."""
    recorded, data = read_trusted(artifact)
    if recorded["key"] != key.as_dict():
        raise ValueError(f"{artifact}: replaced by a build for another key since it was checked")
    return data


def mark_used(artifact: Path) -> None:
    """Note that `artifact` was loaded now (its sidecar's time), so that a cache pruning what lies unused keeps it."""
    with contextlib.suppress(OSError):  # a read-only cache (a prebuilt one) stays as it is
        os.utime(sidecar_path(artifact))


USED_MARKER = ".last_used"
"""The file in a runtime's own cache folder whose time says when a process last handed the folder out."""


def mark_folder_used(folder: Path) -> None:
    """Make `folder` if it is missing and note that it is used now (its USED_MARKER's time), so that
    `remove_unused_folders` keeps it; a read-only cache (a prebuilt one) stays as it is."""
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / USED_MARKER).touch()


_REMOVING = ".removing-"
"""The name a folder being removed is renamed to first, so that no process is handed a half-removed one."""


def _last_used(folder: Path) -> float:
    marker = folder / USED_MARKER
    return (marker if marker.exists() else folder).stat().st_mtime


def remove_unused_folders(parent: Path, keep_days: float, keep: Path) -> list[Path]:
    """Remove the folders in `parent` no process handed out for `keep_days` (by their USED_MARKER's time, or their
    own without one), except `keep` (the one handed out now); none for 0 days. Each is renamed away (`_REMOVING`)
    before it is removed, and put back when a process marked it meanwhile: a removal failing midway leaves no
    half-emptied folder under the name a session is given, only one the next prune removes. A folder that cannot be
    removed whole (a read-only cache) is left, with a warning; the folders removed."""
    if not keep_days:
        return []
    oldest = time.time() - keep_days * 86400.0
    removed = []
    for folder in sorted(parent.glob("*")) if parent.is_dir() else []:
        if folder == keep or not folder.is_dir() or folder.is_symlink():
            continue
        try:
            doomed = folder
            if not folder.name.startswith(_REMOVING):  # else what an earlier removal failing midway left
                if _last_used(folder) >= oldest:
                    continue
                doomed = folder.with_name(f"{_REMOVING}{folder.name}-{os.getpid()}")
                folder.rename(doomed)
                if _last_used(doomed) >= oldest:  # marked by another process between the look and the rename
                    with contextlib.suppress(OSError):  # unless it made the folder anew meanwhile
                        doomed.rename(folder)
                        continue
            shutil.rmtree(doomed)
        except FileNotFoundError:  # removed by another process meanwhile
            continue
        except OSError as exc:
            LOG.warning("could not remove %s, unused for %g days: %s", folder, keep_days, exc)
            continue
        removed.append(folder)
    if removed:
        LOG.info("removed %d cache folders unused for %g days: %s", len(removed), keep_days,
                 ", ".join(path.name for path in removed))
    return removed


def _lock_path(artifact: Path) -> Path:
    return artifact.with_name(artifact.name + ".lock")


def _holds_the_lock_file(handle: BinaryIO, lock: Path) -> bool:
    """Whether the locked `handle` is still the file at `lock` (a prune may have removed it meanwhile)."""
    try:
        return os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _build_lock(artifact: Path) -> Iterator[None]:
    """Hold `artifact`'s lock file, and remove it when done (a process waiting on it finds it gone and locks the
    one a later build opens)."""
    artifact.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(artifact)
    while True:
        with open(lock, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            if not _holds_the_lock_file(handle, lock):  # removed while this process waited: lock the new one
                continue
            try:
                yield
                return
            finally:
                with contextlib.suppress(OSError):
                    lock.unlink()
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _remove_abandoned_lock(lock: Path) -> bool:
    """Remove the lock file `lock` when no process holds it (its build was killed midway: the lock died with it),
    with the temporary files that build left beside its artifact and sidecar; False, touching nothing, while a
    process holds it or when it cannot be removed (a read-only cache)."""
    artifact = lock.with_name(lock.name[:-len(".lock")])
    try:
        with open(lock, "rb") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _holds_the_lock_file(handle, lock):
                return False
            remove_leftovers(artifact)
            remove_leftovers(sidecar_path(artifact))
            lock.unlink()
            return True
    except OSError:  # held by a build, removed by another process meanwhile, or a read-only cache
        return False


def _remove_entry(artifact: Path, sidecar: Path, oldest: float) -> bool:
    """Remove an artifact unused since before `oldest`, its sidecar and its lock file, under its lock; False when
    it was used meanwhile, is being built (its lock is held) or cannot be removed (a read-only cache)."""
    lock = _lock_path(artifact)
    try:
        with open(lock, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not _holds_the_lock_file(handle, lock) or sidecar.stat().st_mtime >= oldest:
                return False
            artifact.unlink()
            sidecar.unlink()
            lock.unlink()
            return True
    except OSError:  # held by a build, removed by another process meanwhile, or a read-only cache
        return False


class EngineCache(Generic[T]):
    """Artifacts under one directory, each built by a caller-supplied function and loaded by another.

    `build(tmp_path)` must write the artifact to `tmp_path` (the cache renames it into place);
    `load(path)` turns the file into the runtime object and raises on bytes it cannot use.
    """

    def __init__(self, directory: str | os.PathLike[str], keep_days: float | None = None) -> None:
        """`keep_days`: builds remove what was not loaded or built for so long (None: DGDEHAZE_ENGINE_CACHE_DAYS;
        0: nothing, for a folder that is not only the cache's, such as an export's --out)."""
        self.directory = Path(directory).expanduser()
        self.keep_days = default_keep_days() if keep_days is None else keep_days

    def path_for(self, key: CacheKey, model_name: str, suffix: str) -> Path:
        return self.directory / f"{key.file_stem(model_name)}{suffix}"

    def build(self, key: CacheKey, artifact: Path, build: Callable[[Path], None],
              exported_from: Mapping[str, object] | None = None) -> Path:
        """Build `artifact` for `key` atomically and write its sidecar, with `exported_from` (the record of the
        trained weights it holds, `inference.provenance`) where the caller knows it: the key does not hold it,
        as the source's hash already changes with the weights."""
        with atomic_path(artifact) as tmp:
            build(tmp)
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise RuntimeError(f"building {artifact.name} produced no file")
            digest = file_sha256(tmp)
        record: dict[str, object] = {"key": key.as_dict(), "sha256": digest, "bytes": artifact.stat().st_size}
        if exported_from is not None:
            record["exported_from"] = dict(exported_from)
        atomic_write_text(sidecar_path(artifact), json.dumps(record, indent=2, sort_keys=True) + "\n")
        LOG.info("cached %s (%d bytes)", artifact, record["bytes"])
        self.remove_unused()
        return artifact

    def remove_unused(self) -> list[Path]:
        """Remove the artifacts (with their sidecars and lock files) not loaded or built for `keep_days`, except one
        being built now, and the lock files no process holds (`_remove_abandoned_lock`); the artifacts removed."""
        if not self.keep_days:
            return []
        abandoned = [lock.name for lock in self.directory.glob("*.lock")
                     if not lock.name.startswith(".") and _remove_abandoned_lock(lock)]  # not atomic_path's own
        if abandoned:
            LOG.info("removed the lock files of builds no process runs (killed midway): %s", ", ".join(abandoned))
        oldest = time.time() - self.keep_days * 86400.0
        removed = []
        for sidecar in self.directory.glob(f"*{SIDECAR_SUFFIX}"):
            artifact = sidecar.with_name(sidecar.name[:-len(SIDECAR_SUFFIX)])
            try:
                if sidecar.stat().st_mtime >= oldest or not artifact.is_file():
                    continue
            except OSError:  # removed by another process meanwhile
                continue
            if _remove_entry(artifact, sidecar, oldest):
                removed.append(artifact)
        if removed:
            LOG.info("removed %d cached artifacts unused for %g days: %s", len(removed), self.keep_days,
                     ", ".join(path.name for path in removed))
        return removed

    def get_or_build(self, key: CacheKey, model_name: str, suffix: str, build: Callable[[Path], None],
                     load: Callable[[Path], T], exported_from: Mapping[str, object] | None = None) -> tuple[T, Path]:
        """Load the cached artifact for `key`, building it first (`build`, with `exported_from`) when it is
        missing, stale or corrupt."""
        artifact = self.path_for(key, model_name, suffix)
        reason = check_artifact(artifact, key)
        if reason is None:
            try:
                loaded = load(artifact)
                mark_used(artifact)
                return loaded, artifact
            except Exception as exc:  # a loader (TensorRT, ORT) rejecting the bytes is corruption, not a crash
                reason = f"corrupt: the loader rejected it ({exc})"
        try:
            with _build_lock(artifact):
                loader_rejected = reason.startswith("corrupt: the loader")
                if not loader_rejected and check_artifact(artifact, key) is None:
                    LOG.info("%s was built by another process meanwhile", artifact.name)
                    return load(artifact), artifact
                if reason == "missing":
                    LOG.info("no cached %s; building it", artifact.name)
                elif reason.startswith("stale"):
                    LOG.info("cached %s is %s; rebuilding", artifact.name, reason)
                else:
                    LOG.warning("cached %s is %s; rebuilding", artifact.name, reason)
                self.build(key, artifact, build, exported_from)
        except OSError as exc:
            if not self._is_the_cache_s(exc):
                raise
            raise OSError(exc.errno, f"the engine cache {self.directory} cannot take {artifact.name} ({reason}): "
                                     f"{exc.strerror or exc}; free space there, or set DGDEHAZE_ENGINE_CACHE to "
                                     "another folder") from exc
        return load(artifact), artifact

    def _is_the_cache_s(self, exc: OSError) -> bool:
        """Whether a build's OSError is the cache folder's (full, read-only, not a folder) rather than the
        builder's own (a missing source file)."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return True
        name = exc.filename
        return bool(name) and Path(os.fsdecode(name)).absolute().is_relative_to(self.directory.absolute())
