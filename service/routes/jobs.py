"""The jobs API: POST /jobs, GET /jobs/{id}, GET /jobs, DELETE /jobs/{id}.

The contract follows the hosted video APIs (long-running operations): submitting answers 202 with the job's
URL in Location; the job reports `status` and `progress: {stage, fraction}`; a finished job's `result` is
exactly the /localize answer, its `error` the /localize error body. POST /jobs takes the same request as
/localize through the same intake (service/intake.py), with limits of its own (TZN_JOBS_*); its upload is
spooled to the jobs' folder, where it waits for a worker.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from service.errors import JOB_STATUS_DESCRIPTIONS, Conflict, DiskQuota, NotFound, Refusal, UploadTooLarge
from service.intake import IntakeRoute, ReceivedVideo, receive_upload, require_api_key, require_ready, service_state
from service.jobs.runner import new_job_id, upload_dir
from service.jobs.store import FINISHED, Job, JobStatus, JobStore
from service.schemas import VIDEO_BODY, JobList, JobProgress, JobResponse, JobSubmitted, error_responses
from service.settings import RouteLimits

CANCEL_WAIT_S = 10.0  # DELETE waits this long for a running job to stop before answering

submit_router = APIRouter(route_class=IntakeRoute)
router = APIRouter(dependencies=[Depends(require_api_key)])


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(*codes, descriptions=JOB_STATUS_DESCRIPTIONS)


def open_store(request: Request) -> JobStore:
    """The jobs' store; 503 while it is not open."""
    jobs = service_state(request).jobs
    if jobs.store is None:
        raise Refusal("jobs_unavailable", jobs.error or "the jobs store is starting")
    return jobs.store


async def job_video(request: Request, store: Annotated[JobStore, Depends(open_store)]) -> ReceivedVideo:
    """The video of a job, under the jobs' limits and their disk quota (507 when the quota is used)."""
    settings = service_state(request).settings
    queued = store.counts()[JobStatus.queued]
    if queued >= settings.jobs_max_queued:
        raise Refusal("queue_full", f"{queued} jobs are queued; retry later")
    free = settings.jobs_disk_quota_bytes - store.spooled_bytes()
    quota = DiskQuota(
        "disk_quota",
        f"the jobs' disk quota ({settings.jobs_disk_quota_mb:.0f} MiB) has {max(free, 0) / 2**20:.0f} MiB free "
        "for this upload; retry when queued jobs have finished",
    )
    if free <= 0:
        raise quota
    limits = settings.jobs_limits
    within_quota = RouteLimits(max_upload_bytes=min(limits.max_upload_bytes, free), work=limits.work)
    try:
        return await receive_upload(request, within_quota, upload_dir(settings), in_memory=False, prechecked=True)
    except UploadTooLarge:
        if within_quota.max_upload_bytes < limits.max_upload_bytes:
            raise quota from None
        raise


@submit_router.post(
    "/jobs",
    name="submit_job",
    status_code=202,
    response_model=JobSubmitted,
    responses={
        202: {"headers": {"Location": {"description": "the job's URL", "schema": {"type": "string"}}}},
        **_errors(400, 401, 408, 413, 415, 422, 503, 507),
    },
    openapi_extra=VIDEO_BODY,
    dependencies=[Depends(require_api_key), Depends(require_ready)],
)
async def submit(request: Request, video: Annotated[ReceivedVideo, Depends(job_video)]) -> Any:
    jobs = service_state(request).jobs
    upload = video.upload
    job = jobs.store.add(
        new_job_id(), str(upload.source.path), upload.source.name, upload.size, video.min_score, video.top_k,
        include=video.include,
    )  # fmt: skip
    jobs.runner.notify()
    url = str(request.url_for("get_job", job_id=job.id).path)
    body = JobSubmitted(job_id=job.id, status="queued", status_url=url)
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": url})


@router.get("/jobs/{job_id}", name="get_job", response_model=JobResponse, responses=_errors(401, 404, 503))
async def get_job(job_id: str, store: Annotated[JobStore, Depends(open_store)]) -> Any:
    return JSONResponse(job_body(_job(store, job_id)))


@router.get("/jobs", response_model=JobList, responses=_errors(400, 401, 503))
async def list_jobs(
    request: Request,
    store: Annotated[JobStore, Depends(open_store)],
    status: Annotated[JobStatus | None, Query(description="only jobs with this status")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int | None, Query(ge=1, le=1000, description="default TZN_JOBS_PAGE_SIZE")] = None,
) -> Any:
    size = page_size or service_state(request).settings.jobs_page_size
    found, total = store.list(status, (page - 1) * size, size)
    body = {"jobs": [job_body(job, with_result=False) for job in found], "page": page, "page_size": size}
    return JSONResponse({**body, "total": total})


@router.delete("/jobs/{job_id}", response_model=JobResponse, responses=_errors(401, 404, 409, 503))
async def cancel_job(job_id: str, request: Request, store: Annotated[JobStore, Depends(open_store)]) -> Any:
    jobs = service_state(request).jobs
    job = _job(store, job_id)
    if job.status in FINISHED:
        raise Conflict("already_finished", f"job {job_id!r} has already {job.status}")
    if store.cancel_queued(job_id):
        Path(job.upload_path).unlink(missing_ok=True)
        jobs.metrics.observe(JobStatus.cancelled, None)
    else:
        jobs.runner.cancel(job_id)
        deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
        while store.get(job_id).status == JobStatus.running and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    return JSONResponse(job_body(store.get(job_id)))


def _job(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        raise NotFound("not_found", f"no job {job_id!r}: it was never submitted or has expired")
    return job


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
