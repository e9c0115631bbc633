"""Train several recipes side by side on one GPU machine lent through the `device` tool, each for as many
iterations as fit the minutes given; the machine's own python3 (with PyTorch) runs it, from the kit that
tools/device_kit.py packed into .device (carried).

    python3 tools/device_train_jobs.py --minutes 6 \\
        --job lite_b32 training/lite.yaml 13500 batch_size=32 \\
        --job base_b32 training/base.yaml 13500 batch_size=32

1. Calibration: every job trains `--calibration` iterations through tools/device_train.sh, all at once as they
   will run, which proves each recipe runs there and measures its iterations per second beside the others (from
   its train.csv).
2. Schedules: each job gets the iterations that fit `--minutes` at that rate (less `--margin` for validation and
   checkpoints), at most its cap, in tens; its cosine decay is stretched to them (`--iterations`).
3. The jobs run side by side through tools/device_train.sh, whose own stop after the minutes plus one is the hard
   limit. Each job's files come back as $OUT/NAME.tgz (the tool brings back 8 files at most; the largest files
   are left out first where one would pass `--max-mib`, or where the archives together would pass the 64 MiB the
   tool brings back), and $OUT/jobs.json holds the rates, iterations, exit codes and the tool's command. So at most
   7 jobs run at once.

Each call works in a new folder under $WORK (default /tmp/device_train_jobs), so a second call on a machine that
stayed warm starts afresh beside the first's files.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
RETURN_FILES = 8
"""The most files the device tool brings back from $OUT: one archive per job and jobs.json."""
RETURN_BYTES = 64 * 2**20
"""The most bytes the device tool brings back from $OUT, all files together."""
SUMMARY_BYTES = 2**20
"""Room kept in RETURN_BYTES for jobs.json."""


def parse_job(words: list[str]) -> dict[str, object]:
    if len(words) < 3 or not words[2].isdigit():
        raise SystemExit(f"--job takes NAME RECIPE MAX_ITERATIONS [KEY=VALUE ...], got {' '.join(words)}")
    name, recipe, cap, *sets = words
    if not (REPO / recipe).is_file():
        raise SystemExit(f"--job {name}: no recipe {recipe}")
    if any("=" not in s for s in sets):
        raise SystemExit(f"--job {name}: overrides are KEY=VALUE, got {sets}")
    return {"name": name, "recipe": recipe, "cap": int(cap), "sets": sets}


def start_training(job: dict[str, object], name: str, iterations: int, minutes: float, folder: Path,
                   extra: Sequence[str] = (), export: bool = True) -> subprocess.Popen:
    """tools/device_train.sh training `job`'s recipe as run `name`, its files in `folder`, stopped after `minutes`;
    without `export`, a finished run's weights are not exported to NAME.pt."""
    folder.mkdir(parents=True)
    sets = [*job["sets"], *extra]  # type: ignore[misc]
    command = ["bash", "tools/device_train.sh", str(job["recipe"]), str(iterations), f"{minutes:g}",
               *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "OUT": str(folder), "NAME": name, "TMPDIR": str(folder.parent), "EXPORT": str(int(export))}
    return subprocess.Popen(command, cwd=REPO, env=env)


def rate(train_csv: Path, skip: int) -> float:
    """Iterations per second of training time after the first `skip` iterations (warm-up, kernel choice)."""
    rows = [(int(r["iteration"]), float(r["seconds"])) for r in csv.DictReader(train_csv.open())]
    later = [r for r in rows if r[0] >= skip]
    if len(later) < 2:
        raise RuntimeError(f"{train_csv}: too few logged iterations to time")
    (i0, s0), (i1, s1) = later[0], later[-1]
    return (i1 - i0) / max(s1 - s0, 1e-6)


def calibrate(jobs: list[dict[str, object]], iterations: int, minutes: float, work: Path) -> None:
    extra = ["log_every=10", f"val_every={10 * iterations}", f"checkpoint_every={10 * iterations}"]
    runs = [(job, start_training(job, "calibration", iterations, minutes, work / f"calibration-{job['name']}",
                                 extra, export=False)) for job in jobs]  # only its log and train.csv are read
    for job, process in runs:
        job["calibration_exit"] = process.wait()
        try:
            job["rate"] = rate(work / f"calibration-{job['name']}" / "calibration" / "train.csv", iterations // 3)
        except (OSError, RuntimeError, ValueError) as error:
            job["rate"], job["error"] = 0.0, str(error)


def archive_bytes(max_mib: float, jobs: int) -> int:
    """The most bytes one of `jobs` archives may hold: `max_mib`, and each job's share of what the tool brings back
    beside jobs.json."""
    return min(int(max_mib * 2**20), (RETURN_BYTES - SUMMARY_BYTES) // jobs)


def archive(job: dict[str, object], work: Path, out: Path, max_bytes: int) -> None:
    """Pack the job's files into `out`/NAME.tgz, at most `max_bytes` of them: the weights, the logs, the
    calibration's log, then the resumable checkpoints, each left out where it would not fit."""
    name = str(job["name"])
    run = work / f"out-{name}"
    paths = [run / f"{name}.pt", *(run / name / f for f in ("train.csv", "val.csv", "recipe.yaml")),
             run / f"{name}.log", work / f"calibration-{name}" / "calibration.log",
             *(run / name / f for f in ("last.pt", "best.pt"))]
    kept, total = [], 0
    for path in paths:
        if path.is_file() and total + path.stat().st_size <= max_bytes:
            kept.append(path)
            total += path.stat().st_size
    job["archived"] = [p.name for p in kept]
    with tarfile.open(out / f"{name}.tgz", "w:gz") as tar:
        for path in kept:
            tar.add(path, arcname=f"{name}/{path.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", nargs="+", action="append", required=True,
                        metavar="NAME RECIPE MAX_ITERATIONS [KEY=VALUE", help="a run: name, recipe, cap, overrides")
    parser.add_argument("--tie", action="append", default=[], metavar="NAME,NAME",
                        help="jobs compared with each other (a model and its ablation): all get the fewest "
                        "iterations of them")
    parser.add_argument("--minutes", type=float, required=True, help="training time after calibration")
    parser.add_argument("--calibration", type=int, default=60, help="iterations each job trains to be timed")
    parser.add_argument("--margin", type=float, default=0.85, help="share of the minutes planned for iterations")
    parser.add_argument("--max-mib", type=float, default=15.5, help="largest archive (the tool returns 16 MiB)")
    args = parser.parse_args()
    jobs = [parse_job(words) for words in args.job]
    if len({j["name"] for j in jobs}) != len(jobs):
        raise SystemExit("two jobs of one name")
    if len(jobs) > RETURN_FILES - 1:
        raise SystemExit(f"{len(jobs)} jobs: the device tool brings back {RETURN_FILES} files, one archive per job "
                         f"and jobs.json, so at most {RETURN_FILES - 1} jobs run at once")
    unknown = {name for tie in args.tie for name in tie.split(",")} - {j["name"] for j in jobs}
    if unknown:
        raise SystemExit(f"--tie names no job {', '.join(sorted(unknown))}")
    if not os.environ.get("OUT"):
        raise SystemExit("OUT must name the folder whose files come back (the device tool sets it)")
    out = Path(os.environ["OUT"])
    base = Path(os.environ.get("WORK", "/tmp/device_train_jobs"))
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="call-", dir=base))  # an earlier call's folders stay apart
    started = time.monotonic()
    calibrate(jobs, args.calibration, args.minutes, work)
    plan_s = args.minutes * 60.0 * args.margin
    for job in jobs:
        job["iterations"] = min(int(job["cap"]), int(float(job["rate"]) * plan_s) // 10 * 10)  # type: ignore
    by_name = {job["name"]: job for job in jobs}
    for tie in args.tie:
        tied = [by_name[name] for name in tie.split(",")]
        for job in tied:
            job["iterations"] = min(int(j["iterations"]) for j in tied)  # type: ignore[arg-type]
    for job in jobs:
        print(f"{job['name']}: {float(job['rate']):.1f} it/s side by side -> {job['iterations']} iterations",
              flush=True)
    runs = [(job, start_training(job, str(job["name"]), int(job["iterations"]), args.minutes + 1,  # type: ignore
                                 work / f"out-{job['name']}"))
            for job in jobs if int(job["iterations"]) >= 10]  # type: ignore[arg-type]
    for job, process in runs:
        job["command"] = " ".join(process.args)  # type: ignore[arg-type]
        job["exit"] = process.wait()
    for job in jobs:
        archive(job, work, out, archive_bytes(args.max_mib, len(jobs)))
    summary = {"seconds": round(time.monotonic() - started, 1), "minutes": args.minutes, "jobs": jobs}
    (out / "jobs.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if runs and all(j.get("exit") == 0 for j, _ in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
