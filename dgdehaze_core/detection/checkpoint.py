"""Ultralytics `.pt` detector files checked before Ultralytics unpickles them (it loads with `weights_only=False`).

A pickle can name any importable callable and call it while loading (`os.system`, `builtins.exec`, ...). Before a
`.pt` reaches `YOLO(...)` it is copied into a private folder and the copy is read by torch's restricted unpickler
(`weights_only=True`), which refuses every opcode and callable outside torch's own safe set; the only callables
added to that set are the network layers Ultralytics pickles: `torch.nn.Module` classes from `torch.nn` and
`ultralytics.nn`, a few plain data classes, and `getattr` (a fused layer's bound `forward` is pickled as
getattr(layer, name); the unpickler still refuses to call what getattr returns, since it calls only callables
on its list). A layer is admitted only as pickle makes it, without calling its constructor (NEWOBJ, then its
state set): a file that calls one (REDUCE) is refused, since a layer's constructor can do anything with its
arguments (Ultralytics' AutoBackend loads the file it is given with the unrestricted unpickler, a Linear of
100000 x 100000 takes 40 GB). A file that needs anything else is refused with one line naming
what it would run, and nothing in it has run. Ultralytics then loads the verified copy, so the file cannot be
swapped between the check and the load.
"""
from __future__ import annotations

import importlib
import logging
import shutil
from pathlib import Path

from dgdehaze_core.io.checkpoints import damage, load_error_line
from dgdehaze_core.io.file_paths import file_suffix

LOG = logging.getLogger(__name__)

LAYER_MODULES = ("torch.nn.modules.", "ultralytics.nn.")
"""Modules whose `torch.nn.Module` classes a detector checkpoint may hold."""
DATA_CLASSES = frozenset({"ultralytics.utils.IterableSimpleNamespace", "types.SimpleNamespace",
                          "pathlib.PosixPath", "pathlib.WindowsPath"})
"""Plain data classes older Ultralytics checkpoints keep their training arguments in."""
ATTRIBUTE_LOOKUP = "builtins.getattr"


class UnsafeCheckpoint(ValueError):
    """A weights file that would run code (or is not a checkpoint at all) when unpickled."""


def _allowed_class(name: str) -> type | None:
    module_name, _, attribute = name.rpartition(".")
    if name not in DATA_CLASSES and not module_name.startswith(LAYER_MODULES):
        return None
    try:
        found = getattr(importlib.import_module(module_name), attribute, None)
    except ImportError:
        return None
    if not isinstance(found, type):
        return None
    if name in DATA_CLASSES:
        return found
    import torch

    return found if issubclass(found, torch.nn.Module) else None


class _ConstructorCalled(Exception):
    """A checkpoint's pickle called a layer's constructor (`_uncallable`)."""


def _uncallable(layer: type) -> type:
    """A stand-in for the layer class `layer` that the restricted unpickler makes as pickle makes a layer (its
    `__new__`, then its state set) but refuses to call: calling it, as a pickle's REDUCE does, raises
    _ConstructorCalled before `layer`'s constructor runs."""

    class Refusing(type(layer)):  # type: ignore[misc]
        def __call__(cls, *args: object, **kwargs: object) -> None:
            raise _ConstructorCalled(f"{layer.__module__}.{layer.__qualname__}")

    return Refusing(layer.__name__, (layer,), {"__module__": layer.__module__, "__qualname__": layer.__qualname__})


def check_detector_checkpoint(path: Path, shown: Path | None = None) -> None:
    """Raise UnsafeCheckpoint unless torch's restricted unpickler, allowed only network layers and plain data
    classes, reads `path` whole; messages name `shown` (the user's file when `path` is a copy)."""
    import torch

    shown = shown or path
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as exc:  # torch raises several types for files that are not zip checkpoints
        raise UnsafeCheckpoint(f"{shown} is not a readable detector checkpoint: {load_error_line(exc, path)}") \
            from None
    problem = damage(path)
    if problem:
        raise UnsafeCheckpoint(f"{shown} is not a readable detector checkpoint: {problem}: copy it again")
    classes: list[object] = [getattr] if ATTRIBUTE_LOOKUP in names else []
    refused = []
    for name in names:
        found = None if name == ATTRIBUTE_LOOKUP else _allowed_class(name)
        if found is not None:
            classes.append(found if name in DATA_CLASSES else (_uncallable(found), name))
        elif name != ATTRIBUTE_LOOKUP:
            refused.append(name)
    if refused:
        raise UnsafeCheckpoint(f"{shown} refused: loading it would call {', '.join(sorted(refused)[:4])}, which a "
                               f"detector checkpoint never needs (only network layers and plain data)")
    try:
        with torch.serialization.safe_globals(classes):
            torch.load(path, map_location="cpu", weights_only=True)
    except _ConstructorCalled as exc:
        raise UnsafeCheckpoint(f"{shown} refused: loading it would call the constructor of {exc} with arguments "
                               "of its own, which a detector checkpoint never does (its layers are restored, "
                               "not constructed)") from None
    except Exception as exc:
        raise UnsafeCheckpoint(f"{shown} refused by the restricted unpickler: {load_error_line(exc, path)}") from None


def verified_copy(weights: Path, folder: Path) -> Path:
    """`weights` copied into `folder` (a private temporary folder) and checked there; the copy is what to load."""
    copy = folder / weights.name
    shutil.copyfile(weights, copy)
    if file_suffix(copy) == ".pt":
        check_detector_checkpoint(copy, weights)
        LOG.debug("%s holds only network layers and data", weights)
    return copy


def named_as_given(exc: BaseException, copy: Path, weights: Path) -> str:
    """The message of `exc`, raised by Ultralytics loading `copy` (`verified_copy`'s), with the copy's path, which
    it names, replaced by the user's file `weights`: the private copy is gone once the command ends."""
    return str(exc).replace(str(copy), str(weights))
