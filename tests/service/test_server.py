"""Integration: a real uvicorn process, real files over real HTTP on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tools.launch import free_port, running_server


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-uploads")


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs") / "server.log"


@pytest.fixture(scope="module")
def server(small_checkpoint, upload_dir, server_log):
    env = {
        "TZN_CHECKPOINT": str(small_checkpoint),
        "TZN_TEMP_DIR": str(upload_dir),
        "TZN_MAX_UPLOAD_MB": "8",
        "TZN_MAX_CONCURRENT": "1",
        "TZN_MAX_QUEUE": "1",
        "TZN_QUEUE_TIMEOUT_S": "120",
        "TZN_DEVICE": "cpu",
    }
    with running_server(env, server_log, ready_timeout_s=300) as url:
        yield url


def post(url: str, path: Path, field: str = "video") -> httpx.Response:
    with open(path, "rb") as file:
        return httpx.post(f"{url}/localize", files={field: (path.name, file)}, timeout=120)


@pytest.mark.parametrize(
    ("name", "field", "status"),
    [
        ("clip.mp4", "video", 200),
        ("empty.mp4", "video", 422),
        ("random.mp4", "video", 415),
        ("truncated.mp4", "video", 422),
        ("still.png", "video", 415),
        ("tone.m4a", "video", 415),
        ("clip.mp4", "file", 400),
    ],
)
def test_each_upload_gets_its_code_and_the_server_stays_up(server, media, upload_dir, name, field, status):
    response = post(server, media / name, field)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    if status != 200:
        assert set(response.json()["error"]) == {"code", "message"}
    assert httpx.get(f"{server}/health/ready").status_code == 200
    assert list(upload_dir.iterdir()) == []


def test_oversize_upload_is_refused_with_413(server, tmp_path, upload_dir):
    big = tmp_path / "big.mp4"
    with open(big, "wb") as file:
        file.truncate(8 * 1024 * 1024 + 1)
    response = post(server, big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "upload_too_large"
    assert list(upload_dir.iterdir()) == []


def test_requests_beyond_the_slots_and_the_queue_get_503_with_retry_after(server, camera_footage, upload_dir):
    # one compute slot and one place in the queue: of three at once, one computes, one waits, one is refused
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: post(server, camera_footage), range(3)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 503], statuses
    waited = max(r.json()["timing_ms"]["queue"] for r in responses if r.status_code == 200)
    served_alone = min(r.json()["timing_ms"]["features"] for r in responses if r.status_code == 200)
    assert waited > served_alone / 2  # the queued one waited for the other's work
    rejected = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"].isdigit() and r.json()["error"]["code"] == "overloaded" for r in rejected)
    assert httpx.get(f"{server}/health/ready").status_code == 200
    assert list(upload_dir.iterdir()) == []


def test_one_log_line_says_when_the_model_is_loaded_and_warm(server, server_log):
    lines = [line for line in server_log.read_text().splitlines() if "model loaded and warm" in line]
    assert len(lines) == 1 and "small" in lines[0] and "ready for /localize" in lines[0]


def test_the_log_says_where_the_server_listens_before_the_model_is_loaded(server, server_log):
    lines = server_log.read_text().splitlines()
    listening = [n for n, line in enumerate(lines) if f"listening on {server.removeprefix('http://')};" in line]
    loaded = [n for n, line in enumerate(lines) if "model loaded and warm" in line]
    assert len(listening) == 1 and listening[0] < loaded[0]


def test_a_model_that_fails_to_load_ends_the_process_with_one_line(small_checkpoint, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(small_checkpoint, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # config fine (passes the checks), weights cut short
    env = {**os.environ, "TZN_CHECKPOINT": str(broken), "TZN_DEVICE": "cpu"}
    done = subprocess.run(
        [sys.executable, "-m", "tzn", "serve", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tzn serve: the model failed to load:") and "model.safetensors" in last
