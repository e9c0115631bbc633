"""Judge training runs on the validation data only, as the lite model card's recipe rounds do.

For each RUN (a run folder with last.pt and val.csv, or a weights file):
- detection on the 20 DAWN validation photos against their human boxes (`dgdehaze eval --measure detection`), with
  the paired bootstrap of each --group against each --baseline when groups are given;
- the hazy-image depth network on kitti-seq's left camera (its LiDAR read for scoring only): AbsRel on the clear
  frames and under synthesized haze, and how far haze moves the depth (`change_vs_clear`);
- the SOTS-indoor validation rooms' PSNR / SSIM of the run's last validation (val.csv, row `mean`);
- the depth-guidance gates (sigmoid of the mix gate and of the stage-1 hybrid blocks' gates).
kitti-tiny, the DAWN judging photos and the held-out rooms are never read. One JSON file holds every row, keyed
as the round files in docs/results/recipe-variants/ are; the summary table is printed. A --json that cannot be
written and a RUN without weights are refused before anything runs.

    .venv/bin/python tools/validate_runs.py R0=runs/r2 R1=runs/r2_s1 V0=dgdehaze_core/weights/dgdehaze_lite.pt \\
        --baseline V=V0 --group R2=R0,R1 --bootstrap 2000 --json round.json
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dgdehaze_core.datasets.paths import shared_data_dir  # noqa: E402
from dgdehaze_core.io.tables import emit, write_json  # noqa: E402
from dgdehaze_core.io.atomic_files import check_json_output  # noqa: E402
from tools.tool_cli import DAWN_FOG_SPLIT, one_line_errors  # noqa: E402

GATES = {"gate_mix": "dehazer.mix_gate", "gate_block0": "dehazer.stage1.0.gate", "gate_block1": "dehazer.stage1.1.gate"}


def weights_of(run: Path) -> Path:
    """A run folder's last.pt, or the weights file itself."""
    weights = run / "last.pt" if run.is_dir() else run
    if not weights.is_file():
        raise FileNotFoundError(f"no weights at {weights}: give a run folder with last.pt or a .pt file")
    return weights


def rooms(run: Path) -> dict[str, float]:
    """The last `mean` row of a run folder's val.csv (the SOTS-indoor validation rooms); {} without one."""
    table = run / "val.csv"
    if not table.is_file():
        return {}
    rows = [row for row in csv.DictReader(table.open()) if row["set"] == "mean"]
    return {"iteration": int(rows[-1]["iteration"]), "psnr": float(rows[-1]["psnr"]),
            "ssim": float(rows[-1]["ssim"])} if rows else {}


def gates(weights: Path) -> dict[str, float]:
    """Sigmoid of each depth-guidance gate in a checkpoint (NaN for one it lacks)."""
    import torch  # imported here: main refuses bad input before torch takes seconds to import

    from dgdehaze_core.io.checkpoints import read_checkpoint

    state = read_checkpoint(weights, "dgdehaze checkpoint")["state_dict"]
    return {name: float(torch.sigmoid(state[key]).item()) if key in state else math.nan
            for name, key in GATES.items()}


def evaluate(arguments: list[str]) -> dict[str, dict[str, object]]:
    """`dgdehaze eval ARGUMENTS --json` run in this process, its rows read back."""
    from dgdehaze_core.cli import main as dgdehaze  # imports torch: here, after main's checks

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rows.json"
        if dgdehaze(["eval", *arguments, "--json", str(out)]) != 0:
            raise RuntimeError(f"dgdehaze eval {' '.join(arguments)} failed")
        return json.loads(out.read_text())


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Evaluate the runs, print the summary and write every row to --json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN", help="a run folder or a weights file, named")
    parser.add_argument("--baseline", action="append", default=[], metavar="[NAME=]RUN[,RUN]")
    parser.add_argument("--group", action="append", default=[], metavar="NAME=RUN[,RUN]")
    parser.add_argument("--bootstrap", type=int, default=2000, help="redraws of the photos (with --group)")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, _, path = item.partition("=")
        if not name or not path or name in runs:
            parser.error(f"runs are NAME=RUN with distinct names, got {item!r}")
        runs[name] = Path(path)
    check_json_output(args.json, inputs=[*runs.values(), *(run / "val.csv" for run in runs.values())])
    methods = ",".join(f"{name}={weights_of(run)}" for name, run in runs.items())
    data = shared_data_dir()
    if data is None:
        parser.error("../shared/data is absent (or set DGDEHAZE_DATA)")
    comparisons = [option for group in args.group for option in ("--group", group)]
    comparisons += [option for baseline in args.baseline for option in ("--baseline", baseline)]
    if comparisons:
        comparisons = ["--bootstrap", str(args.bootstrap), *comparisons]
    rows: dict[str, dict[str, object]] = {}
    detection = evaluate(["--dataset", str(data / "detection" / "dawn-fog"), "--measure", "detection",
                          "--include", f"@{DAWN_FOG_SPLIT}:validation", "--method", methods, *comparisons])
    rows.update({f"dawn-validation/detection/{key}": row for key, row in detection.items()})
    depth = evaluate(["--dataset", str(data / "depth" / "kitti-seq"), "--measure", "depth",
                      "--include", "*/image_02/*", "--method", methods])
    rows.update({f"kitti-seq/{key}": row for key, row in depth.items()})
    summary: dict[str, dict[str, object]] = {}
    for name, run in runs.items():
        rows[f"sots-indoor-validation/{name}"] = rooms(run)
        rows[f"gates/{name}"] = gates(weights_of(run))
        summary[name] = {"map50": detection[name]["map50"], "f1": detection[name]["f1"],
                         "psnr": rows[f"sots-indoor-validation/{name}"].get("psnr", math.nan),
                         **{f"absrel_{condition}": depth[f"{name}@{condition}"]["absrel"]
                            for condition in ("clear", "t0.25")},
                         "change_t0.25": depth[f"{name}@t0.25"]["change_vs_clear"], **rows[f"gates/{name}"]}
    emit(summary, "Validation data only: DAWN validation detection, SOTS validation rooms, kitti-seq depth, gates")
    write_json(args.json, rows)


if __name__ == "__main__":
    sys.exit(main())
