"""The shapes of every answer (DESIGN §4), as pydantic models FastAPI documents in OpenAPI, errors included.

Add a route's models here, next to the others; routes build answers only from these.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from service.errors import STATUS_DESCRIPTIONS


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class VideoModel(BaseModel):
    filename: str
    duration_s: float
    fps: float
    frames: int
    width: int
    height: int


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


class Timing(BaseModel):
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


class LocalizeResponse(BaseModel):
    request_id: str
    video: VideoModel
    segments: list[Segment]
    model: ModelInfo
    timing_ms: Timing
    flops: Flops
    realtime_factor: float


class Limits(BaseModel):
    max_upload_mb: float
    max_duration_s: float
    max_concurrent: int
    request_timeout_s: float
    api_key_required: bool


class InfoResponse(BaseModel):
    model: ModelInfo
    labels: list[str]
    limits: Limits
    ready: bool


class Status(BaseModel):
    status: str


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """`{"error": {"code", "message"}}` with `status`."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses of a route."""
    return {code: {"model": ErrorResponse, "description": STATUS_DESCRIPTIONS[code]} for code in codes}


MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {
                        "video": {"type": "string", "format": "binary", "description": "the video file"},
                        "min_score": {"type": "number", "minimum": 0, "maximum": 1},
                        "top_k": {"type": "integer", "minimum": 1},
                    },
                }
            }
        },
    }
}
