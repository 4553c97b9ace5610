"""GET /health/live, GET /health/ready (200 only once the model is loaded and warm), GET /info (model, labels,
limits), GET /metrics (Prometheus)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import Refusal
from service.intake import service_state
from service.schemas import InfoResponse, Limits, ModelInfo, Status, error_responses

router = APIRouter()


@router.get("/health/live", response_model=Status)
async def live() -> Status:
    return Status(status="alive")


@router.get("/health/ready", response_model=Status, responses=error_responses(503))
async def ready(request: Request) -> Any:
    state = service_state(request)
    if state.localizer is not None:
        return Status(status="ready")
    if state.load_error:
        raise Refusal("model_failed", state.load_error)
    raise Refusal("loading", "the model is loading")


@router.get("/info", response_model=InfoResponse, responses=error_responses(503))
async def info(request: Request) -> Any:
    state = service_state(request)
    if state.localizer is None:
        raise Refusal("loading", state.load_error or "the model is loading")
    settings = state.settings
    return InfoResponse(
        model=ModelInfo(**state.localizer.model_info()),
        labels=state.localizer.config.labels,
        limits=Limits(
            max_upload_mb=settings.max_upload_mb,
            max_duration_s=settings.max_duration_s,
            max_concurrent=state.compute.limit,
            max_queue=settings.max_queue,
            queue_timeout_s=settings.queue_timeout_s,
            max_concurrent_uploads=settings.max_concurrent_uploads,
            request_timeout_s=settings.request_timeout_s,
            api_key_required=settings.api_key is not None,
            jobs_max_upload_mb=settings.jobs_max_upload_mb,
            jobs_max_duration_s=settings.jobs_max_duration_s,
        ),
        ready=True,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}},
)
async def metrics(request: Request) -> Response:
    body, content_type = service_state(request).metrics.render()
    return Response(body, media_type=content_type)
