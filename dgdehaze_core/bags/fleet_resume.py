"""A fleet run again with `--resume`: the bags an earlier run of the same fleet finished are read back from their
folders, not evaluated again.

A fleet writes its record (`fleet_record`) into OUT/fleet.json from its start (`running`) to its end (`done`,
`interrupted`): when the run began and, per bag folder, the bag and the settings that make its report (`job_record`:
every `BagJob` setting, and the sha256 of the dehazing weights it runs). `finished_summaries` takes that record
back: a bag whose folder holds a summary.json of the same bag, written since the run began, and not stopped part way,
is done; a bag that failed, was stopped part way, was under way or was never reached is evaluated again. A resumed
run keeps the record's start, so that a resume of a resume still counts the first run's bags.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from dgdehaze_core.io.tables import json_safe

STARTED = "started_ns"
"""fleet.json's key for when the run that its bags' folders belong to began (ns since 1970, the clock of file times)."""
JOBS = "jobs"
"""fleet.json's key for each bag folder's name and its `job_record`."""


def job_record(job: Any, weights_sha256: str | None) -> dict[str, Any]:
    """What makes one bag's report: the bag and every setting of its job (a `fleet.BagJob`; its folder is the key
    it is kept under), and the sha256 of the dehazing weights (None for dcp), which the weights path alone does not
    tell (a run's last.pt written again by more training); as fleet.json reads back (`write_json`'s NaN as null)."""
    settings = asdict(job)
    del settings["out_dir"]
    return json.loads(json.dumps(json_safe({**settings, "weights_sha256": weights_sha256}), default=str))


def fleet_record(jobs: Sequence[Any], weights_sha256: str | None,
                 earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record a fleet run writes into fleet.json: `STARTED` (now, or a resumed run's `earlier` start) and
    `JOBS`."""
    started = earlier[STARTED] if earlier is not None else time.time_ns()
    return {STARTED: started, JOBS: {Path(job.out_dir).name: job_record(job, weights_sha256) for job in jobs}}


def earlier_record(out_dir: Path) -> dict[str, Any]:
    """The fleet record of OUT/fleet.json, to resume; ValueError where there is none to resume (no fleet.json, one
    that does not read, or one written before fleets kept their record)."""
    path = out_dir / "fleet.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--resume: {out_dir} holds no fleet.json, so no fleet to resume (run without "
                         "--resume)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"--resume: {path} does not read ({exc}); run without --resume to evaluate every bag "
                         "again") from None
    if not isinstance(summary, dict) or not isinstance(summary.get(STARTED), int) \
            or not isinstance(summary.get(JOBS), dict):
        raise ValueError(f"--resume: {path} holds no record of its run's settings (written by an older dgdehaze); "
                         "run without --resume to evaluate every bag again")
    return {STARTED: summary[STARTED], JOBS: summary[JOBS]}


def check_same_settings(earlier: dict[str, Any], record: dict[str, Any]) -> None:
    """ValueError where a bag folder of both records was evaluated with other settings or another bag than this
    run's: one fleet table would mix two runs' figures. A bag new to the fleet, or one left out of it, is no
    conflict."""
    for name, job in record[JOBS].items():
        before = earlier[JOBS].get(name)
        if before is None or before == job:
            continue
        differ = sorted(key for key in {*job, *before} if job.get(key) != before.get(key))
        raise ValueError(f"--resume: the fleet in this folder evaluated {name} with other settings (they differ "
                         f"in {', '.join(differ)}): run without --resume to evaluate every bag again, or give "
                         "another --out")


def finished_summaries(jobs: Sequence[Any], earlier: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{out_dir: its summary.json} of the `jobs` whose bags the `earlier` run finished: the same bag, a summary
    written since that run began, not stopped part way."""
    done = {}
    for job in jobs:
        summary_file = Path(job.out_dir) / "summary.json"
        try:
            written = summary_file.stat().st_mtime_ns
            summary = json.loads(summary_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if written >= earlier[STARTED] and isinstance(summary, dict) and not summary.get("stopped") \
                and summary.get("input_bag") == job.input_bag:
            done[job.out_dir] = summary
    return done
