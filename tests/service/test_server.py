"""Integration: a real uvicorn process, real files over real HTTP on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest

from service.launch import running_server


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-uploads")


@pytest.fixture(scope="module")
def server(small_checkpoint, upload_dir, tmp_path_factory):
    env = {
        "TZN_CHECKPOINT": str(small_checkpoint),
        "TZN_TEMP_DIR": str(upload_dir),
        "TZN_MAX_UPLOAD_MB": "8",
        "TZN_MAX_CONCURRENT": "1",
        "TZN_DEVICE": "cpu",
    }
    with running_server(env, tmp_path_factory.mktemp("logs") / "server.log") as url:
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


def test_requests_beyond_the_concurrency_limit_get_503_with_retry_after(server, camera_footage, upload_dir):
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: post(server, camera_footage), range(3)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses[0] == 200 and statuses[-1] == 503, statuses
    rejected = [r for r in responses if r.status_code == 503]
    assert all(r.headers["retry-after"].isdigit() and r.json()["error"]["code"] == "overloaded" for r in rejected)
    assert httpx.get(f"{server}/health/ready").status_code == 200
    assert list(upload_dir.iterdir()) == []
