"""Analytic FLOPs of the TZN head, from what a forward pass actually ran.

Counted like `torch.utils.flop_counter.FlopCounterMode`: 2 x multiply-accumulates of convolutions, linear
layers and attention matmuls; norms, activations, softmax and pooling are not counted (they are a few
percent at most). Every count follows the padded shapes the code really computes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import ModelConfig
from model.tzn import TZNOutput


@dataclass(frozen=True)
class HeadFlops:
    embedding: int
    tau: int
    stem: int
    pyramid: int
    heads: int

    @property
    def total(self) -> int:
        return self.embedding + self.tau + self.stem + self.pyramid + self.heads


def _ceil_to(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def attention_block_flops(config: ModelConfig, query_positions: int, kv_positions: int) -> int:
    """One transformer block run on `query_positions` (whole attention blocks) with keys/values computed on
    `kv_positions`: q, out-projection and MLP per query, k/v per kv position, two attention matmuls per block."""
    d, r = config.embed_dim, config.mlp_ratio
    extent = config.attn_block_size + 2 * config.halo
    per_query = 2 * d * d + 2 * d * d + 4 * r * d * d + 4 * extent * d
    return query_positions * per_query + kv_positions * 4 * d * d


def _conv_flops(positions: int, in_channels: int, out_channels: int, kernel_size: int) -> int:
    return 2 * positions * in_channels * out_channels * kernel_size


def head_flops(
    config: ModelConfig,
    batch: int,
    padded_length: int,
    stem_executed: list[int],
    stem_kv: list[int],
    tau_predicted: bool,
    boundary: bool = True,
) -> HeadFlops:
    """FLOPs of one forward pass over `batch` sequences padded to `padded_length` (a multiple of the coarsest
    stride); stem_executed / stem_kv: per stem layer, query and key/value positions that ran (StemStats);
    boundary: whether the boundary head ran."""
    d, ks, block = config.embed_dim, config.head_kernel_size, config.attn_block_size
    positions = batch * padded_length
    embedding = _conv_flops(positions, config.input_dim, d, 3) + _conv_flops(positions, d, d, 3)
    tau = 0
    if tau_predicted:
        tau = _conv_flops(positions, d, config.tau_hidden, 3) + _conv_flops(positions, config.tau_hidden, 1, 3)
    stem = sum(attention_block_flops(config, q, kv) for q, kv in zip(stem_executed, stem_kv, strict=True))

    pyramid = heads = 0
    for level in range(config.pyramid_levels):
        level_positions = batch * (padded_length >> level)
        if level > 0:
            # q/k/v and the MLP run on the level's positions; attention and its output projection on
            # whole (padded) blocks.
            block_positions = batch * _ceil_to(padded_length >> level, block)
            extent = block + 2 * config.halo
            pyramid += attention_block_flops(config, level_positions, level_positions)
            pyramid += (2 * d * d + 4 * extent * d) * (block_positions - level_positions)
        hidden = config.head_layers * _conv_flops(level_positions, d, d, ks)
        heads += hidden + _conv_flops(level_positions, d, config.num_classes, ks)
        heads += hidden + _conv_flops(level_positions, d, 2, ks)
        if boundary and config.boundary_head != "none" and level < config.boundary_levels:
            heads += hidden + _conv_flops(level_positions, d, 2, ks)
    return HeadFlops(embedding, tau, stem, pyramid, heads)


def uniform_head_flops(config: ModelConfig, batch: int, padded_length: int, boundary: bool = True) -> HeadFlops:
    """FLOPs of the Uniform-L_max model (no tau predictor, every stem layer dense) at the same shapes, with the
    boundary head if `boundary`."""
    stem_positions = batch * _ceil_to(padded_length, config.attn_block_size)
    layers = [stem_positions] * config.stem_layers
    return head_flops(config, batch, padded_length, layers, layers, tau_predicted=False, boundary=boundary)


def output_flops(config: ModelConfig, output: TZNOutput, batch: int) -> HeadFlops:
    """FLOPs of the forward pass that produced `output`."""
    return head_flops(
        config,
        batch,
        output.padded_length,
        [int(v) for v in output.stem.executed_positions],
        [int(v) for v in output.stem.kv_positions],
        tau_predicted=config.atr,
        boundary=bool(output.boundary),
    )
