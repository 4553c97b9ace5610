"""The jobs HTTP API (DESIGN §4): POST /jobs, GET /jobs/{id}, GET /jobs, DELETE /jobs/{id}.

The contract follows the hosted video APIs (long-running operations): submitting answers 202 with the job's
URL in Location; the job reports `status` and `progress: {stage, fraction}`; a finished job's `result` is
exactly the /localize answer, its `error` the /localize error body. Limits of their own: TZN_JOBS_*.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.container import precheck
from service.errors import JOB_STATUS_DESCRIPTIONS, UploadError, VideoError, error_status
from service.jobs.metrics import JobMetrics
from service.jobs.runner import JobRunner, new_job_id, store_path, upload_dir
from service.jobs.store import FINISHED, Job, JobStatus, JobStore
from service.schemas import (
    MULTIPART_BODY,
    JobList,
    JobProgress,
    JobResponse,
    JobSubmitted,
    error_response,
    error_responses,
)
from service.trace import parse_include
from service.upload import RequestBody, form_options, receive_upload

log = logging.getLogger("tzn.jobs")

CANCEL_WAIT_S = 10.0  # DELETE waits this long for a running job to stop before answering


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(*codes, descriptions=JOB_STATUS_DESCRIPTIONS)


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def job_body(job: Job, with_result: bool = True) -> dict[str, Any]:
    """The JSON of a job: `error` only when failed, `result` only when succeeded (and asked for)."""
    body = JobResponse(
        job_id=job.id,
        status=str(job.status),
        progress=JobProgress(stage=job.stage, fraction=min(max(job.fraction, 0.0), 1.0)),
        created_at=_time(job.created_at),
        started_at=_time(job.started_at),
        finished_at=_time(job.finished_at),
    ).model_dump(mode="json", exclude={"error", "result"})
    if job.error_code is not None:
        body["error"] = {"code": job.error_code, "message": job.error_message or ""}
    if with_result and job.result is not None:
        body["result"] = job.result
    return body


class Jobs:
    """The store and the workers of one app, opened at start-up (`start`) and closed at shut-down (`stop`)."""

    def __init__(self, state):
        self.state = state
        self.store: JobStore | None = None
        self.runner: JobRunner | None = None
        self.error: str | None = None
        self.metrics = JobMetrics(state.metrics.registry, lambda: self.store.counts() if self.store else None)

    def start(self) -> None:
        settings = self.state.settings
        try:
            store = JobStore(store_path(settings))
            store.lock()
        except Exception as error:  # reported by every /jobs answer and the log; /localize keeps serving
            self.error = f"the jobs store {store_path(settings)} cannot be used: {error}"
            log.error(self.error)
            return
        self.store = store
        self.runner = JobRunner(
            store,
            settings,
            localizer=lambda: self.state.localizer,
            answer=lambda result, localizer, job_id, include: result.response(
                localizer.model_info(), job_id, include
            ).model_dump(mode="json", exclude_none=True),
            error_code=lambda error: error_status(error)[1],
            on_finished=self.metrics.observe,
        )
        self.runner.start()

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.store is not None:
            self.store.close()


def install(app: FastAPI, state) -> Jobs:
    """Adds the /jobs routes to `app`; the caller starts and stops the returned Jobs with the app."""
    settings = state.settings
    jobs = Jobs(state)
    retry = {"Retry-After": str(settings.retry_after_s)}

    def refusal(request: Request) -> Response | None:
        """The answer when the request cannot be served at all: bad key, model loading, store unavailable."""
        if settings.api_key is not None:
            given = request.headers.get("x-api-key", "")
            if not hmac.compare_digest(given.encode(), settings.api_key.get_secret_value().encode()):
                return error_response(401, "unauthorized", "missing or wrong X-API-Key header")
        if jobs.store is None:
            return error_response(503, "jobs_unavailable", jobs.error or "the jobs store is starting", retry)
        return None

    def not_found(job_id: str) -> Response:
        return error_response(404, "not_found", f"no job {job_id!r}: it was never submitted or has expired")

    @app.post(
        "/jobs",
        status_code=202,
        response_model=JobSubmitted,
        responses={
            202: {"headers": {"Location": {"description": "the job's URL", "schema": {"type": "string"}}}},
            **_errors(400, 401, 408, 413, 415, 422, 503, 507),
        },
        openapi_extra=MULTIPART_BODY,
    )
    async def submit(request: Request) -> Any:
        if (refused := refusal(request)) is not None:
            return refused
        if state.localizer is None:
            return error_response(503, "loading", state.load_error or "the model is loading", retry)
        store = jobs.store
        queued = store.counts()[JobStatus.queued]
        if queued >= settings.jobs_max_queued:
            return error_response(503, "queue_full", f"{queued} jobs are queued; retry later", retry)
        free = settings.jobs_disk_quota_bytes - store.spooled_bytes()
        limit = min(settings.jobs_max_upload_bytes, free)
        quota_message = (
            f"the jobs' disk quota ({settings.jobs_disk_quota_mb:.0f} MiB) has {max(free, 0) / 2**20:.0f} MiB free "
            "for this upload; retry when queued jobs have finished"
        )
        if free <= 0:
            return error_response(507, "disk_quota", quota_message, retry)
        upload = None
        # The same slow-client protection as /localize: a stalled or too slow upload gets 408.
        body = RequestBody(
            request.receive,
            idle_timeout_s=settings.upload_idle_timeout_s,
            min_rate=settings.upload_min_rate_kib_s * 1024,
            grace_s=settings.upload_rate_grace_s,
        )
        try:
            upload = await receive_upload(
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                body.chunks(),
                limit,
                upload_dir(settings),
            )
            min_score, top_k = form_options(upload.fields, settings)
            include = parse_include(upload.fields.get("include"))
            if upload.size == 0:
                raise UploadError(422, "empty_video", f"'{upload.filename}' is empty (0 bytes)")
            await run_in_threadpool(precheck, upload.path, upload.filename)  # refuse what is plainly no video now
        except (UploadError, VideoError) as error:
            if upload is not None:
                upload.remove()
            status, code = error_status(error)
            if code == "upload_too_large" and limit < settings.jobs_max_upload_bytes:
                return error_response(507, "disk_quota", quota_message, retry)
            return error_response(status, code, str(error))
        job = store.add(new_job_id(), str(upload.path), upload.filename, upload.size, min_score, top_k, include=include)
        jobs.runner.notify()
        url = str(request.url_for("get_job", job_id=job.id).path)
        body = JobSubmitted(job_id=job.id, status="queued", status_url=url)
        return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": url})

    @app.get("/jobs/{job_id}", name="get_job", response_model=JobResponse, responses=_errors(401, 404, 503))
    async def get_job(job_id: str, request: Request) -> Any:
        if (refused := refusal(request)) is not None:
            return refused
        job = jobs.store.get(job_id)
        return JSONResponse(job_body(job)) if job else not_found(job_id)

    @app.get("/jobs", response_model=JobList, responses=_errors(400, 401, 503))
    async def list_jobs(
        request: Request,
        status: Annotated[JobStatus | None, Query(description="only jobs with this status")] = None,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        page_size: Annotated[int | None, Query(ge=1, le=1000, description="default TZN_JOBS_PAGE_SIZE")] = None,
    ) -> Any:
        if (refused := refusal(request)) is not None:
            return refused
        size = page_size or settings.jobs_page_size
        found, total = jobs.store.list(status, (page - 1) * size, size)
        body = {"jobs": [job_body(job, with_result=False) for job in found], "page": page, "page_size": size}
        return JSONResponse({**body, "total": total})

    @app.delete("/jobs/{job_id}", response_model=JobResponse, responses=_errors(401, 404, 409, 503))
    async def cancel_job(job_id: str, request: Request) -> Any:
        if (refused := refusal(request)) is not None:
            return refused
        store = jobs.store
        job = store.get(job_id)
        if job is None:
            return not_found(job_id)
        if job.status in FINISHED:
            return error_response(409, "already_finished", f"job {job_id!r} has already {job.status}")
        if store.cancel_queued(job_id):
            Path(job.upload_path).unlink(missing_ok=True)
            jobs.metrics.observe(JobStatus.cancelled, None)
        else:
            jobs.runner.cancel(job_id)
            deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
            while store.get(job_id).status == JobStatus.running and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
        return JSONResponse(job_body(store.get(job_id)))

    return jobs
