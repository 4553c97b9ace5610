"""Runs `tzn serve` as a real uvicorn process on 127.0.0.1, for integration tests and the benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(env: dict[str, str], log_path: Path, ready_timeout_s: float = 120.0):
    """Starts the service with extra TZN_* `env`; yields its base URL once /health/ready is 200."""
    with server_process(env, log_path, ready_timeout_s) as (url, _):
        yield url


@contextmanager
def server_process(env: dict[str, str], log_path: Path, ready_timeout_s: float = 120.0):
    """`running_server` that also yields the server's `subprocess.Popen`: (url, process)."""
    port = free_port()
    repo = Path(__file__).resolve().parents[1]
    inherited = os.environ.get("PYTHONPATH")  # e.g. carried wheels on a GPU host: kept, after the repository
    full_env = {**os.environ, **env, "PYTHONPATH": str(repo) + (f":{inherited}" if inherited else "")}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tzn", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=repo,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"server exited with {process.returncode}: {log_path.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready after {ready_timeout_s} s: {log_path.read_text()[-2000:]}")
                time.sleep(0.25)
            yield url, process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
