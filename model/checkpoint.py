"""Checkpoints as `save_pretrained`-style directories: `config.json` + `model.safetensors`.

safetensors, never pickle: loading someone else's checkpoint cannot run their code. The config says how to
rebuild the network, which features it expects and what its classes are called.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.config import MIN_FRAME_SIZE, ModelConfig, PostprocessConfig
from model.tzn import TZN

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "tzn-checkpoint/1"


class CheckpointError(Exception):
    """A checkpoint directory that cannot be loaded; the message names the file and the problem."""


class FeatureSpec(BaseModel):
    """How the features the model was trained on map to time: feature i covers source frames
    [i*feat_stride, i*feat_stride + num_frames), centred at (i*feat_stride + num_frames/2) / fps seconds."""

    model_config = ConfigDict(extra="forbid")

    feat_stride: int = Field(4, gt=0)
    num_frames: int = Field(16, gt=0)
    default_fps: float | None = Field(30.0, gt=0)
    backbone: str | None = Field(None, description="feature extractor the model was trained on, e.g. 'i3d'")
    frame_size: int | None = Field(
        None, ge=MIN_FRAME_SIZE, description="side (px) of the frames its backbone saw; None: the backbone's own (112)"
    )

    @model_serializer(mode="wrap")
    def _frame_size_only_when_set(self, handler) -> dict[str, Any]:
        """Without a frame size the key is left out: checkpoints and exports stay readable by releases before it."""
        data = handler(self)
        if data.get("frame_size") is None:
            data.pop("frame_size", None)
        return data


class CheckpointConfig(BaseModel):
    """How to rebuild the network, what its classes are called (and numbered), which features it reads and
    how its outputs become segments. Saved as config.json, and inside every ONNX export."""

    model_config = ConfigDict(extra="forbid")

    format: str = FORMAT
    model: ModelConfig
    labels: list[str]
    label_ids: list[int] | None = Field(
        None, description="the annotations' label_id of each label (labels order); None: the label's index"
    )
    features: FeatureSpec = FeatureSpec()
    postprocess: PostprocessConfig = PostprocessConfig()
    metadata: dict[str, Any] = Field(default_factory=dict, description="free-form: training run, metrics")

    @model_validator(mode="before")
    @classmethod
    def _postprocess_from_metadata(cls, data: Any) -> Any:
        """Checkpoints written before postprocess was a section kept it in metadata["postprocess"]."""
        old = isinstance(data, dict) and "postprocess" not in data and isinstance(data.get("metadata"), dict)
        if old and "postprocess" in data["metadata"]:
            metadata = dict(data["metadata"])
            data = {**data, "postprocess": metadata.pop("postprocess"), "metadata": metadata}
        return data

    @model_validator(mode="after")
    def _labels_match(self) -> CheckpointConfig:
        if len(self.labels) != self.model.num_classes:
            raise ValueError(f"{len(self.labels)} labels for a model with num_classes={self.model.num_classes}")
        if self.label_ids is not None:
            if len(self.label_ids) != len(self.labels):
                raise ValueError(f"{len(self.label_ids)} label_ids for {len(self.labels)} labels")
            if len(set(self.label_ids)) != len(self.label_ids):
                raise ValueError(f"label_ids {self.label_ids} repeat an id")
        if self.format != FORMAT:
            raise ValueError(f"unknown checkpoint format {self.format!r}, expected {FORMAT!r}")
        return self


def label_id(config: CheckpointConfig, index: int) -> int:
    """The id the annotations gave class `index` of the model (its index when they gave none)."""
    return config.label_ids[index] if config.label_ids is not None else index


def save_checkpoint(model: TZN, directory: str | Path, config: CheckpointConfig) -> Path:
    """Writes config.json and model.safetensors into `directory` (created if needed); returns the directory."""
    if config.model != model.config:
        raise ValueError("the checkpoint config's model section differs from the model being saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": FORMAT})
    (directory / CONFIG_NAME).write_text(config.model_dump_json(indent=2) + "\n")
    return directory


def read_checkpoint_config(directory: str | Path) -> CheckpointConfig:
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise CheckpointError(f"checkpoint directory {str(directory)!r} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint directory holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        return CheckpointConfig.model_validate_json(path.read_text())
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in error.errors())
        raise CheckpointError(f"{path}: invalid config: {problems}") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not a UTF-8 JSON file") from None


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> tuple[TZN, CheckpointConfig]:
    """Rebuilds the model from `directory` in eval mode on `device`, with every weight checked."""
    config = read_checkpoint_config(directory)
    weights_path = Path(directory) / WEIGHTS_NAME
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing")
    try:
        state = load_file(weights_path, device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{weights_path}: unreadable safetensors file ({error}); truncated or corrupted?"
        ) from None
    model = TZN(config.model)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{name} {tuple(state[name].shape)} != {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            details.append(f"unexpected {len(unexpected)} tensors (e.g. {', '.join(unexpected[:3])})")
        if wrong_shape:
            details.append(f"wrong shapes: {'; '.join(wrong_shape[:3])}")
        raise CheckpointError(
            f"{weights_path}: does not match the model described by {CONFIG_NAME}: {', '.join(details)}"
        )
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"{weights_path}: non-finite values in {', '.join(bad[:3])}")
    model.load_state_dict(state)
    return model.to(device).eval(), config
