"""The jobs store and the jobs API's refusals, through TestClient with a real Localizer."""

from __future__ import annotations

import os
import threading
import time

import pytest
from fastapi.testclient import TestClient

from engine.localizer import Localizer
from service.app import create_app
from service.jobs.store import JobStatus, JobStore, StoreLockedError
from service.settings import Settings


def add_jobs(store: JobStore, count: int) -> list[str]:
    return [store.add(f"job{i:03d}", f"/nowhere/{i}", f"{i}.mp4", 10, 0.2, 100, now=float(i)).id for i in range(count)]


def test_each_job_is_claimed_once_by_concurrent_workers_on_separate_connections(tmp_path):
    add_jobs(JobStore(tmp_path / "jobs.sqlite3"), 60)
    claimed: list[str] = []

    def worker():
        store = JobStore(tmp_path / "jobs.sqlite3")
        while (job := store.claim()) is not None:
            claimed.append(job.id)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [f"job{i:03d}" for i in range(60)]


def test_jobs_are_claimed_oldest_first(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    add_jobs(store, 3)
    assert [store.claim().id for _ in range(3)] == ["job000", "job001", "job002"]
    assert store.claim() is None


def test_recovery_requeues_interrupted_jobs_until_their_attempts_are_spent(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    add_jobs(store, 3)
    first, _, third = store.claim(), store.claim(), store.claim()
    store.request_cancel(third.id)
    assert store.recover(max_attempts=2) == (2, 0)  # the cancelled one ends as cancelled
    assert store.get(first.id).status == JobStatus.queued
    assert store.get(third.id).status == JobStatus.cancelled
    store.claim(), store.claim()  # second attempt of both
    assert store.recover(max_attempts=2) == (0, 2)
    failed = store.get(first.id)
    assert failed.status == JobStatus.failed and failed.error_code == "interrupted"
    assert "2 times" in failed.error_message


def test_recovery_counts(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    add_jobs(store, 2)
    store.claim()
    assert store.recover(max_attempts=3) == (1, 0)
    assert store.counts()[JobStatus.queued] == 2


def test_a_finished_job_cannot_be_finished_or_cancelled_again(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    (job_id,) = add_jobs(store, 1)
    assert store.cancel_queued(job_id)
    assert not store.cancel_queued(job_id)
    assert not store.finish(job_id, JobStatus.succeeded, result={})
    assert store.get(job_id).status == JobStatus.cancelled


def test_a_second_server_cannot_take_a_store_in_use(tmp_path):
    first, second = JobStore(tmp_path / "jobs.sqlite3"), JobStore(tmp_path / "jobs.sqlite3")
    first.lock()
    with pytest.raises(StoreLockedError, match="another server process"):
        second.lock()
    first.close()
    second.lock()


def test_listing_pages_newest_first_and_filters_by_status(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    add_jobs(store, 5)
    store.claim()
    page, total = store.list(None, 0, 2)
    assert [job.id for job in page] == ["job004", "job003"] and total == 5
    page, total = store.list(JobStatus.running, 0, 10)
    assert [job.id for job in page] == ["job000"] and total == 1


def test_expired_jobs_are_the_finished_ones_older_than_the_cutoff(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    old, new, waiting = add_jobs(store, 3)
    store.finish(old, JobStatus.failed, error_code="x", error_message="y", now=100.0)
    store.finish(new, JobStatus.failed, error_code="x", error_message="y", now=300.0)
    assert [job.id for job in store.expired(before=200.0)] == [old]


# ---------------------------------------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def localizer(tiny_checkpoint):
    return Localizer(Settings(checkpoint=tiny_checkpoint, device="cpu").engine_settings())


def client_for(localizer, tmp_path, **settings) -> TestClient:
    config = Settings(checkpoint=localizer.settings.checkpoint, device="cpu", jobs_dir=tmp_path / "jobs", **settings)
    return TestClient(create_app(config, localizer))


def post_job(client: TestClient, path, **headers):
    with open(path, "rb") as file:
        return client.post("/jobs", files={"video": (path.name, file)}, headers=headers)


def test_unknown_jobs_are_404_and_bad_filters_400(localizer, tmp_path):
    with client_for(localizer, tmp_path) as client:
        assert client.get("/jobs/nope").status_code == 404
        assert client.delete("/jobs/nope").json()["error"]["code"] == "not_found"
        assert client.get("/jobs?status=done").status_code == 400
        assert client.get("/jobs?page=0").status_code == 400
        assert client.get("/jobs").json() == {"jobs": [], "page": 1, "page_size": 50, "total": 0}


def test_not_a_video_is_refused_at_submission(localizer, media, tmp_path):
    with client_for(localizer, tmp_path) as client:
        assert post_job(client, media / "still.png").status_code == 415
        assert post_job(client, media / "empty.mp4").status_code == 422
        assert post_job(client, media / "truncated.mp4").status_code == 422
        assert client.get("/jobs").json()["total"] == 0
    assert list((tmp_path / "jobs" / "uploads").iterdir()) == []


def wait_until_running(client: TestClient, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while client.get(f"/jobs/{job_id}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_over_the_queue_limit_submission_answers_503_with_retry_after(localizer, long_videos, media, tmp_path):
    with client_for(localizer, tmp_path, jobs_max_queued=1, jobs_workers=1) as client:
        busy = post_job(client, long_videos["sixty_minutes"]).json()["job_id"]
        wait_until_running(client, busy)
        assert post_job(client, media / "clip.mp4").status_code == 202
        refused = post_job(client, media / "clip.mp4")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["code"] == "queue_full"
        assert client.delete(f"/jobs/{busy}").json()["status"] == "cancelled"


def test_over_the_disk_quota_submission_answers_507(localizer, camera_footage, tmp_path):
    with client_for(localizer, tmp_path, jobs_disk_quota_mb=0.5) as client:
        answer = post_job(client, camera_footage)  # 8 MB
        assert answer.status_code == 507, answer.text
        assert answer.json()["error"]["code"] == "disk_quota"
    assert list((tmp_path / "jobs" / "uploads").iterdir()) == []


def test_jobs_need_the_api_key_when_one_is_set(localizer, media, tmp_path):
    with client_for(localizer, tmp_path, api_key="secret") as client:
        assert post_job(client, media / "clip.mp4").status_code == 401
        assert client.get("/jobs").status_code == 401
        assert post_job(client, media / "clip.mp4", **{"X-API-Key": "secret"}).status_code == 202


def test_a_queued_job_is_cancelled_at_once_and_its_file_removed(localizer, long_videos, media, tmp_path):
    with client_for(localizer, tmp_path, jobs_workers=1) as client:
        busy = post_job(client, long_videos["sixty_minutes"]).json()["job_id"]
        wait_until_running(client, busy)
        waiting = post_job(client, media / "clip.mp4").json()["job_id"]
        assert len(list((tmp_path / "jobs" / "uploads").iterdir())) == 2
        cancelled = client.delete(f"/jobs/{waiting}").json()
        assert cancelled["status"] == "cancelled" and cancelled["started_at"] is None
        assert client.delete(f"/jobs/{busy}").json()["status"] == "cancelled"
        listed = client.get("/jobs?status=cancelled").json()
        assert listed["total"] == 2 and all("result" not in job for job in listed["jobs"])
    assert list((tmp_path / "jobs" / "uploads").iterdir()) == []


def test_job_metrics_count_jobs_by_status_the_queue_and_durations(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from service.jobs.metrics import JobMetrics

    store = JobStore(tmp_path / "jobs.sqlite3")
    add_jobs(store, 3)
    store.claim()
    registry = CollectorRegistry()
    metrics = JobMetrics(registry, store.counts)
    metrics.observe(JobStatus.succeeded, 42.0)
    metrics.observe(JobStatus.cancelled, None)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for sample in family.samples
    }
    assert samples["tzn_jobs", (("status", "queued"),)] == 2
    assert samples["tzn_jobs", (("status", "running"),)] == 1
    assert samples["tzn_job_queue_length", ()] == 2
    assert samples["tzn_jobs_finished_total", (("status", "cancelled"),)] == 1
    assert samples["tzn_job_duration_seconds_sum", (("status", "succeeded"),)] == 42.0
    assert samples["tzn_job_duration_seconds_count", (("status", "cancelled"),)] == 0


def test_a_store_made_before_jobs_took_include_opens_and_keeps_its_jobs(tmp_path):
    import sqlite3

    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, stage TEXT NOT NULL DEFAULT 'queued', "
        "fraction REAL NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL, finished_at REAL, "
        "error_code TEXT, error_message TEXT, result TEXT, upload_path TEXT NOT NULL, filename TEXT NOT NULL, "
        "size_bytes INTEGER NOT NULL, min_score REAL NOT NULL, top_k INTEGER NOT NULL, "
        "attempts INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0);"
        "INSERT INTO jobs (id, status, created_at, upload_path, filename, size_bytes, min_score, top_k) "
        "VALUES ('old', 'queued', 1.0, '/nowhere/old', 'old.mp4', 10, 0.2, 100);"
    )
    old.close()
    store = JobStore(path)
    assert store.get("old").include_traces == ""
    store.add("new", "/nowhere/new", "new.mp4", 10, 0.2, 100, now=2.0, include=frozenset({"depth", "boundary"}))
    assert store.get("new").include_traces == "boundary,depth"
    assert [job.id for job in (store.claim(), store.claim())] == ["old", "new"]


def test_a_job_answers_the_traces_its_form_includes_and_refuses_unknown_ones(localizer, media, tmp_path):
    clip = media / "clip.mp4"
    with client_for(localizer, tmp_path) as client:
        with open(clip, "rb") as file:
            refused = client.post("/jobs", files={"video": (clip.name, file)}, data={"include": "thumbnails"})
        assert refused.status_code == 400 and "include" in refused.json()["error"]["message"]
        with open(clip, "rb") as file:
            job_id = client.post("/jobs", files={"video": (clip.name, file)}, data={"include": "depth"}).json()[
                "job_id"
            ]
        plain_id = post_job(client, clip).json()["job_id"]
        deadline = time.monotonic() + 120
        while (plain := client.get(f"/jobs/{plain_id}").json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        traced = client.get(f"/jobs/{job_id}").json()
    assert traced["status"] == plain["status"] == "succeeded"
    depth = traced["result"]["depth"]
    assert len(depth["times_s"]) == len(depth["mean_depth"]) > 0
    assert "depth" not in plain["result"] and "boundary" not in traced["result"]


class _WitnessStore(JobStore):
    """The real store, noting whether each job's upload still existed when it was recorded as finished."""

    def __init__(self, path):
        super().__init__(path)
        self.upload_at_finish: dict[str, bool] = {}

    def finish(self, job_id, status, *args, **kwargs):
        self.upload_at_finish[job_id] = os.path.exists(self.get(job_id).upload_path)
        return super().finish(job_id, status, *args, **kwargs)


def test_a_job_is_recorded_as_finished_only_once_its_upload_is_gone(localizer, media, tmp_path):
    """Whoever sees a job finished (its client, a test, the disk quota) never finds its file still on disk; found
    under load in CI, where a client saw 'succeeded' before the worker had removed the upload."""
    import shutil

    from service.jobs.runner import JobRunner

    store = _WitnessStore(tmp_path / "jobs.sqlite3")
    for name, source in (("good", media / "clip.mp4"), ("broken", media / "truncated.mp4")):
        shutil.copyfile(source, tmp_path / name)
        store.add(name, str(tmp_path / name), f"{name}.mp4", 10, 0.2, 100)
    runner = JobRunner(store, Settings(checkpoint=localizer.settings.checkpoint, device="cpu"), lambda: localizer)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while len(store.upload_at_finish) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    assert {job_id: store.get(job_id).status for job_id in ("good", "broken")} == {
        "good": JobStatus.succeeded, "broken": JobStatus.failed,
    }  # fmt: skip
    assert store.upload_at_finish == {"good": False, "broken": False}
