"""The shapes of every answer (docs/design.md, "HTTP API"), as pydantic models FastAPI documents in OpenAPI,
errors included.

Add a route's models here, next to the others; routes build answers only from these.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from engine.video.info import VideoSummary
from service.errors import STATUS_DESCRIPTIONS
from service.settings import MAX_TOP_K


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class Segment(BaseModel):
    label: str
    label_id: int
    score: float
    start_s: float
    end_s: float
    start_frame: int
    end_frame: int


class ModelInfo(BaseModel):
    name: str
    checkpoint_sha256: str
    backbone: str
    backbone_weights: str
    runtime: str
    device: str
    decoder: str = Field(
        description="the decoder that decoded this video: decord, torchcodec (both on the CPU) or torchcodec-nvdec "
        "(NVDEC on the GPU); in /info, the one a typical (8-bit 4:2:0 H.264) video gets"
    )


class Timing(BaseModel):
    """Milliseconds per stage, in request order; they add up to `total`, the wall time from the request's
    arrival to its answer (what `realtime_factor` divides by)."""

    upload: float
    queue: float
    decode: float
    features: float
    head: float
    postprocess: float
    total: float


class Flops(BaseModel):
    backbone: float
    head: float
    head_uniform: float
    total: float
    head_saved_ratio: float
    mean_depth: float
    backbone_dense: float | None = Field(
        None, description="zoom checkpoints: what the backbone would have cost at the backbone's dense rate"
    )
    backbone_saved_ratio: float | None = Field(None, description="zoom checkpoints: 1 - backbone / backbone_dense")


class ZoomTiming(BaseModel):
    coarse_decode: float
    coarse_features: float
    zoom_decode: float
    zoom_features: float
    refine: float


class ZoomInfo(BaseModel):
    """Where a zoom checkpoint looked closely (docs/design.md, "Temporal zoom")."""

    coarse_fps: float = Field(description="the coarse pass's sampling rate over the whole video")
    zoom_fps: float = Field(description="the sampling rate inside the windows")
    refiner: str = Field(
        description="how boundaries were refined in the windows: bdr, regression or none; detector: the zoom rate's "
        "detector found the actions again over the whole video (the windows' frames, interpolated between them)"
    )
    verify_weight: float = Field(
        description="0: the scores are the coarse pass's; > 0: each candidate with windows had its score multiplied "
        "by (p_start * p_end) ** (verify_weight / 2), the verifier's belief that its windows hold its boundaries"
    )
    windows: list[list[float]] = Field(
        description="[begin, end) s of the windows the zoom pass looked at (their frames that the coarse pass had "
        "already run are not run again)"
    )
    decode: str = Field(
        description="one pass: one decode at the zoom rate served both passes (the windows' frames were kept); "
        "two passes: the windows were decoded again"
    )
    candidates: int = Field(description="coarse detections whose boundaries got windows")
    frames: dict[str, int] = Field(
        description="frames through the backbone per pass: coarse, zoom (window frames the coarse pass had computed "
        "are not run again)"
    )
    timing_ms: ZoomTiming


INCLUDE_CHOICES = ("depth", "boundary")
INCLUDE_PATTERN = r"^\s*(depth|boundary)\s*(,\s*(depth|boundary)\s*)*$"


class DepthTrace(BaseModel):
    max_depth: int = Field(description="L_max: stem layers of the full-depth model")
    times_s: list[float] = Field(description="time of each point (mean over the positions it covers), seconds")
    mean_depth: list[float] = Field(description="stem layers run, mean over the positions each point covers")
    sample_fps: list[float] | None = Field(
        None,
        description="a zoom checkpoint's answer: the frames per second the backbone saw around each point (the "
        "coarse rate, up to the zoom rate inside its windows); absent otherwise",
    )


class BoundaryTrace(BaseModel):
    times_s: list[float] = Field(description="time of each point, seconds")
    d_start: list[float] = Field(description="BDR signed distance to the nearest start, level-0 steps")
    d_end: list[float] = Field(description="BDR signed distance to the nearest end, level-0 steps")


class LocalizeResponse(BaseModel):
    request_id: str
    video: VideoSummary
    segments: list[Segment]
    model: ModelInfo
    timing_ms: Timing
    flops: Flops
    realtime_factor: float
    depth: DepthTrace | None = Field(None, description="only with include=depth: ATR depth per position")
    boundary: BoundaryTrace | None = Field(
        None, description="only with include=boundary, for BDR models: the boundary distance fields"
    )
    zoom: ZoomInfo | None = Field(None, description="zoom checkpoints only: the coarse and zoom passes")


class Limits(BaseModel):
    max_upload_mb: float
    max_duration_s: float
    max_concurrent: int = Field(description="requests computed at once (TZN_MAX_CONCURRENT, or the device's default)")
    max_queue: int = Field(description="requests waiting for a compute slot before 503")
    queue_timeout_s: float
    max_concurrent_uploads: int
    request_timeout_s: float
    api_key_required: bool
    jobs_max_upload_mb: float = Field(description="POST /jobs: the upload limit of a long video")
    jobs_max_duration_s: float = Field(description="POST /jobs: the duration limit of a long video")


class InfoResponse(BaseModel):
    model: ModelInfo
    labels: list[str]
    limits: Limits
    ready: bool


class Status(BaseModel):
    status: str


class JobProgress(BaseModel):
    stage: str = Field(description="queued, decoding, features, head, then the final status")
    fraction: float = Field(ge=0, le=1, description="share of the job done")


class JobResponse(BaseModel):
    """GET /jobs/{id}. `error` only when failed; `result` only when succeeded: exactly the /localize answer."""

    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    progress: JobProgress
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: ErrorBody | None = None
    result: LocalizeResponse | None = None


class JobSubmitted(BaseModel):
    job_id: str
    status: Literal["queued"]
    status_url: str


class JobList(BaseModel):
    jobs: list[JobResponse] = Field(description="newest first; without `result` (GET /jobs/{id} has it)")
    page: int
    page_size: int
    total: int = Field(description="jobs matching the filter, all pages")


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": {"code", "message"}}` with `status`."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying (TZN_RETRY_AFTER_S)",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def error_responses(*codes: int, descriptions: dict[int, str] = STATUS_DESCRIPTIONS) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses of a route (503 declares its Retry-After header)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        responses[code] = {"model": ErrorResponse, "description": descriptions[code]}
        if code == 503:
            responses[code]["headers"] = RETRY_AFTER
    return responses


_OPTIONS = {
    "min_score": {"type": "number", "minimum": 0, "maximum": 1, "description": "lowest score returned"},
    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "description": "most segments returned"},
    "include": {
        "type": "string",
        "pattern": INCLUDE_PATTERN,
        "description": "comma-separated extras for a timeline: 'depth' (ATR mean depth per position and the "
        "positions' times, at most 2000 points), 'boundary' (BDR fields)",
    },
}
_RAW_VIDEO = {"schema": {"type": "string", "format": "binary"}}

# The request of POST /localize and POST /jobs: a multipart form with the file in `video` and the options as
# fields, or the video itself as the body (its options in the query).
VIDEO_BODY = {
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": schema,
         "description": f"with a video body only: {schema['description']}"}
        for name, schema in {
            **_OPTIONS,
            "filename": {"type": "string", "maxLength": 255, "description": "the video's name in the answer"},
        }.items()
    ],
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {
                        "video": {"type": "string", "format": "binary", "description": "the video file"},
                        **_OPTIONS,
                    },
                }
            },
            "video/*": _RAW_VIDEO,
            "application/octet-stream": _RAW_VIDEO,
        },
    },
}  # fmt: skip
