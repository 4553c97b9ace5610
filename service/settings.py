"""Service settings from `TZN_*` environment variables (pydantic-settings).

`load_settings()` is how the commands read them: a wrong value or an unknown TZN_* variable (a typo such as
TZN_MAX_UPLAOD_MB) stops start-up with one line that names it (and the closest known setting).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
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
    max_concurrent: int = Field(
        2, ge=1, description="requests processed at once, counted once their upload is in; more get 503"
    )
    max_concurrent_uploads: int = Field(16, ge=1, description="uploads received at once; more get 503")
    upload_idle_timeout_s: float = Field(30.0, gt=0, description="an upload that sends nothing this long gets 408")
    upload_min_rate_kib_s: float = Field(
        16.0, ge=0, description="an upload averaging less than this after upload_rate_grace_s gets 408; 0: off"
    )
    upload_rate_grace_s: float = Field(10.0, ge=0, description="seconds before the minimum upload rate applies")
    drain_max_mb: float = Field(
        64.0, ge=0, description="after an early error, the rest of the body read and discarded so the client can "
        "read the answer (a lingering close); beyond this the connection is closed"
    )  # fmt: skip
    drain_timeout_s: float = Field(5.0, ge=0, description="longest time spent draining a body after an early error")
    keep_up_on_load_error: bool = Field(
        False, description="keep serving 503 when the model fails to load, instead of exiting (tzn serve)"
    )
    request_timeout_s: float = Field(300.0, gt=0)
    retry_after_s: int = Field(5, ge=1)
    api_key: SecretStr | None = Field(None, description="when set, /localize requires the X-API-Key header")
    min_score: float = Field(0.2, ge=0, le=1, description="default score threshold of returned segments")
    top_k: int = Field(100, ge=1, description="default maximum number of returned segments")
    temp_dir: Path | None = Field(None, description="where uploads are spooled; default: the system's")
    gpu_decode: bool = Field(
        True,
        description="on CUDA: decode with NVDEC in the server process (frames stay on the GPU) and batch the "
        "backbone across requests; false: decord in an isolated child process, as on CPU hosts",
    )
    cuda_graphs: bool = Field(True, description="on CUDA: the torch head replays CUDA graphs (bucketed shapes)")

    # Jobs (POST /jobs): long videos, processed in the background with their own, larger limits.
    jobs_dir: Path | None = Field(None, description="jobs' uploads (and store); default: /tmp/tzn-jobs-<uid>")
    jobs_db: Path | None = Field(None, description="SQLite store of the jobs; default: <jobs_dir>/jobs.sqlite3")
    jobs_disk_quota_mb: float = Field(20480.0, gt=0, description="disk for uploads of queued and running jobs")
    jobs_max_upload_mb: float = Field(8192.0, gt=0)
    jobs_max_duration_s: float = Field(4 * 3600.0, gt=0)
    jobs_timeout_s: float = Field(4 * 3600.0, gt=0, description="time limit of one job's decoding")
    jobs_max_queued: int = Field(100, ge=1, description="queued jobs beyond which POST /jobs answers 503")
    jobs_workers: int = Field(1, ge=1, description="jobs run at once")
    jobs_ttl_s: float = Field(7 * 24 * 3600.0, gt=0, description="finished jobs are deleted after this")
    jobs_max_attempts: int = Field(2, ge=1, description="starts of a job interrupted by server deaths")
    jobs_page_size: int = Field(50, ge=1, le=1000, description="default page size of GET /jobs")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def jobs_max_upload_bytes(self) -> int:
        return int(self.jobs_max_upload_mb * 1024 * 1024)

    @property
    def jobs_disk_quota_bytes(self) -> int:
        return int(self.jobs_disk_quota_mb * 1024 * 1024)


# TZN_* variables read by other tools, not by the service: present in a deployment's environment, not typos.
OTHER_TOOLS_VARIABLES = {
    "TZN_MODELS_DIR": "docker-compose.yml",
    "TZN_WHEELS": "bench/gpu_check.sh",
    "TZN_THUMOS_ANNOTATIONS": "bench/",
}


class SettingsError(Exception):
    """A TZN_* variable that is unknown or has a wrong value; the message names it (one line)."""


def setting_names() -> list[str]:
    return [f"TZN_{name.upper()}" for name in Settings.model_fields]


def unknown_variable_error(name: str) -> str:
    """`unknown setting TZN_MAX_UPLAOD_MB; did you mean TZN_MAX_UPLOAD_MB?`"""
    close = difflib.get_close_matches(name, setting_names(), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}?" if close else f"the settings are {', '.join(setting_names())}"
    return f"unknown setting {name}; {hint}"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, refusing an unknown TZN_* variable (SettingsError naming it and the
    closest known one) and wrong values (SettingsError naming the variable). `overrides` win (command line)."""
    for name in sorted(os.environ):
        if name.startswith("TZN_") and name not in setting_names() and name not in OTHER_TOOLS_VARIABLES:
            raise SettingsError(unknown_variable_error(name))
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = []
        for problem in error.errors():
            field = ".".join(map(str, problem["loc"]))
            name = f"TZN_{field.upper()}" if field in Settings.model_fields else field or "settings"
            problems.append(f"{name}: {problem['msg']}")
        raise SettingsError("; ".join(problems)) from None
