"""The one intake of POST /localize and POST /jobs: API key, readiness, the body and its options, the route's
limits, the drain after an early answer, and the request metrics, for both routes alike.

The checks are FastAPI dependencies (`require_api_key`, `require_ready`, `receive_upload`); the routes declare
them. They fail by raising (a RequestError, a VideoError of the engine): `IntakeRoute`, the route class
of both routes, turns every failure into the error answer that `service.errors.error_status` chooses, reads
the rest of an unread body before answering (bounded), and counts the request in the metrics by route and
status.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from engine.errors import VideoError
from engine.video.container import precheck
from engine.video.source import VideoSource
from service.errors import (
    BadRequest,
    EmptyUpload,
    Refusal,
    RequestError,
    Unauthorized,
    UploadTimeout,
    UploadTooLarge,
    error_status,
)
from service.schemas import error_response
from service.settings import MAX_TOP_K, RouteLimits
from service.trace import parse_include
from service.upload import OPTION_FIELDS, RequestBody, Upload, receive_video

log = logging.getLogger("tzn.service")


def service_state(request: Request):
    return request.app.state.tzn


def retry_after(settings) -> dict[str, str]:
    return {"Retry-After": str(settings.retry_after_s)}


def internal_error(request_id: str, error: BaseException) -> Response:
    """500 with a plain message that carries the request id; the details go to the log under that id."""
    log.error("request %s failed", request_id, exc_info=error)
    return error_response(
        500, "internal_error", f"internal error (request_id {request_id}); the server log has the details"
    )


def failure_response(request_id: str, error: BaseException, settings) -> Response:
    """The answer to a failed request: its status and code from `error_status`, Retry-After on a 503."""
    if not isinstance(error, RequestError | VideoError):
        return internal_error(request_id, error)
    status, code = error_status(error)
    return error_response(status, code, str(error), retry_after(settings) if status in (503, 507) else None)


class IntakeRoute(APIRoute):
    """A route that receives a video: errors answered as `error_status` says, the body drained, metrics kept."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        route = self.name

        async def intake(request: Request) -> Response:
            state = service_state(request)
            request.state.handoff = handoff = handed_over(request)
            # an upload received by an intake process arrived when it began there
            arrived = time.perf_counter() - (handoff.upload_ms / 1000 if handoff else 0.0)
            request.state.arrived = arrived
            request.state.request_id = uuid.uuid4().hex
            request.state.body = body = new_body(request, state.settings)
            with state.metrics.track_inflight():
                try:
                    response = await handler(request)
                except Exception as error:
                    response = failure_response(request.state.request_id, error, state.settings)
                if not body.complete:
                    response = await after_draining(response, body, state.settings)
            state.metrics.observe_request(route, response.status_code, time.perf_counter() - arrived)
            return response

        return intake


def new_body(request: Request, settings) -> RequestBody:
    return RequestBody(
        request.receive, idle_timeout_s=settings.upload_idle_timeout_s,
        min_rate=settings.upload_min_rate_kib_s * 1024, grace_s=settings.upload_rate_grace_s,
    )  # fmt: skip


async def after_draining(response: Response, body: RequestBody, settings) -> Response:
    """A lingering close: read and discard the rest of the body (bounded) before answering, so that a client
    still sending it reads the answer instead of a reset; past the bound, the connection is closed."""
    slow_client = response.status_code == 408  # reading more from it only costs time
    drained = not slow_client and await body.drain(int(settings.drain_max_mb * 2**20), settings.drain_timeout_s)
    if not drained:
        response.headers["Connection"] = "close"
    return response


# ---------------------------------------------------------------------------------------------- dependencies


async def require_api_key(request: Request) -> None:
    """401 unless the request carries TZN_API_KEY in X-API-Key (when one is set)."""
    key = service_state(request).settings.api_key
    if key is None:
        return
    given = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
        raise Unauthorized("unauthorized", "missing or wrong X-API-Key header")


async def require_ready(request: Request) -> None:
    """503 until the model is loaded and warm."""
    state = service_state(request)
    if state.localizer is None:
        raise Refusal("loading", state.load_error or "the model is loading")


# The refusals an intake process hands over (service/workers.py), by class name
HANDED_REFUSALS = {kind.__name__: kind for kind in (BadRequest, UploadTimeout, UploadTooLarge, EmptyUpload, Refusal)}


@dataclass(frozen=True)
class Handoff:
    """What an intake process (service/workers.py, TZN_INTAKE_WORKERS) received for a /localize request: the
    video's path (its memfd as /proc/PID/fd/N, or its file spooled to TZN_TEMP_DIR), its name and options, or
    why receiving it failed; how long receiving took."""

    path: str | None
    upload_ms: float
    filename: str = "video"
    options: dict[str, str] | None = None
    failure: Exception | None = None


def handed_over(request: Request) -> Handoff | None:
    """The handoff of a request that came from an intake process over the engine process's Unix socket; None for
    any other request (its x-tzn- headers, if any, are ignored: only the socket's peers can hand over)."""
    intake_socket = service_state(request).intake_socket
    if intake_socket is None or request.scope.get("server") != (intake_socket, None):
        return None
    headers = request.headers
    if "x-tzn-handoff" not in headers and "x-tzn-refusal" not in headers:
        return None
    try:
        upload_ms = float(headers.get("x-tzn-upload-ms", "0"))
        if (refusal := headers.get("x-tzn-refusal")) is not None:
            told = json.loads(refusal)
            kind = HANDED_REFUSALS.get(told["kind"])  # else it failed there: answered as this process's failure
            failure = kind(told["code"], told["message"]) if kind else RuntimeError(f"intake: {told['message']}")
            return Handoff(None, upload_ms, failure=failure)
        told = json.loads(headers["x-tzn-options"])
        return Handoff(headers["x-tzn-handoff"], upload_ms, told["filename"], told["options"])
    except (KeyError, TypeError, ValueError) as error:  # a bug between the two processes: a 500, counted
        return Handoff(None, 0.0, failure=RuntimeError(f"a malformed handoff from an intake process: {error!r}"))


def _handed_upload(handoff: Handoff) -> Upload:
    """The video an intake process received, opened here (a descriptor of its own: the intake process closes
    or removes its copy once this request is answered)."""
    path = handoff.path.encode("latin-1")  # the header's bytes: the path as the intake process's file system has it
    source = VideoSource(handoff.filename, fd=os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    options = {field: value for field, value in (handoff.options or {}).items() if field in OPTION_FIELDS}
    return Upload(source, source.size, options)


@dataclass
class ReceivedVideo:
    """A received upload with its parsed options; upload_ms: how long receiving took; received_at:
    `time.perf_counter()` when it was complete."""

    upload: Upload
    min_score: float
    top_k: int
    include: frozenset[str]
    upload_ms: float
    received_at: float


async def receive_upload(
    request: Request, limits: RouteLimits, directory, in_memory: bool, prechecked: bool = False
) -> ReceivedVideo:
    """Receives the video under `limits` (holding one of TZN_MAX_CONCURRENT_UPLOADS upload slots meanwhile) and
    parses its options; `prechecked`: also run the container precheck now. Whatever was received is removed
    when this fails."""
    state = service_state(request)
    settings = state.settings
    if (handoff := request.state.handoff) is not None:  # received by an intake process
        if handoff.failure is not None:
            raise handoff.failure
        upload = _handed_upload(handoff)
    else:
        if not state.uploads.try_acquire():
            raise Refusal("overloaded", f"{settings.max_concurrent_uploads} uploads are in progress; retry later")
        memory = int(settings.upload_memory_mb * 2**20) if in_memory else -1
        try:
            upload = await receive_video(
                request.headers, request.query_params, request.state.body.chunks(), limits.max_upload_bytes,
                memory, directory,
            )  # fmt: skip
        finally:
            state.uploads.release()
    received_at = time.perf_counter()
    try:
        min_score, top_k = video_options(upload.options, settings)
        include = parse_include(upload.options.get("include"))
        if upload.size == 0:
            raise EmptyUpload("empty_video", f"'{upload.source.name}' is empty (0 bytes)")
        if prechecked:
            await run_in_threadpool(precheck, upload.source)  # refuse what is plainly no video now
    except BaseException:
        upload.remove()
        raise
    upload_ms = (received_at - request.state.arrived) * 1000
    return ReceivedVideo(upload, min_score, top_k, include, upload_ms, received_at)


def video_options(options: dict[str, str], settings) -> tuple[float, int]:
    """min_score and top_k of a request (the settings' defaults when absent); BadRequest otherwise."""
    problem = f"min_score must be a number in [0, 1] and top_k an integer in [1, {MAX_TOP_K}]"
    try:
        min_score = float(options.get("min_score", settings.min_score))
        top_k = int(options.get("top_k", settings.top_k))
    except ValueError:
        raise BadRequest("bad_form", problem) from None
    if not 0.0 <= min_score <= 1.0 or not 1 <= top_k <= MAX_TOP_K:
        raise BadRequest("bad_form", problem)
    return min_score, top_k
