"""Tables of recorded evaluations for docs/RESULTS.md: the rows of one measure and set in an eval JSON, as markdown,
with the provenance (command, data, commit, weights) the run's meta file records (`results_record`)."""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from dgdehaze_core.datasets.paths import REPO_DIR
from dgdehaze_core.inference.provenance import how_made
from dgdehaze_core.io.atomic_files import is_figures_table
from dgdehaze_core.io.file_digest import file_sha256
from dgdehaze_core.io.file_paths import listing

LOG = logging.getLogger(__name__)

RESULTS_DIR = REPO_DIR / "docs" / "results"
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
    "haze": (Column("fade", "FADE ↓"), Column("dark_channel", "dark channel ↓"),
             Column("noise_sigma", "noise σ (8-bit)", 2),
             Column("noise_ratio", "noise ÷ input's"), Column("images", "images", None)),
    "detection-classes": (),
    "detection-bootstrap": (Column("map50_diff", "mAP50 difference"), Column("map50_diff_lo", "95 % from"),
                            Column("map50_diff_hi", "to"), Column("map50_p_better", "ahead in", share=True),
                            Column("f1_diff", "F1 difference"), Column("f1_diff_lo", "95 % from"),
                            Column("f1_diff_hi", "to"), Column("f1_p_better", "ahead in", share=True),
                            Column("samples", "redraws", None)),
    "visibility": (Column("visibility_rel_error", "visibility error ↓"),
                   Column("visibility_median", "visibility estimated (m)", 1),
                   Column("absrel_metric", "metric AbsRel ↓"),
                   Column("coverage", "coverage ↑"), Column("no_fog_share", "frames read as no fog"),
                   Column("images", "images", None)),
    "clear": (Column("psnr", "PSNR (dB) ↑", 2), Column("ssim", "SSIM ↑"),
              Column("brightness_change", "brightness change (8-bit levels)", 1),
              Column("crushed", "pixels crushed to 0"), Column("blown", "pixels blown to 255"),
              Column("precision", "precision"), Column("recall", "recall"), Column("f1", "F1 ↑"),
              Column("objects", "objects", None), Column("images", "images", None)),
}


def finite(value: Any) -> float | None:
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
    first prefix, most specific first, that leaves plain method names wins. A subset (`SET:SUBSET`, from --subset)
    is only ever taken from rows prefixed with its name: eval always prefixes a subset's rows, so rows without a set
    are the whole set's, not the subset's. `detection-classes` takes the per-class rows (`METHOD[CLASS]`),
    `detection-bootstrap` the comparisons (`GROUP vs BASELINE`), `detection` neither.
    """
    per_class = measure == "detection-classes"
    compared = measure == "detection-bootstrap"
    keyed = "detection" if per_class or compared else measure
    candidates = [f"{keyed}/{set_name}/", f"{set_name}/"] if set_name else []
    if not set_name or ":" not in set_name:
        candidates += [f"{keyed}/", ""]
    for prefix in candidates:
        chosen = {key[len(prefix):]: row for key, row in rows.items()
                  if key.startswith(prefix) and "/" not in key[len(prefix):]
                  and ("[" in key[len(prefix):]) == per_class and (" vs " in key[len(prefix):]) == compared}
        if chosen:
            return chosen
    raise ValueError(f"no {measure} rows{f' of set {set_name}' if set_name else ''} among {listing(list(rows), 12)}")


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
        lines.append(f"- Weights of `{method}`: `{weights['path']}` (sha256 {weights['sha256']}, {how_made(weights)})")
    return "\n".join(lines)


META_KEYS = ("command", "commit", "started", "seconds", "load_before", "machine", "data")
"""What every NAME.meta.json that `results_record` writes holds, and the tables and the runtime line read."""
FIGURES_SHA256 = "figures_sha256"
"""The meta's key for the SHA-256 of the NAME.json it was written with (records before 2026-12-06 lack it)."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from None


def read_meta(path: Path) -> dict[str, Any]:
    """The provenance in a NAME.meta.json; ValueError naming the file where it lacks what `results_record` writes
    (the render stopped on a KeyError or TypeError that named neither the file nor the key's place)."""
    meta = _read_json(path)
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a results record: a JSON object is expected")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path} is not a results record: it lacks {', '.join(missing)}")
    weights = meta.get("weights", {})
    if not isinstance(meta["data"], list) or not isinstance(weights, dict):
        raise ValueError(f"{path} is not a results record: 'data' must be a list and 'weights' an object")
    for method, entry in weights.items():
        if not isinstance(entry, dict) or "path" not in entry or "sha256" not in entry:
            raise ValueError(f"{path}: the weights of {method!r} name no path and sha256")
    return meta


def read_rows(path: Path) -> dict[str, Row]:
    """The rows of an eval JSON ({row name: {column: value}}); ValueError naming the file where it is not that."""
    rows = _read_json(path)
    if not is_figures_table(rows):
        raise ValueError(f"{path} is not a table of eval rows: a JSON object of objects is expected")
    return rows


def load_result(results_dir: Path, name: str) -> tuple[dict[str, Row], dict[str, Any]] | None:
    """(rows, meta) of one recorded evaluation, None when it has not been recorded; ValueError naming the file
    where one is not what eval and `results_record` write."""
    rows_path, meta_path = results_dir / f"{name}.json", results_dir / f"{name}.meta.json"
    if not rows_path.is_file() or not meta_path.is_file():
        return None
    rows, meta = read_rows(rows_path), read_meta(meta_path)
    if FIGURES_SHA256 in meta and meta[FIGURES_SHA256] != file_sha256(rows_path):
        raise ValueError(f"{meta_path} was written for other figures than {rows_path.name} holds (a record stopped "
                         f"between its two files, or one was edited): record step {name} again")
    return rows, meta


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
