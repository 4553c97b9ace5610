"""Service settings from `TZN_*` environment variables (pydantic-settings), in groups, each described once.

The engine's groups (the model, the device and decoders) are defined in engine/settings.py; the service adds
its own below. The README's settings table is generated from these descriptions (`settings_table`; a test
keeps the two equal). `load_settings()` is how the commands read them: a wrong value or an unknown TZN_*
variable (a typo such as TZN_MAX_UPLAOD_MB) stops start-up with one line that names it and the closest known
setting.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.settings import DeviceSettings, EngineSettings, ModelSettings, WorkLimits

DEMO_CHECKPOINT = Path(__file__).resolve().parent / "demo" / "checkpoint"
DEMO_ZOOM = (
    DEMO_CHECKPOINT.parent / "zoom"
)  # a zoom checkpoint (engine/zoom.py), zoom-fine as configs/zoom.yaml trains it
DEMO_VIDEO = DEMO_CHECKPOINT.parent / "sample.mp4"

# The most segments an answer may ask for (top_k): far beyond what a video holds, and what a job's row stores.
MAX_TOP_K = 100_000


class LocalizeSettings(BaseModel):
    """POST /localize: what one request may be, and what it gets by default."""

    max_upload_mb: float = Field(512.0, gt=0, description="largest upload")
    max_duration_s: float = Field(600.0, gt=0, description="longest video")
    request_timeout_s: float = Field(300.0, gt=0, description="longest processing of one request (504 beyond)")
    min_score: float = Field(0.2, ge=0, le=1, description="default score threshold of returned segments")
    top_k: int = Field(100, ge=1, le=MAX_TOP_K, description="default maximum number of returned segments")


class AdmissionSettings(BaseModel):
    """How many /localize requests are received and worked on at once, and how many may wait."""

    max_concurrent_uploads: int = Field(16, ge=1, description="uploads received at once; more get 503")
    max_concurrent: int = Field(
        0, ge=0, description="requests processed at once, counted once their upload is in; 0: 2 on a CPU host, "
        "twice the NVDEC engines on a GPU host"
    )  # fmt: skip
    max_queue: int = Field(32, ge=0, description="requests waiting for a compute slot; more get 503")
    queue_timeout_s: float = Field(30.0, gt=0, description="a request that waited this long for a slot gets 503")


class UploadSettings(BaseModel):
    """Receiving uploads, for /localize and /jobs alike."""

    upload_memory_mb: float = Field(
        256.0, ge=0, description="a /localize upload of at most this size is held in memory, a larger one spooled "
        "to TZN_TEMP_DIR"
    )  # fmt: skip
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


class JobSettings(BaseModel):
    """POST /jobs: long videos, processed in the background with their own, larger limits."""

    jobs_dir: Path | None = Field(None, description="jobs' uploads (and store); default: /tmp/tzn-jobs-<uid>")
    jobs_db: Path | None = Field(None, description="SQLite store of the jobs; default: <jobs_dir>/jobs.sqlite3")
    jobs_disk_quota_mb: float = Field(20480.0, gt=0, description="disk for uploads of queued and running jobs")
    jobs_max_upload_mb: float = Field(8192.0, gt=0, description="largest upload of a job")
    jobs_max_duration_s: float = Field(4 * 3600.0, gt=0, description="longest video of a job")
    jobs_timeout_s: float = Field(4 * 3600.0, gt=0, description="time limit of one job's decoding")
    jobs_max_queued: int = Field(100, ge=1, description="queued jobs beyond which POST /jobs answers 503")
    jobs_workers: int = Field(1, ge=1, description="jobs run at once")
    jobs_ttl_s: float = Field(7 * 24 * 3600.0, gt=0, description="finished jobs are deleted after this")
    jobs_max_attempts: int = Field(2, ge=1, description="starts of a job interrupted by server deaths")
    jobs_page_size: int = Field(50, ge=1, le=1000, description="default page size of GET /jobs")


class ServerSettings(BaseModel):
    """The server itself."""

    api_key: SecretStr | None = Field(None, description="when set, /localize and /jobs require the X-API-Key header")
    retry_after_s: int = Field(5, ge=1, description="the Retry-After of a 503")
    keep_up_on_load_error: bool = Field(
        False, description="keep serving 503 when the model fails to load, instead of exiting (tzn serve)"
    )
    intake_workers: int = Field(
        0, ge=0, le=64, description="processes that receive /localize uploads beside the one that owns the model "
        "(service/workers.py; tzn serve); 0: that one receives them too"
    )  # fmt: skip


GROUPS: tuple[type[BaseModel], ...] = (
    ModelSettings, DeviceSettings, LocalizeSettings, AdmissionSettings, UploadSettings, JobSettings, ServerSettings,
)  # fmt: skip


class RouteLimits(BaseModel):
    """The limits one route applies to a request: its upload, and the work on its video."""

    model_config = ConfigDict(frozen=True)

    max_upload_bytes: int
    work: WorkLimits


class Settings(
    BaseSettings, ServerSettings, JobSettings, UploadSettings, AdmissionSettings, LocalizeSettings, EngineSettings
):
    # An empty variable means "unset" (docker-compose passes `${TZN_X:-}` through as "").
    model_config = SettingsConfigDict(env_prefix="TZN_", extra="forbid", env_ignore_empty=True, frozen=True)

    def engine_settings(self) -> EngineSettings:
        """The engine's part, the bundled demo model when no checkpoint is set."""
        values = {name: getattr(self, name) for name in EngineSettings.model_fields}
        if values["checkpoint"] is None:
            values["checkpoint"] = DEMO_CHECKPOINT
        return EngineSettings(**values)

    @property
    def localize_limits(self) -> RouteLimits:
        return RouteLimits(
            max_upload_bytes=_bytes(self.max_upload_mb),
            work=WorkLimits(max_duration_s=self.max_duration_s, timeout_s=self.request_timeout_s),
        )

    @property
    def jobs_limits(self) -> RouteLimits:
        return RouteLimits(
            max_upload_bytes=_bytes(self.jobs_max_upload_mb),
            work=WorkLimits(max_duration_s=self.jobs_max_duration_s, timeout_s=self.jobs_timeout_s),
        )

    @property
    def jobs_disk_quota_bytes(self) -> int:
        return _bytes(self.jobs_disk_quota_mb)

    def compute_slots(self, nvdec_engines: int) -> int:
        """TZN_MAX_CONCURRENT, or its device's default: 2 on a CPU host (the cores are the limit), twice the NVDEC
        engines on a GPU host (each request spends most of its time decoding)."""
        if self.max_concurrent:
            return self.max_concurrent
        return 2 * nvdec_engines if nvdec_engines else 2


def _bytes(megabytes: float) -> int:
    return int(megabytes * 1024 * 1024)


# TZN_* variables read by other tools, not by the service: present in a deployment's environment, not typos.
OTHER_TOOLS_VARIABLES = {
    "TZN_MODELS_DIR": "docker-compose.yml",
    "TZN_WHEELS": "bench/device/gpu_check.sh",
    "TZN_THUMOS_ANNOTATIONS": "experiments/",
    "TZN_PARITY_MEDIA": "tests/conftest.py, bench/device/",
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


def settings_table() -> str:
    """The README's table of settings: one section per group, one row per setting (its default, its description)."""
    lines = []
    for group in GROUPS:
        lines += [f"**{group.__doc__.strip()}**", "", "| variable | default | meaning |", "| --- | --- | --- |"]
        for name, field in group.model_fields.items():
            default = "" if field.default is None else str(field.default)
            default = default.lower() if isinstance(field.default, bool) else default
            lines.append(f"| `TZN_{name.upper()}` | {default} | {field.description} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
