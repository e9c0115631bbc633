"""What every training loop shares about its run: its seeds, the run folder, resuming the same recipe, refusing a
step that went non-finite, and stopping on Ctrl-C or SIGTERM only between steps.

A checkpoint is only ever taken between two steps and only of finite weights, so `last.pt` is always a state the
run passed through and `--resume` continues the run it was cut from.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from dgdehaze_core.cpu_threads import available_cpus
from dgdehaze_core.exits import interruption
from dgdehaze_core.io.atomic_files import check_folder_path
from dgdehaze_core.io.checkpoints import read_checkpoint
from dgdehaze_core.io.file_paths import listing
from dgdehaze_core.io.folder_lock import HELD_LOCKS, folder_lock
from dgdehaze_core.training.run_files import source_commit

LOG = logging.getLogger(__name__)

RESUMABLE_CHANGES = ("iterations", "device", "num_workers", "log_every", "val_every", "checkpoint_every",
                     "source_file")
"""Recipe fields a resumed run may change (a longer run, another machine, other bookkeeping); any other change
would continue one run with another recipe."""


FieldType = tuple[tuple[type, ...], str]
"""The types a last.pt field may hold and how a refusal names them."""
MAPPING: FieldType = ((Mapping,), "a mapping")
LIST: FieldType = ((list, tuple), "a list")
WHOLE_NUMBER: FieldType = ((int,), "a whole number")
NUMBER: FieldType = ((int, float), "a number")
TEXT: FieldType = ((str,), "text")
TENSOR: FieldType = ((torch.Tensor,), "a tensor")
RESUMED_FIELDS: dict[str, FieldType] = {
    "state_dict": MAPPING, "meta": MAPPING, "training.iteration": WHOLE_NUMBER, "training.elapsed": NUMBER,
    "training.data": MAPPING, "training.optimizer": MAPPING, "meta.commit": TEXT, "meta.resumes": LIST}
"""The fields of a last.pt that every trainer's resume reads (`RunHistory.resume` and the weights), by dotted name,
with their types; each trainer adds its own (`load_resumable`'s `fields`)."""


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators, so that a recipe run again draws the same data."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def load_resumable(path: Path, what: str, recipe: Mapping[str, Any],
                   fields: Mapping[str, FieldType] | None = None) -> dict[str, Any]:
    """A trainer's last.pt, read without running code; FileNotFoundError when absent, ValueError when it is not a
    resumable `what` checkpoint, a field of RESUMED_FIELDS or of the trainer's own `fields` holds another type (a
    hand-edited file: named with the file, rather than failing later where the field is used), its recipe differs
    from `recipe` in a field outside RESUMABLE_CHANGES, or it is past `recipe`'s last iteration (a shorter run cannot
    be had by resuming a longer one). A field the file lacks is left to the trainer (older files lack some).

    Paths are compared by their last two parts, so a run resumes on a machine whose data lies elsewhere; a field
    the saved recipe lacks (at any depth: written before the field existed) takes the current value."""
    _refuse_a_last_that_is_no_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: no checkpoint {path}")
    try:
        state = read_checkpoint(path, f"resumable {what} checkpoint")
    except ValueError as exc:
        raise ValueError(f"{exc}; the run cannot be continued: start a new run in another --out folder") from None
    training = state.get("training") if isinstance(state, dict) else None
    saved = training.get("recipe") if isinstance(training, dict) else None
    if not isinstance(saved, dict):  # a plain tensor, a list, a model's weights alone
        raise ValueError(f"{path} is not a resumable {what} checkpoint: it holds no training state")
    _check_field_types(path, what, state, {**RESUMED_FIELDS, **(fields or {})})
    changed = [difference for key in recipe if key in saved and key not in RESUMABLE_CHANGES
               for difference in _differences(key, saved[key], recipe[key])]
    if changed:
        differences = "; ".join(f"{key} {_change(was, now)}" for key, was, now in changed)
        raise ValueError(f"cannot resume {path} with another recipe: {differences} (a resumed run may change only "
                         f"{', '.join(RESUMABLE_CHANGES[:-1])}; start a new run in another --out folder)")
    reached = int(state["training"].get("iteration", 0))
    if "iterations" in recipe and reached > recipe["iterations"]:
        raise ValueError(f"cannot resume {path} to iteration {recipe['iterations']}: it is at iteration {reached} "
                         f"already (resume with --iterations {reached} or more, or export its weights as they are)")
    return state


def _check_field_types(path: Path, what: str, state: Mapping[str, Any], fields: Mapping[str, FieldType]) -> None:
    """ValueError naming `path` and the first of `fields` (dotted names) that `state` holds with another type, or
    training.data when it is no DataFingerprint."""
    for name, (types, described) in fields.items():
        section, _, key = name.rpartition(".")
        holder = state.get(section, {}) if section else state
        if isinstance(holder, Mapping) and key in holder and not isinstance(holder[key], types):
            _refuse_field(path, what, name, f"holds {type(holder[key]).__name__}, not {described}")
    data = state["training"].get("data")
    if isinstance(data, Mapping) and not all(
            isinstance(kind, str) and isinstance(files, (list, tuple)) and all(
                isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], int) for entry in files) for kind, files in data.items()):
        _refuse_field(path, what, "training.data", "is not each kind's list of (file name, bytes)")


def _refuse_field(path: Path, what: str, name: str, problem: str) -> None:
    raise ValueError(f"{path} is not a resumable {what} checkpoint: its {name} {problem} (edited by hand?); the run "
                     f"cannot be continued: start a new run in another --out folder")


DataFingerprint = dict[str, list[tuple[str, int]]]
"""Each kind of training data ("clear", "hazy", "frames") as its files' (name, size in bytes), in the order the
samples index them."""


def file_fingerprint(files: Iterable[tuple[str, Path]]) -> list[tuple[str, int]]:
    """(name, size in bytes) of each (name, file): cheap (no file is read) and the same wherever the data lies,
    as the names are the caller's (a folder's name and the file's path below it). A folder (a rosbag2 bag's) is
    the total size of the files directly in it: a folder's own size depends on the file system it lies on."""
    sizes: dict[Path, int] = {}

    def size(path: Path) -> int:
        if path not in sizes:
            sizes[path] = (sum(file.stat().st_size for file in path.iterdir() if file.is_file()) if path.is_dir()
                           else path.stat().st_size)
        return sizes[path]

    return [(name, size(path)) for name, path in files]


def check_same_data(last_path: Path, saved: DataFingerprint | None, current: DataFingerprint) -> None:
    """ValueError naming the first files that changed when the training data differs from what `last_path`'s run
    trained on: the samples are drawn by index from these lists, so a resumed run would not continue the same
    stream. Nothing for a last.pt from before the fingerprint was saved (`saved` None)."""
    if saved is None:
        return
    changes = []
    for kind in sorted(set(saved) | set(current)):
        before, after = [tuple(entry) for entry in saved.get(kind, [])], current.get(kind, [])
        if before == after:
            continue
        sizes, now = dict(before), dict(after)
        named = ([f"{name} removed" for name in sizes if name not in now]
                 + [f"{name} added" for name in now if name not in sizes]
                 + [f"{name} {sizes[name]} -> {now[name]} bytes" for name in now
                    if name in sizes and sizes[name] != now[name]])
        shown = listing(named, 3) or "the same files in another order"
        changes.append(f"{kind} ({len(before)} -> {len(after)} files: {shown})")
    if changes:
        raise ValueError(f"cannot resume {last_path}: the training data changed since it was saved: "
                         f"{'; '.join(changes)} (a resumed run draws its samples by index from the same files: "
                         "put them back, or start a new run in another --out folder)")


def check_listed_data(last_path: Path, saved: DataFingerprint | None, listed: DataFingerprint) -> None:
    """`check_same_data` before any image is decoded, for the part of the fingerprint that the listing already
    shows: `listed` holds every listed image, of which decoding only leaves some out (bag frames that do not decode),
    so where `saved` is not what is left of `listed` once some are left out, the data changed whatever decoding
    gives. The full check (`RunHistory.record_data`) still follows decoding. The refusal's names are the listing's
    (a frame left out when the run was saved may be named added)."""
    if saved is None:
        return

    def left_of(kept: list[tuple[str, int]], entries: list[tuple[str, int]]) -> bool:
        remaining = iter(entries)
        return all(tuple(entry) in remaining for entry in kept)

    if not all(left_of(saved.get(kind, []), listed.get(kind, [])) for kind in set(saved) | set(listed)):
        check_same_data(last_path, saved, listed)


@dataclass
class RunHistory:
    """What a training run (either trainer) keeps of itself in its checkpoints beside the weights: the code's commit
    when it started (commits made while it runs do not change what it runs), each resume's iteration and commit, the
    seconds it has trained, and its training data's names and sizes, which a resume checks against the resumed
    run's."""

    commit: str = field(default_factory=source_commit)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0
    data: DataFingerprint = field(default_factory=dict)
    resumed_data: DataFingerprint | None = None
    """The training data of the run resumed (None: none, or a last.pt saved before it was recorded)."""
    first_loss: float = math.nan
    last_loss: float = math.nan
    """The run's first and last training loss (`StepTally`), kept across resumes (NaN before its first step; a run
    resumed from a last.pt saved before they were kept: its first is the resumed part's)."""

    def losses(self) -> dict[str, float]:
        """Its part of a checkpoint's training state: the first and last loss."""
        return {"first_loss": self.first_loss, "last_loss": self.last_loss}

    def meta(self) -> dict[str, Any]:
        """Its part of a checkpoint's metadata."""
        return {"train_seconds": round(self.elapsed, 1), "commit": self.commit, "resumes": self.resumes}

    def resume(self, state: Mapping[str, Any]) -> None:
        """Go on with the history of the run whose last.pt holds `state`: its start commit, its resumes and this one
        (at this code's commit), its seconds and its training data."""
        meta, training = state.get("meta", {}), state["training"]
        self.resumes = [*meta.get("resumes", []), {"iteration": int(training["iteration"]), "commit": self.commit}]
        self.commit = str(meta.get("commit", "unknown"))
        self.elapsed = float(training["elapsed"])
        self.resumed_data = training.get("data")
        self.first_loss = float(training.get("first_loss", math.nan))
        self.last_loss = float(training.get("last_loss", math.nan))

    def record_data(self, data: DataFingerprint, resumed_from: Path | None) -> None:
        """Record the run's training data; for a resumed run (`resumed_from`: its last.pt) ValueError naming the
        files that changed since it was saved (`check_same_data`)."""
        self.data = data
        if resumed_from is not None:
            check_same_data(resumed_from, self.resumed_data, data)


def _differences(name: str, saved: Any, current: Any) -> list[tuple[str, Any, Any]]:
    """(dotted name, saved, current) of each leaf in which a saved recipe value differs from the current one
    (`loss.dcp_teacher`, `data.clear[0].weight`; a list of another length as a whole), fields the saved one lacks
    left out."""
    if isinstance(saved, Mapping) and isinstance(current, Mapping):
        return [difference for key, value in current.items() if key in saved
                for difference in _differences(f"{name}.{key}", saved[key], value)]
    if isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple)):
        if len(saved) != len(current):
            return [(name, saved, current)]
        return [difference for index, (a, b) in enumerate(zip(saved, current))
                for difference in _differences(f"{name}[{index}]", a, b)]
    return [(name, saved, current)] if _portable(saved) != _portable(current) else []


def _portable(value: Any) -> Any:
    """A recipe's leaf value, an absolute path cut to its last two parts (`_differences` walks the containers)."""
    if isinstance(value, str) and value.startswith("/"):
        return "/".join(Path(value).parts[-2:])
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _change(saved: Any, current: Any) -> str:
    """A difference of `_differences` in words: 'saved -> current', or for a list of another length (a source
    added to or removed from `data`) its lengths and the entries added and removed, a source by its path."""
    if not (isinstance(saved, (list, tuple)) and isinstance(current, (list, tuple))):
        return f"{_short(saved)} -> {_short(current)}"

    def missing(entries: Sequence[Any], others: Sequence[Any]) -> list[str]:
        return [str(entry["path"]) if isinstance(entry, Mapping) and "path" in entry else _short(entry)
                for entry in entries if all(_differences("", entry, other) for other in others)]

    words = [f"{what} {', '.join(entries)}" for what, entries in (("added", missing(current, saved)),
                                                                 ("removed", missing(saved, current))) if entries]
    return f"{len(saved)} -> {len(current)} entries" + (f" ({'; '.join(words)})" if words else "")


RUN_FILES = ("last.pt", "best.pt", "recipe.yaml", "train.csv", "val.csv")
"""What a training writes into its run folder."""


def open_run_folder(run_dir: Path, last_path: Path, resume: bool, load_last: Callable[[], None],
                    writer: bool = True) -> None:
    """Create `run_dir`; with `resume` load its last.pt, else (on the rank that writes) refuse a folder holding
    any of a run's files (FileExistsError): a finished run whose last.pt was deleted keeps its best.pt and logs.
    A last.pt that is no file (a folder) is refused either way (IsADirectoryError); a resume of such a folder
    without last.pt is FileNotFoundError saying what the folder holds, and of a last.pt whose training state lacks
    a field `load_last` reads, or holds one of another type, ValueError naming it."""
    check_folder_path(run_dir, "--out")
    run_dir.mkdir(parents=True, exist_ok=True)
    _refuse_a_last_that_is_no_file(last_path)
    found = [name for name in RUN_FILES if (run_dir / name).exists()] if writer else []
    if resume:
        if found and not last_path.exists():
            raise FileNotFoundError(f"nothing to resume: {_left_without_last(run_dir, last_path, found)}")
        try:
            load_last()
        except (KeyError, TypeError, AttributeError, IndexError) as exc:  # a field missing, or of another type
            raise ValueError(f"{last_path} is not a resumable checkpoint of this trainer: its training state does not "
                             f"read ({type(exc).__name__}: {exc}); the run cannot be continued: start a new run in "
                             "another --out folder") from None
        return
    if last_path.exists():
        raise FileExistsError(f"{last_path} exists: pass --resume to continue that run, or choose another "
                              f"--out folder")
    if found:
        raise FileExistsError(_left_without_last(run_dir, last_path, found))


def refuse_another_run_s_file(path: Path, flag: str) -> None:
    """ValueError, before any work, when `path` is one of RUN_FILES in the folder of a training run (one that holds
    its recipe.yaml; links followed): written there, an output replaces that run's resumable last.pt (its --resume
    then fails) or its best.pt."""
    target = Path(os.path.realpath(path.expanduser()))
    if target.name in RUN_FILES and (target.parent / "recipe.yaml").is_file():
        raise ValueError(f"{flag} {path} would replace {target.name} of the training run in {target.parent}: give "
                         "a path outside any run folder")


def _left_without_last(run_dir: Path, last_path: Path, found: list[str]) -> str:
    """What a folder holding an earlier run's `found` files but no last.pt holds, and how to go on without losing
    them."""
    weights = (f"; its best.pt can start a new run from its weights (--set init_weights={run_dir / 'best.pt'})"
               if "best.pt" in found else "")
    return (f"{run_dir} holds an earlier run's {', '.join(found)} but no {last_path.name} to resume from: choose "
            f"another --out folder, or move them away{weights}")


def _refuse_a_last_that_is_no_file(last_path: Path) -> None:
    """IsADirectoryError when `last_path` exists as something other than a file: neither a fresh run nor a resume
    can take that folder."""
    if last_path.exists() and not last_path.is_file():
        raise IsADirectoryError(f"{last_path} is not a file (a folder?): a run's last.pt is its checkpoint; move "
                                "it away, or choose another --out folder")


@contextlib.contextmanager
def run_folder_lock(run_dir: Path, writer: bool = True) -> Iterator[None]:
    """While a training writes into `run_dir` no other may (`folder_lock`): a second one (the same --out twice) is
    refused with FileExistsError instead of mixing its checkpoints and logs with the first's, and a failed run
    leaves no new folder behind. Nothing on a rank that does not write."""
    if not writer:
        yield
        return
    with folder_lock(run_dir, "--out", "training"):
        yield


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """`optimizer.load_state_dict(state)` keeping this run's implementation choice (`foreach`): a checkpoint saved
    before the trainers chose the multi-tensor form would bring back the per-tensor loop it was saved with."""
    chosen = [group.get("foreach") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, foreach in zip(optimizer.param_groups, chosen):
        group["foreach"] = foreach


def step_figures(terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """A step's loss terms as floats for its log, read from the device in one sync instead of one per term."""
    return dict(zip(terms, torch.stack([value.detach().float() for value in terms.values()]).tolist()))


def check_finite_loss(total: torch.Tensor, terms: Mapping[str, torch.Tensor], iteration: int,
                      last_path: Path) -> None:
    """RuntimeError, before any weight moves, when the step's loss is NaN or infinite; it says whether
    `last_path` holds a checkpoint to resume from."""
    if not torch.isfinite(total):
        figures = {name: float(value.detach()) for name, value in terms.items()}
        raise RuntimeError(f"the loss became {float(total.detach())} at iteration {iteration}: {figures}; "
                           f"{_after_failure(last_path)}")


def check_finite_weights(parameters: Iterable[torch.Tensor], iteration: int, last_path: Path) -> None:
    """RuntimeError when a step left a weight NaN or infinite (gradients that were not finite), so that no
    checkpoint is written of it; it says whether `last_path` holds a checkpoint to resume from."""
    tensors = list(parameters)
    if tensors and not bool(torch.isfinite(_largest_magnitude(tensors))):
        raise RuntimeError(f"the weights became NaN or infinite at iteration {iteration}; "
                           f"{_after_failure(last_path)}")


def _largest_magnitude(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The largest |value| over `tensors`, NaN when any is NaN: one multi-tensor max norm (it cannot overflow as a
    sum of squares would) instead of several kernel launches per tensor, which on a GPU bound a training step more
    than its arithmetic does (torch.nn.utils.get_total_norm, PyTorch 2.6, the floor of requirements-ros.txt)."""
    return torch.nn.utils.get_total_norm(tensors, norm_type=math.inf, foreach=True)


def _after_failure(last_path: Path) -> str:
    """What a run that failed can do next: resume from its last checkpoint, or (before its first) run again."""
    if last_path.is_file():
        return f"{last_path} keeps the last checkpoint: lower lr or resume from it"
    return "no checkpoint was saved yet: lower lr and run again into the same --out folder"


class StepTally:
    """A training loop's steps counted into its run's `history`: the first and last loss and the training time, a
    resumed run's going on from its last.pt's."""

    def __init__(self, history: RunHistory) -> None:
        self.history = history
        self._started = time.perf_counter()

    def step_done(self, loss: float) -> None:
        """Count a finished step of loss `loss`."""
        history = self.history
        history.first_loss = loss if math.isnan(history.first_loss) else history.first_loss
        history.last_loss = loss
        now = time.perf_counter()
        history.elapsed += now - self._started
        self._started = now

    def pause_done(self) -> None:
        """Leave the time since the last step (a validation) out of the training time."""
        self._started = time.perf_counter()


def _end_at_the_next_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, _end_quietly)


def _end_quietly(signum: int, frame: FrameType | None) -> None:
    os._exit(0)


def loader_workers(requested: int) -> int:
    """The data loader workers to start for a recipe's `num_workers`: at most the CPU cores this process may use
    (`cpu_threads.available_cpus`), with a warning when it asks for more. Each worker is a process holding a copy of
    the training data: a `num_workers` of 100000 forked until the machine ran out of memory, and its OOM killer
    took whatever process it chose. A batch depends on its indices alone, never on how many workers load it."""
    cpus = available_cpus()
    if requested <= cpus:
        return requested
    LOG.warning("num_workers %d is more than the %d CPU cores this process may use: %d data loader workers",
                requested, cpus, cpus)
    return cpus


def quiet_loader_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: a forked worker inherits `StepBoundaryStop`'s handlers. Ctrl-C at the terminal,
    and a SIGTERM sent to the whole process group (systemd's stop, `kill -- -PGID`), reach every worker, which
    leaves stopping to the training process: a worker dead of it would fail the step under way, before last.pt is
    saved. The worker lets its first SIGTERM pass; the next (a second stop of the group, or the end of a worker
    that did not stop: the DataLoader's, then multiprocessing's at exit) ends it with status 0, which the DataLoader
    takes for no failure: a worker killed by a signal has it raise its error in the training process, wherever that
    is, its shutdown too. It closes its copies of the run folder lock (`HELD_LOCKS`): the training's own keeps the
    folder locked while it lives, and a training killed at once leaves it free for its --resume."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_at_the_next_sigterm)
    forked = [fd for fd, owner in HELD_LOCKS.items() if owner != os.getpid()]  # not the training's own
    if forked:  # each pointed at /dev/null: the lock let go, the number still valid for the copied file object
        null = os.open(os.devnull, os.O_RDONLY)
        for fd in forked:
            os.dup2(null, fd)
        os.close(null)


class StepBoundaryStop:
    """Within its `with` block, Ctrl-C (SIGINT) and SIGTERM ask the loop to stop after the step under way: a state
    saved mid-step (haze drawn, batch-norm statistics moved, the step not counted) would not resume to the run it
    was cut from. A second signal stops at once, without saving, or where it comes while a checkpoint is written
    (`saving`) once that is written. Outside the main thread it changes nothing.

    `agree` turns this process's request into the job's decision (in a torchrun job every rank must stop at the
    same step); by default the request itself. `last_path`, the run's last.pt, lets a stop at once say whether a
    checkpoint is kept."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, agree: Callable[[bool], bool] | None = None, last_path: Path | None = None) -> None:
        self.requested: str | None = None
        self._agree = agree or (lambda requested: requested)
        self._last_path = last_path
        self._previous: dict[int, Any] = {}
        self._saving = False
        self._at_once: int | None = None
        """A second signal that came while a checkpoint was written (`saving`), which stops once it is."""

    def __enter__(self) -> StepBoundaryStop:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:  # a signal ignored before (nohup) stays so
                    self._previous[signum] = signal.signal(signum, self._request)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _request(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None and self._saving:
            self._at_once = signum
            LOG.warning("%s again: stopping at once, as soon as the checkpoint under way is written", name)
        elif self.requested is not None:
            kept = ("no checkpoint was saved yet: the --out folder takes a new run"
                    if self._last_path is not None and not self._last_path.is_file()
                    else f"{self._last_path or 'last.pt'} keeps the last checkpoint")
            LOG.warning("%s again: stopping at once, mid-step; %s", name, kept)
            raise interruption(signum)
        else:
            self.requested = name
            LOG.warning("%s: stopping after the step under way (send it again to stop at once, without saving)",
                        name)

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Around the writing of a checkpoint's files (last.pt, then a fresh run's recipe.yaml, logs and best.pt): a
        second signal meanwhile stops once they are written, not between them, where a fresh run's last.pt would be
        left without the logs of the steps it holds (a resume could not bring them back)."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self._at_once is not None:
            raise interruption(self._at_once)

    def after_step(self, iteration: int, save: Callable[[], Path | None]) -> None:
        """At a step boundary: when a stop was asked (here, or on another rank of the job), `save` (which returns
        None on a rank that does not write) and raise KeyboardInterrupt (`exits.Terminated` for a SIGTERM this
        process got, which `dgdehaze` exits with as 143)."""
        if not self._agree(self.requested is not None):
            return
        with self.saving():
            saved = save()
        if saved is not None:
            LOG.warning("stopped at iteration %d: saved %s", iteration, saved)
        # a rank that got no signal stops as the job does (another rank asked), as for Ctrl-C
        raise interruption(signal.Signals[self.requested]) if self.requested else KeyboardInterrupt
