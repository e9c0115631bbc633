"""The generated blocks of docs/RESULTS.md from the JSON that `dgdehaze eval` writes, so that every figure in them
comes from a file (the doc names the few tables it copies by hand, and tests/test_results_doc.py checks those).

`record NAME -- EVAL ARGS` runs `dgdehaze eval EVAL ARGS --json docs/results/NAME.json` and writes
`NAME.meta.json` beside it: the command, the code's commit, when it ran, how long it took, the machine's load, and
the weights each method used (file, sha256, training iterations and commit). `tools/make_results.sh` records every
evaluation this way. `render` then rewrites the generated blocks of docs/RESULTS.md and keeps all text outside them:

    <!-- results NAME MEASURE [SET] -->      a table of MEASURE's rows in NAME.json (SET: the rows of that set),
    ...                                      then the command, data, commit and weights that produced it
    <!-- /results -->
    <!-- targets -->                         the project's targets, each computed from the JSON: met or not met
    ...
    <!-- /targets -->
    <!-- runtime -->                         how long the recorded evaluations took, and the machine's load
    <!-- /runtime -->

`render --check` exits 1 when a generated block differs from what the JSON gives (a typed or stale figure).
Usage: python -m dgdehaze_core.evaluation.results_doc {record NAME -- ARGS | render [--check]}
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.io.atomic_files import atomic_write_text

LOG = logging.getLogger(__name__)

RESULTS_DIR = REPO_DIR / "docs" / "results"
DOC_PATH = REPO_DIR / "docs" / "RESULTS.md"
BLOCK = re.compile(r"<!-- results (?P<name>\S+) (?P<measure>\S+)(?: (?P<set>\S+))? -->\n.*?<!-- /results -->",
                   re.DOTALL)
TARGETS_BLOCK = re.compile(r"<!-- targets -->\n.*?<!-- /targets -->", re.DOTALL)
RUNTIME_BLOCK = re.compile(r"<!-- runtime -->\n.*?<!-- /runtime -->", re.DOTALL)
NOT_MEASURED = "_Not measured yet: run `make results`._"

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Column:
    """A table column: the JSON key, its heading, the number of decimals (None: as is), and whether it is a share
    (a fraction of redraws): one that rounds to 0 or 1 without being it shows as "<0.001" or ">0.999"."""

    key: str
    heading: str
    decimals: int | None = 3
    share: bool = False


COLUMNS: dict[str, tuple[Column, ...]] = {
    "quality": (Column("psnr", "PSNR (dB) ↑", 2), Column("ssim", "SSIM ↑"), Column("ciede2000", "CIEDE2000 ↓", 2),
                Column("pairs", "pairs", None)),
    "scattering": (Column("airlight_error", "airlight error ↓"), Column("t_mae", "t error ↓"),
                   Column("t_bias", "t bias (> 0: haze underestimated)"), Column("fit_rmse", "fit residual"),
                   Column("pairs", "pairs", None)),
    "detection": (Column("precision", "precision"), Column("recall", "recall"), Column("f1", "F1 ↑"),
                  Column("f1_pooled", "F1 pooled"), Column("map50", "mAP50 ↑"), Column("objects", "objects", None),
                  Column("detections", "detections", None), Column("images", "images", None)),
    "depth": (Column("absrel", "AbsRel ↓"), Column("rmse_log", "RMSE(log) ↓"), Column("delta1", "δ<1.25 ↑"),
              Column("change_vs_clear", "change vs clear ↓"), Column("mean_beta", "mean β (1/m)", 4),
              Column("images", "images", None)),
    "haze": (Column("fade", "FADE ↓"), Column("dark_channel", "dark channel ↓"), Column("noise_sigma", "noise σ (8-bit)", 2),
             Column("noise_ratio", "noise ÷ input's"), Column("images", "images", None)),
    "detection-classes": (),
    "detection-bootstrap": (Column("map50_diff", "mAP50 difference"), Column("map50_diff_lo", "95 % from"),
                            Column("map50_diff_hi", "to"), Column("map50_p_better", "ahead in", share=True),
                            Column("f1_diff", "F1 difference"), Column("f1_diff_lo", "95 % from"),
                            Column("f1_diff_hi", "to"), Column("f1_p_better", "ahead in", share=True),
                            Column("samples", "redraws", None)),
    "visibility": (Column("visibility_rel_error", "visibility error ↓"),
                   Column("visibility_median", "visibility estimated (m)", 1), Column("absrel_metric", "metric AbsRel ↓"),
                   Column("coverage", "coverage ↑"), Column("no_fog_share", "frames read as no fog"),
                   Column("images", "images", None)),
}


def _finite(value: Any) -> float | None:
    """`value` where it is a finite number, else None: eval writes a figure it could not compute (NaN) as null and
    an infinite one as the string "inf", and neither is a measurement a table or a target can use."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _non_finite(value: Any) -> bool:
    """Whether `value` is NaN or infinite, as a number or as the string eval writes for it ("inf", "-inf")."""
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _cell(value: Any, decimals: int | None, share: bool = False) -> str:
    """A table cell: "n/a" where the figure is missing or null (NaN: nothing to measure), "∞" or "-∞" where it is
    infinite (a measurement: a visibility error is infinite when most frames have no estimate); a `share` never
    rounds to a certainty (0.9995 of the redraws is ">0.999", not "1.000")."""
    if value is None or _non_finite(value):
        number = math.nan if value is None else float(value)
        return "n/a" if math.isnan(number) else ("∞" if number > 0 else "-∞")
    if decimals is None or not isinstance(value, (int, float)):
        return str(value)
    text = f"{value:.{decimals}f}"
    if share and 0 < value < 1 and float(text) in (0.0, 1.0):
        return f">{1 - 10 ** -decimals:.{decimals}f}" if value > 0.5 else f"<{10 ** -decimals:.{decimals}f}"
    return text


def select_rows(rows: Mapping[str, Row], measure: str, set_name: str | None) -> dict[str, Row]:
    """The rows of one measure (and set) of an eval JSON, keyed by method (`METHOD@CONDITION` for depth).

    eval prefixes keys with `MEASURE/` when it ran several measures and `SET/` when it reported several sets; the
    first prefix, most specific first, that leaves plain method names wins. `detection-classes` takes the per-class
    rows (`METHOD[CLASS]`), `detection-bootstrap` the comparisons (`GROUP vs BASELINE`), `detection` neither.
    """
    per_class = measure == "detection-classes"
    compared = measure == "detection-bootstrap"
    keyed = "detection" if per_class or compared else measure
    candidates = [f"{keyed}/{set_name}/", f"{set_name}/"] if set_name else []
    candidates += [f"{keyed}/", ""]
    for prefix in candidates:
        chosen = {key[len(prefix):]: row for key, row in rows.items()
                  if key.startswith(prefix) and "/" not in key[len(prefix):]
                  and ("[" in key[len(prefix):]) == per_class and (" vs " in key[len(prefix):]) == compared}
        if chosen:
            return chosen
    shown = ", ".join(list(rows)[:12]) + (f" and {len(rows) - 12} more" if len(rows) > 12 else "")
    raise ValueError(f"no {measure} rows{f' of set {set_name}' if set_name else ''} among {shown}")


def class_table_markdown(rows: Mapping[str, Row]) -> str:
    """Per-class detection rows (`METHOD[CLASS]`) as one table: a row per class, AP50 then F1 per method.

    Classes run from the most objects to the fewest, classes of equal count by name, so the table is the same on
    every run (a set's order alone would follow the interpreter's hash seed)."""
    methods = list(dict.fromkeys(key.split("[", 1)[0] for key in rows))
    classes = sorted({key.split("[", 1)[1].rstrip("]") for key in rows},
                     key=lambda name: (-max(row["objects"] for key, row in rows.items()
                                            if key.endswith(f"[{name}]")), name))
    header = ["class", "objects", *(f"{m} AP50" for m in methods), *(f"{m} F1" for m in methods)]
    body = []
    for name in classes:
        cells = [rows.get(f"{m}[{name}]") for m in methods]
        objects = next(c["objects"] for c in cells if c is not None)
        body.append([name, str(objects), *(_cell(c and c["map50"], 3) for c in cells),
                     *(_cell(c and c["f1"], 3) for c in cells)])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in body])


def table_markdown(measure: str, rows: Mapping[str, Row]) -> str:
    """A markdown table of one measure's rows."""
    if measure == "detection-classes":
        return class_table_markdown(rows)
    columns = COLUMNS[measure]
    if measure == "depth":
        ordered = sorted(rows.items(), key=lambda item: _depth_order(item[0]))
        header = ["condition", "method", *(c.heading for c in columns)]
        body = [[*(_depth_parts(key)), *(_cell(row.get(c.key), c.decimals, c.share) for c in columns)]
                for key, row in ordered]
    else:
        header = ["comparison" if measure == "detection-bootstrap" else "method", *(c.heading for c in columns)]
        body = [[key, *(_cell(row.get(c.key), c.decimals, c.share) for c in columns)] for key, row in rows.items()]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


DEPTH_CONDITIONS = {"clear": "clear image", "t0.70": "light haze (mean t 0.70)", "t0.45": "medium haze (mean t 0.45)",
                    "t0.25": "dense haze (mean t 0.25)"}


def _depth_parts(key: str) -> tuple[str, str]:
    method, _, condition = key.rpartition("@")
    if not method:
        return "any", f"{key} (no information)"
    return DEPTH_CONDITIONS.get(condition, condition), method


def _depth_order(key: str) -> int:
    method, _, condition = key.rpartition("@")
    conditions = list(DEPTH_CONDITIONS)
    return conditions.index(condition) + 1 if method and condition in conditions else 0


def provenance(meta: Mapping[str, Any], name: str) -> str:
    """The list under a table: the command, data, commit, time, machine and weights that produced it."""
    lines = [f"- Command (step `{name}` of `tools/make_results.sh`): `{meta['command']}`",
             f"- Data: {', '.join(meta['data'])}",
             f"- Code at commit `{meta['commit']}`; run {meta['started']}, {meta['seconds']:.0f} s on "
             f"{meta['machine']}, load average {meta['load_before']:.1f} at the start"]
    if "detector" in meta:
        lines.append(f"- Detector: {meta['detector']}")
    for method, weights in meta.get("weights", {}).items():
        if "onnx_config" in weights:
            made = f"an ONNX export of a `{weights['onnx_config']}` network" + (
                f", {weights['onnx_quantization']}" if weights.get("onnx_quantization") else ", fp32")
        else:
            made = (f"{weights.get('iterations', '?')} training iterations of recipe {weights.get('recipe', '?')} "
                    f"at commit `{weights.get('commit', '?')}`")
        lines.append(f"- Weights of `{method}`: `{weights['path']}` (sha256 {weights['sha256']}, {made})")
    return "\n".join(lines)


def load_result(results_dir: Path, name: str) -> tuple[dict[str, Row], dict[str, Any]] | None:
    """(rows, meta) of one recorded evaluation, None when it has not been recorded."""
    rows_path, meta_path = results_dir / f"{name}.json", results_dir / f"{name}.meta.json"
    if not rows_path.is_file() or not meta_path.is_file():
        return None
    return json.loads(rows_path.read_text()), json.loads(meta_path.read_text())


def render_block(results_dir: Path, name: str, measure: str, set_name: str | None, first: bool = True) -> str:
    """One block's table; its provenance in full where `first`, else a pointer to the first table of the run.

    NOT_MEASURED where NAME has not been recorded, or its JSON has no rows for this block (a step recorded without
    some of its measures or comparisons): that block alone, with a warning that names it, not the whole render."""
    if measure not in COLUMNS:
        raise ValueError(f"results block {name}: unknown measure {measure!r}; known: {', '.join(COLUMNS)}")
    loaded = load_result(results_dir, name)
    if loaded is None:
        return NOT_MEASURED
    rows, meta = loaded
    try:
        chosen = select_rows(rows, measure, set_name)
    except ValueError as exc:
        LOG.warning("results block '%s %s%s' rendered as not measured: %s", name, measure,
                    f" {set_name}" if set_name else "", exc)
        return NOT_MEASURED
    reference = {str(row["reference"]) for row in chosen.values() if "reference" in row}
    caption = f"Reference objects: {', '.join(sorted(reference))}.\n\n" if reference else ""
    source = provenance(meta, name) if first else (f"- From the same run as the first table of step `{name}` "
                                                    f"(`docs/results/{name}.json`), commit `{meta['commit']}`")
    return f"{table_markdown(measure, chosen)}\n\n{caption}{source}"


# --- targets -------------------------------------------------------------------------------------------------------

MODEL, ABLATION, DCP, HAZY, JPEG = "lite", "lite-no-depth", "dcp", "hazy", "clear-jpeg90"
QUALITY_SETS = (("sots-indoor", "sots-indoor:held-out", "SOTS-indoor, held-out scenes 1430-1448"),
                ("sots-outdoor", None, "SOTS-outdoor"), ("o-haze", None, "O-HAZE"))
"""(result name, set, label) of the real paired sets the quality target applies to."""
PSNR_MARGIN_DB = 1.0
F1_GOAL = 0.89
FP32, INT8 = "lite-fp32", "lite-int8"
"""The int8 steps' methods: lite's fp32 ONNX export and its QDQ int8 model, both on ONNX Runtime."""
INT8_PSNR_LOSS_DB, INT8_MAP50_LOSS = 0.3, 0.01
"""#23: the most the int8 model may lose against fp32 on the paired sets' PSNR and on real fog's mAP50."""
TIE = 5e-4
"""Differences smaller than this (below the tables' last decimal) count as no difference."""


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _not_measured(goal: str, label: str) -> list[str]:
    return [goal, label, "not measured", "—"]


def _figures(rows: Mapping[str, Row], methods: Iterable[str], column: str) -> dict[str, float] | None:
    """`column` of each of `methods`; None (not measured) unless every one has a row with a finite number there."""
    found = {method: _finite(rows[method].get(column)) if method in rows else None for method in methods}
    return None if any(value is None for value in found.values()) else found


STEP_SETS: dict[str, tuple[str, ...]] = {
    "sots-indoor": ("paired/sots-indoor",), "sots-outdoor": ("paired/sots-outdoor",), "o-haze": ("paired/o-haze",),
    "urhi": ("hazy-real/urhi",), "dawn-fog": ("detection/dawn-fog", "--include @data/splits/dawn-fog.yaml:judge")}
"""What the steps the targets read must have been recorded on (their name without `int8-` and `-workWxH`): the set
under the shared data folder, and for DAWN its judging photos."""


def unjudgeable(name: str, meta: Mapping[str, Any]) -> str:
    """Why step `name`'s figures cannot judge a target ("" when they can): recorded with --limit (a part of the
    set), or on another set than the step's name stands for (STEP_SETS)."""
    data = [str(entry) for entry in meta.get("data", [])]
    limited = [entry for entry in data if entry.startswith("--limit ") and entry != "--limit 0"]
    if limited:
        return f"recorded with {limited[0]}, on part of the set"
    wanted = STEP_SETS.get(re.sub(r"-work\d+x\d+$", "", name.removeprefix("int8-")), ())
    datasets = [entry for entry in data if not entry.startswith("--")]
    if wanted and not (len(datasets) == 1 and datasets[0].endswith(wanted[0])
                       and all(option in data for option in wanted[1:])):
        return f"recorded on {', '.join(data)}, not {' '.join(wanted)}"
    return ""


def _rows(results_dir: Path, name: str, measure: str, set_name: str | None) -> dict[str, Row] | None:
    """The rows a target reads; None when not recorded or not `unjudgeable`-free (logged)."""
    loaded = load_result(results_dir, name)
    if loaded is None:
        return None
    problem = unjudgeable(name, loaded[1])
    if problem:
        LOG.warning("targets: step %s judges nothing: %s", name, problem)
        return None
    try:
        return select_rows(loaded[0], measure, set_name)
    except ValueError:
        return None


def _quality_targets(results_dir: Path) -> list[list[str]]:
    lines = []
    for name, set_name, label in QUALITY_SETS:
        rows = _rows(results_dir, name, "quality", set_name)
        if rows is None or MODEL not in rows or DCP not in rows:
            lines.append(_not_measured(f"lite ≥ DCP + {PSNR_MARGIN_DB:g} dB PSNR, SSIM not below DCP", label))
            continue
        psnr, ssim = _figures(rows, (MODEL, DCP), "psnr"), _figures(rows, (MODEL, DCP), "ssim")
        goal = f"lite ≥ DCP + {PSNR_MARGIN_DB:g} dB PSNR (#4)"
        if psnr is None:
            lines.append(_not_measured(goal, label))
        else:
            gain = psnr[MODEL] - psnr[DCP]
            lines.append([goal, label, f"lite {psnr[MODEL]:.2f} dB, DCP {psnr[DCP]:.2f} dB ({gain:+.2f} dB)",
                          _verdict(gain >= PSNR_MARGIN_DB)])
        goal = "lite SSIM not below DCP (#4)"
        if ssim is None:
            lines.append(_not_measured(goal, label))
        else:
            lines.append([goal, label, f"lite {ssim[MODEL]:.3f}, DCP {ssim[DCP]:.3f} ({ssim[MODEL] - ssim[DCP]:+.3f})",
                          _verdict(ssim[MODEL] >= ssim[DCP])])
    return lines


def _detection_targets(results_dir: Path) -> list[list[str]]:
    lines = []
    for result, set_name, label in (
            ("sots-indoor", "sots-indoor:held-out", "SOTS-indoor, held-out scenes 1430-1448"),
            ("sots-indoor", "sots-indoor", "SOTS-indoor, all 25 scenes"),
            ("sots-indoor-work320x240", "sots-indoor:held-out", "SOTS-indoor held-out, networks at 320x240"),
            ("sots-indoor-work320x240", "sots-indoor", "SOTS-indoor all scenes, networks at 320x240")):
        rows = _rows(results_dir, result, "detection", set_name)
        f1 = None if rows is None else _figures(rows, (HAZY, DCP, MODEL), "f1")
        if rows is None or f1 is None:
            lines.append(_not_measured(f"detection-recovery F1: lite > DCP and ≥ {F1_GOAL} (#9)", label))
            continue
        jpeg = _figures(rows, (JPEG,), "f1")
        noise = f" (the clear image as a JPEG: {jpeg[JPEG]:.3f})" if jpeg is not None else ""
        lines.append([f"detection-recovery F1: lite > DCP and ≥ {F1_GOAL} (#9)", label,
                      f"hazy {f1[HAZY]:.3f}, DCP {f1[DCP]:.3f}, lite {f1[MODEL]:.3f}{noise}",
                      _verdict(f1[MODEL] > f1[DCP] and f1[MODEL] >= F1_GOAL)])
    return lines


ABLATION_CHECKS: tuple[tuple[str, str, str | None, str, str, bool, str], ...] = (
    ("sots-indoor", "quality", "sots-indoor:held-out", "psnr", "PSNR (dB)", True, "SOTS-indoor held-out"),
    ("sots-outdoor", "quality", None, "psnr", "PSNR (dB)", True, "SOTS-outdoor"),
    ("o-haze", "quality", None, "psnr", "PSNR (dB)", True, "O-HAZE"),
    ("sots-indoor", "detection", "sots-indoor:held-out", "f1", "detection F1", True, "SOTS-indoor held-out"),
    ("urhi", "detection", None, "f1", "F1 against RTTS human boxes", True, "URHI/RTTS photos"),
    ("dawn-fog", "detection", None, "map50", "mAP50 against human boxes", True, "DAWN fog, judging photos"),
    ("dawn-fog", "detection", None, "f1", "F1 against human boxes", True, "DAWN fog, judging photos"),
    ("urhi", "haze", None, "fade", "FADE", False, "URHI photos"),
    ("o-haze-photos", "haze", None, "fade", "FADE", False, "O-HAZE photos (no ground truth)"),
    ("kitti-tiny", "depth", None, "absrel", "depth AbsRel, dense haze", False, "KITTI"),
    ("middlebury2003", "depth", None, "absrel", "depth AbsRel, dense haze", False, "Middlebury 2003"),
)
"""(result, measure, set, column, what, higher is better, label) compared between lite and lite-no-depth."""


def _ablation_targets(results_dir: Path) -> list[list[str]]:
    lines = []
    for name, measure, set_name, column, what, higher, label in ABLATION_CHECKS:
        rows = _rows(results_dir, name, measure, set_name)
        model, ablation = (MODEL, ABLATION) if measure != "depth" else (f"{MODEL}@t0.25", f"{ABLATION}@t0.25")
        figures = None if rows is None else _figures(rows, (model, ablation), column)
        if figures is None:
            lines.append(_not_measured(f"depth guidance helps: {what}", label))
            continue
        with_depth, without = figures[model], figures[ablation]
        interval, verdict = _judged((with_depth - without) * (1 if higher else -1),
                                    _comparison(results_dir, name, set_name, f"{MODEL} vs {ABLATION}", column),
                                    "helps", "**does not help**", "**no difference**")
        figures = f"lite {with_depth:.3f}, lite-no-depth {without:.3f} ({with_depth - without:+.3f}){interval}"
        lines.append([f"depth guidance helps: {what}", label, figures, verdict])
    return lines


def _judged(gain: float, interval: tuple[float, float] | None, better: str, worse: str,
            even: str) -> tuple[str, str]:
    """(the text of the bootstrap interval, "" without one; the verdict) of a difference `gain` (positive: the
    side judged is better): from the interval where recorded (`better` above zero, `worse` below, else not
    settled), else from the difference itself (`even` within TIE)."""
    if interval is None:
        return "", better if gain > TIE else worse if gain < -TIE else even
    low, high = interval
    return (f", 95 % interval {low:+.3f} to {high:+.3f}",
            better if low > 0 else worse if high < 0 else "**not settled**")


CONTRAST_BASELINE = f"{HAZY}+clahe"
"""The raw frame with its local contrast equalised, no dehazing: what a dehazer's detection gain must exceed."""


def _contrast_baseline_checks(results_dir: Path) -> list[list[str]]:
    """Does lite give the detector more than a local contrast stretch of the raw frame, on the DAWN judging photos
    (with the bootstrap interval of `hazy+clahe vs lite` where recorded, turned round)?"""
    label = "DAWN fog, judging photos"
    rows = _rows(results_dir, "dawn-fog", "detection", None)
    lines = []
    for column, what in (("map50", "mAP50"), ("f1", "F1")):
        check = f"dehazing beats a contrast stretch: {what}"
        figures = None if rows is None else _figures(rows, (MODEL, CONTRAST_BASELINE), column)
        if figures is None:
            lines.append(_not_measured(check, label))
            continue
        model, stretch = figures[MODEL], figures[CONTRAST_BASELINE]
        recorded = _comparison(results_dir, "dawn-fog", None, f"{CONTRAST_BASELINE} vs {MODEL}", column)
        interval, verdict = _judged(model - stretch, None if recorded is None else (-recorded[1], -recorded[0]),
                                    "ahead", "**behind**", "**level**")
        figures = f"lite {model:.3f}, {CONTRAST_BASELINE} {stretch:.3f} ({model - stretch:+.3f}){interval}"
        lines.append([check, label, figures, verdict])
    return lines


def _comparison(results_dir: Path, name: str, set_name: str | None, key: str,
                column: str) -> tuple[float, float] | None:
    """The bootstrap interval (low, high) of `column`'s difference in comparison row `key`, if recorded (finite)."""
    rows = _rows(results_dir, name, "detection-bootstrap", set_name) or {}
    low, high = _figures(rows, (key,), f"{column}_diff_lo"), _figures(rows, (key,), f"{column}_diff_hi")
    if low is None or high is None:
        return None
    return low[key], high[key]


ABLATION_FREE_FIELDS = {"name", "depth_guidance", "source_file"}
"""Recipe fields in which the ablation may differ from `lite`."""


def ablation_recipe_note(results_dir: Path) -> str:
    """Whether every recorded lite-no-depth was trained like the lite it is compared with, but for depth guidance."""
    differences: set[str] = set()
    compared = 0
    for meta_path in sorted(results_dir.glob("*.meta.json")):
        weights = json.loads(meta_path.read_text()).get("weights", {})
        model, ablation = weights.get(MODEL, {}), weights.get(ABLATION, {})
        if "recipe_fields" not in model or "recipe_fields" not in ablation:
            continue
        compared += 1
        fields = set(model["recipe_fields"]) | set(ablation["recipe_fields"])
        differences |= {key for key in fields - ABLATION_FREE_FIELDS
                        if model["recipe_fields"].get(key) != ablation["recipe_fields"].get(key)}
        if model.get("iterations") != ablation.get("iterations"):
            differences.add("iterations trained")
    if not compared:
        return "The recipes of lite and lite-no-depth were not recorded, so the ablation's fairness is unchecked."
    if differences:
        return (f"**The ablation is not like for like**: lite and lite-no-depth differ in "
                f"{', '.join(sorted(differences))}, so their difference is not depth guidance alone.")
    return ("lite and lite-no-depth were trained with the same recipe and iterations but for depth guidance "
            "(checked from the recipes stored in both weight files).")


MAP50_GOAL = 0.50
GAP_CLOSED_GOAL = 0.75
FUSED = f"{MODEL}+hazy"


def _dawn_label(rows: Mapping[str, Row] | None, method: str) -> str:
    """The DAWN targets' set label, with the number of photos `method`'s row counts (fewer under --limit)."""
    images = None if rows is None or method not in rows else rows[method].get("images")
    counted = isinstance(images, int) and not isinstance(images, bool)
    return f"DAWN fog, {images} judging photos" if counted else "DAWN fog, judging photos"


def _real_fog_targets(results_dir: Path) -> list[list[str]]:
    """#17: real fog detection on the DAWN judging photos, and the SOTS-indoor gap closed towards clear-jpeg90."""
    rows = _rows(results_dir, "dawn-fog", "detection", None)
    label = _dawn_label(rows, MODEL)
    m = None if rows is None else _figures(rows, (HAZY, DCP, MODEL), "map50")
    if rows is None or m is None:
        lines = [_not_measured(f"lite mAP50 ≥ {MAP50_GOAL:.2f} and > DCP (#17)", label)]
    else:
        lines = [[f"lite mAP50 ≥ {MAP50_GOAL:.2f} and > DCP (#17)", label,
                  f"hazy {m[HAZY]:.3f}, DCP {m[DCP]:.3f}, lite {m[MODEL]:.3f}",
                  _verdict(m[MODEL] >= MAP50_GOAL and m[MODEL] > m[DCP])]]
        fused = _figures(rows, (FUSED,), "map50")
        if FUSED in rows and fused is None:
            lines.append(_not_measured("fused detection above both its parts (#17)", label))
        elif fused is not None:
            lines.append(["fused detection above both its parts (#17)", label,
                          f"hazy {m[HAZY]:.3f}, lite {m[MODEL]:.3f}, lite+hazy {fused[FUSED]:.3f}",
                          _verdict(fused[FUSED] > max(m[HAZY], m[MODEL]))])
    held_out = _rows(results_dir, "sots-indoor", "detection", "sots-indoor:held-out")
    goal = f"SOTS-indoor detection F1 > DCP, ≥ {GAP_CLOSED_GOAL:.0%} of the gap to clear-jpeg90 closed (#17)"
    f1 = None if held_out is None else _figures(held_out, (HAZY, DCP, MODEL, JPEG), "f1")
    if f1 is None:
        return lines + [_not_measured(goal, "SOTS-indoor held-out")]
    if f1[JPEG] > f1[HAZY]:
        closed = (f1[MODEL] - f1[HAZY]) / (f1[JPEG] - f1[HAZY])
        gap = f"{closed:.0%} closed"
    else:
        closed, gap = float("nan"), "the JPEG copy scores below the hazy input, no gap to close"
    return lines + [[goal, "SOTS-indoor held-out", f"hazy {f1[HAZY]:.3f}, DCP {f1[DCP]:.3f}, lite {f1[MODEL]:.3f}, "
                     f"clear-jpeg90 {f1[JPEG]:.3f}: {gap}",
                     _verdict(f1[MODEL] > f1[DCP] and closed >= GAP_CLOSED_GOAL)]]


def _int8_targets(results_dir: Path) -> list[list[str]]:
    """#23: the int8 model's quality against its fp32 export (steps int8-*)."""
    lines = []
    for name, set_name, label in [(f"int8-{name}", set_name, label) for name, set_name, label in QUALITY_SETS]:
        goal = f"int8 PSNR within {INT8_PSNR_LOSS_DB:g} dB of fp32 (#23)"
        rows = _rows(results_dir, name, "quality", set_name)
        psnr = None if rows is None else _figures(rows, (FP32, INT8), "psnr")
        if psnr is None:
            lines.append(_not_measured(goal, label))
            continue
        loss = psnr[FP32] - psnr[INT8]
        lines.append([goal, label, f"fp32 {psnr[FP32]:.2f} dB, int8 {psnr[INT8]:.2f} dB ({-loss:+.2f} dB)",
                      _verdict(loss <= INT8_PSNR_LOSS_DB)])
    rows = _rows(results_dir, "int8-dawn-fog", "detection", None)
    goal, label = f"int8 mAP50 within {INT8_MAP50_LOSS:g} of fp32 (#23)", _dawn_label(rows, INT8)
    map50 = None if rows is None else _figures(rows, (FP32, INT8), "map50")
    if map50 is None:
        return lines + [_not_measured(goal, label)]
    loss = map50[FP32] - map50[INT8]
    return lines + [[goal, label, f"fp32 {map50[FP32]:.3f}, int8 {map50[INT8]:.3f} ({-loss:+.3f})",
                     _verdict(loss <= INT8_MAP50_LOSS)]]


def targets_markdown(results_dir: Path) -> str:
    lines = [*_quality_targets(results_dir), *_detection_targets(results_dir), *_real_fog_targets(results_dir),
             *_int8_targets(results_dir), *_contrast_baseline_checks(results_dir), *_ablation_targets(results_dir)]
    header = "| target | set | measured | verdict |\n|---|---|---|---|"
    table = header + "\n" + "\n".join("| " + " | ".join(line) + " |" for line in lines)
    return f"{table}\n\n{ablation_recipe_note(results_dir)}"


def runtime_markdown(results_dir: Path) -> str:
    """How long the recorded evaluations took together, and on what. Each step is recorded on its own (`ONLY=`
    re-records some), so this gives the range of their start times and every commit they ran at (in the order of
    their starts), not one run's."""
    metas = sorted((json.loads(path.read_text()) for path in sorted(results_dir.glob("*.meta.json"))),
                   key=lambda meta: meta["started"])
    if not metas:
        return NOT_MEASURED
    loads = [meta["load_before"] for meta in metas]
    first, last = metas[0]["started"], metas[-1]["started"]
    commits = list(dict.fromkeys(meta["commit"] for meta in metas))
    machines = list(dict.fromkeys(meta["machine"] for meta in metas))
    steps = f"{len(metas)} step{'s' if len(metas) > 1 else ''} of `tools/make_results.sh`, each recorded on its own"
    when = f"started {first}" if first == last else f"started between {first} and {last}"
    code = (f"at commit `{commits[0]}`" if len(commits) == 1 else
            f"at {len(commits)} commits ({', '.join(f'`{commit}`' for commit in commits)})")
    return (f"The recorded evaluations: {steps}, {when} {code}; {sum(meta['seconds'] for meta in metas) / 60:.1f} "
            f"minutes of evaluation in all on {' and '.join(machines)}, load average {min(loads):.1f}-{max(loads):.1f} "
            "at the starts of the steps (the evaluation alone keeps it near 2; more means other work shared the "
            "cores). Each table names the commit and time of its own step.")


def render(doc_text: str, results_dir: Path = RESULTS_DIR) -> str:
    """`doc_text` with every generated block rewritten from the JSON in `results_dir`."""
    described: set[str] = set()

    def block(match: re.Match[str]) -> str:
        name, measure, set_name = match["name"], match["measure"], match["set"]
        opening = f"<!-- results {name} {measure}{f' {set_name}' if set_name else ''} -->"
        body = render_block(results_dir, name, measure, set_name, first=name not in described)
        if body != NOT_MEASURED:  # the run's provenance is written out under its first table, not a missing one
            described.add(name)
        return f"{opening}\n{body}\n<!-- /results -->"

    text = BLOCK.sub(block, doc_text)
    text = TARGETS_BLOCK.sub(lambda _: f"<!-- targets -->\n{targets_markdown(results_dir)}\n<!-- /targets -->", text)
    return RUNTIME_BLOCK.sub(lambda _: f"<!-- runtime -->\n{runtime_markdown(results_dir)}\n<!-- /runtime -->", text)


# --- recording -----------------------------------------------------------------------------------------------------

def parsed_eval_args(eval_args: list[str]) -> argparse.Namespace:
    """`eval_args` as `dgdehaze eval` reads them (any spelling it takes: `--opt value`, `--opt=value`, repeats);
    ValueError for arguments it refuses."""
    from dgdehaze_core.cli import build_parser

    try:
        return build_parser().parse_args(["eval", *eval_args])
    except SystemExit:  # argparse printed why
        raise ValueError(f"dgdehaze eval refuses the arguments {shlex.join(eval_args)}") from None


def detector_of(args: argparse.Namespace) -> str | None:
    """Which detector an eval with the parsed `args` runs, and how (`detection.precision`); None when it detects
    nothing."""
    from dgdehaze_core.commands.evaluate import parse_measures
    from dgdehaze_core.datasets.paths import DEFAULT_DETECTOR
    from dgdehaze_core.detection.precision import runs_float_rebuild

    if "detection" not in parse_measures(args.measure):
        return None
    weights = Path(args.detector or DEFAULT_DETECTOR)
    how = "its float rebuild" if runs_float_rebuild(weights, args.detector_precision, "cpu") else "as it is"
    return f"`{_shown(weights)}`, {how} (--detector-precision {args.detector_precision})"


def _weights_of(methods: list[str] | None) -> dict[str, dict[str, Any]]:
    """The weights file behind every network method of the --method values (the default set without one), with
    what its checkpoint says."""
    from dgdehaze_core.evaluation.methods import default_method_specs, parse_methods
    from dgdehaze_core.io.checkpoints import read_checkpoint
    from dgdehaze_core.models import MODEL_CONFIGS, shipped_weights_path

    weights = {}
    specs = parse_methods(",".join(methods)) if methods else default_method_specs()
    for spec in specs:
        path = shipped_weights_path(spec.source) if spec.source in MODEL_CONFIGS else Path(spec.source)
        if path.suffix not in (".pt", ".onnx") or not path.is_file():
            continue
        entry: dict[str, Any] = {"path": _shown(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:12]}
        if path.suffix == ".pt":
            meta = read_checkpoint(path).get("meta", {})
            entry.update({key: meta[key] for key in ("iterations", "recipe", "commit", "saved", "recipe_fields")
                          if key in meta})
        else:
            import onnx

            metadata = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
            entry.update(onnx_config=metadata.get("dgdehaze_config", "unknown"),
                         onnx_quantization=metadata.get("dgdehaze_quantization", ""))
        weights[spec.name] = entry
    return weights


def _shown(path: Path) -> str:
    """A path relative to the repository where it lies inside it (or beside it, as ../shared/data does)."""
    resolved = path.resolve()
    for base, prefix in ((REPO_DIR, ""), (REPO_DIR.parent, "../")):
        if resolved.is_relative_to(base):
            return prefix + str(resolved.relative_to(base))
    return str(path)


def record(name: str, eval_args: list[str], results_dir: Path = RESULTS_DIR) -> int:
    """Run `dgdehaze eval EVAL_ARGS --json results_dir/NAME.json` and write NAME.meta.json; eval's exit code. The
    figures land in NAME.json only after their provenance is in NAME.meta.json: never figures without it."""
    from dgdehaze_core.cli import main

    parsed = parsed_eval_args(eval_args)
    if parsed.json is not None:
        raise ValueError("record writes --json itself; leave it out of the eval arguments")
    json_path = results_dir / f"{name}.json"
    results_dir.mkdir(parents=True, exist_ok=True)
    command = ["dgdehaze", "eval", *eval_args, "--json", _shown(json_path)]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()[0]
    begin = time.perf_counter()
    figures = results_dir / f".{name}.unrecorded.json"  # eval's own --json is written atomically
    try:
        code = main(["eval", *eval_args, "--json", str(figures)])
        seconds = time.perf_counter() - begin
        if code != 0:
            return code
        _write_meta(results_dir / f"{name}.meta.json", command, started, seconds, load_before, parsed)
        os.replace(figures, json_path)
    finally:
        figures.unlink(missing_ok=True)
    LOG.info("recorded %s in %.0f s", name, seconds)
    return 0


def _write_meta(path: Path, command: list[str], started: str, seconds: float, load_before: float,
                args: argparse.Namespace) -> None:
    from dgdehaze_core.training.trainer import source_commit

    data = [_shown(Path(folder)) for folder in args.dataset or []]
    data += [f"--include {value}" for value in args.include or []]
    data += [f"--subset {value}" for value in args.subset or []]
    data += [f"--limit {args.limit}"] if args.limit else []
    meta = {"command": shlex.join(command), "commit": source_commit(), "started": started,
            "seconds": round(seconds, 1), "load_before": round(load_before, 2),
            "load_after": round(os.getloadavg()[0], 2),
            "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU",
            "data": data or ["every applicable set in ../shared/data"],
            "weights": _weights_of(args.method)}
    detector = detector_of(args)
    if detector is not None:
        meta["detector"] = detector
    atomic_write_text(path, json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dgdehaze_core.evaluation.results_doc",
                                     description=__doc__.split("\n\n", 1)[0])
    commands = parser.add_subparsers(dest="command", required=True)
    record_parser = commands.add_parser("record", help="run one dgdehaze eval and keep its JSON and provenance")
    record_parser.add_argument("name", help="result name: docs/results/NAME.json")
    record_parser.add_argument("eval_args", nargs=argparse.REMAINDER, help="-- then the dgdehaze eval arguments")
    record_parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    render_parser = commands.add_parser("render", help="rewrite the generated blocks of docs/RESULTS.md")
    render_parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    render_parser.add_argument("--doc", type=Path, default=DOC_PATH)
    render_parser.add_argument("--check", action="store_true", help="exit 1 if the doc is not what the JSON gives")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except (OSError, ValueError) as exc:  # an unwritable doc or results folder, a bad argument
        print(f"results_doc {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.command == "record":
        eval_args = args.eval_args[1:] if args.eval_args[:1] == ["--"] else args.eval_args
        return record(args.name, eval_args, args.results)
    current = args.doc.read_text()
    rendered = render(current, args.results)
    if args.check:
        if rendered != current:
            print(f"{args.doc} differs from what {args.results} gives: run "
                  "`python -m dgdehaze_core.evaluation.results_doc render`", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(args.doc, rendered)
    LOG.info("rendered %s from %s", args.doc, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
