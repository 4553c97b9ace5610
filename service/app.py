"""The FastAPI service's routes: POST /localize, health, info and Prometheus metrics (DESIGN §4).

Every error answers `{"error": {"code", "message"}}` (service/schemas.py); the mapping from failures to
HTTP codes is `service.errors.error_status`, in one place. A request's work is service/pipeline.py. The model loads in the background at start-up: /health/live answers
at once, /health/ready only once the model is loaded and warmed up.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.admission import Slots
from service.errors import UploadError, VideoError, error_status
from service.metrics import ServiceMetrics
from service.pipeline import Localization, Localizer
from service.schemas import (
    MULTIPART_BODY,
    ErrorResponse,
    InfoResponse,
    Limits,
    LocalizeResponse,
    Status,
    error_response,
    error_responses,
)
from service.settings import Settings
from service.upload import Upload, receive_upload

log = logging.getLogger("tzn.service")


# ---------------------------------------------------------------------------------------------- the app


class ServiceState:
    """What the app holds between requests: settings, the localizer once loaded, metrics, the slot count."""

    def __init__(self, settings: Settings, localizer: Localizer | None):
        self.settings = settings
        self.localizer = localizer
        self.load_error: str | None = None
        self.metrics = ServiceMetrics(runtime=settings.runtime, device="unknown")
        self.slots = Slots(settings.max_concurrent)

    def load(self) -> None:
        try:
            self.localizer = Localizer(self.settings)
        except Exception as error:  # reported by /health/ready and the log, never hidden
            self.load_error = f"{type(error).__name__}: {error}"
            log.exception("model failed to load")
            return
        self.ready()

    def ready(self) -> None:
        self.metrics.set_build_info(self.settings.runtime, str(self.localizer.device))
        self.metrics.set_ready(True)


def create_app(settings: Settings | None = None, localizer: Localizer | None = None) -> FastAPI:
    """The service. Pass `localizer` to serve an already loaded model (tests); otherwise it loads at start-up."""
    settings = settings or Settings()
    state = ServiceState(settings, localizer)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.localizer is None:
            threading.Thread(target=state.load, name="tzn-model-load", daemon=True).start()
        else:
            state.ready()
        yield

    app = FastAPI(
        title="TZN temporal action localization",
        version="0.1.0",
        description="Upload a video; get the actions in it, with what the request cost.",
        lifespan=lifespan,
        responses={500: {"model": ErrorResponse, "description": "Unexpected server error"}},
    )
    app.state.tzn = state

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, "bad_request", str(error.errors()))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, "internal_error", f"{type(error).__name__}: {error}")

    @app.get("/health/live", response_model=Status)
    async def live() -> Status:
        return Status(status="alive")

    @app.get("/health/ready", response_model=Status, responses=error_responses(503))
    async def ready() -> Any:
        if state.localizer is not None:
            return Status(status="ready")
        if state.load_error:
            return error_response(503, "model_failed", state.load_error)
        return error_response(503, "loading", "the model is loading", {"Retry-After": str(settings.retry_after_s)})

    @app.get("/info", response_model=InfoResponse, responses=error_responses(503))
    async def info() -> Any:
        if state.localizer is None:
            return error_response(503, "loading", state.load_error or "the model is loading")
        return InfoResponse(
            model=state.localizer.model_info(),
            labels=state.localizer.config.labels,
            limits=Limits(
                max_upload_mb=settings.max_upload_mb,
                max_duration_s=settings.max_duration_s,
                max_concurrent=settings.max_concurrent,
                request_timeout_s=settings.request_timeout_s,
                api_key_required=settings.api_key is not None,
            ),
            ready=True,
        )

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}},
    )
    async def metrics() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    @app.post(
        "/localize",
        response_model=LocalizeResponse,
        responses=error_responses(400, 401, 413, 415, 422, 503, 504),
        openapi_extra=MULTIPART_BODY,
    )
    async def localize(request: Request) -> Any:
        started = time.perf_counter()
        response = await _localize(request, state)
        state.metrics.observe_request(response.status_code, time.perf_counter() - started)
        return response

    return app


async def _localize(request: Request, state: ServiceState) -> Response:
    settings = state.settings
    if settings.api_key is not None:
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), settings.api_key.get_secret_value().encode()):
            return error_response(401, "unauthorized", "missing or wrong X-API-Key header")
    if state.localizer is None:
        return error_response(
            503, "loading", state.load_error or "the model is loading", {"Retry-After": str(settings.retry_after_s)}
        )
    if not state.slots.try_acquire():
        return error_response(
            503,
            "overloaded",
            f"{settings.max_concurrent} requests are in progress; retry later",
            {"Retry-After": str(settings.retry_after_s)},
        )
    upload: Upload | None = None
    released = False
    try:
        with state.metrics.track_inflight():
            upload = await receive_upload(
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                request.stream(),
                settings.max_upload_bytes,
                settings.temp_dir,
            )
            min_score, top_k = _options(upload.fields, settings)
            if upload.size == 0:
                raise UploadError(422, "empty_video", f"'{upload.filename}' is empty (0 bytes)")
            work = asyncio.ensure_future(
                run_in_threadpool(state.localizer.localize, upload.path, upload.filename, min_score, top_k)
            )
            try:
                result: Localization = await asyncio.wait_for(asyncio.shield(work), settings.request_timeout_s)
            except TimeoutError:
                # The worker thread cannot be interrupted: its slot and its file are freed when it ends.
                pending_upload = upload
                work.add_done_callback(lambda _: (pending_upload.remove(), state.slots.release()))
                upload, released = None, True
                return error_response(504, "timeout", f"processing took longer than {settings.request_timeout_s:.0f} s")
        _observe(state, result)
        answer = result.response(state.localizer.model_info(), uuid.uuid4().hex)
        return JSONResponse(answer.model_dump())
    except (UploadError, VideoError) as error:
        status, code = error_status(error)
        return error_response(status, code, str(error))
    except Exception as error:
        log.exception("localize failed")
        return error_response(500, "internal_error", f"{type(error).__name__}: {error}")
    finally:
        if upload is not None:
            upload.remove()
        if not released:
            state.slots.release()


def _options(fields: dict[str, str], settings: Settings) -> tuple[float, int]:
    try:
        min_score = float(fields.get("min_score", settings.min_score))
        top_k = int(fields.get("top_k", settings.top_k))
    except ValueError:
        raise UploadError(
            400, "bad_form", "min_score must be a number in [0, 1] and top_k a positive integer"
        ) from None
    if not 0.0 <= min_score <= 1.0 or top_k < 1:
        raise UploadError(400, "bad_form", "min_score must be a number in [0, 1] and top_k a positive integer")
    return min_score, top_k


def _observe(state: ServiceState, result: Localization) -> None:
    metrics = state.metrics
    for stage in ("decode", "features", "head", "postprocess"):
        metrics.observe_stage(stage, result.timing_ms[stage] / 1000)
    for component in ("backbone", "head", "head_uniform"):
        metrics.add_flops(component, result.flops[component])
    metrics.observe_video(result.info.duration_s, result.timing_ms["total"] / 1000, result.mean_depth)
