"""Adaptive Temporal Refinement: a continuous per-position depth for the full-resolution stem.

In reading order: the tau predictor, the layer masks, and the stem that executes them, either softly
(every layer everywhere, blended by the mask; differentiable, for training) or hard (a layer runs only on
the attention blocks that hold a position with m > 0; the same numbers, with the skipped work not done).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.attention import TransformerBlock, pad_to_multiple

Execution = Literal["soft", "hard"]


class TauPredictor(nn.Module):
    """Two masked convolutions on the embedding -> tau in [0, 1] per position (0 on padding)."""

    def __init__(self, dim: int, hidden: int, kernel_size: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(dim, hidden, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv1d(hidden, 1, kernel_size, padding=kernel_size // 2)
        # Start deep: tau ~ 0.95, so training begins close to the uniform model and the budget pulls it down.
        nn.init.constant_(self.conv2.bias, 3.0)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, d, T), mask (B, T) bool -> tau (B, T)."""
        valid = mask[:, None].to(x.dtype)
        hidden = F.relu(self.conv1(x)) * valid
        return torch.sigmoid(self.conv2(hidden))[:, 0] * valid[:, 0]


def depth_masks(tau: Tensor, layers: int, min_depth: float = 1.0) -> Tensor:
    """(B, T) in [0,1] -> (B, T, layers): layer l (0-based) gets clamp(D - l, 0, 1), D = min + tau*(layers-min)."""
    depth = min_depth + tau * (layers - min_depth)
    return (depth[..., None] - torch.arange(layers, device=tau.device, dtype=tau.dtype)).clamp(0, 1)


def block_mean(values: Tensor, mask: Tensor, block: int) -> Tensor:
    """(B, T) -> (B, T): each valid position gets the mean over the valid positions of its attention block
    (positions [k*block, (k+1)*block)); padding gets 0.

    Hard execution runs a layer on a whole block when any of its positions needs it, so one depth per block
    is what it will run; training on that depth sees the cost (and the structure) exactly. The mean, unlike
    the max, gives every position of the block a gradient.
    """
    length = values.shape[1]
    weights = pad_to_multiple(mask.to(values.dtype), block, dim=1)
    padded = pad_to_multiple(values, block, dim=1) * weights
    batch = padded.shape[0]
    sums = padded.reshape(batch, -1, block).sum(-1)
    counts = weights.reshape(batch, -1, block).sum(-1)
    means = sums / counts.clamp(min=1)
    return means.repeat_interleave(block, dim=1)[:, :length] * mask.to(values.dtype)


def executed_fraction(depth: Tensor, mask: Tensor, block: int, layers: int) -> Tensor:
    """Share of the stem's block-layers that hard execution runs. Scalar; the gradient is that of the depth.

    depth (B, T): stem layers each position asks for (D = D_min + tau * (L - D_min)); mask (B, T) bool.
    Layer l runs on a block when a position of it has m_l = clamp(D - l, 0, 1) > 0, i.e. D > l: a block
    runs ceil(max D) layers. The value is the mean of that over valid blocks, / `layers`; the ceiling passes
    the gradient straight through, so the budget can move the depth (binary masks alone have no gradient).
    Halos and the tau predictor are not counted here (model.flops counts them).
    """
    padded = pad_to_multiple(depth * mask.to(depth.dtype), block, dim=1)
    valid = pad_to_multiple(mask, block, dim=1)
    batch = padded.shape[0]
    deepest = padded.reshape(batch, -1, block).amax(-1)
    runs = deepest + (deepest.ceil() - deepest).detach()
    valid_blocks = valid.reshape(batch, -1, block).any(-1).to(depth.dtype)
    return (runs * valid_blocks).sum() / (valid_blocks.sum() * layers).clamp(min=1)


def integer_depth_tau(tau: Tensor, layers: int, min_depth: float, straight_through: bool = True) -> Tensor:
    """Rounds tau so that D = min_depth + tau * (layers - min_depth) is a whole number in [ceil(min), layers]:
    every layer mask becomes 0 or 1. With `straight_through` the result carries the unrounded gradient."""
    span = layers - min_depth
    if span <= 0:
        return tau
    depth = (min_depth + tau * span).round().clamp(min=math.ceil(min_depth), max=layers)
    rounded = (depth - min_depth) / span
    return tau + (rounded - tau).detach() if straight_through else rounded


def active_positions(layer_masks: Tensor, mask: Tensor) -> Tensor:
    """(B, T, L) layer masks, (B, T) bool -> (L,): per stem layer, the valid positions with m > 0."""
    return ((layer_masks > 0) & mask[..., None]).sum(dim=(0, 1))


@dataclass
class StemStats:
    """Per stem layer (L,) int64 counts over the batch.

    active_positions: valid positions with m > 0 (the work ATR asks for);
    executed_positions: query positions the layer actually computed (whole attention blocks);
    kv_positions: positions whose keys/values were computed (executed blocks plus their halos when skipping).
    """

    active_positions: Tensor
    executed_positions: Tensor
    kv_positions: Tensor


class ATRStem(nn.Module):
    """L_max full-resolution transformer blocks; block l updates x <- x + m_l * (Block_l(x) - x)."""

    def __init__(self, layers: int, dim: int, heads: int, window: int, block: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.block_size = block
        # Eager hard execution runs a layer densely when it has nothing to skip. An exported graph always
        # gathers blocks (it has no data-dependent branch), so its executed/kv counts differ in such layers;
        # parity checks against a graph set this to False to run and count exactly what the graph does.
        self.dense_shortcut = True
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, window, block, mlp_ratio, dropout) for _ in range(layers)
        )

    def forward(
        self, x: Tensor, mask: Tensor, layer_masks: Tensor | None, execution: Execution = "soft"
    ) -> tuple[Tensor, StemStats]:
        """x (B, T, d), mask (B, T) bool, layer_masks (B, T, L) or None (= all ones) -> (B, T, d), stats."""
        length = x.shape[1]
        x = pad_to_multiple(x, self.block_size)
        mask = pad_to_multiple(mask, self.block_size)
        if layer_masks is not None:
            layer_masks = pad_to_multiple(layer_masks, self.block_size)
        if execution == "hard" and layer_masks is not None:
            x, stats = self._hard(x, mask, layer_masks)
        else:
            x, stats = self._dense(x, mask, layer_masks)
        return self.output(x, mask, length), stats

    def dense_layer(self, layer: int, x: Tensor, mask: Tensor, layer_mask: Tensor | None) -> Tensor:
        """Stem layer `layer` on every position: x (B, T, d), mask (B, T) bool, layer_mask (B, T) or None
        -> x + m * (Block(x) - x), (B, T, d); Block(x) when layer_mask is None. T a multiple of the block."""
        y = self.blocks[layer](x, mask)
        return y if layer_mask is None else x + layer_mask[..., None] * (y - x)

    def block_layer(
        self, layer: int, x: Tensor, mask: Tensor, layer_mask: Tensor, batch_index: Tensor, block_index: Tensor
    ) -> Tensor:
        """Stem layer `layer` on the attention blocks (batch_index[i], block_index[i]) only, (n,) int64 each:
        x (B, T, d), mask (B, T) bool, layer_mask (B, T) -> (B, T, d), those blocks updated as x + m * (Block(x) - x)
        and every other position unchanged. T a multiple of the block."""
        batch, length, dim = x.shape
        block = self.block_size
        blocks = length // block
        y = self.blocks[layer].forward_blocks(x, mask, batch_index, block_index)
        x_blocks = x.reshape(batch, blocks, block, dim)
        current = x_blocks[batch_index, block_index]
        weight = layer_mask.reshape(batch, blocks, block)[batch_index, block_index, :, None]
        x = x_blocks.index_put((batch_index, block_index), current + weight * (y - current))
        return x.reshape(batch, length, dim)

    @staticmethod
    def output(x: Tensor, mask: Tensor, length: int) -> Tensor:
        """The stem's result: x (B, T_block, d) after the last layer, mask (B, T_block) bool -> (B, length, d),
        the first `length` positions, zero on padding."""
        return x[:, :length] * mask[:, :length, None].to(x.dtype)

    def _dense(self, x: Tensor, mask: Tensor, layer_masks: Tensor | None) -> tuple[Tensor, StemStats]:
        for layer in range(len(self.blocks)):
            x = self.dense_layer(layer, x, mask, None if layer_masks is None else layer_masks[..., layer])
        all_positions = torch.full((len(self.blocks),), mask.numel(), dtype=torch.long, device=x.device)
        active = mask.sum().expand(len(self.blocks)) if layer_masks is None else active_positions(layer_masks, mask)
        return x, StemStats(active.to(torch.long), all_positions, all_positions)

    def _hard(self, x: Tensor, mask: Tensor, layer_masks: Tensor) -> tuple[Tensor, StemStats]:
        batch, length, _ = x.shape
        block = self.block_size
        blocks = length // block
        valid_blocks = mask.reshape(batch, blocks, block).any(-1)
        active_counts, executed, kv = [], [], []
        for layer, transformer in enumerate(self.blocks):
            layer_mask = layer_masks[..., layer]
            active = (layer_mask > 0) & mask
            block_active = active.reshape(batch, blocks, block).any(-1)
            active_counts.append(active.sum())
            if self.dense_shortcut and _eager() and bool((block_active == valid_blocks).all()):
                # Nothing to skip in this layer (always so for the first when D_min = 1): the dense path is
                # the same computation without gathering blocks and recomputing halos.
                x = self.dense_layer(layer, x, mask, layer_mask)
                executed.append(torch.tensor(batch * length, device=x.device))
                kv.append(executed[-1])
                continue
            batch_index, block_index = block_active.nonzero(as_tuple=True)
            x = self.block_layer(layer, x, mask, layer_mask, batch_index, block_index)
            executed_blocks = block_active.sum()
            executed.append(executed_blocks * block)
            kv.append(executed_blocks * (block + 2 * transformer.attn.halo))
        stats = StemStats(torch.stack(active_counts), torch.stack(executed), torch.stack(kv))
        return x, stats


def _eager() -> bool:
    """False while tracing or exporting, where a data-dependent branch would be frozen into the graph."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())
