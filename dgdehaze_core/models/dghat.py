"""DGHAT: the depth-guided hybrid attention transformer that dehazes an image given its depth.

    hazy (B,3,H,W), depth (B,1,H,W)
      -> depth-guided input  G = (1 - s) * hazy + s * inverse_depth,  s = sigmoid(w), w starts at -0.6
      -> two overlapping patch embeddings (hazy, guided) to stride `stage1_stride`
      -> stage 1: hybrid blocks (queries from G's tokens; cross-attention to the hazy tokens, self-attention, gate)
      -> stage 2: stride x2 embedding and self-attention blocks
      -> decoder with skips -> clear image (B,3,H,W); heads: transmission (B,1,H,W), airlight (B,3,1,1)

The clear image is predicted as a residual on the hazy image's logits, so it stays in (0, 1) with gradients
everywhere. Transmission and airlight make the physics inversion J = (I - A) / t + A available at any resolution.
One class, two factory configurations (`lite`, `base`), as DehazeFormer's sizes are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dgdehaze_core.models.depth_guided_attention import DepthGuidedHybridBlock, SelfAttentionBlock
from dgdehaze_core.models.depth_net import UpFuse, conv_bn_act, normalized_inverse_depth

MIX_GATE_INIT = -0.6
"""Initial logit of the depth mix gate: sigmoid(-0.6) = 0.35 of inverse depth in the guided input (as released)."""
AIRLIGHT_INIT = 0.8
"""Airlight predicted by an untrained head (a typical grey sky), so that early physics outputs are sane."""
LOGIT_EPS = 1e-3


@dataclass(frozen=True)
class DGHATConfig:
    """Sizes of one DGHAT.

    stem_dim: channels of the stride-4 patch embeddings; stage1_stride: 4 or 8 (where the attention runs);
    dims, depths, heads, kv_grid: per stage (1: depth-guided hybrid blocks, 2: self-attention blocks);
    mlp_ratio: Mix-FFN expansion; decoder_dim: channels of the decoder at stride 4.
    """

    stem_dim: int
    stage1_stride: int
    dims: tuple[int, int]
    depths: tuple[int, int]
    heads: tuple[int, int]
    kv_grid: tuple[int, int]
    mlp_ratio: float
    decoder_dim: int

    def __post_init__(self) -> None:
        if self.stage1_stride not in (4, 8):
            raise ValueError(f"stage1_stride must be 4 or 8, got {self.stage1_stride}")


class PatchEmbedding(nn.Module):
    """Overlapping 7x7 stride-4 patch embedding, then (for stage1_stride 8) a 3x3 stride-2 one.

    Returns the stride-4 map (a decoder skip) and the stage-1 map.
    """

    def __init__(self, stem_dim: int, dim: int, stage1_stride: int) -> None:
        super().__init__()
        self.stem = conv_bn_act(3, stem_dim, 7, 4)
        if stage1_stride == 8:
            self.to_stage = nn.Conv2d(stem_dim, dim, 3, 2, 1)
        else:
            self.to_stage = nn.Conv2d(stem_dim, dim, 1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stem = self.stem(image * 2.0 - 1.0)
        return stem, self.to_stage(stem)


def to_tokens(grid_map: torch.Tensor) -> torch.Tensor:
    return grid_map.flatten(2).transpose(1, 2)


def to_map(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


class DGHAT(nn.Module):
    """The dehazer: `forward(hazy, depth)` -> {"clear", "transmission", "airlight"}; H, W multiples of `stride`.

    `with_clear=False` skips the decoder's full-resolution image branch (a third of lite's time at 640x480) and
    returns transmission and airlight only.
    """

    def __init__(self, config: DGHATConfig) -> None:
        super().__init__()
        self.config = config
        self.stride = config.stage1_stride * 2
        dim1, dim2 = config.dims
        self.mix_gate = nn.Parameter(torch.tensor([MIX_GATE_INIT]))
        self.hazy_embed = PatchEmbedding(config.stem_dim, dim1, config.stage1_stride)
        self.guided_embed = PatchEmbedding(config.stem_dim, dim1, config.stage1_stride)
        self.hazy_token_norm = nn.LayerNorm(dim1)
        self.guided_token_norm = nn.LayerNorm(dim1)
        self.stage1 = nn.ModuleList(
            DepthGuidedHybridBlock(dim1, config.heads[0], config.kv_grid[0], config.mlp_ratio)
            for _ in range(config.depths[0]))
        self.stage1_norm = nn.LayerNorm(dim1)
        self.down = nn.Conv2d(dim1, dim2, 3, 2, 1)
        self.down_norm = nn.LayerNorm(dim2)
        self.stage2 = nn.ModuleList(
            SelfAttentionBlock(dim2, config.heads[1], config.kv_grid[1], config.mlp_ratio)
            for _ in range(config.depths[1]))
        self.stage2_norm = nn.LayerNorm(dim2)
        dec = config.decoder_dim
        if config.stage1_stride == 8:
            self.up_to_stage1 = UpFuse(dim2, dim1, 2 * dec)
            self.up_to_quarter = UpFuse(2 * dec, config.stem_dim, dec)
        else:
            self.up_to_stage1 = UpFuse(dim2, dim1 + config.stem_dim, dec)
            self.up_to_quarter = None
        self.up_to_half = UpFuse(dec, 12, dec // 2)
        self.clear_head = nn.Conv2d(dec // 2, 12, 1)
        self.transmission_head = nn.Conv2d(dec, 1, 3, padding=1)
        self.airlight_head = nn.Sequential(nn.Linear(dim2, 32), nn.GELU(), nn.Linear(32, 3))
        self._init_heads()

    def _init_heads(self) -> None:
        nn.init.normal_(self.clear_head.weight, std=1e-3)
        nn.init.zeros_(self.clear_head.bias)
        nn.init.normal_(self.airlight_head[-1].weight, std=1e-3)
        nn.init.constant_(self.airlight_head[-1].bias, math.log(AIRLIGHT_INIT / (1.0 - AIRLIGHT_INIT)))

    def mix_weight(self) -> torch.Tensor:
        """Share of inverse depth in the depth-guided input, sigmoid(w)."""
        return torch.sigmoid(self.mix_gate)

    def depth_guided_input(self, hazy: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
        weight = self.mix_weight().to(hazy.dtype)
        return (1.0 - weight) * hazy + weight * normalized_inverse_depth(depth)

    def forward(self, hazy: torch.Tensor, depth: torch.Tensor, with_clear: bool = True) -> dict[str, torch.Tensor]:
        hazy_stem, hazy_map = self.hazy_embed(hazy)
        _, guided_map = self.guided_embed(self.depth_guided_input(hazy, depth))
        height, width = hazy_map.shape[2], hazy_map.shape[3]
        hazy_tokens = self.hazy_token_norm(to_tokens(hazy_map))
        x = self.guided_token_norm(to_tokens(guided_map))
        for block in self.stage1:
            x = block(x, hazy_tokens, height, width)
        stage1_map = to_map(self.stage1_norm(x), height, width)

        deep = self.down(stage1_map)
        deep_h, deep_w = deep.shape[2], deep.shape[3]
        y = self.down_norm(to_tokens(deep))
        for block in self.stage2:
            y = block(y, deep_h, deep_w)
        y = self.stage2_norm(y)
        airlight = torch.sigmoid(self.airlight_head(y.mean(dim=1)))[:, :, None, None]

        if self.up_to_quarter is not None:
            quarter = self.up_to_quarter(self.up_to_stage1(to_map(y, deep_h, deep_w), stage1_map), hazy_stem)
        else:
            skip = torch.cat([stage1_map, hazy_stem], dim=1)
            quarter = self.up_to_stage1(to_map(y, deep_h, deep_w), skip)
        transmission = torch.sigmoid(F.interpolate(self.transmission_head(quarter), scale_factor=4.0,
                                                   mode="bilinear", align_corners=False))
        if not with_clear:
            return {"transmission": transmission, "airlight": airlight}
        half = self.up_to_half(quarter, F.pixel_unshuffle(hazy, 2))
        residual = F.pixel_shuffle(self.clear_head(half), 2)
        clear = torch.sigmoid(torch.logit(hazy.clamp(LOGIT_EPS, 1.0 - LOGIT_EPS)) + residual)
        return {"clear": clear, "transmission": transmission, "airlight": airlight}


def dghat_lite() -> DGHAT:
    """Real-time size: attention at stride 8 on a 8x8 key grid."""
    return DGHAT(DGHATConfig(stem_dim=16, stage1_stride=8, dims=(48, 64), depths=(2, 2), heads=(2, 2),
                             kv_grid=(8, 8), mlp_ratio=2.0, decoder_dim=24))


def dghat_base() -> DGHAT:
    """Paper-like size: attention at stride 4 on a 16x16 key grid, wider stages."""
    return DGHAT(DGHATConfig(stem_dim=32, stage1_stride=4, dims=(64, 128), depths=(2, 2), heads=(2, 4),
                             kv_grid=(16, 16), mlp_ratio=4.0, decoder_dim=64))
