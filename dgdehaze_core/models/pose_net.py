"""Relative camera motion between two frames: a small convolutional pose network (monodepth2's PoseCNN shape).

`PoseNet(target, source)` returns the (B, 4, 4) rigid transform that carries a point from the target camera's
frame into the source camera's frame, the transform `self_supervised_depth.inverse_warp` needs to read the source
image at the target's pixels. The network predicts an axis-angle rotation and a translation, each scaled so that
a fresh network starts near the identity.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

ROTATION_SCALE = 0.01
TRANSLATION_SCALE = 0.1
"""Multipliers on the raw rotation and translation: a fresh network starts near the identity, and the motions
of driving video (a few milliradians, a translation of about a tenth of the mean depth, see
`self_supervised_depth.scale_normalised_depth`) lie at raw values near 1, which Adam reaches within hundreds of
steps."""


def rotation_from_axis_angle(axis_angle: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle (direction = axis, norm = angle in radians) -> (B, 3, 3) rotation (Rodrigues)."""
    angle = axis_angle.norm(dim=1, keepdim=True).clamp_min(1e-7)
    axis = axis_angle / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).view(-1, 3, 3)
    outer = axis[:, :, None] * axis[:, None, :]
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(outer)
    return cos * eye + sin * cross + (1.0 - cos) * outer


def pose_matrix(axis_angle: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """(B, 3) rotation and (B, 3) translation -> (B, 4, 4) rigid transform [R t; 0 1]."""
    matrix = torch.zeros(axis_angle.shape[0], 4, 4, dtype=axis_angle.dtype, device=axis_angle.device)
    matrix[:, :3, :3] = rotation_from_axis_angle(axis_angle)
    matrix[:, :3, 3] = translation
    matrix[:, 3, 3] = 1.0
    return matrix


def rigid_inverse(transform: torch.Tensor) -> torch.Tensor:
    """The inverse of (B, 4, 4) rigid transforms [R t; 0 1]: [R^T -R^T t; 0 1]."""
    rotation = transform[:, :3, :3].transpose(1, 2)
    inverse = torch.zeros_like(transform)
    inverse[:, :3, :3] = rotation
    inverse[:, :3, 3] = -(rotation @ transform[:, :3, 3:4])[:, :, 0]
    inverse[:, 3, 3] = 1.0
    return inverse


class PoseNet(nn.Module):
    """Two RGB frames in [0, 1] (any size) -> the (B, 4, 4) transform from the target camera to the source camera.

    widths: channels of the stride-2 convolutions; the last feature map is averaged into one 6-vector.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128, 128, 128)) -> None:
        super().__init__()
        if not widths:
            raise ValueError("PoseNet needs at least one convolution width")
        layers: list[nn.Module] = []
        channels = 6
        for index, width in enumerate(widths):
            kernel = 7 if index == 0 else 5 if index == 1 else 3
            layers += [nn.Conv2d(channels, width, kernel, 2, kernel // 2), nn.ReLU(inplace=True)]
            channels = width
        self.encoder = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 6, 1)

    def between(self, target: torch.Tensor, source: torch.Tensor, source_is_earlier: bool) -> torch.Tensor:
        """The target -> source transform, with the frames always shown in time order (monodepth2): for an earlier
        source the network gives source -> target, which is inverted. The network then only ever sees the camera
        move forward in time."""
        if source_is_earlier:
            return rigid_inverse(self(source, target))
        return self(target, source)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        features = self.encoder(torch.cat([target, source], dim=1) * 2.0 - 1.0)
        motion = self.head(features).mean(dim=(2, 3))
        return pose_matrix(motion[:, :3] * ROTATION_SCALE, motion[:, 3:] * TRANSLATION_SCALE)
