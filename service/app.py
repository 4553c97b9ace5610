"""The FastAPI service's routes: POST /localize, health, info, metrics and offline docs (DESIGN §4).

Every error answers `{"error": {"code", "message"}}` (service/schemas.py); the mapping from failures to
HTTP codes is `service.errors.error_status`, in one place. A request's work is service/pipeline.py.

A /localize request, top to bottom (`localize` below): the API key; an upload slot (more than
TZN_MAX_CONCURRENT_UPLOADS uploads at once get 503); the body, streamed to a temporary file with an idle
and minimum-rate timeout (408); a compute slot, taken only once the upload is in (more than
TZN_MAX_CONCURRENT get 503); the pipeline in a worker thread, bounded by TZN_REQUEST_TIMEOUT_S (504).
An answer sent before the body was read drains the rest of it first (bounded), so the client can read it.

The model loads in the background at start-up: /health/live answers at once, /health/ready once the
model is loaded and warm, which one log line announces. A model that fails to load calls
`on_load_failure` (`tzn serve` then exits, unless TZN_KEEP_UP_ON_LOAD_ERROR is set).

Routes are grouped in routers (`page_router`, `health_router`, `localize_router`, `docs_router`); a new route goes in its
own router, included by `create_app`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.admission import Slots
from service.errors import UploadError, VideoError, error_status
from service.jobs.api import install as install_jobs
from service.metrics import ServiceMetrics
from service.pipeline import Localization, Localizer
from service.schemas import (
    MULTIPART_BODY,
    STAGES,
    ErrorResponse,
    InfoResponse,
    Limits,
    LocalizeResponse,
    Status,
    error_response,
    error_responses,
)
from service.settings import Settings
from service.trace import parse_include
from service.upload import RequestBody, Upload, form_options, receive_upload

log = logging.getLogger("tzn.service")
INDEX_PAGE = Path(__file__).resolve().parent / "static" / "index.html"


class ServiceState:
    """What the app holds between requests: settings, the localizer once loaded, metrics, the slots."""

    def __init__(
        self, settings: Settings, localizer: Localizer | None, on_load_failure: Callable[[str], None] | None = None
    ):
        self.settings = settings
        self.localizer = localizer
        self.load_error: str | None = None
        self.on_load_failure = on_load_failure
        self.metrics = ServiceMetrics(runtime=settings.runtime, device="unknown")
        self.uploads = Slots(settings.max_concurrent_uploads)
        self.compute = Slots(settings.max_concurrent)

    def load(self) -> None:
        started = time.perf_counter()
        try:
            localizer = Localizer(self.settings)
        except Exception as error:  # reported by /health/ready and the log, never hidden
            self.load_error = f"{type(error).__name__}: {error}"
            log.exception("model failed to load")
            if self.on_load_failure is not None:
                self.on_load_failure(self.load_error)
            return
        self.localizer = localizer
        self.ready()
        info = localizer.model_info()
        log.info(
            "model loaded and warm in %.1f s: %s (%s, %s on %s); ready for /localize",
            time.perf_counter() - started, info.name, info.backbone, info.runtime, info.device,
        )  # fmt: skip

    def ready(self) -> None:
        self.metrics.set_build_info(self.settings.runtime, str(self.localizer.device))
        self.metrics.set_ready(True)


def create_app(
    settings: Settings | None = None,
    localizer: Localizer | None = None,
    on_load_failure: Callable[[str], None] | None = None,
) -> FastAPI:
    """The service. Pass `localizer` to serve an already loaded model (tests); otherwise it loads at start-up,
    and `on_load_failure(message)` is called if it cannot (without one, /health/ready answers 503 with why)."""
    settings = settings or Settings()
    state = ServiceState(settings, localizer, on_load_failure)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.localizer is None:
            threading.Thread(target=state.load, name="tzn-model-load", daemon=True).start()
        else:
            state.ready()
        await run_in_threadpool(jobs.start)
        yield
        await run_in_threadpool(jobs.stop)

    app = FastAPI(
        title="TZN temporal action localization",
        version="0.1.0",
        description="Upload a video; get the actions in it, with what the request cost.",
        lifespan=lifespan,
        responses={500: {"model": ErrorResponse, "description": "Unexpected server error (the log has details)"}},
        docs_url=None,  # served from local files by docs_router: no CDN, works on an air-gapped host
        redoc_url=None,
    )
    app.state.tzn = state
    jobs = install_jobs(app, state)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, "bad_request", str(error.errors()))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        return internal_error(uuid.uuid4().hex, error)

    app.include_router(page_router())
    app.include_router(health_router(state))
    app.include_router(localize_router(state))
    app.include_router(docs_router(app))
    return app


def internal_error(request_id: str, error: BaseException) -> JSONResponse:
    """500 with a plain message that carries the request id; the details go to the log under that id."""
    log.error("request %s failed", request_id, exc_info=error)
    return error_response(
        500, "internal_error", f"internal error (request_id {request_id}); the server log has the details"
    )


def retry_after(settings: Settings) -> dict[str, str]:
    return {"Retry-After": str(settings.retry_after_s)}


# ---------------------------------------------------------------------------------------------- the web page


def page_router() -> APIRouter:
    router = APIRouter()

    @router.get(
        "/",
        response_class=HTMLResponse,
        responses={
            200: {"content": {"text/html": {}}, "description": "The web page: upload a video, see its timeline"}
        },
    )
    async def index() -> HTMLResponse:
        return HTMLResponse(INDEX_PAGE.read_text(encoding="utf-8"))

    return router


# ---------------------------------------------------------------------------------------------- health, info


def health_router(state: ServiceState) -> APIRouter:
    router = APIRouter()
    settings = state.settings

    @router.get("/health/live", response_model=Status)
    async def live() -> Status:
        return Status(status="alive")

    @router.get("/health/ready", response_model=Status, responses=error_responses(503))
    async def ready() -> Any:
        if state.localizer is not None:
            return Status(status="ready")
        if state.load_error:
            return error_response(503, "model_failed", state.load_error, retry_after(settings))
        return error_response(503, "loading", "the model is loading", retry_after(settings))

    @router.get("/info", response_model=InfoResponse, responses=error_responses(503))
    async def info() -> Any:
        if state.localizer is None:
            return error_response(503, "loading", state.load_error or "the model is loading", retry_after(settings))
        return InfoResponse(
            model=state.localizer.model_info(),
            labels=state.localizer.config.labels,
            limits=Limits(
                max_upload_mb=settings.max_upload_mb,
                max_duration_s=settings.max_duration_s,
                max_concurrent=settings.max_concurrent,
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
    async def metrics() -> Response:
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)

    return router


# ---------------------------------------------------------------------------------------------- /localize


def localize_router(state: ServiceState) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/localize",
        response_model=LocalizeResponse,
        responses=error_responses(400, 401, 408, 413, 415, 422, 503, 504),
        openapi_extra=MULTIPART_BODY,
    )
    async def localize(request: Request) -> Any:
        arrived = time.perf_counter()
        request_id = uuid.uuid4().hex
        body = RequestBody(
            request.receive,
            idle_timeout_s=state.settings.upload_idle_timeout_s,
            min_rate=state.settings.upload_min_rate_kib_s * 1024,
            grace_s=state.settings.upload_rate_grace_s,
        )
        with state.metrics.track_inflight():
            try:
                response = await _localize(request, body, state, arrived, request_id)
            except Exception as error:
                response = internal_error(request_id, error)
            if not body.complete:
                response = await _after_draining(response, body, state.settings)
        state.metrics.observe_request(response.status_code, time.perf_counter() - arrived)
        return response

    return router


async def _localize(request: Request, body: RequestBody, state: ServiceState, arrived: float, request_id: str):
    settings = state.settings
    if settings.api_key is not None:
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), settings.api_key.get_secret_value().encode()):
            return error_response(401, "unauthorized", "missing or wrong X-API-Key header")
    if state.localizer is None:
        return error_response(503, "loading", state.load_error or "the model is loading", retry_after(settings))
    if not state.uploads.try_acquire():
        message = f"{settings.max_concurrent_uploads} uploads are in progress; retry later"
        return error_response(503, "overloaded", message, retry_after(settings))
    upload: Upload | None = None
    try:
        try:
            upload = await receive_upload(
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                body.chunks(),
                settings.max_upload_bytes,
                settings.temp_dir,
            )
        finally:
            state.uploads.release()
        received = time.perf_counter()
        min_score, top_k = form_options(upload.fields, settings)
        include = parse_include(upload.fields.get("include"))
        if upload.size == 0:
            raise UploadError(422, "empty_video", f"'{upload.filename}' is empty (0 bytes)")
        if not state.compute.try_acquire():
            message = f"{settings.max_concurrent} requests are being processed; retry later"
            return error_response(503, "overloaded", message, retry_after(settings))
        return await _run(state, upload, min_score, top_k, include, (received - arrived) * 1000, received, request_id)
    except (UploadError, VideoError) as error:
        status, code = error_status(error)
        return error_response(status, code, str(error))
    finally:
        if upload is not None:
            upload.remove()


async def _run(
    state: ServiceState, upload: Upload, min_score: float, top_k: int, include: frozenset[str], upload_ms: float,
    received: float,
    request_id: str,
) -> Response:  # fmt: skip
    """The pipeline in a worker thread, holding a compute slot (released here, or when an abandoned worker ends)."""
    settings = state.settings
    path, upload.path = upload.path, None  # this function owns the file now
    work = asyncio.ensure_future(
        run_in_threadpool(
            state.localizer.localize, path, upload.filename, min_score, top_k, upload_ms=upload_ms,
            received_at=received, fields="boundary" in include,
        )
    )  # fmt: skip

    def cleanup(_: Any = None) -> None:
        path.unlink(missing_ok=True)
        state.compute.release()

    try:
        result: Localization = await asyncio.wait_for(asyncio.shield(work), settings.request_timeout_s)
    except TimeoutError:
        # The worker thread cannot be interrupted: its slot and its file are freed when it ends.
        work.add_done_callback(cleanup)
        return error_response(504, "timeout", f"processing took longer than {settings.request_timeout_s:.0f} s")
    except BaseException:
        cleanup()
        raise
    cleanup()
    _observe(state, result)
    answer = result.response(state.localizer.model_info(), request_id, include)
    return JSONResponse(answer.model_dump(exclude_none=True))


async def _after_draining(response: Response, body: RequestBody, settings: Settings) -> Response:
    """A lingering close: read and discard the rest of the body (bounded) before answering, so that a client
    still sending it reads the answer instead of a reset; past the bound, the connection is closed."""
    slow_client = response.status_code == 408  # reading more from it only costs time
    drained = not slow_client and await body.drain(int(settings.drain_max_mb * 2**20), settings.drain_timeout_s)
    if not drained:
        response.headers["Connection"] = "close"
    return response


def _observe(state: ServiceState, result: Localization) -> None:
    metrics = state.metrics
    for stage in STAGES:
        metrics.observe_stage(stage, result.timing_ms[stage] / 1000)
    for component in ("backbone", "head", "head_uniform"):
        metrics.add_flops(component, result.flops[component])
    metrics.observe_video(result.info.duration_s, result.timing_ms["total"] / 1000, result.mean_depth)


# ---------------------------------------------------------------------------------------------- /docs


def docs_router(app: FastAPI) -> APIRouter:
    """Swagger UI at /docs from the assets of the fastapi-offline package, served by this app."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).resolve().parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
    router = APIRouter()

    @router.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - docs",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    return router
