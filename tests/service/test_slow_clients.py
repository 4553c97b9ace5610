"""Clients a real server must survive: uploads that trickle, stall, or keep sending after an early answer.

A real `tzn serve` on 127.0.0.1, raw sockets for the misbehaving clients, Python's urllib for the client that
sends its whole body before reading (it got ConnectionResetError on an early 413 before the lingering close).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import httpx
import pytest

from tools.launch import running_server

BOUNDARY = "tzn-test-boundary"


@pytest.fixture(scope="module")
def server(small_checkpoint, tmp_path_factory):
    env = {
        "TZN_CHECKPOINT": str(small_checkpoint),
        "TZN_MAX_UPLOAD_MB": "2",
        "TZN_MAX_CONCURRENT": "1",
        "TZN_UPLOAD_IDLE_TIMEOUT_S": "2",
        "TZN_UPLOAD_MIN_RATE_KIB_S": "1",
        "TZN_UPLOAD_RATE_GRACE_S": "4",
        "TZN_DEVICE": "cpu",
    }
    with running_server(env, tmp_path_factory.mktemp("logs") / "server.log", ready_timeout_s=300) as url:
        yield url


def multipart(content: bytes, field: str = "video", filename: str = "clip.mp4") -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def request_head(url: str, length: int) -> bytes:
    host = url.removeprefix("http://")
    return (
        f"POST /localize HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of the answer on `sock` (read until the body is complete or the peer closes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), json.loads(body)


def trickle(url: str, body: bytes, bytes_per_second: float, results: list, stop: threading.Event) -> None:
    """Sends `body` a byte at a time at `bytes_per_second` until answered; appends the status to `results`."""
    with connect(url) as sock:
        sock.sendall(request_head(url, len(body)))
        sock.settimeout(1 / bytes_per_second)
        for byte in body:
            if stop.is_set():
                break
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1, socket.MSG_PEEK):  # the server answered early
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        sock.settimeout(30)
        results.append(read_response(sock))


def test_trickling_uploads_do_not_lock_out_a_normal_request(server, media):
    body = multipart(b"\x00" * 1000)
    results: list = []
    stop = threading.Event()
    tricklers = [threading.Thread(target=trickle, args=(server, body, 10, results, stop)) for _ in range(4)]
    for thread in tricklers:
        thread.start()
    time.sleep(0.5)  # all four are sending
    with open(media / "clip.mp4", "rb") as file:
        response = httpx.post(f"{server}/localize", files={"video": ("clip.mp4", file)}, timeout=60)
    assert response.status_code == 200, response.text
    for thread in tricklers:
        thread.join(timeout=30)
    stop.set()
    assert [status for status, _ in results] == [408] * 4
    assert {answer["error"]["code"] for _, answer in results} == {"upload_too_slow"}


def test_a_stalled_upload_gets_408_after_the_idle_timeout(server):
    body = multipart(b"\x00" * 5000)
    with connect(server) as sock:
        sock.sendall(request_head(server, len(body)) + body[:100])
        started = time.monotonic()
        status, answer = read_response(sock)
    assert status == 408 and answer["error"]["code"] == "upload_timeout"
    assert 1.5 < time.monotonic() - started < 15


def test_timing_counts_the_upload_and_adds_up_to_the_wall_time(server, media):
    body = multipart((media / "clip.mp4").read_bytes())
    started = time.monotonic()
    with connect(server) as sock:
        sock.sendall(request_head(server, len(body)))
        pieces = 6
        for index in range(pieces):  # about 1.5 s, far above the minimum rate
            sock.sendall(body[index * len(body) // pieces : (index + 1) * len(body) // pieces])
            time.sleep(0.25)
        status, answer = read_response(sock)
    wall_ms = (time.monotonic() - started) * 1000
    assert status == 200, answer
    timing = answer["timing_ms"]
    assert timing["upload"] >= 1200
    stages = ("upload", "queue", "decode", "features", "head", "postprocess")
    assert timing["total"] == pytest.approx(sum(timing[stage] for stage in stages))
    assert timing["upload"] + timing["decode"] < timing["total"] <= wall_ms
    assert answer["realtime_factor"] == pytest.approx(answer["video"]["duration_s"] / (timing["total"] / 1000))


def urllib_post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/localize", data=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_urllib_reads_an_early_413_for_an_upload_over_the_limit(server, tmp_path):
    status, answer = urllib_post(server, multipart(b"\x00" * (12 * 2**20)))
    assert status == 413 and answer["error"]["code"] == "upload_too_large"
    assert httpx.get(f"{server}/health/ready").status_code == 200


def test_urllib_reads_an_early_400_for_a_wrong_field(server):
    status, answer = urllib_post(server, multipart(b"\x00" * (1900 * 1024), field="file"))
    assert status == 400 and "'file'" in answer["error"]["message"]


def test_a_raw_client_that_sends_everything_first_reads_the_413(server):
    body = multipart(b"\x00" * (12 * 2**20))
    with connect(server) as sock:
        sock.sendall(request_head(server, len(body)) + body)
        status, answer = read_response(sock)
    assert status == 413 and answer["error"]["code"] == "upload_too_large"


def test_draining_is_bounded_and_then_closes(small_checkpoint, tmp_path):
    env = {
        "TZN_CHECKPOINT": str(small_checkpoint), "TZN_MAX_UPLOAD_MB": "1", "TZN_DRAIN_MAX_MB": "1",
        "TZN_DRAIN_TIMEOUT_S": "2", "TZN_DEVICE": "cpu",
    }  # fmt: skip
    with running_server(env, tmp_path / "server.log", ready_timeout_s=300) as url, connect(url) as sock:
        sock.sendall(request_head(url, 200 * 2**20))  # announces 200 MiB, then sends slowly
        started = time.monotonic()
        closed = False
        for _ in range(150):  # up to 15 s at 640 KiB/s: far past the 1 MiB / 2 s drain bound
            try:
                sock.sendall(b"\x00" * 65536)
            except OSError:
                closed = True
                break
            time.sleep(0.1)
        assert closed and time.monotonic() - started < 10  # the server stopped reading and closed
        assert httpx.get(f"{url}/health/ready").status_code == 200


def jobs_request_head(url: str, length: int) -> bytes:
    return request_head(url, length).replace(b"POST /localize", b"POST /jobs")


def metric(url: str, sample: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not in /metrics")


def test_jobs_drain_an_unread_body_before_answering_and_count_their_requests(server):
    counted = 'tzn_requests_total{route="submit_job",status="400"}'
    before = metric(server, counted)
    body = multipart(b"\x00" * (1900 * 1024), field="file")  # refused at the field's header, 1.9 MB unread
    with connect(server) as sock:
        sock.sendall(jobs_request_head(server, len(body)) + body)
        status, answer = read_response(sock)
    assert status == 400 and "'file'" in answer["error"]["message"]
    assert metric(server, counted) == before + 1
