"""Many bags at once: each bag's offline evaluation as a Ray task, one report per bag and a fleet summary.

`run_fleet(jobs, out_dir)` evaluates every `BagJob` with `evaluate_bag` (the node's frame chain, offline), or with
node replay (`BagJob.node`: the real node over ROS topics, one bag after the other so that no two nodes share the
machine's cores), and writes, besides each bag's own folder (`OUT/<bag name>/`: output bag, report.html,
summary.json):

    OUT/fleet.json   per bag and over all: status, frames, detections, mean confidence, haze density, visibility,
                     latency; a failed bag carries its error and does not stop the others
    OUT/index.html   the same as a table, each bag linked to its report

Where the tasks run: on the Ray cluster at `ray_address` ("auto" for the one this machine belongs to, or
"ray://HOST:10001"); without an address, on a Ray started for the run with `workers` CPUs; without Ray installed
(it is the optional `fleet` extra), one bag after the other in this process. Each task loads its own pipeline and
detector, so a task needs nothing from the driver but the job's settings.
"""
from __future__ import annotations

import html
import importlib.util
import json
import logging
import math
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import quote

import numpy as np
from tqdm import tqdm

from dgdehaze_core.bags.evaluation import (DEFAULT_OUTPUT_PREFIX, EVALUATION_ENTRIES, check_output_folder,
                                           evaluate_bag)
from dgdehaze_core.bags.fleet_resume import check_same_settings, earlier_record, finished_summaries, fleet_record
from dgdehaze_core.bags.io import pick_image_topic
from dgdehaze_core.detection.detector import Detector
from dgdehaze_core.io.atomic_files import atomic_write_bytes, remove_leftovers, write_under_way
from dgdehaze_core.io.images import SAMPLE_BITS
from dgdehaze_core.io.tables import write_json
from dgdehaze_core.physics.visibility import Mounting
from dgdehaze_core.process_memory import keep_frame_memory

LOG = logging.getLogger(__name__)

TASK_ERRORS = (ValueError, OSError, RuntimeError)
"""What a bag's evaluation raises for bad input (a corrupt bag, a missing topic, unloadable weights). Any other
Exception fails its bag too (its traceback carried back in the outcome and logged by the fleet's own process, as a
bug of this code or a library's), so that one bag neither stops the others nor leaves fleet.json unfinished."""
ALL_ROW = "all"
"""The fleet table's row over every bag (no bag's folder takes this name)."""
SUMMARY_FILES = ("fleet.json", "index.html")
"""What a fleet writes in OUT beside the bags' folders (no bag's folder takes these names)."""
FIGURES = ("frames", "frames_skipped", "frames_dropped", "detections", "mean_confidence", "haze_density",
           "visibility_m", "latency_ms_median")
"""The fleet table's figures, per bag and over all (`frames_skipped`: frames that could not be decoded;
`frames_dropped`: frames a node replayed at the recorded rate did not answer)."""


@dataclass(frozen=True)
class BagJob:
    """One bag's evaluation: the bag, its output folder and the settings of `evaluate_bag` and the detector
    (None: no detection)."""

    input_bag: str
    out_dir: str
    image_topic: str | None = None
    camera_info_topic: str | None = None
    method: str | None = None
    default_method: str | None = None
    detector: dict[str, Any] | None = None
    max_frames: int | None = None
    storage: str | None = None
    output_prefix: str = DEFAULT_OUTPUT_PREFIX
    camera_height: float = 0.0
    """The camera's height above the road (m) for the fog measurement; 0: none (as the node's camera_height)."""
    camera_pitch: float = 0.0
    input_bits: int = SAMPLE_BITS
    """Significant bits of 16-bit frames (as the node's input_bits)."""
    image_transport: str = "auto"
    """How the output bag holds the images (`writer.IMAGE_TRANSPORTS`)."""
    start: float = 0.0
    duration: float | None = None
    """The part of each bag evaluated, in seconds of its recording (`evaluation.evaluate_bag`)."""
    image_rectified: str = "auto"
    """Whether the frames are rectified (`evaluation.evaluate_bag`; with node replay, node_params carry it)."""
    node: dict[str, Any] | None = None
    """Node replay's own settings (`replay_bag`'s node_name, attach, timeout, node_params, rate); None: offline."""
    pipeline_options: dict[str, Any] = field(default_factory=dict)
    """Offline: how the network makes its image where not as the node's defaults (`evaluate_bag`'s)."""
    frame_settings: dict[str, Any] = field(default_factory=dict)
    """Offline: the node's frame-chain parameters where not its defaults (`evaluate_bag`'s)."""
    notes: tuple[str, ...] = ()
    """Offline: the report's notes beside its own (`evaluate_bag`'s)."""


@dataclass
class BagOutcome:
    """What became of one job: its figures (FIGURES) when it succeeded, else the error in one line."""

    input_bag: str
    out_dir: str
    ok: bool
    seconds: float
    error: str = ""
    traceback: str = ""
    """For an exception outside TASK_ERRORS (a bug): its traceback, from the process that ran the bag (a Ray
    worker's own log does not reach this one)."""
    figures: dict[str, float | int] = field(default_factory=dict)
    frames_per_second_of_wall_time: float = math.nan
    stopped: str = ""
    """Why the evaluation ended part way (`BagEvaluation.stopped`: the node exited, the disk ran short of room),
    "" when it did not; its report covers the frames before."""
    resumed: bool = False
    """Read back from the summary.json of the run that `--resume` went on with, not evaluated by this one."""


def output_folders(bags: Sequence[Path], out_dir: Path) -> list[Path]:
    """OUT/<bag name> for each bag (a single-file bag without its .mcap/.db3/.bag; the name of the folder its absolute
    path names, so that `.` or `drive/..` is named too, and a symbolic link by its own name, not its target's); a
    name already taken (by an earlier bag, another's -N name, or the table's `all` row) gets the first free -2, -3,
    ...; nor does one take the name of the fleet's own files (`SUMMARY_FILES`)."""
    folders, taken = [], {ALL_ROW, *SUMMARY_FILES}
    for bag in (Path(os.path.abspath(bag)) for bag in bags):
        name = bag.stem if bag.suffix.lower() in (".mcap", ".db3", ".bag") else bag.name
        number, unique = 1, name
        while unique in taken:
            number += 1
            unique = f"{name}-{number}"
        taken.add(unique)
        folders.append(out_dir / unique)
    return folders


def evaluate_job(job: BagJob) -> BagOutcome:
    """Evaluate one bag; any Exception becomes a failed outcome with the reason in one line, not an exception. A Ray
    worker's process, which the `dgdehaze` command did not start, keeps its frames' memory as the command does."""
    keep_frame_memory()
    began = time.perf_counter()
    try:
        mounting = Mounting(job.camera_height, job.camera_pitch) if job.camera_height > 0 else None
        # what the bag's metadata tells first, as for one bag: a bad bag or topic fails without the detector's load
        topic = pick_image_topic(Path(job.input_bag), job.image_topic, job.camera_info_topic, job.start, job.duration,
                                 camera_info_needed=mounting is not None)
        detector = Detector(**job.detector) if job.detector is not None else None
        common = dict(camera_info_topic=job.camera_info_topic, method=job.method, detector=detector,
                      max_frames=job.max_frames, storage=job.storage, input_bits=job.input_bits,
                      image_transport=job.image_transport, start=job.start, duration=job.duration, progress=False)
        if job.node is not None:
            from dgdehaze_core.commands.ros_modes import BAG_REPLAY, ros_mode

            evaluation = ros_mode(BAG_REPLAY)(job.input_bag, topic, job.out_dir, **job.node, **common)
        else:
            evaluation = evaluate_bag(job.input_bag, topic, job.out_dir, default_method=job.default_method,
                                      output_prefix=job.output_prefix, mounting=mounting,
                                      image_rectified=job.image_rectified, pipeline_options=job.pipeline_options,
                                      frame_settings=job.frame_settings, notes=job.notes, **common)
    except Exception as exc:  # one bag's failure, whatever it is, is that bag's outcome
        trace = "" if isinstance(exc, TASK_ERRORS) else traceback.format_exc()
        return BagOutcome(job.input_bag, job.out_dir, False, time.perf_counter() - began, error=one_line(exc),
                          traceback=trace)
    seconds = time.perf_counter() - began
    return BagOutcome(job.input_bag, job.out_dir, True, seconds, figures=bag_figures(evaluation.summary()),
                      frames_per_second_of_wall_time=len(evaluation.records) / seconds, stopped=evaluation.stopped)


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (a message's newlines and runs of spaces as single spaces)."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def bag_figures(summary: dict[str, Any]) -> dict[str, float | int]:
    """A bag's fleet figures from its summary.json content (as evaluated, or read back from the file, where a
    figure that could not be computed is null): the dehazed row, and the median visibility."""
    row = summary["figures"]["dehazed"]

    def figure(name: str) -> float:
        return math.nan if row[name] is None else float(row[name])

    visibility = [v for v in summary["per_frame"]["visibility_m"] if v is not None and math.isfinite(v)]
    return {"frames": int(row["frames"]), "frames_skipped": int(summary["frames_skipped"]),
            "frames_dropped": int(summary.get("frames_dropped", 0)),
            "detections": int(row["detections"]), "mean_confidence": figure("mean_confidence"),
            "haze_density": figure("haze_density"),
            "visibility_m": float(np.median(visibility)) if visibility else math.nan,
            "latency_ms_median": figure("latency_ms_median")}


def fleet_figures(outcomes: Sequence[BagOutcome]) -> dict[str, float | int]:
    """The figures over every bag that succeeded: sums of frames and detections, the mean confidence over all
    detections (each bag's weighted by its detections), the haze density over all frames (weighted by frames);
    visibility and latency: medians over the bags that have one."""
    done = [o for o in outcomes if o.ok]
    frames = sum(o.figures["frames"] for o in done)

    def weighted(name: str, weight: str) -> float:
        pairs = [(o.figures[name], o.figures[weight]) for o in done if math.isfinite(o.figures[name])]
        total = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / total if total else math.nan

    def median(name: str) -> float:
        values = [o.figures[name] for o in done if math.isfinite(o.figures[name])]
        return float(np.median(values)) if values else math.nan

    return {"frames": frames, "frames_skipped": sum(o.figures["frames_skipped"] for o in done),
            "frames_dropped": sum(o.figures["frames_dropped"] for o in done),
            "detections": sum(o.figures["detections"] for o in done),
            "mean_confidence": weighted("mean_confidence", "detections"),
            "haze_density": weighted("haze_density", "frames"),
            "visibility_m": median("visibility_m"), "latency_ms_median": median("latency_ms_median")}


class SequentialRunner:
    """One bag after the other in this process (no Ray installed, or one worker asked for)."""

    name = "sequential"

    def run(self, jobs: Sequence[BagJob]) -> Iterator[BagOutcome]:
        for job in jobs:
            yield evaluate_job(job)

    def close(self) -> None:
        """Nothing to release."""


class RayRunner:
    """Each job as a Ray task (one CPU each), on a cluster or on a Ray started for the run; outcomes in the order
    they finish."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        import ray

        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            on_sigterm = signal.getsignal(signal.SIGTERM)
            if address:
                ray.init(address=address, log_to_driver=False)
            else:  # "local": without it, Ray joins the cluster RAY_ADDRESS or an earlier `ray start` names
                ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
            # ray.init takes SIGTERM over (its core worker then aborts with a stack dump): the fleet's own stop,
            # which writes the summary of the bags done (`exits.sigterm_interrupts`), is put back
            if on_sigterm is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, on_sigterm)
        self.task = ray.remote(num_cpus=1, max_retries=0)(evaluate_job)

    def run(self, jobs: Sequence[BagJob]) -> Iterator[BagOutcome]:
        pending = {self.task.remote(job): job for job in jobs}
        while pending:
            ready, _ = self.ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            try:
                yield self.ray.get(ready[0])
            except self.ray.exceptions.RayError as exc:  # the worker died (out of memory, killed) or cannot run it
                yield BagOutcome(job.input_bag, job.out_dir, False, math.nan, error=ray_error_line(exc))

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


def ray_error_line(exc: Exception) -> str:
    """A failed Ray task in one line: what the task raised outside `evaluate_job` (a worker that cannot import
    this package), else the first line of Ray's message (whose traceback and advice follow)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, Exception) and cause is not exc:
        return f"Ray task failed: {one_line(cause)}"
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"Ray task failed: {type(exc).__name__}{': ' + first if first else ''}"


def ray_available() -> bool:
    return importlib.util.find_spec("ray") is not None


def choose_runner(address: str | None, workers: int | None) -> SequentialRunner | RayRunner:
    """Ray when it is installed (a cluster at `address`, else a local one with `workers` CPUs); sequential when
    it is not, or when one local worker is asked for. An address without Ray installed is an error."""
    if not ray_available():
        if address:
            raise RuntimeError(f"--ray {address}: Ray is not installed (pip install 'dgdehaze[fleet]', or "
                               "pip install -r requirements-fleet.txt)")
        LOG.info("Ray is not installed: the bags run one after the other")
        return SequentialRunner()
    if not address and workers == 1:
        return SequentialRunner()
    return RayRunner(address, workers)


def check_node_runner(through_node: bool, ray_address: str | None, workers: int | None) -> None:
    """ValueError where a fleet through the node is given a Ray address or workers: it runs one bag after the
    other, through one node at a time."""
    if through_node and (ray_address or workers is not None):
        raise ValueError("a fleet through the node runs one bag after the other, through one node at a time: no Ray "
                         "address or workers (drop --ray and --workers)")


def run_fleet(jobs: Sequence[BagJob], out_dir: str | Path, *, ray_address: str | None = None,
              workers: int | None = None, progress: bool = True, resume: bool = False,
              weights_sha256: str | None = None) -> dict[str, Any]:
    """Evaluate every job, write OUT/fleet.json and OUT/index.html atomically, return the fleet summary. Stopped
    by Ctrl-C or SIGTERM, it writes them for the bags evaluated so far (status "interrupted") before it stops.
    `resume`: the bags the earlier run of this fleet in OUT finished are read back, not evaluated again
    (`fleet_resume`; ValueError where OUT holds no such run, or one with other settings). `weights_sha256`: of the
    dehazing weights the jobs run (None for dcp), kept in fleet.json's record for a resume to compare."""
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    out_dir = Path(out_dir)
    check_output_folder(out_dir, [job.input_bag for job in jobs], marker="fleet.json", entries=None)
    through_node = any(job.node is not None for job in jobs)
    check_node_runner(through_node, ray_address, workers)
    earlier_run = earlier_record(out_dir) if resume else None
    record = fleet_record(jobs, weights_sha256, earlier_run)
    finished: dict[str, dict[str, Any]] = {}
    if earlier_run is not None:
        check_same_settings(earlier_run, record)
        finished = finished_summaries(jobs, earlier_run)
        LOG.info("--resume: %d of %d bags were evaluated by the run resumed; evaluating the rest", len(finished),
                 len(jobs))
    todo = [job for job in jobs if job.out_dir not in finished]
    # one that cannot start leaves an earlier run's folder as it was; none is started for a fleet finished already
    runner = SequentialRunner() if through_node or not todo else choose_runner(ray_address, workers)
    began = time.perf_counter()
    outcomes = [BagOutcome(job.input_bag, job.out_dir, True, math.nan, figures=bag_figures(finished[job.out_dir]),
                           resumed=True) for job in jobs if job.out_dir in finished]
    bar = tqdm(total=len(jobs), initial=len(outcomes), desc="bag-eval fleet", unit="bag", disable=not progress)
    earlier = {name: (out_dir / name).read_bytes() for name in SUMMARY_FILES if (out_dir / name).is_file()}
    reports = report_stamps(jobs)
    try:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            # until the run ends, the folder says it is unfinished: an interrupted run is neither mistaken for a
            # finished one (an earlier run's index.html beside new bag outputs) nor refused as a folder of strangers'
            (out_dir / "index.html").unlink(missing_ok=True)
            write_json(out_dir / "fleet.json", {"status": "running", "bags": len(jobs),
                                                "inputs": [str(job.input_bag) for job in jobs], **record})
            for outcome in runner.run(todo):
                outcomes.append(outcome)
                bar.update()
                bar.set_postfix(failed=sum(not o.ok for o in outcomes))
                if not outcome.ok:
                    LOG.warning("%s failed: %s", outcome.input_bag, outcome.error)
                    if outcome.traceback:
                        LOG.error("%s failed unexpectedly (a bug of this code or a library's):\n%s",
                                  outcome.input_bag, outcome.traceback.rstrip())
                    remove_earlier_output(Path(outcome.out_dir))
        finally:  # the workers stopped first, so that what they finished meanwhile is counted below
            bar.close()
            runner.close()
            remove_tasks_leftovers([Path(job.out_dir) for job in jobs])
    except KeyboardInterrupt:  # also SIGTERM, which the CLI raises as one
        outcomes += written_unreported(jobs, outcomes, reports)
        if outcomes:
            LOG.warning("interrupted after %d of %d bags: %s indexes those; the same command with --resume "
                        "evaluates the rest", len(outcomes), len(jobs), out_dir / "index.html")
            _write_summary(out_dir, jobs, outcomes, runner.name, ray_address, workers, began, "interrupted", record)
        else:  # no bag output was replaced: the earlier run's summary still describes the folder
            for name in SUMMARY_FILES:
                if name in earlier:
                    atomic_write_bytes(out_dir / name, earlier[name])
                else:
                    (out_dir / name).unlink(missing_ok=True)
        raise
    return _write_summary(out_dir, jobs, outcomes, runner.name, ray_address, workers, began, "done", record)


def report_stamps(jobs: Sequence[BagJob]) -> dict[str, tuple[int, int] | None]:
    """Each job's OUT/<bag>/summary.json as it stands before the run: its inode and modification time (None where
    there is none), which an evaluation writing the folder anew changes."""
    stamps: dict[str, tuple[int, int] | None] = {}
    for job in jobs:
        try:
            status = (Path(job.out_dir) / "summary.json").stat()
        except OSError:
            stamps[job.out_dir] = None
        else:
            stamps[job.out_dir] = (status.st_ino, status.st_mtime_ns)
    return stamps


def written_unreported(jobs: Sequence[BagJob], outcomes: Sequence[BagOutcome],
                       stamps: dict[str, tuple[int, int] | None]) -> list[BagOutcome]:
    """The outcomes, read back from their summary.json, of the bags whose folders this run wrote (`stamps`:
    `report_stamps` before it) but which are not among `outcomes`: a Ray task that finished as the fleet was
    stopped, whose outcome never reached it. Their wall time is unknown (NaN)."""
    reported = {outcome.out_dir for outcome in outcomes}
    found = []
    for job in jobs:
        if job.out_dir in reported or report_stamps([job])[job.out_dir] in (None, stamps[job.out_dir]):
            continue
        summary = json.loads((Path(job.out_dir) / "summary.json").read_text())
        found.append(BagOutcome(job.input_bag, job.out_dir, True, math.nan, figures=bag_figures(summary),
                                stopped=summary.get("stopped", "")))
    return found


WORKERS_END_WAIT_S = 10.0
"""How long a fleet waits, after its runner closed, for the workers stopped mid-bag to let go of their writes."""


def remove_tasks_leftovers(out_dirs: Sequence[Path]) -> None:
    """Remove what the tasks stopped mid-bag left beside their folders `out_dirs` (Ray ends its workers outright).
    A worker Ray is still ending holds its write's lock for a moment after `ray.shutdown` returns (seconds on a
    loaded host), which kept its half-written output and lock file for good: such writes are waited for up to
    WORKERS_END_WAIT_S, then left (a process still at work is no leftover)."""
    deadline = time.monotonic() + WORKERS_END_WAIT_S
    while True:
        for out in out_dirs:
            remove_leftovers(out)
        if time.monotonic() >= deadline or not any(write_under_way(out) for out in out_dirs):
            return
        time.sleep(0.1)


def _write_summary(out_dir: Path, jobs: Sequence[BagJob], outcomes: list[BagOutcome], runner: str,
                   ray_address: str | None, workers: int | None, began: float, status: str,
                   record: dict[str, Any]) -> dict[str, Any]:
    """OUT/fleet.json (with the run's `fleet_resume` record) and OUT/index.html of the bags in `outcomes` (in the
    jobs' order), atomically. Wall time and bags per minute are this run's: a resumed run's bags read back count
    in neither."""
    wall = time.perf_counter() - began
    order = {job.input_bag: i for i, job in enumerate(jobs)}
    outcomes = sorted(outcomes, key=lambda o: order[o.input_bag])
    evaluated = sum(not o.resumed for o in outcomes)
    summary = {"status": status, "runner": runner, "ray_address": ray_address, "workers": workers,
               "wall_seconds": wall, "bags": len(outcomes), "bags_given": len(jobs),
               "bags_resumed": len(outcomes) - evaluated, "failed": sum(not o.ok for o in outcomes),
               "bags_per_minute": 60.0 * evaluated / wall if wall > 0 else math.nan,
               "all": fleet_figures(outcomes), "per_bag": [asdict(o) for o in outcomes], **record}
    write_json(out_dir / "fleet.json", summary)
    atomic_write_bytes(out_dir / "index.html", fleet_html(summary, out_dir).encode("utf-8", "backslashreplace"))
    return summary


def remove_earlier_output(folder: Path) -> None:
    """Remove what an earlier run evaluated into `folder` (it holds summary.json) for a bag that failed in this
    run, so that OUT holds no report that is not this run's. It is moved into a hidden folder before it is
    deleted: a run killed meanwhile leaves no half of it in its place. A folder that holds anything besides an
    evaluation's entries (notes, a copied recording: the bag failed because its output would have deleted them) is
    left as it is."""
    if not (folder / "summary.json").is_file():
        return
    others = sorted(path.name for path in folder.iterdir() if path.name not in EVALUATION_ENTRIES)
    if others:
        LOG.warning("kept %s, an earlier run's output of a bag that failed now: it also holds %s", folder,
                    ", ".join(others[:5]))
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.failed.", dir=folder.parent))
    os.replace(folder, aside / folder.name)
    shutil.rmtree(aside, ignore_errors=True)
    LOG.info("removed %s, an earlier run's output of a bag that failed now", folder)


def fleet_table(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The printed table: one row per bag (its folder name) and `all`; a failed bag's figures are NaN."""
    rows: dict[str, dict[str, Any]] = {}
    for outcome in summary["per_bag"]:
        figures = outcome["figures"] if outcome["ok"] else dict.fromkeys(FIGURES, math.nan)
        status = "failed" if not outcome["ok"] else "stopped" if outcome["stopped"] else "ok"
        rows[Path(outcome["out_dir"]).name] = {"status": status, **figures}
    rows[ALL_ROW] = {"status": f"{summary['bags'] - summary['failed']}/{summary['bags']} ok", **summary["all"]}
    return rows


def fleet_html(summary: dict[str, Any], out_dir: Path) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if not math.isfinite(value) else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return html.escape(str(value))

    rows = []
    for name, row in fleet_table(summary).items():
        outcome = next((o for o in summary["per_bag"] if Path(o["out_dir"]).name == name), None)
        label = html.escape(name)
        if outcome is not None and outcome["ok"]:
            label = f'<a href="{html.escape(quote(name, errors="surrogateescape"))}/report.html">{label}</a>'
        note = html.escape(outcome["error"] or outcome["stopped"]) if outcome is not None else ""
        source = html.escape(outcome["input_bag"]) if outcome is not None else ""  # drive and drive-2: which is which
        rows.append("<tr><td>" + label + "</td>" + "".join(f"<td>{cell(row[k])}</td>" for k in ("status", *FIGURES))
                    + f"<td>{note}</td><td>{source}</td></tr>")
    header = "".join(f"<th>{html.escape(k)}</th>" for k in ("bag", "status", *FIGURES, "error", "input"))
    resumed = (f"; {summary['bags_resumed']} bags read back from the run this one resumed"
               if summary.get("bags_resumed") else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>dgdehaze fleet: {out_dir.name}</title>"
            "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style></head><body>"
            f"<h1>dgdehaze bag-eval fleet{' (interrupted)' if summary['status'] == 'interrupted' else ''}</h1>"
            f"<p>{summary['bags']} of {summary['bags_given']} bags, {summary['failed']} failed, "
            f"{summary['wall_seconds']:.0f} s on {html.escape(summary['runner'])} "
            f"({summary['bags_per_minute']:.2f} bags per minute){resumed}</p>"
            f"<table><tr>{header}</tr>{''.join(rows)}</table></body></html>\n")

