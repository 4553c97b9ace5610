"""The FastAPI service: the routes of service/routes, the state they share, and how it starts.

Every error answers `{"error": {"code", "message"}}` (service/schemas.py); the mapping from failures to HTTP
codes is `service.errors.error_status`, in one place. The work on a video is the engine's (engine/localizer.py).

The model loads in the background at start-up: /health/live answers at once, /health/ready once the model is
loaded and warm, which one log line announces. A model that fails to load calls `on_load_failure` (`tzn serve`
then exits, unless TZN_KEEP_UP_ON_LOAD_ERROR is set).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import VideoError
from engine.localizer import Localizer
from service.admission import ComputeSlots, Slots
from service.errors import RequestError
from service.intake import failure_response
from service.jobs.manager import Jobs
from service.metrics import ServiceMetrics
from service.routes import health, jobs, localize, page
from service.routes.docs import docs_router
from service.schemas import ErrorResponse, error_response
from service.settings import DEMO_VIDEO, Settings

log = logging.getLogger("tzn.service")


class ServiceState:
    """What the app holds between requests: settings, the localizer once loaded, metrics, slots, the jobs."""

    def __init__(
        self, settings: Settings, localizer: Localizer | None, on_load_failure: Callable[[str], None] | None = None,
        intake_socket: str | None = None, upload_slots: Slots | None = None,
    ):  # fmt: skip
        self.settings = settings
        self.intake_socket = intake_socket  # where intake processes hand over uploads (service/workers.py)
        self.localizer = localizer
        self.load_error: str | None = None
        self.on_load_failure = on_load_failure
        self.metrics = ServiceMetrics(runtime=settings.runtime, device="unknown")
        self.uploads = upload_slots or Slots(settings.max_concurrent_uploads)
        self.metrics.inflight_elsewhere = self.uploads.elsewhere  # uploads arriving in intake processes
        self.compute = ComputeSlots(settings.compute_slots(0), settings.max_queue, settings.queue_timeout_s)
        self.metrics.waiting.set_function(lambda: len(self.compute.waiting))
        self.jobs = Jobs(self)

    def load(self) -> None:
        started = time.perf_counter()
        try:
            localizer = Localizer(self.settings.engine_settings(), warm_up_video=DEMO_VIDEO)
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
            "model loaded and warm in %.1f s: %s (%s, %s on %s, decoder %s, %d compute slots); ready for /localize",
            time.perf_counter() - started, info["name"], info["backbone"], info["runtime"], info["device"],
            info["decoder"], self.compute.limit,
        )  # fmt: skip

    def ready(self) -> None:
        """The localizer is in: size the compute slots for its device, report it in the metrics."""
        engines = self.localizer.nvdec.engines if self.localizer.nvdec is not None else 0
        self.compute.limit = self.settings.compute_slots(engines)
        self.metrics.set_build_info(self.settings.runtime, str(self.localizer.device))
        self.metrics.set_ready(True)


def create_app(
    settings: Settings | None = None,
    localizer: Localizer | None = None,
    on_load_failure: Callable[[str], None] | None = None,
    intake_socket: str | None = None,
    upload_slots: Slots | None = None,
) -> FastAPI:
    """The service. Pass `localizer` to serve an already loaded model (tests); otherwise it loads at start-up,
    and `on_load_failure(message)` is called if it cannot (without one, /health/ready answers 503 with why).
    `intake_socket`: the Unix socket this app serves, where intake processes hand over uploads, and
    `upload_slots` the upload slots it shares with them (service/workers.py)."""
    settings = settings or Settings()
    state = ServiceState(settings, localizer, on_load_failure, intake_socket, upload_slots)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.localizer is None:
            threading.Thread(target=state.load, name="tzn-model-load", daemon=True).start()
        else:
            state.ready()
        await run_in_threadpool(state.jobs.start)
        yield
        await run_in_threadpool(state.jobs.stop)

    app = FastAPI(
        title="TZN temporal action localization",
        version="0.1.0",
        description="Upload a video; get the actions in it, with what the request cost.",
        lifespan=lifespan,
        responses={500: {"model": ErrorResponse, "description": "Unexpected server error (the log has details)"}},
        docs_url=None,  # served from local files by the docs router: no CDN, works on an air-gapped host
        redoc_url=None,
    )
    app.state.tzn = state
    if intake_socket is not None:
        app.add_middleware(IntakeClients, intake_socket=intake_socket)
    add_error_handlers(app, settings)
    for router in (page.router, health.router, localize.router, jobs.submit_router, jobs.router):
        app.include_router(router)
    app.include_router(docs_router(app))
    return app


class IntakeClients:
    """A request that an intake process forwarded (service/workers.py) names its client in x-tzn-client: the
    request's client, and the access log's, is that one, not the Unix socket's. Read only from that socket."""

    def __init__(self, app, intake_socket: str):
        self.app, self.server = app, (intake_socket, None)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("server") == self.server:
            client = dict(scope["headers"]).get(b"x-tzn-client", b"").decode("latin-1")
            host, _, port = client.rpartition(":")
            if host and port.isdigit():
                scope["client"] = (host, int(port))
        await self.app(scope, receive, send)


def add_error_handlers(app: FastAPI, settings: Settings) -> None:
    """Every failure answers {"error": {"code", "message"}}: ours by `error_status`, the framework's too."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return error_response(error.status_code, code, str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(400, "bad_request", str(error.errors()))

    @app.exception_handler(RequestError)
    @app.exception_handler(VideoError)
    async def refused(request: Request, error: Exception) -> JSONResponse:
        return failure_response(uuid.uuid4().hex, error, settings)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
        return failure_response(uuid.uuid4().hex, error, settings)
