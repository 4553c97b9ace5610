"""The jobs' SQLite store: one row per job, the one place where a job changes state.

States: queued -> running -> succeeded | failed | cancelled, or queued -> cancelled. A worker takes a job
with one atomic UPDATE (`claim`), so no job is ever run by two workers, even from several connections.
Times are Unix seconds (float). The store belongs to one server process at a time: `lock()` takes an
exclusive lock on `<db>.lock`, so that a second server on the same store fails at start-up instead of
re-queueing jobs the first one is running.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINISHED = (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class StoreLockedError(Exception):
    """Another server process holds the jobs store."""


@dataclass(frozen=True)
class Job:
    id: str
    status: JobStatus
    stage: str
    fraction: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    error_code: str | None
    error_message: str | None
    result: dict[str, Any] | None
    upload_path: str
    filename: str
    size_bytes: int
    min_score: float
    top_k: int
    attempts: int
    cancel_requested: bool
    include_traces: str  # the form's `include` ("depth,boundary"), for the stored answer


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT 'queued',
    fraction REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error_code TEXT,
    error_message TEXT,
    result TEXT,
    upload_path TEXT NOT NULL,
    filename TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    min_score REAL NOT NULL,
    top_k INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    include_traces TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_status_created ON jobs (status, created_at);
"""


class JobStore:
    """Jobs in the SQLite file at `path` (created with its folder if missing). Safe to share between threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        _add_include_traces(self._db)
        self._guard = threading.Lock()  # one statement at a time on the shared connection
        self._lock_file: int | None = None

    # ------------------------------------------------------------------------------------------ ownership

    def lock(self) -> None:
        """Take the store for this process; StoreLockedError if another process has it."""
        descriptor = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise StoreLockedError(
                f"the jobs store {self.path} is used by another server process; give each server its own "
                "TZN_JOBS_DIR (or TZN_JOBS_DB)"
            ) from None
        self._lock_file = descriptor

    def close(self) -> None:
        with self._guard:
            self._db.close()
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    # ------------------------------------------------------------------------------------------ queries

    def _execute(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        with self._guard:
            return self._db.execute(sql, parameters).fetchall()

    def add(self, job_id: str, upload_path: str, filename: str, size_bytes: int, min_score: float, top_k: int,
            now: float | None = None, include: frozenset[str] = frozenset()) -> Job:  # fmt: skip
        self._execute(
            "INSERT INTO jobs (id, status, created_at, upload_path, filename, size_bytes, min_score, top_k, "
            "include_traces) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
            (job_id, time.time() if now is None else now, upload_path, filename, size_bytes, min_score, top_k,
             ",".join(sorted(include))),
        )  # fmt: skip
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        rows = self._execute("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

    def list(self, status: JobStatus | None, offset: int, limit: int) -> tuple[list[Job], int]:
        """Jobs newest first (optionally of one status), `limit` from `offset`, and how many match in all."""
        where, parameters = ("WHERE status = ?", (str(status),)) if status else ("", ())
        total = self._execute(f"SELECT COUNT(*) FROM jobs {where}", parameters)[0][0]
        rows = self._execute(
            f"SELECT * FROM jobs {where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (*parameters, limit, offset)
        )
        return [_job(row) for row in rows], total

    def counts(self) -> dict[JobStatus, int]:
        found = dict(self._execute("SELECT status, COUNT(*) FROM jobs GROUP BY status"))
        return {status: found.get(str(status), 0) for status in JobStatus}

    def spooled_bytes(self) -> int:
        """Bytes of uploads waiting for or in work (their files are on disk)."""
        return self._execute("SELECT COALESCE(SUM(size_bytes), 0) FROM jobs WHERE status IN ('queued', 'running')")[0][
            0
        ]

    # ------------------------------------------------------------------------------------------ transitions

    def claim(self, now: float | None = None) -> Job | None:
        """The oldest queued job, now running; None if none is queued. Atomic: each job is claimed once."""
        rows = self._execute(
            "UPDATE jobs SET status = 'running', stage = 'decoding', fraction = 0, started_at = ?, "
            "attempts = attempts + 1 WHERE id = (SELECT id FROM jobs WHERE status = 'queued' "
            "ORDER BY created_at, id LIMIT 1) AND status = 'queued' RETURNING *",
            (time.time() if now is None else now,),
        )
        return _job(rows[0]) if rows else None

    def progress(self, job_id: str, stage: str, fraction: float) -> None:
        self._execute(
            "UPDATE jobs SET stage = ?, fraction = ? WHERE id = ? AND status = 'running'", (stage, fraction, job_id)
        )

    def finish(self, job_id: str, status: JobStatus, result: dict | None = None, error_code: str | None = None,
               error_message: str | None = None, now: float | None = None) -> bool:  # fmt: skip
        """Ends a queued or running job; False if it had already ended."""
        if status not in FINISHED:
            raise ValueError(f"{status} is not a final status")
        rows = self._execute(
            "UPDATE jobs SET status = ?, stage = ?, fraction = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE fraction END, "
            "finished_at = ?, result = ?, error_code = ?, error_message = ? "
            "WHERE id = ? AND status IN ('queued', 'running') RETURNING id",
            (
                str(status),
                str(status),
                str(status),
                time.time() if now is None else now,
                json.dumps(result) if result is not None else None,
                error_code,
                error_message,
                job_id,
            ),
        )
        return bool(rows)

    def cancel_queued(self, job_id: str, now: float | None = None) -> bool:
        """Cancels a job that no worker has taken yet; False if it is not queued (any more)."""
        rows = self._execute(
            "UPDATE jobs SET status = 'cancelled', stage = 'cancelled', finished_at = ? "
            "WHERE id = ? AND status = 'queued' RETURNING id",
            (time.time() if now is None else now, job_id),
        )
        return bool(rows)

    def request_cancel(self, job_id: str) -> None:
        self._execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status = 'running'", (job_id,))

    def requeue(self, job_id: str) -> None:
        """A running job back to the queue (the server is stopping); its attempt does not count."""
        self._execute(
            "UPDATE jobs SET status = 'queued', stage = 'queued', fraction = 0, started_at = NULL, "
            "attempts = attempts - 1, cancel_requested = 0 WHERE id = ? AND status = 'running'",
            (job_id,),
        )

    def recover(self, max_attempts: int, now: float | None = None) -> tuple[int, int]:
        """At start-up: jobs left running by a server that died are re-queued, unless they have already been
        started `max_attempts` times (then they fail: the video may be what kills the server) or their
        cancellation was requested (then they are cancelled).
        Returns (re-queued, failed)."""
        now = time.time() if now is None else now
        self._execute(
            "UPDATE jobs SET status = 'cancelled', stage = 'cancelled', finished_at = ? "
            "WHERE status = 'running' AND cancel_requested = 1",
            (now,),
        )
        failed = self._execute(
            "UPDATE jobs SET status = 'failed', stage = 'failed', finished_at = ?, error_code = 'interrupted', "
            "error_message = 'the server stopped while running this job ' || attempts || ' times; it was not "
            "retried again: check the video, or submit it again' "
            "WHERE status = 'running' AND attempts >= ? RETURNING id",
            (now, max_attempts),
        )
        requeued = self._execute(
            "UPDATE jobs SET status = 'queued', stage = 'queued', fraction = 0, started_at = NULL "
            "WHERE status = 'running' RETURNING id"
        )
        return len(requeued), len(failed)

    def expired(self, before: float) -> list[Job]:
        rows = self._execute(
            "SELECT * FROM jobs WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?", (before,)
        )
        return [_job(row) for row in rows]

    def delete(self, job_id: str) -> None:
        self._execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def live_upload_paths(self) -> set[str]:
        return {row[0] for row in self._execute("SELECT upload_path FROM jobs WHERE status IN ('queued', 'running')")}


def _add_include_traces(db: sqlite3.Connection) -> None:
    """Adds the include_traces column to a store made before jobs took the form's `include` field."""
    if "include_traces" in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}:
        return
    try:
        db.execute("ALTER TABLE jobs ADD COLUMN include_traces TEXT NOT NULL DEFAULT ''")
    except sqlite3.OperationalError as error:  # another connection added it meanwhile
        if "duplicate column" not in str(error):
            raise


def _job(row: sqlite3.Row) -> Job:
    values = dict(row)
    values["status"] = JobStatus(values["status"])
    values["result"] = json.loads(values["result"]) if values["result"] else None
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Job(**values)
