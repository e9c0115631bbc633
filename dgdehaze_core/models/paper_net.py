"""The paper's released network ("Image dehazing via self-supervised depth guidance", Pattern Recognition 2024), as
published, so that a user holding its released weights (`model_Roadmap.pth`) can run them here.

Written from the architecture as published (the authors' test code read as documentation, ../shared/notes/
seed-architecture.md), with the module names of the official state_dict so that its 2,159 tensors load as they are
(`load_official`; the `module.` prefix of nn.DataParallel is taken off):

- `depth_finetune`: a DenseDepth-style depth branch, torchvision's DenseNet-169 encoder (held as `depth_es.model`
  and registered again under the official aliases conv0 ... trans_block3, model_out, hence its tensors appear twice
  in the state_dict) and four up-projections; the map is clamped to at least 1 and its inverse (0, 1] is used.
- `mix1`: the learned gate sigmoid(w) that blends the inverse depth (three channels) with the hazy image.
- `Tfuse_second`: two overlapping 7x7 stride-2 patch embeddings (the depth-guided input and the hazy image), two
  cross-attention blocks (queries from the depth-guided tokens, keys and values from the hazy tokens, spatially
  reduced 4x), a 3x3 stride-2 embedding, two self-attention blocks (reduced 2x), and a decoder of two transposed
  convolutions and three 5x5 convolutions ending in tanh.

Input: RGB in [0, 1], height and width multiples of 32 (`STRIDE`). `official_forward` gives what the released
code gives, (image from tanh, inverse depth); `forward` what the package's backends take (DECODER_OUTPUTS): "clear",
that image clamped to [0, 1] as the official test saves it, and "depth", the clamped depth (>= 1, larger farther).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from dgdehaze_core.models.state_fit import misfit

STRIDE = 32
"""The encoder's total downsampling: inputs must be multiples of it."""
OFFICIAL_TENSORS = 2159
"""Tensors in the official state_dict (the DenseNet's counted twice: under `model.features` and the aliases)."""
OFFICIAL_PARAMETERS = 45_024_005
OFFICIAL_PREFIX = "module."


class UpProject(nn.Module):
    """Upsample 2x (bilinear, corners aligned), concatenate the encoder's skip, two 3x3 convolutions, LeakyReLU."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu2 = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(x.shape[2] * 2, x.shape[3] * 2), mode="bilinear", align_corners=True)
        return self.relu2(self.conv2(self.conv1(torch.cat([x, skip], dim=1))))


class DenseDepthEstimator(nn.Module):
    """DenseNet-169 encoder and four up-projections: a one-channel depth at half the input's resolution."""

    def __init__(self) -> None:
        super().__init__()
        # imported here, where the paper's network is built: torchvision's import brings torch._dynamo's,
        # seconds of every command's and the node's start that nothing else there needs
        import torchvision

        self.model = torchvision.models.densenet169(weights=None)
        features = self.model.features
        self.conv0, self.norm0, self.relu0, self.pool0 = features.conv0, features.norm0, features.relu0, features.pool0
        self.dense_block1, self.trans_block1 = features.denseblock1, features.transition1
        self.dense_block2, self.trans_block2 = features.denseblock2, features.transition2
        self.dense_block3, self.trans_block3 = features.denseblock3, features.transition3
        self.dense_block4 = features.denseblock4
        self.model_out = features.norm5
        self.midconv = nn.Conv2d(1664, 1664, 1)
        self.up1, self.up2 = UpProject(1664 + 256, 832), UpProject(832 + 128, 416)
        self.up3, self.up4 = UpProject(416 + 64, 208), UpProject(208 + 64, 104)
        self.finalconv = nn.Conv2d(104, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.relu0(self.norm0(self.conv0(x)))
        quarter = self.pool0(half)
        eighth = self.trans_block1(self.dense_block1(quarter))
        sixteenth = self.trans_block2(self.dense_block2(eighth))
        deepest = F.relu(self.model_out(self.dense_block4(self.trans_block3(self.dense_block3(sixteenth)))))
        x = self.up1(self.midconv(deepest), sixteenth)
        x = self.up2(x, eighth)
        x = self.up3(x, quarter)
        return self.finalconv(self.up4(x, half))


class InverseDepth(nn.Module):
    """The depth branch at the input's size, clamped to at least 1; returns (depth, 1 / depth)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth_es = DenseDepthEstimator()
        self.threeshold = nn.Threshold(1.0, 1.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        depth = F.interpolate(self.depth_es(x), size=x.shape[2:], mode="bilinear", align_corners=True)
        depth = self.threeshold(depth)
        return depth, 1.0 / depth


class Mix(nn.Module):
    """sigmoid(w) * a + (1 - sigmoid(w)) * b, w learned (starts at -0.6)."""

    def __init__(self, start: float = -0.6) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([start]))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.w)
        return a * gate + b * (1.0 - gate)


class PatchEmbed(nn.Module):
    """Overlapping patch embedding: a strided convolution, then tokens (B, H*W, C) normalised."""

    def __init__(self, in_channels: int, dim: int, kernel: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel, stride=2, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class DepthwiseConv(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, channels = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(batch, channels, height, width))
        return x.flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """Linear, depthwise 3x3 over the token grid, GELU, linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DepthwiseConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), height, width)))


def _reduced(tokens: torch.Tensor, height: int, width: int, conv: nn.Conv2d, norm: nn.LayerNorm) -> torch.Tensor:
    batch, _, channels = tokens.shape
    grid = tokens.transpose(1, 2).reshape(batch, channels, height, width)
    return norm(conv(grid).flatten(2).transpose(1, 2))


def _attend(q: torch.Tensor, kv: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    batch, tokens, channels = q.shape
    q = q.reshape(batch, tokens, heads, channels // heads).transpose(1, 2)
    k, v = kv.reshape(batch, -1, 2, heads, channels // heads).permute(2, 0, 3, 1, 4)
    weights = ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # scaled first: q·k may pass fp16's 65504
    return (weights @ v).transpose(1, 2).reshape(batch, tokens, channels)


class CrossAttention(nn.Module):
    """Queries from the depth-guided tokens, keys and values from the hazy tokens reduced `reduction` times."""

    def __init__(self, dim: int, heads: int, reduction: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv2 = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.sr2 = nn.Conv2d(dim, dim, reduction, stride=reduction)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, guided: torch.Tensor, hazy: torch.Tensor, height: int, width: int) -> torch.Tensor:
        kv = self.kv2(_reduced(hazy, height, width, self.sr2, self.norm2))
        return self.proj(_attend(self.q(guided), kv, self.heads, self.scale))


class SelfAttention(nn.Module):
    """Self-attention with keys and values reduced `reduction` times (PVT's spatial reduction)."""

    def __init__(self, dim: int, heads: int, reduction: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, reduction, stride=reduction)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        kv = self.kv(_reduced(x, height, width, self.sr, self.norm))
        return self.proj(_attend(self.q(x), kv, self.heads, self.scale))


class CrossBlock(nn.Module):
    """hazy + cross-attention(guided, hazy), then + MixFFN: the hazy stream goes on."""

    def __init__(self, dim: int, heads: int, reduction: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = CrossAttention(dim, heads, reduction)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, guided: torch.Tensor, hazy: torch.Tensor, height: int, width: int) -> torch.Tensor:
        hazy = hazy + self.attn(self.norm1(guided), self.norm2(hazy), height, width)
        return hazy + self.mlp(self.norm3(hazy), height, width)


class SelfBlock(nn.Module):
    def __init__(self, dim: int, heads: int, reduction: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = SelfAttention(dim, heads, reduction)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), height, width)
        return x + self.mlp(self.norm2(x), height, width)


class FusionEncoder(nn.Module):
    """Stage 1 (half resolution): cross-attention of the depth-guided and hazy tokens; stage 2 (quarter):
    self-attention. Returns the stage-2 map (B, 64, H/4, W/4)."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.patch_embed1, self.patch_embed2 = PatchEmbed(3, dim, 7), PatchEmbed(3, dim, 7)
        self.patch_embed3 = PatchEmbed(dim, dim, 3)
        self.block1 = nn.ModuleList(CrossBlock(dim, 1, 4, 2) for _ in range(2))
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.block2 = nn.ModuleList(SelfBlock(dim, 2, 2, 2) for _ in range(2))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, guided: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        guided_tokens, height, width = self.patch_embed1(guided)
        tokens, _, _ = self.patch_embed2(hazy)
        for block in self.block1:
            tokens = block(guided_tokens, tokens, height, width)
        grid = self.norm1(tokens).transpose(1, 2).reshape(hazy.shape[0], -1, height, width)
        tokens, height, width = self.patch_embed3(grid)
        for block in self.block2:
            tokens = block(tokens, height, width)
        return self.norm2(tokens).transpose(1, 2).reshape(hazy.shape[0], -1, height, width)


def _upsample(dim: int) -> nn.Sequential:
    """Transposed convolution 2x, then a 2x2 mean over a one-pixel reflection pad (the official smoothing)."""
    return nn.Sequential(nn.ConvTranspose2d(dim, dim, 4, stride=2, padding=1), nn.ReflectionPad2d((1, 0, 1, 0)),
                         nn.AvgPool2d(2, stride=1), nn.ReLU())


class FusionNet(nn.Module):
    """The fusion encoder and its decoder back to the input's size: an image in (-1, 1) from tanh."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.Tfuse = FusionEncoder(dim)
        self.deconv1, self.deconv2 = _upsample(dim), _upsample(dim)
        self.output1 = nn.Sequential(nn.Conv2d(dim, dim, 5, padding=2), nn.Conv2d(dim, dim, 5, padding=2),
                                     nn.Conv2d(dim, 3, 5, padding=2), nn.Tanh())

    def forward(self, guided: torch.Tensor, hazy: torch.Tensor) -> torch.Tensor:
        return self.output1(self.deconv2(self.deconv1(self.Tfuse(guided, hazy))))


class PaperNet(nn.Module):
    """The released network: hazy RGB in [0, 1] (B, 3, H, W), H and W multiples of 32."""

    stride = STRIDE
    config_name = "paper"
    depth_guidance = True
    outputs = ("clear", "depth")
    """inference.backends.DECODER_OUTPUTS: no transmission or airlight."""

    def __init__(self) -> None:
        super().__init__()
        self.depth_finetune = InverseDepth()
        self.mix1 = Mix()
        self.Tfuse_second = FusionNet()

    def official_forward(self, hazy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image from tanh, inverse depth in (0, 1]), as the released code returns them."""
        _, inverse_depth = self.depth_finetune(hazy)
        guided = self.mix1(inverse_depth.expand(-1, 3, -1, -1), hazy)
        return self.Tfuse_second(guided, hazy), inverse_depth

    def forward(self, hazy: torch.Tensor, with_clear: bool = True) -> dict[str, torch.Tensor]:
        """The backends' outputs: "clear" (the image clamped to [0, 1]) and "depth" (1 / inverse depth, >= 1).
        `with_clear` is accepted for the common interface; this network's image is its only path."""
        image, inverse_depth = self.official_forward(hazy)
        return {"clear": image.clamp(0.0, 1.0), "depth": 1.0 / inverse_depth}


def is_official_state_dict(state: Mapping[str, object]) -> bool:
    """A state_dict in the released layout (with or without nn.DataParallel's `module.` prefix)."""
    return any(isinstance(key, str) and re.match(r"^(module\.)?depth_finetune\.depth_es\.", key) for key in state)


def load_official(state: Mapping[str, torch.Tensor]) -> PaperNet:
    """A PaperNet holding a state_dict in the released layout (`model_Roadmap.pth`: nn.DataParallel's, every key
    prefixed `module.`); ValueError naming, in one line, what is missing, unexpected or of another shape, a tensor
    held both with and without the prefix, or a DenseNet tensor whose two names (`depth_es.model.features.*` and
    its alias) hold different values: loading either would keep one of the two without a word."""
    unprefixed = {key[len(OFFICIAL_PREFIX):] if key.startswith(OFFICIAL_PREFIX) else key: value
                  for key, value in state.items()}
    if len(unprefixed) != len(state):
        twice = [key for key in state if not key.startswith(OFFICIAL_PREFIX) and OFFICIAL_PREFIX + key in state]
        raise ValueError(f"not the released network's layout: {len(twice)} tensors are held both with and without "
                         f"the {OFFICIAL_PREFIX!r} prefix (first: {twice[0]!r})")
    model = PaperNet()
    problem = misfit(model, unprefixed) or _disagreeing_aliases(model, unprefixed)
    if problem:
        raise ValueError(f"not the released network's layout: {problem}")
    model.load_state_dict(unprefixed)
    return model.eval()


def _disagreeing_aliases(model: PaperNet, state: Mapping[str, torch.Tensor]) -> str:
    """In one line, which names of one tensor of `model` (the DenseNet's, registered twice) hold different values
    in `state`, or ''."""
    names_of: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names_of.setdefault(id(tensor), []).append(name)
    differing = [(names[0], other) for names in names_of.values() for other in names[1:]
                 if not torch.equal(state[names[0]], state[other])]
    if not differing:
        return ""
    return (f"{len(differing)} tensors held under two names differ between them (first: {differing[0][0]!r} and "
            f"{differing[0][1]!r})")
