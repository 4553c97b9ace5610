"""What the engine needs to run: which model, on which device, with which decoder, and the limits of one piece
of work. Each setting is described once, here; the service reads them from TZN_* environment variables
(service/settings.py builds its Settings from these groups) and `tzn` commands from their flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.video.choice import DecoderSetting
from model.config import Runtime


class ModelSettings(BaseModel):
    """The model: which checkpoint or exported head, and the backbone that computes its features."""

    checkpoint: Path | None = Field(
        None, description="checkpoint directory (config.json + model.safetensors); unset: the bundled demo model"
    )
    runtime: Runtime = Field("torch", description="torch, onnxruntime or tensorrt")
    onnx: Path | None = Field(None, description="ONNX file, for runtime=onnxruntime")
    engine: Path | None = Field(None, description="TensorRT engine, for runtime=tensorrt")
    backbone: str | None = Field(None, description="feature extractor; default: the one the checkpoint names")
    backbone_weights: Path | None = Field(None, description="local safetensors weights; unset = random-init")


class DeviceSettings(BaseModel):
    """Where the work runs, and how the frames are decoded."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU")
    decoder: DecoderSetting = Field(
        "auto",
        description="auto: decord on a CPU host, torchcodec on a GPU host (NVDEC for the streams it decodes); "
        "decord or torchcodec: that library, on the CPU (torchcodec may still use NVDEC on a GPU host)",
    )
    gpu_decode: bool = Field(
        True, description="on CUDA: let NVDEC decode the streams it can (false: decode every video on the CPU)"
    )
    cuda_graphs: bool = Field(True, description="on CUDA: the torch head replays CUDA graphs (bucketed shapes)")
    chunk_frames: int = Field(256, ge=1, description="sampled frames decoded and windowed at a time")
    backbone_batch: int = Field(
        0, ge=0, description="frames (2D backbones) or clips (3D) per backbone batch; 0: 64/8 on CPU, 512/64 on CUDA"
    )
    backbone_batch_wait_ms: float = Field(
        1.0, ge=0, description="on CUDA: how long a backbone batch waits to be filled by concurrent requests"
    )
    nvdec_engines: int = Field(0, ge=0, description="NVDEC decoders run at once; 0: the GPU's engine count")
    nvdec_longest_part_s: float = Field(
        60.0, gt=0, description="longest part of a video one NVDEC engine decodes (a video alone gets every engine)"
    )
    nvdec_parts_ahead: int = Field(6, ge=1, description="NVDEC parts of one video decoded ahead of its backbone")
    zoom_spool_mb: float = Field(
        1024.0,
        ge=0,
        description="a zoom checkpoint decodes once at its zoom rate and keeps the frames on disk for its windows "
        "when they fit in this many MiB (16 fps: 34.5 MiB per video minute); a longer video decodes its coarse pass "
        "alone, at the coarse rate, and its windows again",
    )
    temp_dir: Path | None = Field(
        None, description="decoders' scratch folders and spooled uploads; default: the system's"
    )


class EngineSettings(ModelSettings, DeviceSettings):
    """Everything a Localizer is built from."""

    model_config = ConfigDict(frozen=True)


class WorkLimits(BaseModel):
    """How long a video may be, and how long its decoding may take (the whole decode, start included)."""

    model_config = ConfigDict(frozen=True)

    max_duration_s: float = Field(gt=0)
    timeout_s: float = Field(gt=0)
