"""How sure a detection comparison is: a paired bootstrap over the images of a set.

Twenty photos decide nothing by themselves: one bus moves a four-class mAP50 by 0.1. `paired_bootstrap` redraws the
set's images with replacement `samples` times, scores every method on the same redrawn set (the comparison is
paired: a hard photo is hard for both sides), and reports a group's figure minus the baseline's with the 2.5 and
97.5 percentiles of that difference over the redraws, and the share of redraws in which the group is better (ties
count half). A group is one method or the mean of several (the seeds of one recipe); so is the baseline. Figures are
`score_matches`' `map50` and `f1` (the per-image F1 the detection table shows). A redraw whose images hold no
reference object at all has no figures and is left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from dgdehaze_core.evaluation.detection_eval import CONFIDENCE, ImageMatches, score_matches

FIGURES = ("map50", "f1")
BOOTSTRAP_COLUMNS = tuple(f"{figure}_{part}" for figure in FIGURES for part in ("diff", "diff_lo", "diff_hi",
                                                                                 "p_better")) + ("images", "samples")
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Group:
    """A side of a comparison: its name and the methods whose figures it averages."""

    name: str
    methods: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Group:
        """'NAME=M1,M2' (the mean of M1 and M2), or 'M1' alone (one method, named after it)."""
        name, equals, members = text.partition("=")
        methods = tuple(m.strip() for m in (members if equals else name).split(",") if m.strip())
        name = name.strip() if equals else ",".join(methods)
        if not name or not methods or len(set(methods)) != len(methods):
            raise ValueError(f"a comparison group is NAME=METHOD[,METHOD...] or METHOD, each method once: {text!r}")
        return cls(name, methods)


def _figures(matches: Mapping[str, Sequence[ImageMatches]], group: Group, order: np.ndarray,
             conf: float) -> np.ndarray:
    """(len(FIGURES),): the group's mean figures on the images in `order`."""
    rows = [score_matches([matches[m][i] for i in order], conf) for m in group.methods]
    return np.array([[row[figure] for figure in FIGURES] for row in rows]).mean(axis=0)


def paired_bootstrap(matches: Mapping[str, Sequence[ImageMatches]], baseline: Group, groups: Sequence[Group],
                     samples: int, conf: float = CONFIDENCE, seed: int = DEFAULT_SEED) -> dict[str, dict[str, float]]:
    """{"GROUP vs BASELINE": {BOOTSTRAP_COLUMNS}} for each group; `matches` holds every method's matched images,
    in the same image order. ValueError for an unknown method, a group that is the baseline, fewer than one sample,
    or a set with no reference object in any redraw."""
    if samples < 1:
        raise ValueError(f"the bootstrap needs at least one sample, got {samples}")
    for group in (baseline, *groups):
        unknown = [m for m in group.methods if m not in matches]
        if unknown:
            raise ValueError(f"comparison group {group.name!r} names methods that were not evaluated: "
                             f"{', '.join(unknown)} (evaluated: {', '.join(matches)})")
        if group is not baseline and set(group.methods) == set(baseline.methods):
            raise ValueError(f"group {group.name!r} is the baseline itself")
    names = [group.name for group in (baseline, *groups)]
    if len(set(names)) != len(names):
        raise ValueError(f"comparison groups need distinct names, got {', '.join(names)}")
    counts = {len(matches[m]) for group in (baseline, *groups) for m in group.methods}
    if len(counts) != 1:
        raise ValueError(f"the compared methods were matched on different numbers of images: {sorted(counts)}")
    images = counts.pop()
    everything = np.arange(images)
    whole = {group.name: _figures(matches, group, everything, conf) for group in (baseline, *groups)}
    rng = np.random.default_rng(seed)
    differences: dict[str, list[np.ndarray]] = {group.name: [] for group in groups}
    for _ in range(samples):
        order = rng.integers(0, images, images)
        try:
            base = _figures(matches, baseline, order, conf)
            for group in groups:
                differences[group.name].append(_figures(matches, group, order, conf) - base)
        except ValueError:
            continue
    kept = len(differences[groups[0].name]) if groups else samples
    if kept == 0:
        raise ValueError("no redrawn set of images holds a reference object: nothing to compare")
    rows = {}
    for group in groups:
        drawn = np.array(differences[group.name])
        row: dict[str, float] = {}
        for index, figure in enumerate(FIGURES):
            low, high = np.percentile(drawn[:, index], [2.5, 97.5])
            better = float(np.mean(drawn[:, index] > 0) + 0.5 * np.mean(drawn[:, index] == 0))
            row.update({f"{figure}_diff": float(whole[group.name][index] - whole[baseline.name][index]),
                        f"{figure}_diff_lo": float(low), f"{figure}_diff_hi": float(high),
                        f"{figure}_p_better": better})
        rows[f"{group.name} vs {baseline.name}"] = {**row, "images": images, "samples": kept}
    return rows
