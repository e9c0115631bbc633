"""Depth-guided hybrid attention: cross-attention from depth-guided queries to hazy keys/values, beside self-attention.

Tokens are (B, N, C) sequences over an H x W grid. Keys and values come from the context map average-pooled to a
fixed `kv_grid` x `kv_grid` grid, so one attention costs N * kv_grid^2 * C: linear in the number of pixels (the
"linear spatial-reduction attention" of PVTv2). The pooling is written as two small matrix products built from
`torch.arange` so that it exports to ONNX/TensorRT with dynamic height and width (ONNX has no adaptive pooling).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


def _pooling_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
    """(bins, size) matrix whose row i averages positions [floor(i*size/bins), ceil((i+1)*size/bins)).

    The same bins as `adaptive_avg_pool2d`; every bin is non-empty, also when size < bins. Built from the size
    while a graph is traced (so that an export keeps height and width dynamic), else kept per size, device and
    dtype: built anew it costs a dozen small operations per pooling, launched one by one in eager mode.
    """
    if _tracing() or not isinstance(size, int):
        return _build_pooling_matrix(size, bins, like.device, like.dtype)
    return _kept_pooling_matrix(size, bins, like.device, like.dtype)


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def _build_pooling_matrix(size: int, bins: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    positions = torch.arange(size, device=device, dtype=torch.float32)
    index = torch.arange(bins, device=device, dtype=torch.float32)
    start = torch.floor(index * size / bins)
    end = torch.ceil((index + 1.0) * size / bins)
    inside = (positions[None, :] >= start[:, None]) & (positions[None, :] < end[:, None])
    weights = inside.to(torch.float32)
    return (weights / weights.sum(dim=1, keepdim=True)).to(dtype)


@functools.lru_cache(maxsize=64)
def _kept_pooling_matrix(size: int, bins: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    with torch.inference_mode(False), torch.no_grad():
        return _build_pooling_matrix(size, bins, device, dtype)


def pool_tokens(tokens: torch.Tensor, height: int, width: int, grid: int) -> torch.Tensor:
    """Adaptive average pooling of (B, H*W, C) tokens to (B, grid*grid, C)."""
    batch, _, channels = tokens.shape
    rows = _pooling_matrix(height, grid, tokens)
    cols = _pooling_matrix(width, grid, tokens)
    grid_map = tokens.reshape(batch, height, width * channels)
    pooled_rows = torch.matmul(rows, grid_map).reshape(batch, grid, width, channels)
    pooled = torch.matmul(cols, pooled_rows)
    return pooled.reshape(batch, grid * grid, channels)


class SpatialReductionAttention(nn.Module):
    """Multi-head attention of query tokens over a context pooled to a fixed grid of keys and values."""

    def __init__(self, dim: int, heads: int, kv_grid: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.kv_grid = kv_grid
        self.scale = (dim // heads) ** -0.5
        self.query = nn.Linear(dim, dim)
        self.kv_norm = nn.LayerNorm(dim)
        self.key_value = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, context: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """queries, context: (B, H*W, C) over the same H x W grid; returns (B, H*W, C)."""
        batch, count, dim = queries.shape
        head_dim = dim // self.heads
        q = self.query(queries).reshape(batch, count, self.heads, head_dim).transpose(1, 2)
        pooled = self.kv_norm(pool_tokens(context, height, width, self.kv_grid))
        kv = self.key_value(pooled).reshape(batch, self.kv_grid * self.kv_grid, 2, self.heads, head_dim)
        k, v = kv.permute(2, 0, 3, 1, 4)
        attention = torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)), dim=-1)
        mixed = torch.matmul(attention, v).transpose(1, 2).reshape(batch, count, dim)
        return self.out(mixed)


class MixFeedForward(nn.Module):
    """SegFormer's Mix-FFN: linear, 3x3 depthwise conv (which gives the tokens their position), GELU, linear."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.expand = nn.Linear(dim, hidden)
        self.spatial = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.project = nn.Linear(hidden, dim)

    def forward(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, count, _ = tokens.shape
        hidden = self.expand(tokens)
        grid_map = hidden.transpose(1, 2).reshape(batch, -1, height, width)
        hidden = self.spatial(grid_map).flatten(2).transpose(1, 2)
        return self.project(F.gelu(hidden))


class DepthGuidedHybridBlock(nn.Module):
    """x + g * CrossAttn(x -> hazy) + (1 - g) * SelfAttn(x), then x + MixFFN(x), with g = sigmoid(gate).

    `x` carries the depth-guided tokens (the queries); `hazy` the hazy image's tokens (keys and values of the
    cross-attention). The gate is learned per block and starts at 0.5: the block decides how much it reads
    the hazy image through depth-guided queries versus refining its own tokens.
    """

    def __init__(self, dim: int, heads: int, kv_grid: int, mlp_ratio: float) -> None:
        super().__init__()
        self.query_norm = nn.LayerNorm(dim)
        self.hazy_norm = nn.LayerNorm(dim)
        self.cross_attention = SpatialReductionAttention(dim, heads, kv_grid)
        self.self_attention = SpatialReductionAttention(dim, heads, kv_grid)
        self.gate = nn.Parameter(torch.zeros(1))
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = MixFeedForward(dim, mlp_ratio)

    def mix_weight(self) -> torch.Tensor:
        """Share of the cross-attention in the blend, in (0, 1)."""
        return torch.sigmoid(self.gate)

    def forward(self, x: torch.Tensor, hazy: torch.Tensor, height: int, width: int) -> torch.Tensor:
        queries = self.query_norm(x)
        cross = self.cross_attention(queries, self.hazy_norm(hazy), height, width)
        own = self.self_attention(queries, queries, height, width)
        weight = self.mix_weight().to(x.dtype)
        x = x + weight * cross + (1.0 - weight) * own
        return x + self.mlp(self.mlp_norm(x), height, width)


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + SelfAttn(x), then x + MixFFN(x)."""

    def __init__(self, dim: int, heads: int, kv_grid: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = SpatialReductionAttention(dim, heads, kv_grid)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = MixFeedForward(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        normed = self.norm(x)
        x = x + self.attention(normed, normed, height, width)
        return x + self.mlp(self.mlp_norm(x), height, width)
