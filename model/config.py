"""Typed configuration of the TZN detector; saved as `config.json` next to the weights."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Runtime = Literal["torch", "onnxruntime", "tensorrt"]  # the head's runtimes (model/head.py, engine/heads.py)
RUNTIMES: tuple[Runtime, ...] = ("torch", "onnxruntime", "tensorrt")
MIN_FRAME_SIZE = 32  # px: the smallest side frames may be resized to for a backbone (BackboneSpec.resized)


class ModelConfig(BaseModel):
    """Sizes and switches of one TZN network. Key names follow ActionFormer where one exists."""

    model_config = ConfigDict(extra="forbid")

    input_dim: int = Field(2048, gt=0, description="feature channels C_in (I3D: 2048)")
    num_classes: int = Field(20, gt=0)
    embed_dim: int = Field(512, gt=0, description="width d of every block")
    n_head: int = Field(4, gt=0)
    n_mha_win_size: int = Field(19, ge=1, description="local attention window (odd), in positions of the level")
    attn_block_size: int = Field(32, ge=2, description="positions per attention block; the unit of ATR skipping")
    mlp_ratio: int = Field(4, ge=1)
    stem_layers: int = Field(6, ge=1, description="L_max: full-resolution transformer blocks")
    pyramid_levels: int = Field(6, ge=1, description="levels with strides 1, 2, 4, ... (levels-1 down-sampling blocks)")
    head_layers: int = Field(2, ge=0, description="hidden conv layers in every head")
    head_kernel_size: int = Field(3, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    standardize_input: bool = Field(
        True, description="subtract/divide per-channel feature statistics of the training set (kept in the weights)"
    )
    prior_prob: float = Field(0.01, gt=0.0, lt=1.0, description="initial foreground probability of the classifier")

    # Adaptive Temporal Refinement
    atr: bool = Field(True, description="False builds the Uniform-L_max baseline (every layer for every position)")
    min_depth: float = Field(1.0, ge=0.0, description="D_min; depth D = D_min + tau * (L_max - D_min)")
    tau_hidden: int = Field(128, gt=0)
    integer_depth: bool = Field(
        False, description="round D to whole layers (binary layer masks), as in distilled hard-mask students"
    )
    block_depth: bool = Field(
        False, description="one depth per attention block (tau averaged over the block): what hard execution runs"
    )

    # Boundary head: signed distance fields (BDR), a Gaussian-target classifier (for the R comparison), or none
    boundary_head: Literal["bdr", "classification", "none"] = "bdr"
    boundary_levels: int = Field(3, ge=1, description="finest levels that carry the boundary head")
    bdr_clip: float = Field(8.0, gt=0.0, description="distance fields are clipped to +-bdr_clip grid steps")
    boundary_detach: bool = Field(
        False,
        description="the boundary head reads detached features: its loss trains the head, not the trunk "
        "(the shipped configs set it: a BDR loss into an ATR trunk cost accuracy on validation, docs/tuning.md)",
    )

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.embed_dim % self.n_head:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by n_head {self.n_head}")
        if self.n_mha_win_size % 2 == 0:
            raise ValueError(f"n_mha_win_size must be odd, got {self.n_mha_win_size}")
        if self.n_mha_win_size // 2 > self.attn_block_size:
            raise ValueError(
                f"attn_block_size {self.attn_block_size} must be >= half the window ({self.n_mha_win_size // 2})"
            )
        if self.min_depth > self.stem_layers:
            raise ValueError(f"min_depth {self.min_depth} exceeds stem_layers {self.stem_layers}")
        if self.boundary_levels > self.pyramid_levels:
            raise ValueError(f"boundary_levels {self.boundary_levels} exceeds pyramid_levels {self.pyramid_levels}")
        return self

    @property
    def halo(self) -> int:
        """Positions each side of a block that its queries can see: half the window."""
        return self.n_mha_win_size // 2

    @property
    def max_stride(self) -> int:
        """Stride of the coarsest level; inputs are padded internally to a multiple of it."""
        return 2 ** (self.pyramid_levels - 1)


# ActionFormer's THUMOS14 I3D sizes (d=512, 4 heads, window 19, 2048-d input), with TZN's 6-layer stem.
THUMOS_I3D = ModelConfig()


class PostprocessConfig(BaseModel):
    """Decoding, boundary snapping and Soft-NMS settings (`model.postprocess`); ActionFormer's THUMOS14 defaults.

    The one place these names and defaults are written: training saves them with the checkpoint, and every
    runtime (`tzn predict`, the service) decodes with them. `score_floor` is written `min_score` in configs and
    checkpoints, ActionFormer's key; in code it has its own name, so that it is not taken for the answers'
    `min_score` filter.
    """

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    snap: bool = Field(True, description="snap boundaries with the boundary head (BDR or classification)")
    bdr_decode: Literal["votes", "crossings"] = Field(
        "crossings",
        description="BDR: weighted median of the fields' votes, or the nearest upward zero crossing (the first "
        "version, and what checkpoints saved before votes existed were evaluated with)",
    )
    bdr_scales: int = Field(1, ge=1, le=3, description="BDR votes from the finest 1, 2 or 3 levels (strides 1, 2, 4)")
    vote_max_distance: float = Field(6.0, gt=0, description="positions vote when their own |d| is at most this")
    vote_max_shift: float = Field(
        8.0, gt=0, description="votes further than this from the boundary (steps) are ignored"
    )
    vote_min_weight: float = Field(3.0, ge=0, description="fewer votes (by weight) keep the regression's boundary")
    vote_max_spread: float = Field(1.5, gt=0, description="a larger median absolute deviation keeps it too")
    snap_radius: float = Field(2.0, ge=0, description="level-0 steps searched around each boundary")
    min_slope: float = Field(0.5, description="BDR: smallest slope of an upward zero crossing")
    min_boundary_prob: float = Field(0.1, ge=0, le=1, description="classification boundary head: smallest peak")
    pre_nms_thresh: float = Field(0.001, ge=0, le=1, description="candidates below this score are dropped")
    pre_nms_topk: int = Field(2000, ge=1, description="best candidates per level kept before Soft-NMS")
    duration_thresh: float = Field(0.05, ge=0, description="shortest segment, level-0 steps")
    iou_threshold: float = Field(0.1, ge=0, le=1, description="linear/hard Soft-NMS: decay where tIoU >= this")
    sigma: float = Field(0.5, ge=1e-6, description="gaussian Soft-NMS: decay exp(-iou^2 / sigma)")
    score_floor: float = Field(
        0.001, ge=0, alias="min_score", description="Soft-NMS drops segments whose decayed score falls below this"
    )
    max_segments: int = Field(200, ge=0, description="segments kept per video")
    method: Literal["gaussian", "linear", "hard"] = "gaussian"
    multiclass: bool = Field(True, description="decay only candidates of the picked segment's label")
    voting_thresh: float = Field(0.0, ge=0, le=1, description="> 0: score-weighted voting with tIoU >= this")
