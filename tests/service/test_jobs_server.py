"""Jobs through a real uvicorn server on 127.0.0.1: submit, poll, cancel, kill -9 and restart, memory."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.service.processes import server_decoder_children
from tools.launch import server_process

FINAL = {"succeeded", "failed", "cancelled"}


def server_env(checkpoint: Path, root: Path, **extra: str) -> dict[str, str]:
    return {
        "TZN_CHECKPOINT": str(checkpoint),
        "TZN_TEMP_DIR": str(root / "tmp"),
        "TZN_JOBS_DIR": str(root / "jobs"),
        "TZN_DEVICE": "cpu",
        **extra,
    }


def submit(url: str, path: Path) -> httpx.Response:
    with open(path, "rb") as file:
        return httpx.post(f"{url}/jobs", files={"video": (path.name, file)}, timeout=60)


def wait_for(url: str, job_id: str, timeout_s: float = 300.0, until=lambda job: job["status"] in FINAL) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = httpx.get(f"{url}/jobs/{job_id}", timeout=10).json()
        if until(job):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s")


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "tmp").mkdir()
    return tmp_path


def test_a_job_reports_progress_and_succeeds_with_the_segments_of_localize(tiny_checkpoint, long_videos, root):
    video = long_videos["three_minutes"]  # 720 sampled frames: 3 chunks
    with server_process(server_env(tiny_checkpoint, root), root / "server.log") as (url, _):
        answer = submit(url, video)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert set(body) == {"job_id", "status", "status_url"}
        assert answer.headers["location"] == body["status_url"] == f"/jobs/{body['job_id']}"
        seen = []
        job = wait_for(url, body["job_id"], until=lambda job: seen.append(job["progress"]) or job["status"] in FINAL)
        assert job["status"] == "succeeded", job
        intermediate = {p["fraction"] for p in seen if 0 < p["fraction"] < 1}
        assert len(intermediate) >= 2, seen
        assert {"decoding", "features"} <= {p["stage"] for p in seen}
        fractions = [p["fraction"] for p in seen]
        assert fractions == sorted(fractions)
        with open(video, "rb") as file:
            direct = httpx.post(f"{url}/localize", files={"video": (video.name, file)}, timeout=120).json()
        assert job["result"]["segments"] == direct["segments"]
        assert job["result"]["video"] == direct["video"]
        assert job["result"]["request_id"] == body["job_id"]
        assert list((root / "jobs" / "uploads").iterdir()) == []


def test_cancelling_a_running_job_ends_its_decoder_and_leaves_no_file(tiny_checkpoint, long_videos, root):
    with server_process(server_env(tiny_checkpoint, root), root / "server.log") as (url, process):
        job_id = submit(url, long_videos["sixty_minutes"]).json()["job_id"]
        wait_for(url, job_id, until=lambda job: job["progress"]["fraction"] > 0.01)
        assert len(server_decoder_children(process.pid)) == 1
        answer = httpx.delete(f"{url}/jobs/{job_id}", timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "cancelled"
        assert server_decoder_children(process.pid) == []
        assert list((root / "jobs" / "uploads").iterdir()) == []
        assert [p for p in (root / "tmp").iterdir() if p.name.startswith("tzn-decode-")] == []
        assert httpx.delete(f"{url}/jobs/{job_id}", timeout=30).status_code == 409


def test_queued_jobs_complete_after_the_server_is_killed_and_restarted(tiny_checkpoint, long_videos, root):
    env = server_env(tiny_checkpoint, root)
    with server_process(env, root / "first.log") as (url, process):
        long_job = submit(url, long_videos["sixty_minutes"]).json()["job_id"]
        queued = [submit(url, long_videos["one_minute"]).json()["job_id"] for _ in range(2)]
        wait_for(url, long_job, until=lambda job: job["status"] == "running")
        assert {httpx.get(f"{url}/jobs/{job_id}").json()["status"] for job_id in queued} == {"queued"}
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    with server_process(env, root / "second.log") as (url, _):
        assert httpx.delete(f"{url}/jobs/{long_job}", timeout=30).json()["status"] == "cancelled"  # re-queued
        for job_id in queued:
            assert wait_for(url, job_id)["status"] == "succeeded"
        assert list((root / "jobs" / "uploads").iterdir()) == []


@pytest.mark.slow
def test_a_sixty_minute_video_runs_in_the_memory_of_a_one_minute_one(tiny_checkpoint, long_videos, root):
    with server_process(server_env(tiny_checkpoint, root), root / "server.log") as (url, process):
        short = wait_for(url, submit(url, long_videos["one_minute"]).json()["job_id"])
        assert short["status"] == "succeeded", short
        one_minute_peak = peak_rss_bytes(process.pid)
        long = wait_for(url, submit(url, long_videos["sixty_minutes"]).json()["job_id"], timeout_s=900)
        assert long["status"] == "succeeded", long
        assert long["result"]["video"]["duration_s"] == pytest.approx(3600, abs=1)
        sixty_minute_peak = peak_rss_bytes(process.pid)
    # all 14 400 sampled frames at 112 x 112 would be 542 MB on top of the one-minute peak
    assert sixty_minute_peak <= 1.5 * one_minute_peak, (sixty_minute_peak / 2**20, one_minute_peak / 2**20)
