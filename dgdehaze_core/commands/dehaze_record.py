"""The run record of a `dgdehaze dehaze` output folder (DEHAZE_RUN_RECORD): what wrote the outputs in it (the input,
the method and its weights, the settings that change the images) and what each output was made from, so that a
resumed run goes on only with the run that wrote them (`check_resumable`) and no run replaces another input's outputs
(`check_replaced`).

The record is written into --out before a run's first output (a video's: before its outputs replace any): the
input, the method, the record of its weights, the output mode, the working size, the input bits, fp16, the radiance
floor, the detail gain, and what the outputs in --out are made from (MADE_FROM); kept as it is by each --resume, its
time says when that run began (outputs older than it are an earlier run's)."""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from dgdehaze_core.commands.network_options import requested_max_detail_gain, requested_radiance_floor
from dgdehaze_core.inference.pipeline import MAX_DETAIL_GAIN
from dgdehaze_core.io.file_paths import DEHAZE_RUN_RECORD

LOG = logging.getLogger(__name__)

MADE_FROM = "made_from"
"""The run record's key for what the outputs in its folder were made from: each output's name and the absolute path
of the image or video it was made from, this run's and those of earlier runs still there, so that a run over another
file of the same name (B/x.png after A/x.png, a.avi after a.mp4) is refused before it replaces them
(`check_replaced`)."""
KINDS = ("dehazed", "depth")
"""The outputs of each input, NAME_dehazed and NAME_depth."""
OUTPUT_ENDINGS = tuple(f"_{kind}{suffix}" for kind in KINDS for suffix in (".png", ".mp4"))
"""How the names of the outputs of images and videos end."""
SCATTERING_SETTINGS = ("radiance_floor", "max_detail_gain")
"""What of a run record sets how a network's transmission makes its image (None where no transmission does: dcp's
image, a decoder's). A record written before records held the floor reads as None (such a run had none), one
written before they held the gain as the default it ran with (`_recorded_max_detail_gain`)."""
COMPARED = ("output", "working_size", "input_bits", "half", *SCATTERING_SETTINGS)
"""What of a run record, beside its weights, changes the images written: a resumed run must keep them. A record
written before records held the working size reads as None, each input's size, which such a run had."""


def run_start(out: Path) -> int | None:
    """When the run that wrote the outputs in `out` began (ns): the time of its DEHAZE_RUN_RECORD, written before its
    first output and kept by each --resume of it; None without a record."""
    try:
        return (out / DEHAZE_RUN_RECORD).stat().st_mtime_ns
    except OSError:
        return None


def _read_record(out: Path) -> dict[str, Any] | None:
    """The run record in `out`; None where there is none, or none that reads as one (--resume refuses that:
    `check_resumable`)."""
    try:
        record = json.loads((out / DEHAZE_RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _made_from(out: Path, record: dict[str, Any] | None, outputs: list[Path]) -> dict[Path, str | None]:
    """What each of `outputs` that is a file in `out` was made from, by the folder's run `record`: the file its
    MADE_FROM names, else, for an image's output written after the record (by a resume that added images, or by a
    run before records held MADE_FROM), the record's input (a folder's run: the folder); None where the record
    cannot tell (none: a folder written before records were, its outputs older than its record, or a video's that a
    run before records held MADE_FROM wrote after an image run's record: such a video run wrote none)."""
    made = record.get(MADE_FROM) if record else None
    made = made if isinstance(made, dict) else {}
    started = run_start(out) if record else None
    sources: dict[Path, str | None] = {}
    for path in outputs:
        if not path.is_file():
            continue
        source = made.get(path.name)
        if source is None and started is not None and path.suffix == ".png" and path.stat().st_mtime_ns >= started:
            source = record.get("input")
        sources[path] = source if isinstance(source, str) else None
    return sources


def _same_source(recorded: str, path: Path) -> bool:
    """Whether an output made from `recorded` (a file, or the folder of a run whose record names no file) is made
    from `path` again: a command run again, or a folder's image named alone, replaces its own outputs. An image of
    a folder is that folder's whether it is a link or a file there (a folder of links into a data set's)."""
    resolved = _real_path(path)
    return recorded in (resolved, os.path.dirname(resolved), _real_path(path.parent))


def _real_path(path: Path) -> str:
    """The absolute path of the file at `path`, links followed (as far as they lead: a loop of links is an input
    that reads as one, named in the run's error or as skipped)."""
    return os.path.realpath(path)


def check_replaced(out: Path, outputs: dict[Path, list[Path]]) -> None:
    """Refuse, before any work, to replace an output in `out` that its run record says was made from another file
    than this run makes it from: two inputs of one name (a.mp4 and a.avi, A/x.png and B/x.png) name their outputs
    alike, and the later run replaced the earlier one's without a word. An output no record tells the source of (a
    folder written before records were) is replaced, with a warning: most often it is the same command's again."""
    sources = {output: path for path, pair in outputs.items() for output in pair}
    made = _made_from(out, _read_record(out), list(sources))
    others = [output for output, source in made.items() if source and not _same_source(source, sources[output])]
    if others:
        more = f" (and {len(others) - 1} more)" if len(others) > 1 else ""
        raise ValueError(f"{others[0]}{more} is an output of {made[others[0]]} ({DEHAZE_RUN_RECORD} there says so), "
                         f"which this run would replace with that of {_real_path(sources[others[0]])}: give another "
                         "--out, or remove it")
    unknown = sorted(output.name for output, source in made.items() if source is None)
    if unknown:
        LOG.warning("replacing %d outputs in %s (%s%s): no %s says which input wrote them (a folder written before "
                    "run records named them, or a record that does not read)", len(unknown), out,
                    ", ".join(unknown[:4]), " ..." if len(unknown) > 4 else "", out / DEHAZE_RUN_RECORD)


def with_made_from(record: dict[str, Any], out: Path, outputs: dict[Path, list[Path]]) -> dict[str, Any]:
    """`record` with MADE_FROM: what this run's `outputs` are made from, beside what the outputs of earlier runs
    that `out` still holds were made from (by the record there), so that the next run is refused those too."""
    listed = [path for path in out.iterdir() if path.name.endswith(OUTPUT_ENDINGS)] if out.is_dir() else []
    earlier = {path.name: source for path, source in _made_from(out, _read_record(out), listed).items() if source}
    made = {output.name: _real_path(path) for path, pair in outputs.items() for output in pair}
    return {**record, MADE_FROM: {**earlier, **made}}


def run_record(args: argparse.Namespace, weights: dict[str, Any] | None) -> dict[str, Any]:
    """What the run of `args` with the loaded `weights` (the pipeline's record; None for dcp) dehazes (`input`: the
    input's absolute path) and writes its images with (DEHAZE_RUN_RECORD)."""
    physics = not _scattering_free(args.method, args.output)  # dcp's and a decoder's image depend on neither
    return {"method": args.method, "weights": weights, "output": args.output or "auto",
            "working_size": list(args.working_size) if args.working_size else None,
            "input_bits": args.input_bits, "half": bool(args.half),
            "radiance_floor": requested_radiance_floor(args) if physics else None,
            "max_detail_gain": requested_max_detail_gain(args) if physics else None,
            "input": str(Path(args.input).resolve())}


def _scattering_free(method: object, output: object) -> bool:
    """Whether a run of `method` and `output` writes an image made without a network's transmission: dcp's, or a
    decoder's."""
    return method == "dcp" or output == "decoder"


def _recorded_max_detail_gain(record: dict[str, Any]) -> float | None:
    """The detail gain of the run that wrote `record`: a record written before records held it comes from a run
    with the pipeline's default (MAX_DETAIL_GAIN), where its image is a network's physics inversion."""
    if "max_detail_gain" in record:
        return record["max_detail_gain"]
    return None if _scattering_free(record.get("method"), record.get("output")) else MAX_DETAIL_GAIN


def check_resumable(out: Path, record: dict[str, Any]) -> None:
    """ValueError, before any work, when the outputs in `out` were written by a run other than `record`'s (other
    weights, by their sha256, or another dcp/network method; another output mode, input bits, precision, radiance
    floor or detail gain; another input, whose frames a camera names as it names this one's): a resumed folder would
    hold images of two runs. A folder without a record (written before records were) is resumed with a warning, and
    one whose record does not name its input (written before records did) is taken for this input's."""
    path = out / DEHAZE_RUN_RECORD
    try:
        previous = json.loads(path.read_text())
    except FileNotFoundError:
        LOG.warning("--resume: %s does not say which run wrote its outputs (no %s): they are kept whatever wrote "
                    "them", out, DEHAZE_RUN_RECORD)
        return
    except (OSError, ValueError) as exc:
        raise ValueError(f"--resume: {path} does not read ({exc}); give another --out, or remove it to keep the "
                         "outputs whatever wrote them") from None
    if not isinstance(previous, dict):
        raise ValueError(f"--resume: {path} is not a run record; give another --out, or remove it")
    previous["max_detail_gain"] = _recorded_max_detail_gain(previous)
    differing = [key for key in COMPARED if previous.get(key) != record[key]]
    if _scattering_free(previous.get("method"), previous.get("output")) != \
            _scattering_free(record["method"], record["output"]):  # the method or output that differs says it all
        differing = [key for key in differing if key not in SCATTERING_SETTINGS]
    if _weights_of(previous) != _weights_of(record):
        differing.insert(0, "weights")
    if previous.get("input", record["input"]) != record["input"]:
        differing.insert(0, "input")
    if differing:
        raise ValueError(f"--resume goes on with the run that wrote {out}, but its {', '.join(differing)} "
                         f"{'differs' if len(differing) == 1 else 'differ'} "
                         f"(it ran {_described(previous)}; this is {_described(record)}): give the same, or "
                         "another --out")


def _weights_of(record: dict[str, Any]) -> object:
    """The weights of a run record: their sha256, or the method where it has none (dcp)."""
    weights = record.get("weights")
    return weights.get("sha256") if isinstance(weights, dict) else record.get("method")


def _described(record: dict[str, Any]) -> str:
    weights = record.get("weights")
    made = f" (weights {weights.get('path')}, sha256 {weights.get('sha256')})" if isinstance(weights, dict) else ""
    return (f"{record.get('input')} with {record.get('method')}{made}, "
            + ", ".join(f"{key} {record.get(key)}" for key in COMPARED))
