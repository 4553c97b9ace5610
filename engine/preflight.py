"""What can be checked before any weights load, so that bad settings stop start-up with one line instead of a
background load that fails and a service stuck at 503: the checkpoint (or ONNX file, or TensorRT engine) and its
config, the runtime's files, the device, the backbone and its weights file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from engine.errors import ConfigurationError
from engine.settings import EngineSettings
from engine.zoom import read_zoom
from model.backbones import SPECS, BackboneSpec
from model.checkpoint import CheckpointConfig, read_checkpoint_config


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("TZN_DEVICE=cuda but no CUDA device is available; use auto or cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def served_config(settings: EngineSettings) -> CheckpointConfig:
    """The checkpoint config of what the settings serve, read without loading weights or a runtime."""
    from model.exported import metadata_from_props, read_metadata, read_sidecar

    if settings.runtime == "torch":
        if settings.checkpoint is None:
            raise ConfigurationError("runtime torch needs a checkpoint directory (TZN_CHECKPOINT)")
        return read_checkpoint_config(settings.checkpoint)
    if settings.runtime == "onnxruntime":
        if settings.onnx is None:
            raise ConfigurationError("TZN_RUNTIME=onnxruntime needs TZN_ONNX=FILE (from `tzn export onnx`)")
        return read_metadata(settings.onnx).checkpoint
    if settings.engine is not None:
        if not Path(settings.engine).is_file():
            raise ConfigurationError(f"TZN_ENGINE={settings.engine}: no such file; build it with `tzn export tensorrt`")
        return metadata_from_props(read_sidecar(settings.engine)["onnx_metadata"], str(settings.engine)).checkpoint
    if settings.onnx is not None:
        return read_metadata(settings.onnx).checkpoint
    raise ConfigurationError("TZN_RUNTIME=tensorrt needs TZN_ENGINE=FILE (from `tzn export tensorrt`) or TZN_ONNX")


def backbone_for(config: CheckpointConfig, settings: EngineSettings) -> BackboneSpec:
    """The backbone that computes this checkpoint's features: TZN_BACKBONE or the one the checkpoint names. A
    checkpoint that names its backbone also says how its features were cut into clips (`features.num_frames`
    frames every `features.feat_stride`): a per-frame backbone pools its frames so (the temporal zoom's coarse
    detectors read one feature per frame: num_frames = feat_stride = 1); a clip backbone computes its own clips
    and must match, and its frames are sampled at `features.default_fps`, the rate its features were computed at
    (a detector trained on 4 fps features is served at 4 fps, not at the backbone's 8). Without a name the
    backbone's own clips and rate are used. Frames are resized to the backbone's own size, or to
    `features.frame_size` where the checkpoint gives one (features computed from smaller frames)."""
    name = settings.backbone or config.features.backbone
    if name is None:
        raise ConfigurationError(
            "the checkpoint does not name the backbone its features came from; set TZN_BACKBONE to it"
        )
    if config.features.backbone and name != config.features.backbone:
        raise ConfigurationError(f"the checkpoint was trained on {config.features.backbone!r} features, not {name!r}")
    if name not in SPECS:
        raise ConfigurationError(f"unknown backbone {name!r}; choose one of {', '.join(sorted(SPECS))}")
    spec = SPECS[name]
    if config.model.input_dim != spec.feature_dim:
        raise ConfigurationError(
            f"checkpoint expects {config.model.input_dim}-d features, {name} gives {spec.feature_dim}"
        )
    if config.features.backbone:
        try:
            spec = spec.cut(config.features.num_frames, config.features.feat_stride)
        except ValueError as error:
            raise ConfigurationError(f"the checkpoint's features do not fit its backbone: {error}") from error
        if config.features.default_fps is not None:
            spec = replace(spec, sample_fps=config.features.default_fps)
    return spec.resized(config.features.frame_size)  # frames resized to this side instead of the backbone's own


def check(settings: EngineSettings) -> None:
    """Raises (ConfigurationError, CheckpointError, HeadError) with a one-line reason when the settings cannot
    serve; loads no weights."""
    resolve_device(settings.device)
    config = served_config(settings)
    spec = backbone_for(config, settings)
    if settings.runtime == "torch":
        read_zoom(settings.checkpoint, spec)
    if settings.backbone_weights is not None and not Path(settings.backbone_weights).is_file():
        raise ConfigurationError(f"TZN_BACKBONE_WEIGHTS={settings.backbone_weights}: no such file")
    if settings.temp_dir is not None and not Path(settings.temp_dir).is_dir():
        raise ConfigurationError(f"TZN_TEMP_DIR={settings.temp_dir}: no such directory")
