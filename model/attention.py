"""Local window attention written blockwise, and the pre-norm transformer block built on it.

A sequence is cut into blocks of `block` positions. Each block's queries see the keys of the block plus a
halo of `window // 2` positions on each side; a band mask keeps every query inside its own window. The cost
is linear in T, the graph uses only reshape/slice/cat/gather (no `as_strided`, so it exports to ONNX with
dynamic lengths), and a block is the unit that Adaptive Temporal Refinement skips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def band_mask(block: int, halo: int, width: int | None = None) -> Tensor:
    """(block, block + 2*halo) bool: query i of a block sees extended key j iff |j - halo - i| <= width.

    width defaults to halo (the window); width=0 marks each query's own key.
    """
    width = halo if width is None else width
    query = torch.arange(block)[:, None]
    key = torch.arange(block + 2 * halo)[None, :] - halo
    return (key - query).abs() <= width


def pad_to_multiple(x: Tensor, multiple: int, dim: int = 1) -> Tensor:
    """Zero-pads `dim` of x up to a multiple of `multiple` (bool tensors pad with False)."""
    length = x.shape[dim]
    missing = (-length) % multiple
    if missing == 0 and not torch.jit.is_tracing():
        # While tracing (ONNX export) the test would be frozen for every length: always pad, maybe by zero.
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def blocks_with_halo(x: Tensor, block: int, halo: int) -> Tensor:
    """(B, T, ...) with T a multiple of block -> (B, T//block, block + 2*halo, ...), halo beyond the ends zero."""
    batch, length = x.shape[:2]
    center = x.reshape(batch, length // block, block, *x.shape[2:])
    edge = center.new_zeros(batch, 1, halo, *x.shape[2:])
    left = torch.cat([edge, center[:, :-1, block - halo :]], dim=1)
    right = torch.cat([center[:, 1:, :halo], edge], dim=1)
    return torch.cat([left, center, right], dim=2)


def gather_blocks_with_halo(x: Tensor, batch_index: Tensor, block_index: Tensor, block: int, halo: int) -> Tensor:
    """Selected blocks of x (B, T, ...) with their halos -> (n, block + 2*halo, ...); halo beyond the ends zero."""
    shape = list(x.shape)
    shape[1] = halo
    padded = torch.cat([x.new_zeros(shape), x, x.new_zeros(shape)], dim=1)
    positions = block_index[:, None] * block + torch.arange(block + 2 * halo, device=x.device)
    return padded[batch_index[:, None], positions]


class LocalAttention(nn.Module):
    """Multi-head self-attention restricted to a window of `window` positions centred on each query."""

    def __init__(self, dim: int, heads: int, window: int, block: int, dropout: float = 0.0):
        super().__init__()
        self.heads, self.window, self.block, self.halo = heads, window, block, window // 2
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.register_buffer("band", band_mask(block, self.halo), persistent=False)
        self.register_buffer("own_key", band_mask(block, self.halo, width=0), persistent=False)

    def attend(self, query: Tensor, key: Tensor, value: Tensor, key_valid: Tensor) -> Tensor:
        """query (n, block, d), key/value (n, block+2h, d), key_valid (n, block+2h) bool -> (n, block, d).

        A query always sees itself, so padded queries (which have no valid key) give finite values.
        """
        n, block, dim = query.shape
        # From the weights, not the traced shape: an exported graph must reshape n = 0 blocks (nothing active)
        # without a -1, which zero elements cannot resolve.
        head_dim = self.qkv.in_features // self.heads

        def split(t: Tensor) -> Tensor:
            return t.reshape(n, t.shape[1], self.heads, head_dim).transpose(1, 2)

        visible = (self.band & key_valid[:, None, :]) | self.own_key
        out = F.scaled_dot_product_attention(
            split(query),
            split(key),
            split(value),
            attn_mask=visible[:, None],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(out.transpose(1, 2).reshape(n, block, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, d), mask (B, T) bool -> (B, T, d), every position attended (dense path)."""
        batch, length, dim = x.shape
        query, key, value = pad_to_multiple(self.qkv(x), self.block).split(dim, dim=-1)
        key_valid = blocks_with_halo(pad_to_multiple(mask, self.block), self.block, self.halo)
        blocks = key_valid.shape[1]
        out = self.attend(
            query.reshape(batch * blocks, self.block, dim),
            blocks_with_halo(key, self.block, self.halo).flatten(0, 1),
            blocks_with_halo(value, self.block, self.halo).flatten(0, 1),
            key_valid.flatten(0, 1),
        )
        return out.reshape(batch, blocks * self.block, dim)[:, :length]

    def forward_blocks(self, normed_ext: Tensor, key_valid: Tensor) -> Tensor:
        """Selected blocks only: normed_ext (n, block+2h, d) already layer-normed, key_valid (n, block+2h)
        -> (n, block, d). Queries come from the block's centre, keys/values from the whole extent."""
        dim = normed_ext.shape[-1]
        weight_q, weight_kv = self.qkv.weight.split([dim, 2 * dim])
        bias_q, bias_kv = self.qkv.bias.split([dim, 2 * dim])
        query = F.linear(normed_ext[:, self.halo : self.halo + self.block], weight_q, bias_q)
        key, value = F.linear(normed_ext, weight_kv, bias_kv).split(dim, dim=-1)
        return self.attend(query, key, value, key_valid)


class TransformerBlock(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then + MLP(LN(.)). Same weights serve the dense and the block path."""

    def __init__(self, dim: int, heads: int, window: int, block: int, mlp_ratio: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = LocalAttention(dim, heads, window, block, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_ratio * dim, dim)
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, T, d), mask (B, T) -> (B, T, d); padded positions are zeroed."""
        x = x + self.attn(self.norm1(x), mask)
        x = x + self.mlp(self.norm2(x))
        return x * mask[..., None].to(x.dtype)

    def forward_blocks(self, x: Tensor, mask: Tensor, batch_index: Tensor, block_index: Tensor) -> Tensor:
        """Runs the block only on the selected blocks of x (B, T, d), T a multiple of the block size.

        Returns (n, block, d): the block's output at those positions, equal to forward(x)[selected].
        """
        block, halo = self.attn.block, self.attn.halo
        x_ext = gather_blocks_with_halo(x, batch_index, block_index, block, halo)
        valid_ext = gather_blocks_with_halo(mask, batch_index, block_index, block, halo)
        x_center = x_ext[:, halo : halo + block]
        y = x_center + self.attn.forward_blocks(self.norm1(x_ext), valid_ext)
        y = y + self.mlp(self.norm2(y))
        return y * valid_ext[:, halo : halo + block, None].to(y.dtype)
