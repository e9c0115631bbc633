"""Monocular relative depth from one (hazy or clear) image: a light MobileNetV2-style encoder-decoder.

The paper's depth branch is DenseDepth (DenseNet-169, 44 M parameters); ours keeps its shape (an encoder with
skip connections into an upsampling decoder) at a size that runs in real time. The output is a positive relative
depth (softplus, plus a small floor), larger is farther, at the input's resolution.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MIN_DEPTH = 1e-3
"""Floor added to the softplus so that depth stays strictly positive (its inverse stays finite)."""


def conv_bn_act(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (stride 1 or 2), 1x1 project; residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.residual = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            conv_bn_act(in_channels, hidden, 1),
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            conv_bn_act(hidden, out_channels, 1, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class UpFuse(nn.Module):
    """Upsample x2 (bilinear), concatenate the skip, then 1x1 fuse and 3x3 depthwise refine."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = conv_bn_act(in_channels + skip_channels, out_channels, 1)
        self.refine = conv_bn_act(out_channels, out_channels, 3, groups=out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.refine(self.fuse(torch.cat([x, skip], dim=1)))


class DepthNet(nn.Module):
    """Encoder (stride 2 per level) and decoder with skips; `forward(image)` -> (B, 1, H, W) depth > 0.

    widths: channels at strides 2, 4, 8, ... of the network's input; blocks: extra stride-1 blocks per level
    after the first; input_scale: 1, or 2 to run on a half-resolution copy of the image (depth is smooth, and this
    quarters the cost; the output is upsampled back). The input is RGB in [0, 1], H and W multiples of `stride`.
    """

    def __init__(self, widths: Sequence[int] = (16, 24, 40, 64), blocks: Sequence[int] = (0, 1, 1, 1),
                 input_scale: int = 1) -> None:
        super().__init__()
        if len(widths) != len(blocks) or len(widths) < 2:
            raise ValueError("widths and blocks must have the same length, at least 2")
        if input_scale not in (1, 2):
            raise ValueError(f"input_scale must be 1 or 2, got {input_scale}")
        self.input_scale = input_scale
        self.stride = input_scale * 2 ** len(widths)
        self.stem = conv_bn_act(3, widths[0], 3, 2)
        levels: list[nn.Module] = []
        for index in range(1, len(widths)):
            layers = [InvertedResidual(widths[index - 1], widths[index], 2)]
            layers += [InvertedResidual(widths[index], widths[index], 1) for _ in range(blocks[index])]
            levels.append(nn.Sequential(*layers))
        self.levels = nn.ModuleList(levels)
        self.decoder = nn.ModuleList(
            UpFuse(widths[index], widths[index - 1], widths[index - 1]) for index in range(len(widths) - 1, 0, -1))
        self.head = nn.Conv2d(widths[0], 1, 3, padding=1)

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """The head's (B, 1, H, W) output before any activation, for heads that read it differently."""
        if self.input_scale == 2:
            image = F.avg_pool2d(image, 2)
        features = [self.stem(image * 2.0 - 1.0)]
        for level in self.levels:
            features.append(level(features[-1]))
        x = features[-1]
        for up, skip in zip(self.decoder, reversed(features[:-1])):
            x = up(x, skip)
        return F.interpolate(self.head(x), scale_factor=2.0 * self.input_scale, mode="bilinear",
                             align_corners=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.logits(image)) + MIN_DEPTH


def normalized_inverse_depth(depth: torch.Tensor) -> torch.Tensor:
    """1 / (1 + d / mean(d)) per image, in (0, 1): near is bright, far is dark, whatever the depth's scale.

    The paper feeds inverse depth into the mix; normalising by the image's mean makes a relative depth usable
    without a metric scale (and a constant depth gives a constant 0.5).
    """
    scale = depth.mean(dim=(2, 3), keepdim=True)
    return 1.0 / (1.0 + depth / scale)
