"""Self-supervised depth from video (monodepth2-style): view synthesis by inverse warping and its losses.

A target frame's depth D and the motion T (target camera -> source camera) predict where each target pixel lies in
a source frame, p_s ~ K T D(p_t) K^-1 p_t; sampling the source there re-synthesises the target. The photometric
error between the two, alpha (1 - SSIM) / 2 + (1 - alpha) |a - b| with alpha = 0.85, trains depth and pose
together without any depth label. Of monodepth2's devices:
- per-pixel minimum over the source frames (a pixel occluded in one source is usually visible in the other);
- auto-masking: a pixel whose error is smaller for the unwarped source than for the warped one (a static camera,
  an object moving with the camera, a textureless region) is left out of the loss;
- edge-aware smoothness on the mean-normalised disparity, weighted down where the image has edges.
The depth is warped after `scale_normalised_depth`, which fixes the scale ambiguity (see there). The loss may also
be taken on shrunk copies of the frames and the disparity (`downscale_intrinsics`): a pixel there spans several
full-resolution pixels, so a depth that is far off still gets a useful gradient (the role of monodepth2's scales).
Tensors are (B, C, H, W); images are RGB in [0, 1]; K is (B, 3, 3) at the image's resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

SSIM_WEIGHT = 0.85
"""alpha in alpha (1 - SSIM) / 2 + (1 - alpha) L1, monodepth2's value."""
IDENTITY_JITTER = 1e-5
"""Noise added to the identity error so that ties (a truly static pixel) do not always favour the identity."""


def scale_normalised_depth(depth: torch.Tensor) -> torch.Tensor:
    """Depth divided per image so that its inverse has mean 1 (Wang et al., CVPR 2018).

    Depth and translation are only known up to one common scale; without this, the two shrink together until the
    disparity saturates (a slow camera asks for a tiny translation). Fixing the mean disparity leaves the scale to
    the pose network alone.
    """
    return depth * (1.0 / depth).mean(dim=(2, 3), keepdim=True)


def downscale_intrinsics(intrinsics: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, 3, 3) K for images shrunk by an integer `factor` (pixel centres at integer coordinates)."""
    scaled = intrinsics.clone()
    scaled[:, :2, :2] = intrinsics[:, :2, :2] / factor
    scaled[:, :2, 2] = (intrinsics[:, :2, 2] + 0.5) / factor - 0.5
    return scaled


def pixel_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(3, H*W) homogeneous pixel coordinates (x, y, 1) of every pixel centre, x fastest."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=like.dtype, device=like.device),
                            torch.arange(width, dtype=like.dtype, device=like.device), indexing="ij")
    return torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones_like(xs).reshape(-1)])


def backproject(depth: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) depth -> (B, 4, H*W) homogeneous 3-D points in the camera frame."""
    batch, _, height, width = depth.shape
    rays = torch.linalg.inv(intrinsics) @ pixel_grid(height, width, depth)
    points = rays * depth.reshape(batch, 1, -1)
    return torch.cat([points, torch.ones_like(points[:, :1])], dim=1)


def project(points: torch.Tensor, intrinsics: torch.Tensor, transform: torch.Tensor, height: int,
            width: int) -> torch.Tensor:
    """(B, 4, N) points -> (B, H, W, 2) sampling grid in [-1, 1] (grid_sample's, align_corners=False) after
    moving them by `transform` (B, 4, 4) and projecting with `intrinsics`."""
    camera = (transform @ points)[:, :3]
    pixels = intrinsics @ camera
    xy = pixels[:, :2] / pixels[:, 2:3].clamp_min(1e-6)
    grid_x = (xy[:, 0] + 0.5) / width * 2.0 - 1.0
    grid_y = (xy[:, 1] + 0.5) / height * 2.0 - 1.0
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, height, width, 2)


def inverse_warp(source: torch.Tensor, depth: torch.Tensor, transform: torch.Tensor,
                 intrinsics: torch.Tensor) -> torch.Tensor:
    """The source image resampled at the target's pixels: the target as the source camera saw it.

    depth: the target's (B, 1, H, W); transform: target camera -> source camera. Pixels that fall outside the
    source take the border's value (monodepth2's padding).
    """
    height, width = depth.shape[-2:]
    grid = project(backproject(depth, intrinsics), intrinsics, transform, height, width)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)


def ssim_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 per pixel and channel over 3x3 windows (reflection padded), in [0, 1]."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    a, b = F.pad(a, (1, 1, 1, 1), mode="reflect"), F.pad(b, (1, 1, 1, 1), mode="reflect")
    mu_a, mu_b = F.avg_pool2d(a, 3, 1), F.avg_pool2d(b, 3, 1)
    var_a = F.avg_pool2d(a * a, 3, 1) - mu_a ** 2
    var_b = F.avg_pool2d(b * b, 3, 1) - mu_b ** 2
    cov = F.avg_pool2d(a * b, 3, 1) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return ((1 - numerator / denominator) / 2).clamp(0.0, 1.0)


def photometric_error(predicted: torch.Tensor, target: torch.Tensor, alpha: float = SSIM_WEIGHT) -> torch.Tensor:
    """(B, 1, H, W) alpha (1 - SSIM) / 2 + (1 - alpha) |predicted - target|, averaged over the channels."""
    l1 = (predicted - target).abs().mean(dim=1, keepdim=True)
    return alpha * ssim_distance(predicted, target).mean(dim=1, keepdim=True) + (1 - alpha) * l1


@dataclass
class Reprojection:
    """The per-pixel reprojection loss of one target frame and what it was made of."""

    loss: torch.Tensor
    """Scalar: mean over every pixel of the chosen per-pixel error, 0 where auto-masking chose an unwarped source."""
    error: torch.Tensor
    """(B, 1, H, W): the minimum warped error per pixel (over the sources)."""
    mask: torch.Tensor
    """(B, 1, H, W) float: 1 where a warped source won, 0 where auto-masking chose an unwarped source."""


def reprojection_loss(target: torch.Tensor, warped: Sequence[torch.Tensor], sources: Sequence[torch.Tensor],
                      automask: bool = True, min_reprojection: bool = True,
                      alpha: float = SSIM_WEIGHT) -> Reprojection:
    """monodepth2's reprojection loss of `target` against its `warped` sources (one per source frame).

    min_reprojection: the per-pixel minimum over the sources (else their mean). automask: the unwarped `sources`
    compete in the same minimum, and the pixels they win count 0 in the mean over every pixel (monodepth2 counts
    their identity error, which carries no gradient: the gradient is the same): those pixels are left out of
    training, and the others train as without auto-masking.
    """
    if not warped or len(warped) != len(sources):
        raise ValueError(f"need one warped image per source frame, got {len(warped)} and {len(sources)}")
    errors = torch.cat([photometric_error(image, target, alpha) for image in warped], dim=1)
    error = errors.min(dim=1, keepdim=True).values if min_reprojection else errors.mean(dim=1, keepdim=True)
    if not automask:
        return Reprojection(error.mean(), error, torch.ones_like(error))
    with torch.no_grad():
        identity = torch.cat([photometric_error(image, target, alpha) for image in sources], dim=1)
        identity = identity + IDENTITY_JITTER * torch.randn_like(identity)
        if not min_reprojection:
            identity = identity.mean(dim=1, keepdim=True)
        identity = identity.min(dim=1, keepdim=True).values
    mask = (error < identity).float()
    return Reprojection((error * mask).sum() / mask.numel(), error, mask)


def smoothness_loss(disparity: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware smoothness of the disparity divided by its per-image mean (scale-free: shrinking the disparity
    cannot lower it): |d/dx d*| exp(-|d/dx I|) + the same along y."""
    normalised = disparity / disparity.mean(dim=(2, 3), keepdim=True).clamp_min(1e-7)
    grad_x = (normalised[:, :, :, :-1] - normalised[:, :, :, 1:]).abs()
    grad_y = (normalised[:, :, :-1, :] - normalised[:, :, 1:, :]).abs()
    image_x = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(dim=1, keepdim=True)
    image_y = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(dim=1, keepdim=True)
    return (grad_x * torch.exp(-image_x)).mean() + (grad_y * torch.exp(-image_y)).mean()
