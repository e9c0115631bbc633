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

from dgdehaze_core.evaluation.detection_eval import (CONFIDENCE, ImageMatches, image_agreement,
                                                     ranked_average_precision)

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


@dataclass(frozen=True)
class _Scoring:
    """One method's matches laid out to be scored with each image counted any number of times: per reference class
    its predictions in descending score (hit or not, and the image each came from), the reference objects per image
    and class, and each image's F1."""

    hits: tuple[np.ndarray, ...]
    images: tuple[np.ndarray, ...]
    references: np.ndarray
    f1: np.ndarray

    @classmethod
    def of(cls, matches: Sequence[ImageMatches], classes: Sequence[str], conf: float) -> _Scoring:
        owner = np.array([index for index, image in enumerate(matches) for _ in image.classes], np.int64)
        names = np.array([c for image in matches for c in image.classes], dtype=object)
        scores = np.array([s for image in matches for s in image.scores], np.float64)
        correct = np.array([k for image in matches for k in image.correct], bool)
        hits, images = [], []
        for name in classes:
            mine = np.flatnonzero(names == name)
            order = mine[np.argsort(-scores[mine], kind="stable")]
            hits.append(correct[order])
            images.append(owner[order])
        references = np.array([[image.references.get(name, 0) for name in classes] for image in matches], np.float64)
        f1 = np.array([image_agreement(image, conf)[2] for image in matches], np.float64)
        return cls(tuple(hits), tuple(images), references.reshape(len(matches), len(classes)), f1)

    def figures(self, counts: np.ndarray) -> np.ndarray | None:
        """(mAP50, F1) over the set with image i counted counts[i] times (`score_matches`' figures on such a
        list); None when the counted images hold no reference object."""
        references = counts @ self.references
        if not references.sum() > 0:
            return None
        precisions = []
        for hits, images, total in zip(self.hits, self.images, references):
            if total > 0:
                precisions.append(ranked_average_precision(hits, total, counts[images]))
        return np.array([np.mean(precisions), counts @ self.f1 / counts.sum()])


def _group_figures(scorings: Mapping[str, _Scoring], group: Group, counts: np.ndarray) -> np.ndarray | None:
    """The group's mean (mAP50, F1); None when the counted images hold no reference object."""
    figures = [scorings[m].figures(counts) for m in group.methods]
    return None if any(f is None for f in figures) else np.mean(figures, axis=0)


Comparison = tuple[Group, Sequence[Group]]
"""A baseline and the groups compared with it."""


def _checked(matches: Mapping[str, Sequence[ImageMatches]], comparisons: Sequence[Comparison]) -> int:
    """The number of images every compared method was matched on; ValueError for an unknown method, a group that
    is its baseline, or names that repeat within a comparison."""
    for baseline, groups in comparisons:
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
    lengths = {len(matches[m]) for baseline, groups in comparisons for group in (baseline, *groups)
               for m in group.methods}
    if len(lengths) != 1:
        raise ValueError(f"the compared methods were matched on different numbers of images: {sorted(lengths)}")
    return lengths.pop()


def paired_bootstrap(matches: Mapping[str, Sequence[ImageMatches]], comparisons: Sequence[Comparison],
                     samples: int, conf: float = CONFIDENCE, seed: int = DEFAULT_SEED) -> dict[str, dict[str, float]]:
    """{"GROUP vs BASELINE": {BOOTSTRAP_COLUMNS}} for each group of each (baseline, groups) comparison, every
    comparison on the same redraws, each side scored once per redraw; `matches` holds every method's matched
    images, in the same image order. ValueError for an unknown method, a group that is its baseline, fewer than
    one sample, fewer than two images, or a set with no reference object in any redraw."""
    if samples < 1:
        raise ValueError(f"the bootstrap needs at least one sample, got {samples}")
    comparisons = [(baseline, list(groups)) for baseline, groups in comparisons if groups]
    if not comparisons:
        return {}
    images = _checked(matches, comparisons)
    if images < 2:
        raise ValueError(f"a bootstrap over {images} image(s) redraws the same set every time, so its interval has "
                         "no width and its p_better is 0 or 1 whatever the methods: give it two images or more")
    sides = list(dict.fromkeys(group for baseline, groups in comparisons for group in (baseline, *groups)))
    classes = sorted({name for method in matches.values() for image in method for name in image.references})
    scorings = {m: _Scoring.of(matches[m], classes, conf) for group in sides for m in group.methods}
    whole = {group: _group_figures(scorings, group, np.ones(images)) for group in sides}
    if any(whole[baseline] is None for baseline, _ in comparisons):
        raise ValueError("no reference objects in any image: there is nothing to compare")
    rng = np.random.default_rng(seed)
    differences: dict[tuple[Group, Group], list[np.ndarray]] = {
        (baseline, group): [] for baseline, groups in comparisons for group in groups}
    for _ in range(samples):
        counts = np.bincount(rng.integers(0, images, images), minlength=images).astype(np.float64)
        drawn = {group: _group_figures(scorings, group, counts) for group in sides}
        if any(figures is None for figures in drawn.values()):
            continue
        for baseline, group in differences:
            differences[baseline, group].append(drawn[group] - drawn[baseline])
    rows = {}
    for (baseline, group), found in differences.items():
        if not found:
            raise ValueError("no redrawn set of images holds a reference object: nothing to compare")
        spread = np.array(found)
        row: dict[str, float] = {}
        for index, figure in enumerate(FIGURES):
            low, high = np.percentile(spread[:, index], [2.5, 97.5])
            better = float(np.mean(spread[:, index] > 0) + 0.5 * np.mean(spread[:, index] == 0))
            row.update({f"{figure}_diff": float(whole[group][index] - whole[baseline][index]),
                        f"{figure}_diff_lo": float(low), f"{figure}_diff_hi": float(high),
                        f"{figure}_p_better": better})
        rows[f"{group.name} vs {baseline.name}"] = {**row, "images": images, "samples": len(found)}
    return rows
