"""The project's targets in docs/RESULTS.md, each judged from the recorded evaluations (met or not met), and
whether the depth-guidance ablation was trained like for like."""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from dgdehaze_core.evaluation.results_tables import Row, finite, load_result, read_meta, select_rows

LOG = logging.getLogger(__name__)

MODEL, ABLATION, DCP, HAZY, JPEG = "lite", "lite-no-depth", "dcp", "hazy", "clear-jpeg90"
HELD_OUT_ROOMS = "SOTS-indoor, held-out scenes 1430-1448"
QUALITY_SETS = (("sots-indoor", HELD_OUT_ROOMS), ("sots-outdoor", "SOTS-outdoor"), ("o-haze", "O-HAZE"))
"""(result name, label) of the real paired sets the quality target applies to."""
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


def _against(value: float, goal: float, decimals: int, signed: bool = False) -> str:
    """`value` to `decimals` decimals (with its sign where `signed`), or to more (up to 6) where fewer would show it
    equal to the `goal` it is judged against without being it: "+1.00 dB" beside "not met" for a gain of 0.996 dB
    hid the very difference the verdict turns on."""
    places = decimals
    while places < 6 and value != goal and float(f"{value:.{places}f}") == float(f"{goal:.{places}f}"):
        places += 1
    return f"{value:{'+' if signed else ''}.{places}f}"


def _not_measured(goal: str, label: str) -> list[str]:
    return [goal, label, "not measured", "—"]


def _figures(rows: Mapping[str, Row], methods: Iterable[str], column: str) -> dict[str, float] | None:
    """`column` of each of `methods`; None (not measured) unless every one has a row with a finite number there."""
    found = {method: finite(rows[method].get(column)) if method in rows else None for method in methods}
    return None if any(value is None for value in found.values()) else found


STEP_SETS: dict[str, tuple[str, ...]] = {
    "sots-indoor": ("paired/sots-indoor", "--include @data/splits/sots-indoor.yaml:judge"),
    "sots-outdoor": ("paired/sots-outdoor",), "o-haze": ("paired/o-haze",),
    "dawn-fog": ("detection/dawn-fog", "--include @data/splits/dawn-fog.yaml:judge")}
"""What the steps the targets read must have been recorded on (their name without `int8-` and `-workWxH`): the set
under the shared data folder, and for SOTS-indoor and DAWN their split's judging part (the rest was trained or tuned
on)."""


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


def _rows(results_dir: Path, name: str, measure: str) -> dict[str, Row] | None:
    """The rows a target reads; None when not recorded or not `unjudgeable`-free (logged)."""
    loaded = load_result(results_dir, name)
    if loaded is None:
        return None
    problem = unjudgeable(name, loaded[1])
    if problem:
        LOG.warning("targets: step %s judges nothing: %s", name, problem)
        return None
    try:
        return select_rows(loaded[0], measure, None)
    except ValueError:
        return None


def _quality_targets(results_dir: Path) -> list[list[str]]:
    lines = []
    for name, label in QUALITY_SETS:
        rows = _rows(results_dir, name, "quality")
        if rows is None or MODEL not in rows or DCP not in rows:
            lines.append(_not_measured(f"lite ≥ DCP + {PSNR_MARGIN_DB:g} dB PSNR, SSIM not below DCP", label))
            continue
        psnr, ssim = _figures(rows, (MODEL, DCP), "psnr"), _figures(rows, (MODEL, DCP), "ssim")
        goal = f"lite ≥ DCP + {PSNR_MARGIN_DB:g} dB PSNR (#4)"
        if psnr is None:
            lines.append(_not_measured(goal, label))
        else:
            gain = psnr[MODEL] - psnr[DCP]
            lines.append([goal, label, f"lite {psnr[MODEL]:.2f} dB, DCP {psnr[DCP]:.2f} dB "
                          f"({_against(gain, PSNR_MARGIN_DB, 2, signed=True)} dB)",
                          _verdict(gain >= PSNR_MARGIN_DB)])
        goal = "lite SSIM not below DCP (#4)"
        if ssim is None:
            lines.append(_not_measured(goal, label))
        else:
            difference = _against(ssim[MODEL] - ssim[DCP], 0.0, 3, signed=True)
            lines.append([goal, label, f"lite {ssim[MODEL]:.3f}, DCP {ssim[DCP]:.3f} ({difference})",
                          _verdict(ssim[MODEL] >= ssim[DCP])])
    return lines


def _detection_targets(results_dir: Path) -> list[list[str]]:
    lines = []
    for result, label in (("sots-indoor", HELD_OUT_ROOMS),
                          ("sots-indoor-work320x240", "SOTS-indoor held-out, networks at 320x240")):
        rows = _rows(results_dir, result, "detection")
        f1 = None if rows is None else _figures(rows, (HAZY, DCP, MODEL), "f1")
        if rows is None or f1 is None:
            lines.append(_not_measured(f"detection-recovery F1: lite > DCP and ≥ {F1_GOAL} (#9)", label))
            continue
        jpeg = _figures(rows, (JPEG,), "f1")
        noise = f" (the clear image as a JPEG: {jpeg[JPEG]:.3f})" if jpeg is not None else ""
        lines.append([f"detection-recovery F1: lite > DCP and ≥ {F1_GOAL} (#9)", label,
                      f"hazy {f1[HAZY]:.3f}, DCP {f1[DCP]:.3f}, lite {_against(f1[MODEL], F1_GOAL, 3)}{noise}",
                      _verdict(f1[MODEL] > f1[DCP] and f1[MODEL] >= F1_GOAL)])
    return lines


ABLATION_CHECKS: tuple[tuple[str, str, str, str, bool, str], ...] = (
    ("sots-indoor", "quality", "psnr", "PSNR (dB)", True, "SOTS-indoor held-out"),
    ("sots-outdoor", "quality", "psnr", "PSNR (dB)", True, "SOTS-outdoor"),
    ("o-haze", "quality", "psnr", "PSNR (dB)", True, "O-HAZE"),
    ("sots-indoor", "detection", "f1", "detection F1", True, "SOTS-indoor held-out"),
    ("dawn-fog", "detection", "map50", "mAP50 against human boxes", True, "DAWN fog, judging photos"),
    ("dawn-fog", "detection", "f1", "F1 against human boxes", True, "DAWN fog, judging photos"),
    ("dawn-fog", "haze", "fade", "FADE", False, "DAWN fog, judging photos"),
    ("kitti-tiny", "depth", "absrel", "depth AbsRel, dense haze", False, "KITTI"),
    ("middlebury2003", "depth", "absrel", "depth AbsRel, dense haze", False, "Middlebury 2003"),
)
"""(result, measure, column, what, higher is better, label) compared between lite and lite-no-depth."""


def _ablation_targets(results_dir: Path) -> list[list[str]]:
    lines = []
    for name, measure, column, what, higher, label in ABLATION_CHECKS:
        rows = _rows(results_dir, name, measure)
        model, ablation = (MODEL, ABLATION) if measure != "depth" else (f"{MODEL}@t0.25", f"{ABLATION}@t0.25")
        figures = None if rows is None else _figures(rows, (model, ablation), column)
        if figures is None:
            lines.append(_not_measured(f"depth guidance helps: {what}", label))
            continue
        with_depth, without = figures[model], figures[ablation]
        interval, verdict = _judged((with_depth - without) * (1 if higher else -1),
                                    _comparison(results_dir, name, f"{MODEL} vs {ABLATION}", column),
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
    rows = _rows(results_dir, "dawn-fog", "detection")
    lines = []
    for column, what in (("map50", "mAP50"), ("f1", "F1")):
        check = f"dehazing beats a contrast stretch: {what}"
        figures = None if rows is None else _figures(rows, (MODEL, CONTRAST_BASELINE), column)
        if figures is None:
            lines.append(_not_measured(check, label))
            continue
        model, stretch = figures[MODEL], figures[CONTRAST_BASELINE]
        recorded = _comparison(results_dir, "dawn-fog", f"{CONTRAST_BASELINE} vs {MODEL}", column)
        interval, verdict = _judged(model - stretch, None if recorded is None else (-recorded[1], -recorded[0]),
                                    "ahead", "**behind**", "**level**")
        figures = f"lite {model:.3f}, {CONTRAST_BASELINE} {stretch:.3f} ({model - stretch:+.3f}){interval}"
        lines.append([check, label, figures, verdict])
    return lines


def _comparison(results_dir: Path, name: str, key: str, column: str) -> tuple[float, float] | None:
    """The bootstrap interval (low, high) of `column`'s difference in comparison row `key`, if recorded (finite)."""
    rows = _rows(results_dir, name, "detection-bootstrap") or {}
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
        weights = read_meta(meta_path).get("weights", {})
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
    rows = _rows(results_dir, "dawn-fog", "detection")
    label = _dawn_label(rows, MODEL)
    m = None if rows is None else _figures(rows, (HAZY, DCP, MODEL), "map50")
    if rows is None or m is None:
        lines = [_not_measured(f"lite mAP50 ≥ {MAP50_GOAL:.2f} and > DCP (#17)", label)]
    else:
        lines = [[f"lite mAP50 ≥ {MAP50_GOAL:.2f} and > DCP (#17)", label,
                  f"hazy {m[HAZY]:.3f}, DCP {m[DCP]:.3f}, lite {_against(m[MODEL], MAP50_GOAL, 3)}",
                  _verdict(m[MODEL] >= MAP50_GOAL and m[MODEL] > m[DCP])]]
        fused = _figures(rows, (FUSED,), "map50")
        if FUSED in rows and fused is None:
            lines.append(_not_measured("fused detection above both its parts (#17)", label))
        elif fused is not None:
            lines.append(["fused detection above both its parts (#17)", label,
                          f"hazy {m[HAZY]:.3f}, lite {m[MODEL]:.3f}, lite+hazy {fused[FUSED]:.3f}",
                          _verdict(fused[FUSED] > max(m[HAZY], m[MODEL]))])
    held_out = _rows(results_dir, "sots-indoor", "detection")
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
    for name, label in [(f"int8-{name}", label) for name, label in QUALITY_SETS]:
        goal = f"int8 PSNR within {INT8_PSNR_LOSS_DB:g} dB of fp32 (#23)"
        rows = _rows(results_dir, name, "quality")
        psnr = None if rows is None else _figures(rows, (FP32, INT8), "psnr")
        if psnr is None:
            lines.append(_not_measured(goal, label))
            continue
        loss = psnr[FP32] - psnr[INT8]
        lines.append([goal, label, f"fp32 {psnr[FP32]:.2f} dB, int8 {psnr[INT8]:.2f} dB "
                      f"({_against(-loss, -INT8_PSNR_LOSS_DB, 2, signed=True)} dB)",
                      _verdict(loss <= INT8_PSNR_LOSS_DB)])
    rows = _rows(results_dir, "int8-dawn-fog", "detection")
    goal, label = f"int8 mAP50 within {INT8_MAP50_LOSS:g} of fp32 (#23)", _dawn_label(rows, INT8)
    map50 = None if rows is None else _figures(rows, (FP32, INT8), "map50")
    if map50 is None:
        return lines + [_not_measured(goal, label)]
    loss = map50[FP32] - map50[INT8]
    return lines + [[goal, label, f"fp32 {map50[FP32]:.3f}, int8 {map50[INT8]:.3f} "
                     f"({_against(-loss, -INT8_MAP50_LOSS, 3, signed=True)})",
                     _verdict(loss <= INT8_MAP50_LOSS)]]


def targets_markdown(results_dir: Path) -> str:
    lines = [*_quality_targets(results_dir), *_detection_targets(results_dir), *_real_fog_targets(results_dir),
             *_int8_targets(results_dir), *_contrast_baseline_checks(results_dir), *_ablation_targets(results_dir)]
    header = "| target | set | measured | verdict |\n|---|---|---|---|"
    table = header + "\n" + "\n".join("| " + " | ".join(line) + " |" for line in lines)
    return f"{table}\n\n{ablation_recipe_note(results_dir)}"
