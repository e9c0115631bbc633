"""Full-reference quality on a paired set: PSNR, SSIM and CIEDE2000 of each method's output against the clear image.

Each pair is read once and every method runs on its hazy image; figures are means over the pairs, computed at full
resolution in RGB by `dgdehaze_core.evaluation.metrics` (the dehazing literature's convention); a pair's PSNR is
capped at `PSNR_CAP` (100 dB), so an identical pair keeps the mean finite.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from tqdm import tqdm

from dgdehaze_core.datasets.paired_sets import Pair, PairingError, load_pair
from dgdehaze_core.evaluation.methods import Method
from dgdehaze_core.evaluation.metrics import ciede2000, psnr, ssim
from dgdehaze_core.io.images import ImageError, ReadImage, read_image


def quality_methods(methods: Sequence[Method]) -> list[Method]:
    """The methods quality applies to: all but the clear-image references (`clear` is the ground truth itself)."""
    return [method for method in methods if not method.spec.reads_clear]


def evaluate_quality(pairs: Sequence[Pair], methods: Sequence[Method],
                     label: str = "quality", read: ReadImage = read_image,
                     progress: bool = True) -> dict[str, dict[str, float]]:
    """{method name: {psnr, ssim, ciede2000, pairs}} as means over `pairs`, each read with `read`."""
    if not pairs:
        raise ValueError("quality needs at least one hazy/clear pair")
    scores: dict[str, dict[str, list[float]]] = {m.name: {"psnr": [], "ssim": [], "ciede2000": []} for m in methods}
    for pair in tqdm(pairs, desc=label, unit="pair", disable=not progress):
        hazy, clear = load_pair(pair, read)
        for method in methods:
            output = method.dehaze(hazy).image
            try:
                figures = {"psnr": psnr(output, clear), "ssim": ssim(output, clear),
                           "ciede2000": ciede2000(output, clear)}
            except ImageError as exc:  # a pair too small for SSIM's window, or an output of another size
                raise PairingError(f"pair {pair.name} through {method.name}: {exc}") from None
            for key, value in figures.items():
                scores[method.name][key].append(value)
    return {name: {**{key: float(np.mean(values)) for key, values in row.items()}, "pairs": len(pairs)}
            for name, row in scores.items()}
