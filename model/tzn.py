"""The Temporal Zoom Network: embedding, ATR stem, down-sampling pyramid and shared heads.

features (B, C_in, T) + mask (B, T)
  -> embedding (2 masked convs)            -> tau predictor (ATR) -> layer masks (B, T, L_max)
  -> stem: L_max full-resolution blocks, gated by the layer masks
  -> pyramid: level 0 = stem output, level k = max-pool(level k-1) + one block (strides 1, 2, ..., 32)
  -> heads shared over levels: class logits, start/end offsets, and boundary fields on the finest levels.
Any T works: the input is padded internally to a multiple of the coarsest stride.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.atr import ATRStem, Execution, StemStats, TauPredictor, block_mean, depth_masks, integer_depth_tau
from model.attention import TransformerBlock, pad_to_multiple
from model.config import ModelConfig


class MaskedConv(nn.Module):
    """Conv1d over (B, C, T) that keeps padded positions at zero."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.conv(x) * mask[:, None].to(x.dtype)


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel dimension of a (B, C, T) tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvHead(nn.Module):
    """`layers` x (masked conv, channel norm, ReLU), then a masked conv to `outputs` channels."""

    def __init__(self, dim: int, outputs: int, layers: int, kernel_size: int):
        super().__init__()
        self.hidden = nn.ModuleList(MaskedConv(dim, dim, kernel_size) for _ in range(layers))
        self.norms = nn.ModuleList(ChannelNorm(dim) for _ in range(layers))
        self.out = MaskedConv(dim, outputs, kernel_size)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, d, T), mask (B, T) -> (B, T, outputs)."""
        for conv, norm in zip(self.hidden, self.norms, strict=True):
            x = F.relu(norm(conv(x, mask)))
        return self.out(x, mask).transpose(1, 2)


@dataclass
class TZNOutput:
    """What one forward pass produced. Level k has stride 2**k and length T_k = T_pad / 2**k.

    cls_logits[k] (B, T_k, classes); offsets[k] (B, T_k, 2) >= 0, distances to start/end in level-k steps;
    masks[k] (B, T_k) bool; boundary[k] (B, T_k, 2) for k < boundary_levels (BDR: signed distances
    d_start, d_end in level-k steps; classification: start/end logits), empty without a boundary head;
    tau (B, T_pad) in [0,1] or None (uniform model); layer_masks (B, T_pad, L_max) (ones when uniform);
    stem: per-layer position counts (see StemStats); padded_length: T_pad.
    """

    cls_logits: list[Tensor]
    offsets: list[Tensor]
    masks: list[Tensor]
    boundary: list[Tensor]
    tau: Tensor | None
    layer_masks: Tensor
    stem: StemStats
    padded_length: int


class TZN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        d, k = config.embed_dim, config.head_kernel_size
        # Per-channel statistics of the training features (identity until training sets them); backbone
        # features are often far from zero-mean (post-ReLU pooling) and train poorly without this.
        self.register_buffer("input_mean", torch.zeros(config.input_dim))
        self.register_buffer("input_std", torch.ones(config.input_dim))
        self.embed = nn.ModuleList([MaskedConv(config.input_dim, d, 3), MaskedConv(d, d, 3)])
        self.embed_norms = nn.ModuleList([ChannelNorm(d), ChannelNorm(d)])
        self.tau_predictor = TauPredictor(d, config.tau_hidden) if config.atr else None
        self.stem = ATRStem(
            config.stem_layers, d, config.n_head, config.n_mha_win_size, config.attn_block_size,
            config.mlp_ratio, config.dropout,
        )  # fmt: skip
        self.pyramid = nn.ModuleList(
            TransformerBlock(d, config.n_head, config.n_mha_win_size, config.attn_block_size, config.mlp_ratio,
                             config.dropout)
            for _ in range(config.pyramid_levels - 1)
        )  # fmt: skip
        self.level_norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(config.pyramid_levels))
        self.cls_head = ConvHead(d, config.num_classes, config.head_layers, k)
        self.reg_head = ConvHead(d, 2, config.head_layers, k)
        self.reg_scales = nn.Parameter(torch.ones(config.pyramid_levels))
        self.boundary_head = ConvHead(d, 2, config.head_layers, k) if config.boundary_head != "none" else None
        self._init_weights()

    @torch.no_grad()
    def set_input_statistics(self, mean: Tensor, std: Tensor) -> None:
        """Per-channel mean/std (C_in,) of the training features, applied to every input when
        config.standardize_input is set (a no-op otherwise)."""
        if self.config.standardize_input:
            self.input_mean.copy_(mean)
            self.input_std.copy_(std.clamp(min=1e-6))

    def _init_weights(self) -> None:
        prior = self.config.prior_prob
        nn.init.constant_(self.cls_head.out.conv.bias, -torch.log(torch.tensor((1 - prior) / prior)).item())

    def forward(
        self,
        features: Tensor,
        mask: Tensor,
        execution: Execution = "soft",
        tau_override: Tensor | None = None,
        full_depth: bool = False,
        boundary: bool = True,
    ) -> TZNOutput:
        """features (B, C_in, T) float, mask (B, T) bool.

        execution: "soft" runs every stem layer everywhere and blends (training); "hard" skips inactive
        blocks (inference; same outputs). tau_override (B, T) replaces the predicted tau (benchmarks, tests;
        the predictor still runs, so the cost stays honest); full_depth forces every layer everywhere (warm-up).
        boundary=False skips the boundary head (output.boundary is then empty): inference whose decoding does not
        use the fields and whose caller does not ask for them need not pay for them.

        The phases, each a public method that model/graphs.py runs as well: padding to a multiple of max_stride,
        `embedding`, `depth`, the stem (`self.stem`, an ATRStem) and `pyramid_and_heads`.
        """
        if features.dim() != 3 or mask.shape != (features.shape[0], features.shape[2]):
            raise ValueError(
                f"expected features (B, C, T) and mask (B, T), got {tuple(features.shape)} and {tuple(mask.shape)}"
            )
        if features.shape[1] != self.config.input_dim:
            raise ValueError(f"features have {features.shape[1]} channels, the model expects {self.config.input_dim}")
        features = pad_to_multiple(features, self.config.max_stride, dim=2)
        mask = pad_to_multiple(mask.to(torch.bool), self.config.max_stride, dim=1)
        x = self.embedding(features, mask)
        tau, layer_masks = self.depth(x, mask, tau_override, full_depth)
        stem_out, stats = self.stem(x.transpose(1, 2), mask, layer_masks, execution)
        cls_logits, offsets, level_masks, fields = self.pyramid_and_heads(stem_out, mask, boundary)
        if layer_masks is None:
            layer_masks = mask[..., None].expand(-1, -1, self.config.stem_layers).to(x.dtype)
        return TZNOutput(cls_logits, offsets, level_masks, fields, tau, layer_masks, stats, mask.shape[1])

    def embedding(self, features: Tensor, mask: Tensor) -> Tensor:
        """features (B, C_in, T) float, mask (B, T) bool, T already padded to a multiple of max_stride
        -> embedding (B, d, T): the standardised input, zero on padding, through the two masked convs."""
        x = (features - self.input_mean[:, None]) / self.input_std[:, None]
        x = x * mask[:, None].to(x.dtype)
        for conv, norm in zip(self.embed, self.embed_norms, strict=True):
            x = F.relu(norm(conv(x, mask)))
        return x

    def depth(
        self, x: Tensor, mask: Tensor, tau_override: Tensor | None = None, full_depth: bool = False
    ) -> tuple[Tensor | None, Tensor | None]:
        """Embedding x (B, d, T), mask (B, T) bool -> tau (B, T) in [0, 1] and layer masks (B, T, L_max);
        (None, None) for the uniform model, layer masks None with `full_depth` (every layer everywhere).
        tau_override (B, T) or of the unpadded length (zero-padded here) replaces the predicted tau after the
        predictor ran (see `forward`)."""
        if self.tau_predictor is None:
            if tau_override is not None:
                raise ValueError("tau_override needs a model built with atr=True")
            return None, None
        tau = self.tau_predictor(x, mask)
        if self.config.block_depth:
            tau = block_mean(tau, mask, self.config.attn_block_size)
        if self.config.integer_depth:
            config = self.config
            tau = integer_depth_tau(tau, config.stem_layers, config.min_depth, self.training) * mask.to(x.dtype)
        if tau_override is not None:
            tau = pad_to_multiple(tau_override.to(x.dtype), self.config.max_stride) * mask.to(x.dtype)
        if full_depth:
            return tau, None
        return tau, depth_masks(tau, self.config.stem_layers, self.config.min_depth)

    def pyramid_and_heads(
        self, stem_out: Tensor, mask: Tensor, with_boundary: bool = True
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Stem output (B, T, d) and mask (B, T) -> (cls_logits, offsets, level masks, boundary fields): the
        down-sampling pyramid and the shared heads on every level (the boundary head only `with_boundary`).
        Level k has length T / 2**k: cls_logits[k] (B, T_k, classes), offsets[k] (B, T_k, 2), masks[k] (B, T_k),
        boundary[k] (B, T_k, 2) (see TZNOutput)."""
        levels, level_masks = [stem_out], [mask]
        for block in self.pyramid:
            pooled = F.max_pool1d(levels[-1].transpose(1, 2), kernel_size=3, stride=2, padding=1).transpose(1, 2)
            level_mask = level_masks[-1][:, ::2]
            levels.append(block(pooled * level_mask[..., None].to(pooled.dtype), level_mask))
            level_masks.append(level_mask)

        cls_logits, offsets, boundary = [], [], []
        for index, (level, level_mask) in enumerate(zip(levels, level_masks, strict=True)):
            normed = self.level_norms[index](level).transpose(1, 2)
            cls_logits.append(self.cls_head(normed, level_mask))
            offsets.append(F.relu(self.reg_head(normed, level_mask) * self.reg_scales[index]))
            if with_boundary and self.boundary_head is not None and index < self.config.boundary_levels:
                source = normed.detach() if self.config.boundary_detach else normed
                boundary.append(self.boundary_head(source, level_mask))
        return cls_logits, offsets, level_masks, boundary
