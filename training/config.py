"""The training config (`tzn train --config CONFIG.yaml`): one typed section per concern, validated on load.

Sections: model (the network, less what the data decides), data, optimizer, atr (budget and schedule), loss,
postprocess (`model.config.PostprocessConfig`, saved with the checkpoint), distill. A wrong key is an error
that names it ("optimizer.learning_rate: Extra inputs are not permitted").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from model.config import MIN_FRAME_SIZE, ModelConfig, PostprocessConfig


class TrainConfigError(ValueError):
    """A training config or run directory that cannot be used; the message names the file and the key."""


# ---------------------------------------------------------------------------------------------------
# Configuration

DATA_DERIVED = ("input_dim", "num_classes")

_ModelSectionBase = create_model(
    "_ModelSectionBase",
    __config__=ConfigDict(extra="forbid"),
    **{name: (info.annotation, info) for name, info in ModelConfig.model_fields.items() if name not in DATA_DERIVED},
)


class ModelSection(_ModelSectionBase):
    """`ModelConfig` without the fields that come from the data (input_dim, num_classes)."""

    def build(self, input_dim: int, num_classes: int) -> ModelConfig:
        return ModelConfig(input_dim=input_dim, num_classes=num_classes, **self.model_dump())


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    annotations: Path | None = Field(None, description="ActionFormer annotation JSON (or --annotations)")
    features_dir: Path | None = Field(None, description="directory of <video_id>.npy (or --features)")
    train_split: str = "training"
    val_split: str | None = Field(None, description="evaluated with the EMA model after the last epoch")
    feat_stride: int = Field(4, gt=0)
    num_frames: int = Field(16, gt=0)
    default_fps: float | None = Field(None, gt=0)
    max_seq_len: int | None = Field(2304, gt=0, description="training crops are at most this long")
    trunc_thresh: float = Field(0.5, ge=0.0, le=1.0)
    crop_ratio: tuple[float, float] | None = None
    backbone: str | None = Field(None, description="feature extractor, recorded in the checkpoint")
    frame_size: int | None = Field(
        None, ge=MIN_FRAME_SIZE, description="side (px) of the frames the features came from (tzn extract-features "
        "--frame-size), recorded in the checkpoint; None: the backbone's own",
    )  # fmt: skip

    @model_validator(mode="after")
    def _backbone_has_a_rate(self) -> DataConfig:
        """A checkpoint that names its backbone is served at its features' rate (engine/preflight.backbone_for):
        the rate must be the one the features were sampled at, not the videos' frame rate from the annotations."""
        if self.backbone is not None and self.default_fps is None:
            raise ValueError(
                f"data.backbone is {self.backbone!r}: set data.default_fps to the rate its features were sampled "
                "at (tzn extract-features prints it as fps), which the service will sample videos at"
            )
        return self


class OptimizerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: float = Field(5, ge=0, description="linear warm-up of the learning rate, part of `epochs`")
    epochs: int = Field(35, ge=1, description="total epochs, warm-up included")
    batch_size: int = Field(2, ge=1)
    clip_grad_norm: float | None = Field(1.0, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)


class ATRConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rho: float = Field(
        0.76, ge=0, le=1, description="target share of the stem's compute that runs (budget 'executed') or mean tau"
    )
    budget: Literal["executed", "mean_tau"] = Field(
        "executed", description="budget on the executed share of stem block-layers, or (the first version) mean tau"
    )
    budget_weight: float = Field(5.0, ge=0, alias="lambda", description="lambda of lambda * (mean tau - rho)^2")
    warmup_epochs: int = Field(2, ge=0, description="epochs at full depth (every stem layer everywhere)")
    ramp_epochs: float = Field(3, ge=0, description="rho goes linearly from 1 to its target over these epochs")
    boundary_guidance_weight: float = Field(0.0, ge=0, description="0 disables boundary guidance")
    boundary_guidance_epochs: int = Field(0, ge=0, description="first epochs with boundary guidance")
    boundary_guidance_radius: float = Field(2.0, ge=0, description="level-0 steps around a boundary")


class LossConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cls: float = Field(1.0, ge=0)
    reg: float = Field(1.0, ge=0)
    boundary: float = Field(1.0, ge=0)
    center_radius: float = Field(1.5, gt=0, description="centre sampling radius, in strides")
    regression_ranges: list[tuple[float, float]] | None = Field(
        None, description="per level, level-0 steps; default [0,4],[4,8],...,[.,inf) (ActionFormer THUMOS)"
    )
    focal_alpha: float = 0.25
    focal_gamma: float = Field(2.0, ge=0)
    bdr_smoothness: Literal["none", "l1", "l2"] = "l1"
    bdr_alpha: float = Field(0.1, ge=0)
    bdr_normalize: bool = Field(True, description="BDR loss on the fields divided by model.bdr_clip (in [-1, 1])")
    boundary_sigma: float = Field(1.0, gt=0, description="Gaussian targets of the classification boundary head")
    init_loss_norm: float = Field(100.0, gt=0)
    loss_norm_momentum: float = Field(0.9, ge=0, lt=1)


class DistillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    teacher: Path | None = Field(None, description="teacher run directory; set to distil (or --distill-from)")
    kd_cls: float = Field(1.0, ge=0)
    kd_reg: float = Field(1.0, ge=0)
    temperature: float = Field(1.0, gt=0)
    init_from_teacher: bool = True
    integer_depth: bool = Field(True, description="hard (binary, straight-through) layer masks in the student")


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: ModelSection = ModelSection()
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    atr: ATRConfig = ATRConfig()
    loss: LossConfig = LossConfig()
    postprocess: PostprocessConfig = PostprocessConfig()
    distill: DistillConfig = DistillConfig()
    seed: int = 0

    @field_validator("model")
    @classmethod
    def _model_is_buildable(cls, section: ModelSection) -> ModelSection:
        section.build(input_dim=1, num_classes=1)  # runs ModelConfig's own checks
        return section

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


def _describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in error.errors())


def load_config(path: Path, overrides: dict[str, dict[str, Any]] | None = None) -> TrainConfig:
    """YAML -> TrainConfig; `overrides` {section: {key: value}} (from the command line) win over the file.

    Unknown keys are errors that name the key ("optimizer.learning_rate: Extra inputs are not permitted").
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise TrainConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as error:
        raise TrainConfigError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise TrainConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for section, values in (overrides or {}).items():
        if not isinstance(raw.get(section, {}), dict):
            raise TrainConfigError(f"{path}: section {section!r} must be a mapping")
        raw[section] = {**raw.get(section, {}), **{k: v for k, v in values.items() if v is not None}}
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise TrainConfigError(f"{path}: {_describe(error)}") from None
