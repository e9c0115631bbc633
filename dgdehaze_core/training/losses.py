"""The training losses, one function each. Every function returns a scalar tensor; lower is better.

On hazy images synthesised from clear ones (J, depth d, transmission t = exp(-beta d), airlight A known):
- `cycle_loss`: the dehazed image must be J again (the dehazer's decoder output, and J inverted from its t and A);
- `transmission_loss`, `airlight_loss`: the predicted t and A must be the ones the haze was made with;
- `depth_consistency_loss`: the depth network must see the same depth through the haze as on the clear image.
On real hazy images H (no ground truth):
- `reconstruction_loss`: J, t and A must re-synthesise H through the scattering model;
- `depth_transmission_loss`: the depth implied by t (-ln t, up to beta) must agree with the depth network;
- `dark_channel_loss`: the dehazed image's dark channel should be dark (He et al.'s prior);
- `edge_aware_smoothness`: t and d vary smoothly except where the image has edges;
- `teacher_loss`: t stays near the dark channel prior's transmission while the network is young.
`discriminator_loss`/`generator_loss` are the least-squares GAN terms of the optional PatchGAN; the optional
detector-feature loss (the shipped detector's backbone on the dehazed synthetic image against the clear one) lives
with its frozen network in `detector_features`.
Depth is relative (its scale is unknown), so depth comparisons are made on mean-centred log depth.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dgdehaze_core.physics.scattering import invert_scattering, synthesize_haze
from dgdehaze_core.training.priors import dark_channel


def cycle_loss(restored: torch.Tensor, clear: torch.Tensor) -> torch.Tensor:
    """L1 between the dehazed synthetic image and the clear image it was made from."""
    return F.l1_loss(restored.float(), clear.float())


def physics_restore(hazy: torch.Tensor, transmission: torch.Tensor, airlight: torch.Tensor) -> torch.Tensor:
    """J = (I - A) / t + A from the network's own t and A (the output path that runs at any resolution)."""
    return invert_scattering(hazy.float(), transmission.float(), airlight.float())


def transmission_loss(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true transmission."""
    return F.l1_loss(predicted.float(), true.float())


def airlight_loss(predicted: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true airlight colour (B,3,1,1)."""
    return F.l1_loss(predicted.float().reshape(-1, 3), true.float().reshape(-1, 3))


def centred_log_depth(depth: torch.Tensor) -> torch.Tensor:
    """log depth minus its per-image mean: relative depth with the unknown global scale removed."""
    log = depth.float().clamp_min(1e-4).log()
    return log - log.mean(dim=(1, 2, 3), keepdim=True)


def scale_invariant_depth_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between mean-centred log depths: blind to a global scale of either map."""
    return F.l1_loss(centred_log_depth(predicted), centred_log_depth(target))


def depth_consistency_loss(depth_from_hazy: torch.Tensor, depth_used: torch.Tensor) -> torch.Tensor:
    """The depth predicted from the synthetic hazy image must match the depth the haze was made with."""
    return scale_invariant_depth_loss(depth_from_hazy, depth_used.detach())


def reconstruction_loss(clear: torch.Tensor, transmission: torch.Tensor, airlight: torch.Tensor,
                        hazy: torch.Tensor) -> torch.Tensor:
    """L1 between the real hazy image and I = J t + A (1 - t) rebuilt from the network's J, t and A."""
    rebuilt = synthesize_haze(clear.float(), -torch.log(transmission.float().clamp(1e-4, 1.0)), 1.0,
                              airlight.float())
    return F.l1_loss(rebuilt, hazy.float())


def depth_transmission_loss(depth: torch.Tensor, transmission: torch.Tensor) -> torch.Tensor:
    """The depth network must agree with the depth the dehazer's t implies (d = -ln t / beta, beta unknown).

    The transmission is the teacher here (detached); pixels with t near 1 carry no depth and are down-weighted.
    """
    implied = -torch.log(transmission.detach().float().clamp(1e-3, 0.999))
    weight = (1.0 - transmission.detach().float()).clamp(0.05, 1.0)
    difference = (centred_log_depth(depth) - centred_log_depth(implied)).abs()
    return (difference * weight).sum() / weight.sum()


def dark_channel_loss(clear: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """Mean dark channel of the dehazed image: near 0 for haze-free outdoor scenes (He et al.)."""
    return dark_channel(clear.float(), patch).mean()


def edge_aware_smoothness(field: torch.Tensor, image: torch.Tensor, sharpness: float = 10.0) -> torch.Tensor:
    """Mean gradient of `field` (B,1,H,W), each weighted by exp(-sharpness * |image gradient|).

    Pass depth as `centred_log_depth(depth)` so that the loss does not depend on the depth's scale.
    """
    field = field.float()
    image = image.float()
    dx_f = (field[..., :, 1:] - field[..., :, :-1]).abs()
    dy_f = (field[..., 1:, :] - field[..., :-1, :]).abs()
    dx_i = (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1, keepdim=True)
    dy_i = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1, keepdim=True)
    return (dx_f * torch.exp(-sharpness * dx_i)).mean() + (dy_f * torch.exp(-sharpness * dy_i)).mean()


def teacher_loss(transmission: torch.Tensor, airlight: torch.Tensor, teacher_t: torch.Tensor,
                 teacher_a: torch.Tensor) -> torch.Tensor:
    """L1 to the dark channel prior's transmission and airlight on real hazy images."""
    return F.l1_loss(transmission.float(), teacher_t) + F.l1_loss(airlight.float().reshape(-1, 3),
                                                                 teacher_a.reshape(-1, 3))


def discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN: real clear patches towards 1, dehazed patches towards 0."""
    return 0.5 * (((real_scores.float() - 1.0) ** 2).mean() + (fake_scores.float() ** 2).mean())


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN: the dehazer wants its output scored as real clear (1)."""
    return ((fake_scores.float() - 1.0) ** 2).mean()
