"""Service settings from `TZN_*` environment variables (pydantic-settings); a wrong value fails at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.head import Runtime

DEMO_CHECKPOINT = Path(__file__).resolve().parent / "demo" / "checkpoint"


class Settings(BaseSettings):
    # An empty variable means "unset" (docker-compose passes `${TZN_X:-}` through as "").
    model_config = SettingsConfigDict(env_prefix="TZN_", extra="forbid", env_ignore_empty=True)

    checkpoint: Path = Field(DEMO_CHECKPOINT, description="checkpoint directory (config.json + model.safetensors)")
    runtime: Runtime = "torch"
    onnx: Path | None = Field(None, description="ONNX file, for runtime=onnxruntime")
    engine: Path | None = Field(None, description="TensorRT engine, for runtime=tensorrt")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when available, else CPU")
    backbone: str | None = Field(None, description="feature extractor; default: the one the checkpoint names")
    backbone_weights: Path | None = Field(None, description="local safetensors weights; unset = random-init")

    max_upload_mb: float = Field(512.0, gt=0)
    max_duration_s: float = Field(600.0, gt=0)
    max_concurrent: int = Field(2, ge=1, description="requests processed at once; more get 503")
    request_timeout_s: float = Field(300.0, gt=0)
    retry_after_s: int = Field(5, ge=1)
    api_key: SecretStr | None = Field(None, description="when set, /localize requires the X-API-Key header")
    min_score: float = Field(0.2, ge=0, le=1, description="default score threshold of returned segments")
    top_k: int = Field(100, ge=1, description="default maximum number of returned segments")
    temp_dir: Path | None = Field(None, description="where uploads are spooled; default: the system's")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
