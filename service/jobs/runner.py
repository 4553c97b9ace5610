"""The job workers: threads that take queued jobs from the store and run the pipeline on them.

A worker claims a job (atomically, see store.py), runs `Localizer.localize` with the jobs' own limits
(TZN_JOBS_MAX_DURATION_S, TZN_JOBS_TIMEOUT_S), writes progress to the store as the work proceeds, and
stores the /localize answer or the error. The upload file is deleted when the job ends, whatever the end.

Cancellation: `cancel(job_id)` sets the job's event; the pipeline polls it while it waits for the decoder
(every 0.2 s) and between chunks, kills the decoder child and raises JobCancelledError. Stopping the
server does the same to running jobs and puts them back in the queue.

Restart: on start, jobs that were running when a previous server died are re-queued (the pipeline has no
side effects, so running a job again is safe) unless they were already started TZN_JOBS_MAX_ATTEMPTS
times, in which case they fail with error code "interrupted".
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from engine.errors import JobCancelledError, VideoError
from engine.localizer import Localizer
from engine.video.source import VideoSource
from service.answers import answer_json
from service.errors import error_status
from service.jobs.store import Job, JobStatus, JobStore
from service.settings import Settings
from service.trace import parse_include

log = logging.getLogger("tzn.jobs")

_PROGRESS_STEP = 0.005  # store progress when it moved by half a percent or changed stage
_CLEANUP_EVERY_S = 60.0


class JobRunner:
    """`workers` threads running jobs from `store`. `localizer()` is None until the model is ready;
    `on_finished(status, seconds)` observes each finished job (metrics)."""

    def __init__(
        self,
        store: JobStore,
        settings: Settings,
        localizer: Callable[[], Localizer | None],
        on_finished: Callable[[JobStatus, float], None] = lambda status, seconds: None,
    ):
        self.store, self.settings = store, settings
        self.localizer, self.on_finished = localizer, on_finished
        self.limits = settings.jobs_limits.work
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.cancel_events: dict[str, threading.Event] = {}
        self.guard = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.last_cleanup = 0.0

    # ------------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        requeued, failed = self.store.recover(self.settings.jobs_max_attempts)
        if requeued or failed:
            log.warning("jobs interrupted by the last stop: %d re-queued, %d failed", requeued, failed)
        self.remove_orphan_uploads()
        for index in range(self.settings.jobs_workers):
            thread = threading.Thread(target=self._work, name=f"tzn-job-worker-{index}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stops the workers; running jobs are interrupted (their decoder ended) and put back in the queue."""
        self.stopping.set()
        self.wake.set()
        with self.guard:
            for event in self.cancel_events.values():
                event.set()
        for thread in self.threads:
            thread.join(timeout=timeout_s)

    def cancel(self, job_id: str) -> None:
        """Asks a running job to stop (it ends as cancelled within a fraction of a second)."""
        self.store.request_cancel(job_id)
        with self.guard:
            event = self.cancel_events.get(job_id)
        if event is not None:
            event.set()

    def notify(self) -> None:
        """A job was queued: wake an idle worker."""
        self.wake.set()

    # ------------------------------------------------------------------------------------------ workers

    def _work(self) -> None:
        while not self.stopping.is_set():
            self._cleanup_if_due()
            localizer = self.localizer()
            job = self.store.claim() if localizer is not None else None
            if job is None:
                self.wake.wait(timeout=1.0)
                self.wake.clear()
                continue
            try:
                self._run(job, localizer)
            except Exception:  # a bug here must not kill the worker thread: the job fails, the worker goes on
                log.exception("job %s failed unexpectedly", job.id)
                self.store.finish(job.id, JobStatus.failed, error_code="internal_error",
                                  error_message="the job failed unexpectedly; see the server log")  # fmt: skip

    def _run(self, job: Job, localizer: Localizer) -> None:
        cancelled = threading.Event()
        with self.guard:
            self.cancel_events[job.id] = cancelled
        if self.store.get(job.id).cancel_requested:  # a DELETE that came between the claim and the line above
            cancelled.set()
        started = time.monotonic()
        status, outcome = JobStatus.failed, {}
        include = parse_include(job.include_traces)
        try:
            result = localizer.localize(
                VideoSource.from_path(job.upload_path, job.filename), self.limits, min_score=job.min_score,
                top_k=job.top_k, fields="boundary" in include, progress=self._progress_writer(job.id),
                cancelled=cancelled.is_set,
            )  # fmt: skip
            status, outcome = JobStatus.succeeded, {"result": answer_json(result, localizer, job.id, include)}
        except JobCancelledError:
            if self.stopping.is_set() and not self.store.get(job.id).cancel_requested:
                self.store.requeue(job.id)
                log.info("job %s interrupted by the server stopping; re-queued", job.id)
                return
            status = JobStatus.cancelled
        except VideoError as error:
            outcome = {"error_code": error_status(error)[1], "error_message": str(error)}
        except Exception as error:
            log.exception("job %s failed", job.id)
            outcome = {"error_code": "internal_error", "error_message": f"{type(error).__name__}: {error}"}
        finally:
            with self.guard:
                self.cancel_events.pop(job.id, None)
            if not (self.stopping.is_set() and self.store.get(job.id).status == JobStatus.queued):
                Path(job.upload_path).unlink(missing_ok=True)
        # recorded once the upload is gone: a client that sees the job finished never finds its file still there
        self.store.finish(job.id, status, **outcome)
        self.on_finished(status, time.monotonic() - started)

    def _progress_writer(self, job_id: str) -> Callable[[str, float], None]:
        last = {"stage": None, "fraction": -1.0}

        def write(stage: str, fraction: float) -> None:
            if stage != last["stage"] or fraction - last["fraction"] >= _PROGRESS_STEP:
                self.store.progress(job_id, stage, fraction)
                last["stage"], last["fraction"] = stage, fraction

        return write

    # ------------------------------------------------------------------------------------------ files

    def _cleanup_if_due(self) -> None:
        now = time.time()
        if now - self.last_cleanup < min(_CLEANUP_EVERY_S, self.settings.jobs_ttl_s):
            return
        self.last_cleanup = now
        for job in self.store.expired(before=now - self.settings.jobs_ttl_s):
            Path(job.upload_path).unlink(missing_ok=True)
            self.store.delete(job.id)

    def remove_orphan_uploads(self) -> None:
        """Upload files no queued or running job refers to (a server killed mid-upload leaves them)."""
        live = self.store.live_upload_paths()
        for path in upload_dir(self.settings).glob("*"):
            if str(path) not in live:
                path.unlink(missing_ok=True)


def jobs_dir(settings: Settings) -> Path:
    """TZN_JOBS_DIR, else tzn-jobs-<uid> in the system's temporary directory (set it to a volume in production)."""
    import os
    import tempfile

    return settings.jobs_dir or Path(tempfile.gettempdir()) / f"tzn-jobs-{os.getuid()}"


def upload_dir(settings: Settings) -> Path:
    path = jobs_dir(settings) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_path(settings: Settings) -> Path:
    return settings.jobs_db or jobs_dir(settings) / "jobs.sqlite3"


def new_job_id() -> str:
    return uuid.uuid4().hex
