"""POST /localize: the video in the request, the actions in the answer.

Top to bottom: the intake (service/intake.py: API key, readiness, an upload slot while the body arrives, the
body and its options under /localize's limits); a compute slot, taken only once the upload is in (up to
TZN_MAX_CONCURRENT at once, TZN_MAX_QUEUE more waiting at most TZN_QUEUE_TIMEOUT_S, else 503); the engine's
`Localizer.localize` in a worker thread, bounded by TZN_REQUEST_TIMEOUT_S (504).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from engine.localizer import Localization
from service.answers import answer_json
from service.errors import ProcessingTimeout, Refusal
from service.intake import IntakeRoute, ReceivedVideo, receive_upload, require_api_key, require_ready, service_state
from service.schemas import VIDEO_BODY, LocalizeResponse, error_responses

router = APIRouter(route_class=IntakeRoute)


async def localize_video(request: Request) -> ReceivedVideo:
    """The video of a /localize request: held in memory up to TZN_UPLOAD_MEMORY_MB, else spooled."""
    settings = service_state(request).settings
    return await receive_upload(request, settings.localize_limits, settings.temp_dir, in_memory=True)


@router.post(
    "/localize",
    name="localize",
    response_model=LocalizeResponse,
    responses=error_responses(400, 401, 408, 413, 415, 422, 503, 504),
    openapi_extra=VIDEO_BODY,
    dependencies=[Depends(require_api_key), Depends(require_ready)],
)
async def localize(request: Request, video: Annotated[ReceivedVideo, Depends(localize_video)]) -> Any:
    state = service_state(request)
    settings = state.settings
    try:
        if not await state.compute.acquire():
            raise Refusal(
                "overloaded",
                f"{state.compute.limit} requests are being processed and {state.compute.max_queue} can wait at most "
                f"{settings.queue_timeout_s:g} s; retry later",
            )
    except BaseException:
        video.upload.remove()
        raise
    return await _compute(state, video, request.state.request_id)


async def _compute(state, video: ReceivedVideo, request_id: str) -> Response:
    """The engine in a worker thread, holding a compute slot and the upload. Both are freed when the thread ends:
    here, or later when the request is answered 504 or cancelled first, and the thread told to stop."""
    settings = state.settings
    stop = threading.Event()
    work = asyncio.ensure_future(run_in_threadpool(_localize, state, video, request_id, stop.is_set))

    def cleanup(_: Any = None) -> None:
        video.upload.remove()
        state.compute.release()

    try:
        answer = await asyncio.wait_for(asyncio.shield(work), settings.request_timeout_s)
    except BaseException as error:
        stop.set()
        work.add_done_callback(cleanup)  # runs at once if the thread is done, else when it ends
        if isinstance(error, TimeoutError):
            raise ProcessingTimeout(f"processing took longer than {settings.request_timeout_s:.0f} s") from None
        raise
    cleanup()
    return JSONResponse(answer)


def _localize(state, video: ReceivedVideo, request_id: str, cancelled) -> dict:
    """In the worker thread: the engine's work and the answer (its traces are copied from the GPU here, not in
    the event loop)."""
    result: Localization = state.localizer.localize(
        video.upload.source, state.settings.localize_limits.work, min_score=video.min_score, top_k=video.top_k,
        fields="boundary" in video.include, upload_ms=video.upload_ms, received_at=video.received_at,
        cancelled=cancelled,
    )  # fmt: skip
    state.metrics.observe_localization(result)
    return answer_json(result, state.localizer, request_id, video.include)
