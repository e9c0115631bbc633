"""Physics priors on torch batches: dark channel, the dark-channel-prior teacher, and prior depth fields.

All functions take and return B,C,H,W float tensors (RGB in [0, 1]) and run on any device. The teacher mirrors
`physics.dark_channel.DarkChannelDehazer` (He et al.) so that the network can start from what the classical
prior knows about real haze; the prior depth fields give the haze synthesis a depth before the depth network has
learnt one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LUMA = (0.299, 0.587, 0.114)


def _window(length: int, radius: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each position's window of 2r+1 along an axis of `length`, clipped at the borders: its first index and one
    past its last."""
    index = torch.arange(length, device=device)
    return (index - radius).clamp(min=0), (index + radius + 1).clamp(max=length)


def _box_sum(x: torch.Tensor, window: tuple[torch.Tensor, torch.Tensor], dim: int) -> torch.Tensor:
    """Sum over each position's `window` along `dim`, by cumulative sums: O(1) per pixel."""
    cumulative = torch.cumsum(x, dim)
    cumulative = torch.cat([torch.zeros_like(cumulative.narrow(dim, 0, 1)), cumulative], dim)
    lower, upper = window
    return cumulative.index_select(dim, upper) - cumulative.index_select(dim, lower)


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, counting only pixels inside the image (separable cumulative sums); each channel
    on its own, so that stacking maps along the channels filters them all in one pass."""
    rows, cols = _window(x.shape[-2], radius, x.device), _window(x.shape[-1], radius, x.device)
    count = ((rows[1] - rows[0])[:, None] * (cols[1] - cols[0])[None, :]).to(x.dtype)
    return _box_sum(_box_sum(x, cols, -1), rows, -2) / count


def guided_filter(guide: torch.Tensor, source: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter with a 1-channel guide: edge-preserving smoothing of `source` along `guide`."""
    radius = max(1, min(radius, (min(guide.shape[-2:]) - 1) // 2))
    channels = source.shape[1]
    means = box_mean(torch.cat([guide, source, guide * source, guide * guide], 1), radius)
    mean_g, mean_s, mean_gs, mean_gg = means.split([1, channels, channels, 1], 1)
    a = (mean_gs - mean_g * mean_s) / (mean_gg - mean_g * mean_g + eps)
    b = mean_s - a * mean_g
    mean_a, mean_b = box_mean(torch.cat([a, b], 1), radius).split(channels, 1)
    return mean_a * guide + mean_b


def gray(image: torch.Tensor) -> torch.Tensor:
    """B,3,H,W RGB -> B,1,H,W luminance."""
    weights = image.new_tensor(LUMA).view(1, 3, 1, 1)
    return (image * weights).sum(1, keepdim=True)


def dark_channel(image: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """Minimum over the colour channels and a patch x patch window: B,3,H,W -> B,1,H,W."""
    minimum = image.amin(1, keepdim=True)
    half = patch // 2
    rows = -F.max_pool2d(-F.pad(minimum, [half, half, 0, 0], mode="replicate"), (1, patch), stride=1)
    return -F.max_pool2d(-F.pad(rows, [0, 0, half, half], mode="replicate"), (patch, 1), stride=1)


def estimate_airlight(image: torch.Tensor, dark: torch.Tensor, top_fraction: float = 0.001) -> torch.Tensor:
    """Mean colour of the pixels with the brightest `top_fraction` of the dark channel: B,3,1,1."""
    batch = image.shape[0]
    flat_dark = dark.reshape(batch, -1)
    count = max(1, int(round(flat_dark.shape[1] * top_fraction)))
    index = flat_dark.topk(count, dim=1).indices
    colours = image.reshape(batch, 3, -1).gather(2, index.unsqueeze(1).expand(-1, 3, -1))
    return colours.mean(2).view(batch, 3, 1, 1)


@torch.no_grad()
def dcp_teacher(hazy: torch.Tensor, patch: int = 15, omega: float = 0.95, t0: float = 0.1,
                radius: int | None = None, eps: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """The dark channel prior's transmission (guided-filter refined, B,1,H,W in [t0, 1]) and airlight (B,3,1,1).

    `radius` defaults to a tenth of the image's short side, the proportion of the reference DCP at 600 px.
    """
    hazy = hazy.float()
    airlight = estimate_airlight(hazy, dark_channel(hazy, patch)).clamp_min(1e-3)
    raw = 1.0 - omega * dark_channel(hazy / airlight, patch)
    radius = radius or max(2, min(hazy.shape[-2:]) // 10)
    refined = guided_filter(gray(hazy), raw, radius, eps)
    return refined.clamp(t0, 1.0), airlight


def normalise_depth(depth: torch.Tensor, near: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Scale each map of B,1,H,W to [near, 1] (near per sample or scalar): the relative depth the synthesis uses."""
    flat = depth.reshape(depth.shape[0], -1)
    low = flat.amin(1).view(-1, 1, 1, 1)
    high = flat.amax(1).view(-1, 1, 1, 1)
    unit = (depth - low) / (high - low).clamp_min(1e-6)
    return near + (1.0 - near) * unit


def prior_depth(clear: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A plausible relative depth (B,1,H,W in [near, 1]) for images whose depth is unknown.

    A mix of a vertical ramp (far at the top, as on roads and in rooms seen level) and a smooth random field,
    filtered along the image's edges with a guided filter so that depth changes where the image does. The depth
    network replaces it once it has learnt (`Recipe.net_depth_after`).
    """
    batch, _, height, width = clear.shape
    device = clear.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device="cpu").to(device)

    rows = torch.linspace(1.0, 0.0, height, device=device).view(1, 1, height, 1).expand(batch, 1, height, width)
    ramp = rows ** (0.5 + 1.5 * uniform(batch, 1, 1, 1))
    field = F.interpolate(uniform(batch, 1, 4, 4), size=(height, width), mode="bicubic", align_corners=False)
    mix = uniform(batch, 1, 1, 1)
    depth = mix * ramp + (1.0 - mix) * field
    depth = guided_filter(gray(clear), depth, max(2, min(height, width) // 8), 1e-2)
    return normalise_depth(depth, near=0.3 * uniform(batch, 1, 1, 1))
