"""Evaluation measures behind `dgdehaze eval`, one module per measure.

- `quality_eval`: PSNR, SSIM and CIEDE2000 against ground truth on paired sets.
- `detection_eval`: detection recovery (the detector's clear-image detections, or human boxes, as reference).
- `depth_eval`: depth accuracy against LiDAR or disparity ground truth, on clear images and synthesized haze.
- `no_reference_eval`: FADE and dark-channel haze density on real hazy photos without ground truth.

`methods` turns method names ("hazy", "dcp", "lite", NAME=weights.pt) into callables; `depth_datasets` and
`voc_boxes` read the ground truth of the depth sets and the human boxes; `metrics` holds PSNR, SSIM and CIEDE2000;
`results_doc` renders docs/RESULTS.md from the JSON figures.
"""
