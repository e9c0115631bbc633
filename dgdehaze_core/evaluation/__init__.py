"""Evaluation measures behind `dgdehaze eval`, one module per measure.

- `quality_eval`: PSNR, SSIM and CIEDE2000 against ground truth on paired sets.
- `detection_eval`: detection recovery (the detector's clear-image detections, or human boxes, as reference).
- `depth_eval`: depth accuracy against LiDAR or disparity ground truth, on clear images and synthesized haze.
- `no_reference_eval`: FADE and dark-channel haze density on real hazy photos without ground truth.
- `clear_eval`: what each method does to a clear frame (the depth sets' frames) against the frame itself.

`methods` turns method names ("hazy", "dcp", "lite", NAME=weights.pt) into callables; `depth_datasets` reads the
ground truth of the depth sets and `labelled_sets` the human boxes (Pascal VOC in `voc_boxes`, COCO JSON in
`coco_boxes`, YOLO in `yolo_boxes`); `metrics` holds PSNR, SSIM and CIEDE2000; `results_doc` renders
docs/RESULTS.md from the JSON figures.

A measure that does not apply to a set, or to the methods given, raises `NotApplicable`: `dgdehaze eval` leaves it
out with a warning where it chose the sets itself or ran `--measure all`. Any other ValueError (ImageError,
PairingError: broken data) fails the run.
"""
from __future__ import annotations


class NotApplicable(ValueError):
    """A measure refuses a set or the methods for what they are (no road, no method that estimates depth, no image
    selected, nothing to score), not because anything in them is broken."""
