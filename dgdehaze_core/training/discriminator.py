"""PatchGAN discriminator (Isola et al., pix2pix) for the optional adversarial loss.

It scores overlapping patches (about 46 px at three stride-2 levels) as real clear (1) or dehazed (0), so the
dehazer is pushed towards the local statistics of real clear images without any pairing.
"""
from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator(nn.Module):
    """B,3,H,W RGB in [0, 1] -> B,1,H/8,W/8 patch scores (unbounded; least-squares GAN targets 0 and 1)."""

    def __init__(self, width: int = 32, levels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        channels = width
        for _ in range(levels - 1):
            layers += [nn.Conv2d(channels, channels * 2, 4, 2, 1), nn.InstanceNorm2d(channels * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            channels *= 2
        layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.InstanceNorm2d(channels), nn.LeakyReLU(0.2, inplace=True),
                   nn.Conv2d(channels, 1, 3, 1, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image * 2.0 - 1.0)
