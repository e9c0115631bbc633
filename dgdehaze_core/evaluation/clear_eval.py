"""What dehazing does to a clear frame: a vehicle drives in and out of fog and the node dehazes every frame, so a
method should leave a frame without fog as it is, for the eye and for the detector.

It runs on the frames of the depth sets (KITTI raw, KITTI depth's selection, Middlebury 2003: every frame taken in
clear weather), read by `depth_datasets` (their ground-truth depth is not used), and compares each method's output
with the input frame itself:
- psnr, ssim: the quality measure's `metrics`, the input frame as the reference (an unchanged frame gets
  `PSNR_CAP` and SSIM 1);
- brightness_change: mean(output) - mean(input) over the pixels and channels, in 8-bit levels (< 0: darker);
- crushed, blown: the share of pixels with a channel at 0 (crushed) or at 255 (blown) in the output that was not
  at that value in the input;
- precision, recall, f1: the detector's boxes on the output against its boxes on the input (score >= conf), matched
  as detection recovery matches them (`detection_eval.recovery_matches`, the input standing as the clear image),
  per frame and averaged over the frames (`score_matches`); objects: the input's boxes over the set. Where the
  detector finds nothing on any input frame (Middlebury's indoor scenes may hold no object it knows), these are
  NaN, with a warning, and the image figures stand.
Figures are means over the frames. A detection-only method (`SOURCE+hazy`, `+clahe`) gets the detection figures
only: its frame is SOURCE's, so its image figures are NaN. `clear` is the input frame itself (as `hazy`), and
`clear-jpeg90` its JPEG copy at quality 90: how far a near-lossless copy already moves each figure.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from tqdm import tqdm

from dgdehaze_core.evaluation.depth_datasets import DepthSet
from dgdehaze_core.evaluation.detection_eval import (CONFIDENCE, DetectFn, ImageMatches, recovery_matches,
                                                     score_matches)
from dgdehaze_core.evaluation.methods import CLEAR, CLEAR_JPEG, Method, jpeg_copy
from dgdehaze_core.evaluation.metrics import psnr, ssim
from dgdehaze_core.io.images import ImageError

IMAGE_COLUMNS = ("psnr", "ssim", "brightness_change", "crushed", "blown")
AGREEMENT_COLUMNS = ("precision", "recall", "f1", "objects")
CLEAR_COLUMNS = (*IMAGE_COLUMNS, *AGREEMENT_COLUMNS, "images")
LOG = logging.getLogger(__name__)


def image_changes(output: np.ndarray, frame: np.ndarray) -> dict[str, float]:
    """`IMAGE_COLUMNS` of `output` against the uint8 BGR `frame` it was made from; ImageError where they differ in
    size or type (the metrics' checks)."""
    figures = {"psnr": psnr(output, frame), "ssim": ssim(output, frame)}
    figures["brightness_change"] = float(output.mean(dtype=np.float64) - frame.mean(dtype=np.float64))
    figures["crushed"] = float(((output == 0) & (frame != 0)).any(axis=2).mean())
    figures["blown"] = float(((output == 255) & (frame != 255)).any(axis=2).mean())
    return figures


def _output(method: Method, frame: np.ndarray) -> np.ndarray | None:
    """The frame `method` makes of `frame`; None for a detection-only method (its frame is its source's)."""
    if method.spec.detection_only:
        return None
    if method.spec.source == CLEAR:
        return frame
    if method.spec.source == CLEAR_JPEG:
        return jpeg_copy(frame)
    return method.dehaze(frame).image


def evaluate_clear(depth_set: DepthSet, methods: Sequence[Method], detect: DetectFn, conf: float = CONFIDENCE,
                   label: str = "clear", progress: bool = True,
                   max_det: int | None = None) -> dict[str, dict[str, float]]:
    """{method name: `CLEAR_COLUMNS`} over the frames of `depth_set`, read one at a time; `max_det`: the cut of
    fused boxes (`detection_eval.method_detections`). ValueError naming the frame and the method whose output cannot
    be compared."""
    changes: dict[str, list[dict[str, float]]] = {method.name: [] for method in methods}
    matches: dict[str, list[ImageMatches]] = {method.name: [] for method in methods}
    for sample in tqdm(depth_set.samples(), total=len(depth_set.frames), desc=label, unit="image",
                       disable=not progress):
        frame = sample.image
        for method in methods:
            output = _output(method, frame)
            try:
                changes[method.name].append({} if output is None else image_changes(output, frame))
            except ImageError as exc:  # an output of another size, or a frame too small for SSIM's window
                raise ValueError(f"{sample.name} through {method.name}: {exc}") from None
        for name, matched in recovery_matches(frame, frame, methods, detect, conf, max_det).items():
            matches[name].append(matched)
    found = any(image.references for matched in matches.values() for image in matched)
    if not found:
        LOG.warning("clear on %s: the detector finds no object on any input frame: no detection figures",
                    depth_set.name)
    table = {}
    for method in methods:
        detection = score_matches(matches[method.name], conf) if found else {
            "precision": float("nan"), "recall": float("nan"), "f1": float("nan"), "objects": 0}
        rows = changes[method.name]
        table[method.name] = {**{key: float(np.mean([row.get(key, np.nan) for row in rows])) for key in IMAGE_COLUMNS},
                              **{key: detection[key] for key in AGREEMENT_COLUMNS}, "images": len(rows)}
    return table

