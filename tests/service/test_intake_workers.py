"""TZN_INTAKE_WORKERS: `tzn serve` with intake processes on the port and the model's process behind them
(service/workers.py), a real server over real HTTP on 127.0.0.1. The answers, refusals and metrics are those of
the single-process server; only the upload's bytes stay in the intake process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from engine.localizer import Localizer
from engine.video.source import VideoSource
from service.settings import Settings
from service.workers import SharedSlots
from tests.service.processes import children_of
from tools.launch import server_process

WORKERS = 2
KEY = "intake-test-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def served(small_checkpoint, tmp_path_factory):
    upload_dir = tmp_path_factory.mktemp("intake-uploads")
    env = {
        "TZN_CHECKPOINT": str(small_checkpoint), "TZN_DEVICE": "cpu", "TZN_INTAKE_WORKERS": str(WORKERS),
        "TZN_TEMP_DIR": str(upload_dir), "TZN_MAX_UPLOAD_MB": "4", "TZN_UPLOAD_MEMORY_MB": "0.05",
        "TZN_JOBS_DIR": str(tmp_path_factory.mktemp("intake-jobs")), "TZN_API_KEY": KEY, "TZN_JOBS_MAX_UPLOAD_MB": "8",
    }  # fmt: skip
    log = tmp_path_factory.mktemp("logs") / "server.log"
    with server_process(env, log, ready_timeout_s=300) as (url, process):
        yield url, process, upload_dir, log


def intake_pids(server_pid: int) -> list[int]:
    """The server's live children that run service.workers."""
    found = []
    for child in children_of(server_pid):
        try:
            if b"service.workers" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return sorted(found)


def requests_counted(url: str, status: int) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        if line.startswith(f'tzn_requests_total{{route="localize",status="{status}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_an_upload_received_by_an_intake_process_gets_the_engines_answer(served, media, small_checkpoint):
    url, process, upload_dir, log = served
    assert len(intake_pids(process.pid)) == WORKERS
    settings = Settings(checkpoint=small_checkpoint, device="cpu")
    expected = (
        Localizer(settings.engine_settings())
        .localize(VideoSource.from_path(media / "clip.mp4"), settings.localize_limits.work, min_score=0.0, top_k=20)
        .segments
    )
    data = (media / "clip.mp4").read_bytes()
    raw = httpx.post(f"{url}/localize?min_score=0&top_k=20&filename=a.mp4", content=data,
                     headers={"Content-Type": "video/mp4", **AUTH}, timeout=120)  # fmt: skip
    form = httpx.post(f"{url}/localize", files={"video": ("b.mp4", data)}, data={"min_score": "0", "top_k": "20"},
                      headers=AUTH, timeout=120)  # fmt: skip
    deadline = time.monotonic() + 10  # the engine's access log shows the client's own request line
    while "POST /localize?min_score=0&top_k=20&filename=a.mp4 HTTP/1.1" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    for response, name in ((raw, "a.mp4"), (form, "b.mp4")):
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["video"]["filename"] == name and answer["timing_ms"]["upload"] > 0
        assert [s["label"] for s in answer["segments"]] == [s["label"] for s in expected]
        for ours, theirs in zip(answer["segments"], expected, strict=True):
            assert ours["start_s"] == pytest.approx(theirs["start_s"], abs=1e-4)
            assert ours["score"] == pytest.approx(theirs["score"], abs=1e-4)
    assert not list(upload_dir.iterdir())  # the multipart upload was spooled (over 0.05 MB) and is removed


def raw_request(url: str, head: str, body: bytes = b"", close_after: bool = False) -> bytes:
    """Sends `head` and `body` over a raw socket, then reads the answer (b"" when `close_after`: the connection
    is closed at once, mid-body)."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as connection:
        connection.sendall(head.encode() + b"\r\n" + body)
        if close_after:
            return b""
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def job_count(url: str) -> int:
    return httpx.get(f"{url}/jobs", headers=AUTH, timeout=30).json()["total"]


def test_the_clients_framing_reaches_the_engine(served, media):
    """A declared size over the limit is refused before any of the body is sent (the engine process sees the
    client's Content-Length), on a connection then closed; a client gone mid-body leaves no job behind (the
    engine process sees a cut connection, not a shorter body)."""
    url, _, _, _ = served
    head = (f"POST /jobs HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: {100 * 2**20}\r\n")  # fmt: skip
    answer = raw_request(url, head)
    assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower(), answer[:300]
    before = job_count(url)
    data = (media / "vfr.mp4").read_bytes()
    head = (f"POST /jobs HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: video/mp4\r\n"
            f"Content-Length: {len(data)}\r\n")  # fmt: skip
    raw_request(url, head, data[: len(data) // 2], close_after=True)
    time.sleep(2)
    assert job_count(url) == before


def test_refusals_are_the_engines_and_counted_once(served, media):
    url, _, upload_dir, _ = served
    video = {"Content-Type": "video/mp4", **AUTH}
    before = {status: requests_counted(url, status) for status in (400, 401, 413, 415, 422)}
    too_large = httpx.post(f"{url}/localize", content=b"\0" * (5 * 2**20), headers=video, timeout=60)
    assert too_large.status_code == 413 and too_large.json()["error"]["code"] == "upload_too_large"
    wrong_type = httpx.post(f"{url}/localize", content=b"x", headers={**video, "Content-Type": "text/plain"},
                            timeout=60)  # fmt: skip
    assert wrong_type.status_code == 400 and wrong_type.json()["error"]["code"] == "bad_form"
    empty = httpx.post(f"{url}/localize", content=b"", headers=video, timeout=60)
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_video"
    with open(media / "random.mp4", "rb") as file:
        not_video = httpx.post(f"{url}/localize", files={"video": ("random.mp4", file)}, headers=AUTH, timeout=60)
    assert not_video.status_code == 415
    # answered before the body is read, which is then drained: the client reads the answer, not a reset
    wrong_key = httpx.post(f"{url}/localize", content=b"\0" * (30 * 2**20), headers={**video, "X-API-Key": "wrong"},
                           timeout=60)  # fmt: skip
    assert wrong_key.status_code == 401
    job_wrong_key = httpx.post(f"{url}/jobs", content=b"\0" * (30 * 2**20), headers={**video, "X-API-Key": "no"},
                               timeout=60)  # fmt: skip
    assert job_wrong_key.status_code == 401
    after = {status: requests_counted(url, status) for status in (400, 401, 413, 415, 422)}
    assert {status: after[status] - before[status] for status in after} == {400: 1, 401: 1, 413: 1, 415: 1, 422: 1}
    assert not list(upload_dir.iterdir())


def inflight(url: str) -> float:
    [line] = [line for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines()
              if line.startswith("tzn_inflight_requests ")]  # fmt: skip
    return float(line.split()[-1])


def test_an_upload_still_arriving_in_an_intake_process_is_in_flight(served, media):
    """tzn_inflight_requests, scraped from the engine process, counts an upload an intake process is receiving,
    before any byte of it reaches the engine process, and lets it go once it is answered."""
    url, _, _, _ = served
    data = (media / "clip.mp4").read_bytes()
    address = urlsplit(url)
    assert inflight(url) == 0
    with socket.create_connection((address.hostname, address.port), timeout=60) as connection:
        connection.sendall(f"POST /localize HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\nX-API-Key: {KEY}\r\n"
                           f"Content-Length: {len(data)}\r\n\r\n".encode() + data[: len(data) // 2])  # fmt: skip
        deadline = time.monotonic() + 10
        while inflight(url) != 1:
            assert time.monotonic() < deadline, "the upload in the intake process was not counted"
            time.sleep(0.1)
        connection.sendall(data[len(data) // 2 :])
        assert connection.recv(65536).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while inflight(url) != 0:
        assert time.monotonic() < deadline, "the answered upload is still counted"
        time.sleep(0.1)


def test_a_clients_handoff_header_is_ignored(served, media):
    """Only the engine process's Unix socket may hand over a video: a client naming a file in x-tzn-handoff
    gets the answer for the bytes it sent."""
    url, _, _, _ = served
    response = httpx.post(
        f"{url}/localize", content=(media / "random.mp4").read_bytes(),
        headers={"Content-Type": "video/mp4", "X-TZN-Handoff": str(media / "clip.mp4"), "X-TZN-Upload-Ms": "1",
                 **AUTH},
        timeout=60,
    )  # fmt: skip
    assert response.status_code == 415


def test_other_routes_and_jobs_are_forwarded(served, media):
    url, _, _, log = served
    assert httpx.get(f"{url}/health/ready", headers={"X-TZN-Client": "6.6.6.6:1"}, timeout=30).json() == {
        "status": "ready"
    }
    # the access log names the client, as the intake process saw it (not what the client claims)
    deadline = time.monotonic() + 10  # the line is written once the answer has gone
    while not any("127.0.0.1:" in line and "GET /health/ready" in line for line in log.read_text().splitlines()):
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    assert "6.6.6.6" not in log.read_text()
    assert httpx.get(f"{url}/", timeout=30).text.lower().startswith("<!doctype html>")
    assert httpx.get(f"{url}/no/such/page", timeout=30).status_code == 404
    with open(media / "clip.mp4", "rb") as file:
        submitted = httpx.post(f"{url}/jobs", files={"video": ("clip.mp4", file)}, headers=AUTH, timeout=60)
    assert submitted.status_code == 202, submitted.text
    deadline = time.monotonic() + 120
    while (job := httpx.get(f"{url}{submitted.headers['location']}", headers=AUTH, timeout=30).json())["status"] != \
            "succeeded":  # fmt: skip
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.25)
    assert job["result"]["video"]["filename"] == "clip.mp4"


def test_a_dead_intake_process_is_replaced_and_a_stopping_server_finishes_its_uploads(small_checkpoint, media,
                                                                                       tmp_path):  # fmt: skip
    """The replacement of a killed intake process serves; when the server is told to stop during an upload, the
    upload is still answered (the engine process stops last), and no process outlives the server."""
    env = {"TZN_CHECKPOINT": str(small_checkpoint), "TZN_DEVICE": "cpu", "TZN_INTAKE_WORKERS": "1",
           "TZN_JOBS_DIR": str(tmp_path / "jobs")}  # fmt: skip
    data = (media / "clip.mp4").read_bytes()
    with server_process(env, tmp_path / "server.log", ready_timeout_s=300) as (url, process):
        [first] = intake_pids(process.pid)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (replaced := intake_pids(process.pid)) or replaced == [first]:
            assert time.monotonic() < deadline, "no intake process replaced the dead one"
            time.sleep(0.2)
        while True:  # the new one may still be starting
            try:
                response = httpx.post(f"{url}/localize", content=data, headers={"Content-Type": "video/mp4"},
                                      timeout=60)  # fmt: skip
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.status_code == 200
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port), timeout=60) as connection:
            connection.sendall(f"POST /localize HTTP/1.1\r\nHost: x\r\nContent-Type: video/mp4\r\n"
                               f"Content-Length: {len(data)}\r\n\r\n".encode() + data[: len(data) // 2])  # fmt: skip
            time.sleep(0.5)
            process.terminate()
            time.sleep(1)
            connection.sendall(data[len(data) // 2 :])
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        process.wait(timeout=60)
    alive = [pid for pid in replaced if Path(f"/proc/{pid}").exists()]
    assert not alive, [(Path(f"/proc/{pid}/status").read_text().splitlines()[:7]) for pid in alive]


def test_an_intake_process_does_not_load_torch():
    """An intake process receives bytes only: without torch it starts in a fraction of a second and holds about
    55 MB, where torch's CUDA build took 540 MB per process."""
    probe = "import sys, service.workers; print(sorted({'torch', 'numpy'} & set(sys.modules)))"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert "torch" not in shown.stdout, shown.stdout


def test_the_upload_slots_are_counted_across_the_intake_processes(tmp_path):
    """TZN_MAX_CONCURRENT_UPLOADS bounds the uploads of all intake processes together, however the kernel
    shares the connections out; the count of a process that died is zeroed when another takes its place."""
    path = str(tmp_path / "slots")
    SharedSlots.create(path, 2)
    first, second = SharedSlots(path, 0, 3), SharedSlots(path, 1, 3)
    assert first.try_acquire() and first.try_acquire() and second.try_acquire()
    assert not first.try_acquire() and not second.try_acquire()
    assert (first.elsewhere(), second.elsewhere()) == (1, 2)  # the engine process's in-flight uploads elsewhere
    second.release()
    assert first.try_acquire()
    first.reset(0)  # process 0 died holding three
    assert all(second.try_acquire() for _ in range(3)) and not second.try_acquire()
