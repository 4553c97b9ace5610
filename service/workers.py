"""Intake in several processes (TZN_INTAKE_WORKERS): uploads received beside the process that owns the model.

One event loop receives every upload's bytes one chunk after another: on the H200 run (docs/gpu.md) one 81 MB
upload took 62 ms and eight at once a median of 359 ms, where a raw loopback socket moved four at once in 38 ms. With
`TZN_INTAKE_WORKERS=N`, `tzn serve` binds the port and hands it to N intake processes (this module), and the
process that owns the model and the GPU (the engine process) serves only a Unix socket in a private folder:

- POST /localize is received here, by the same code and under the same limits as in the engine process
  (`service.upload.receive_video`: a memfd up to TZN_UPLOAD_MEMORY_MB, else a file spooled to TZN_TEMP_DIR).
  Then the engine process gets the video itself, not its bytes: the client's request with no body, whose
  `x-tzn-handoff` header names `/proc/<this pid>/fd/<n>` (or the spooled file), which it opens, and
  `x-tzn-options` its name and options (`service.intake`, `handed_over`). A refused upload (408, 413, 400, ...)
  is handed over as `x-tzn-refusal`, so that the engine process answers and counts it as it does its own; so is
  a failure (500). The answer is relayed as it comes. Until the engine process's model is loaded, the request
  is forwarded as it is, and refused there before it is read, as the process does alone.
- Everything else (POST /jobs and its uploads, health, metrics, the page) is forwarded to the engine process
  as it arrives, and its answer relayed.

Headers starting with `x-tzn-` are dropped from what clients send; the engine process reads them only from its
Unix socket. TZN_MAX_CONCURRENT_UPLOADS counts the uploads of all processes together (503 beyond). A request
with a wrong API key is forwarded, and answered 401 by the engine process before it reads the body. The engine
process's metrics count the uploads arriving in the intake processes in tzn_inflight_requests (from their
shared upload slots), and a request's duration from its first byte in an intake process.

    python -m service.workers --fd FD --engine SOCKET --slots FILE --index I --upload-slots N
                                                          (started by `tzn serve`, not by hand)
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hmac
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable

import httptools

from service.errors import Refusal, RequestError, UploadTimeout
from service.settings import Settings, load_settings
from service.upload import OPTION_FIELDS, RequestBody, Upload, receive_video

log = logging.getLogger("tzn.intake")

HANDOFF = "x-tzn-handoff"  # the path the engine process opens
UPLOAD_MS = "x-tzn-upload-ms"
OPTIONS = "x-tzn-options"  # {"filename", "options"} of a handed-over upload
REFUSAL = "x-tzn-refusal"  # {"kind", "code", "message"} of a refused upload
CLIENT = "x-tzn-client"  # the client's host:port
PRIVATE_PREFIX = b"x-tzn-"
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"proxy-connection", b"trailer",
              b"expect"}  # this process's server answers a client's Expect: 100-continue  # fmt: skip
READ_BYTES = 1 << 20

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class EngineGone(Exception):
    """The engine process's socket refused the connection or closed it before answering."""


class AnswerCut(Exception):
    """The engine process's answer stopped before its end: the client's connection is cut, not ended cleanly."""


class ClientBody:
    """A client's request body, read as it arrives: `next()` gives (chunk, more) pairs. `length`: its declared
    Content-Length (None: chunked)."""

    def __init__(self, receive: Receive, length: int | None):
        self.receive, self.length = receive, length
        self.complete = self.disconnected = False

    async def next(self) -> tuple[bytes, bool]:
        message = await self.receive()
        if message["type"] == "http.disconnect":
            self.complete = self.disconnected = True
            return b"", False
        self.complete = not message.get("more_body", False)
        return message.get("body", b""), not self.complete


def client_body(scope: Scope, receive: Receive) -> ClientBody | None:
    """The client's body; None when the request has none."""
    headers = dict(scope["headers"])
    if b"transfer-encoding" in headers:
        return ClientBody(receive, None)
    length = headers.get(b"content-length", b"0")
    return ClientBody(receive, int(length)) if length.isdigit() and int(length) > 0 else None


async def forward(
    engine: str, scope: Scope, body: ClientBody | None, send: Send, extra_headers: list[tuple[bytes, bytes]] = (),
    close_client: bool = False,
) -> int:  # fmt: skip
    """Sends a request to the engine process's Unix socket and relays its answer to `send`: the client's method,
    path, query and headers (less hop-by-hop and x-tzn- ones) plus `extra_headers`, and `body` (None: none) with
    the client's framing (its Content-Length, which the engine process may refuse at once, or chunked), sent
    while the answer is read: the engine process may answer before it has read it all (401, 413, 503), having
    read and discarded what it allows (a lingering close, service/intake.py); the client's connection is then
    closed. A client gone mid-body cuts the connection, so that the engine process never takes a shorter body for
    the whole. Returns the answer's status (0 when the client left); EngineGone when the engine process did not
    answer, AnswerCut when it stopped mid-answer."""
    loop = asyncio.get_running_loop()
    engine_socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    engine_socket.setblocking(False)
    sending = None
    try:
        try:
            await loop.sock_connect(engine_socket, engine)
            await loop.sock_sendall(engine_socket, _request_head(scope, body, extra_headers))
        except OSError as error:
            raise EngineGone(str(error)) from None
        if body is not None:
            sending = asyncio.ensure_future(_send_body(loop, engine_socket, body))
        try:
            status = await _relay(loop, engine_socket, send, scope["method"] == "HEAD", close_client, body)
        except EngineGone:
            if body is not None and body.disconnected:
                return 0
            raise
    finally:
        if sending is not None:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        engine_socket.close()
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return status


def _request_head(scope: Scope, body: ClientBody | None, extra_headers: list[tuple[bytes, bytes]]) -> bytes:
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    head = [scope["method"].encode() + b" " + target + b" HTTP/1.1"]
    for name, value in scope["headers"]:
        if name not in HOP_BY_HOP and not name.startswith(PRIVATE_PREFIX) and name != b"content-length":
            head.append(name + b": " + value)
    head += [name + b": " + value for name, value in extra_headers]
    if scope.get("client"):  # the engine process's access log names the client (service/app.py, IntakeClients)
        host, port = scope["client"]
        head.append(CLIENT.encode() + b": " + f"{host}:{port}".encode("latin-1"))
    if body is not None:
        head.append(b"content-length: %d" % body.length if body.length is not None else b"transfer-encoding: chunked")
    return b"\r\n".join([*head, b"connection: close", b"", b""])


async def _send_body(loop: asyncio.AbstractEventLoop, engine_socket: socket.socket, body: ClientBody) -> None:
    """The client's body on to the engine process, as it arrives; it stops quietly where the engine process
    stopped reading (it answered early), and cuts the connection where the client left."""
    chunked, more = body.length is None, True
    try:
        while more:
            chunk, more = await body.next()
            if body.disconnected:
                engine_socket.shutdown(socket.SHUT_RDWR)
                return
            if chunk:
                await loop.sock_sendall(engine_socket, b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            await loop.sock_sendall(engine_socket, b"0\r\n\r\n")
    except OSError:  # the engine process closed its end after answering
        pass


async def _relay(
    loop: asyncio.AbstractEventLoop, engine_socket: socket.socket, send: Send, head_only: bool, close_client: bool,
    body: ClientBody | None,
) -> int:  # fmt: skip
    """The engine's answer, parsed as it arrives (httptools), sent on to the client: all but its end. Read with
    the socket's own calls, which give what was received even after a write failed (a stream reader raises)."""
    events: list[tuple[str, object]] = []
    headers: list[tuple[bytes, bytes]] = []

    class Callbacks:
        def on_header(self, name: bytes, value: bytes) -> None:
            headers.append((name.lower(), value))

        def on_headers_complete(self) -> None:
            events.append(("start", None))

        def on_body(self, data: bytes) -> None:
            events.append(("body", bytes(data)))

        def on_message_complete(self) -> None:
            events.append(("end", None))

    parser = httptools.HttpResponseParser(Callbacks())
    started = ended = False
    status = 0
    while not ended:
        try:
            data = await loop.sock_recv(engine_socket, READ_BYTES)
        except OSError:
            data = b""
        if not data:
            if not started:
                raise EngineGone("the engine process closed the connection before answering")
            raise AnswerCut("the engine process's answer stopped before its end")
        parser.feed_data(data)
        for kind, payload in events:
            if kind == "start" and not started:
                started, status = True, parser.get_status_code()
                kept = [(n, v) for n, v in headers if n not in HOP_BY_HOP]
                if close_client or (body is not None and not body.complete):  # answered before the whole body
                    kept.append((b"connection", b"close"))
                await send({"type": "http.response.start", "status": status, "headers": kept})
                if head_only:
                    ended = True
                    break
            elif kind == "body" and not ended:
                await send({"type": "http.response.body", "body": payload, "more_body": True})
            elif kind == "end" and not ended:
                ended = True
        events.clear()
    return status


class SharedSlots:
    """TZN_MAX_CONCURRENT_UPLOADS across the intake processes: a file of one count per process (8 bytes each),
    read and changed under an exclusive lock. Each process changes its own count; `tzn serve` zeroes the count of
    a process that died before it starts another in its place (`reset`)."""

    def __init__(self, path: str, index: int, limit: int):
        self.path, self.index, self.limit = path, index, limit

    @staticmethod
    def create(path: str, processes: int) -> None:
        with open(path, "wb") as file:
            file.write(bytes(8 * processes))

    def _change(self, index: int, delta: int | None) -> bool:
        """Adds `delta` to `index`'s count if the total stays within the limit (None: sets it to 0)."""
        with open(self.path, "r+b") as file:
            counts = _locked_counts(file, fcntl.LOCK_EX)
            if delta is not None and delta > 0 and sum(counts) + delta > self.limit:
                return False
            counts[index] = 0 if delta is None else counts[index] + delta
            file.seek(0)
            file.write(struct.pack(f"<{len(counts)}q", *counts))
        return True

    def try_acquire(self) -> bool:
        return self._change(self.index, 1)

    def release(self) -> None:
        self._change(self.index, -1)

    def reset(self, index: int) -> None:
        self._change(index, None)

    def elsewhere(self) -> int:
        """The uploads the other processes are receiving now (the engine process's `tzn_inflight_requests` adds
        them: its own count begins at the handoff)."""
        with open(self.path, "rb") as file:
            counts = _locked_counts(file, fcntl.LOCK_SH)
        return sum(counts) - counts[self.index]


def _locked_counts(file, lock: int) -> list[int]:
    """SharedSlots' counts, read under `lock` (fcntl.LOCK_EX or LOCK_SH), held until the file closes."""
    fcntl.flock(file, lock)
    return list(struct.unpack(f"<{os.fstat(file.fileno()).st_size // 8}q", file.read()))


def _refusal(error: Exception) -> dict[str, str]:
    """What the engine process is told of a failed upload (service/intake.py, `handed_over`)."""
    if isinstance(error, RequestError):
        return {"kind": type(error).__name__, "code": error.code, "message": error.message}
    log.error("receiving an upload failed", exc_info=error)
    return {"kind": "internal", "code": "internal_error", "message": f"{type(error).__name__}: {error}"}


def _upload_ms(arrived: float) -> tuple[bytes, bytes]:
    return UPLOAD_MS.encode(), b"%.3f" % ((time.perf_counter() - arrived) * 1000)


async def _engine_status(engine: str, path: str, timeout_s: float = 5.0) -> int:
    """The status of a GET of `path` from the engine process, through `forward` (0 when it gives none within
    `timeout_s`)."""
    statuses = []

    async def keep(message: dict) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"method": "GET", "path": path, "query_string": b"", "headers": [(b"host", b"engine")]}
    try:
        async with asyncio.timeout(timeout_s):
            await forward(engine, scope, None, keep)
    except (TimeoutError, EngineGone, AnswerCut):
        return 0
    return statuses[0] if statuses else 0


class IntakeApp:
    """The ASGI app of an intake process (see the module's docstring)."""

    def __init__(self, settings: Settings, engine: str, slots: SharedSlots):
        self.settings, self.engine, self.slots = settings, engine, slots
        self.ready = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # nothing to start or stop
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            if scope["method"] == "POST" and scope["path"] == "/localize" and self._may_receive(scope):
                await self._localize(scope, receive, send)
            else:
                await forward(self.engine, scope, client_body(scope, receive), send)
        except AnswerCut as error:  # the answer has begun: returning without its end closes the connection
            log.error("%s %s: %s", scope["method"], scope["path"], error)
        except EngineGone as error:
            log.error("the engine process did not answer %s %s: %s", scope["method"], scope["path"], error)
            body = json.dumps({"error": {"code": "engine_unavailable", "message": "the server is restarting; "
                                         "retry later"}}).encode()  # fmt: skip
            headers = [(b"content-type", b"application/json"), (b"retry-after", b"5"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})

    def _may_receive(self, scope: Scope) -> bool:
        """False for a wrong API key: the engine process answers 401 before it reads the body, as it does alone."""
        key = self.settings.api_key
        given = dict(scope["headers"]).get(b"x-api-key", b"")
        return key is None or hmac.compare_digest(given, key.get_secret_value().encode())

    async def _localize(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        arrived = time.perf_counter()
        if not await self._engine_ready():  # loading: the engine process refuses before reading, as it does alone
            await forward(self.engine, scope, client_body(scope, receive), send)
            return
        body = RequestBody(
            receive, idle_timeout_s=settings.upload_idle_timeout_s, min_rate=settings.upload_min_rate_kib_s * 1024,
            grace_s=settings.upload_rate_grace_s,
        )  # fmt: skip
        try:
            upload = await self._receive(scope, body)
        except Exception as error:  # the engine process answers it and counts it, as its own
            drained = body.complete or (  # a lingering close, as the engine process does (service.intake)
                not isinstance(error, UploadTimeout)
                and await body.drain(int(settings.drain_max_mb * 2**20), settings.drain_timeout_s)
            )  # fmt: skip
            extra = [(REFUSAL.encode(), json.dumps(_refusal(error)).encode()), _upload_ms(arrived)]
            await forward(self.engine, scope, None, send, extra, close_client=not drained)
            return
        try:
            source = upload.source
            path = str(source.path) if source.path is not None else f"/proc/{os.getpid()}/fd/{source.fd}"
            options = {name: value for name, value in upload.options.items() if name in OPTION_FIELDS}
            told = json.dumps({"filename": source.name, "options": options})
            extra = [(HANDOFF.encode(), os.fsencode(path)), (OPTIONS.encode(), told.encode()), _upload_ms(arrived)]
            await forward(self.engine, scope, None, send, extra)
        finally:
            upload.remove()

    async def _engine_ready(self) -> bool:
        """Whether the engine process's model is loaded (asked until it is: it stays loaded)."""
        if not self.ready:
            self.ready = await _engine_status(self.engine, "/health/ready") == 200
        return self.ready

    async def _receive(self, scope: Scope, body: RequestBody) -> Upload:
        """The upload, under /localize's limits, holding one of the TZN_MAX_CONCURRENT_UPLOADS upload slots (shared
        by the intake processes) meanwhile."""
        settings = self.settings
        if not self.slots.try_acquire():
            raise Refusal("overloaded", f"{settings.max_concurrent_uploads} uploads are in progress; retry later")
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            return await receive_video(
                headers, _query(scope), body.chunks(), settings.localize_limits.max_upload_bytes,
                int(settings.upload_memory_mb * 2**20), settings.temp_dir,
            )  # fmt: skip
        finally:
            self.slots.release()


def start_intake(settings: Settings, listening: socket.socket, address: str) -> IntakeProcesses | None:
    """`tzn serve`'s intake processes on `listening` (None when `count` is 0): the engine process then serves
    only its Unix socket (`IntakeProcesses.engine_listening`), in a folder only its user can enter."""
    count = settings.intake_workers
    if not count:
        return None
    engine = os.path.join(tempfile.mkdtemp(prefix="tzn-engine-"), "engine.sock")
    engine_listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    engine_listening.bind(engine)
    engine_listening.listen(1024)  # intake processes may connect before the engine's loop serves it
    listening.listen(2048)
    intake = IntakeProcesses(count, listening, engine, engine_listening, settings.max_concurrent_uploads)
    intake.start()
    log.info("%d intake processes receive uploads on %s; this process serves them on %s", count, address, engine)
    return intake


# glibc's malloc in an intake process: the body arrives in chunks of up to 256 KiB, each a new bytes object. With
# glibc's defaults in a process that allocated little else, they were mapped and unmapped (or the heap grown and
# trimmed) chunk by chunk, and an 80 MB upload took 116 ms to receive instead of 77 (`python bench/intake.py`,
# one client): the thresholds a process that has loaded torch ends up with, set from the start.
INTAKE_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20)}


class IntakeProcesses:
    """The intake processes of `tzn serve`: started on the listening socket in sessions of their own (a terminal's
    Ctrl-C reaches the engine process, which stops them in order), each restarted when it dies (after a growing
    pause when it died within QUICK_DEATH_S of its start), all stopped with the server (and killed with it, where
    util-linux's setpriv is installed). `engine_slots`: the engine process's count in the shared upload slots,
    for the /jobs uploads it receives itself."""

    QUICK_DEATH_S = 5.0

    def __init__(
        self, count: int, listening: socket.socket, engine: str, engine_listening: socket.socket, upload_slots: int
    ):  # fmt: skip
        self.count, self.listening, self.engine = count, listening, engine
        self.engine_listening = engine_listening
        path = os.path.join(os.path.dirname(engine), "upload-slots")
        SharedSlots.create(path, count + 1)
        self.slots, self.engine_slots = SharedSlots(path, 0, upload_slots), SharedSlots(path, count, upload_slots)
        self.processes: list[subprocess.Popen] = []
        self.started_at, self.restart_at, self.quick_deaths = [0.0] * count, [None] * count, [0] * count
        self.stopping, self.done, self.lock = threading.Event(), threading.Event(), threading.Lock()
        self.watcher = threading.Thread(target=self._watch, name="tzn-intake-watch", daemon=True)

    def start(self) -> None:
        self.processes = [self._spawn(index) for index in range(self.count)]
        self.watcher.start()

    def _spawn(self, index: int) -> subprocess.Popen:
        from engine.video.readers import dies_with_caller

        fd = self.listening.fileno()
        command = [sys.executable, "-m", "service.workers", "--fd", str(fd), "--engine", self.engine, "--slots",
                   self.slots.path, "--index", str(index), "--upload-slots", str(self.slots.limit)]  # fmt: skip
        self.started_at[index] = time.monotonic()
        return subprocess.Popen(dies_with_caller(command), pass_fds=(fd,), env={**os.environ, **INTAKE_MALLOC},
                                start_new_session=True)  # fmt: skip

    def _watch(self) -> None:
        """Restarts dead intake processes until they are told to stop. This thread lives until `wait` has reaped
        them all: setpriv's --pdeathsig kills a child when the thread that started it ends."""
        while not self.done.wait(0.5):
            with self.lock:
                for index, process in enumerate(self.processes):
                    if process.poll() is None or self.stopping.is_set():
                        continue
                    now = time.monotonic()
                    if self.restart_at[index] is None:
                        quick = now - self.started_at[index] < self.QUICK_DEATH_S
                        self.quick_deaths[index] = self.quick_deaths[index] + 1 if quick else 0
                        pause = min(30.0, 0.5 * 2 ** self.quick_deaths[index]) if quick else 0.0
                        self.restart_at[index] = now + pause
                        log.warning("intake process %d exited (status %s); starting another in %.1f s", process.pid,
                                    process.returncode, pause)  # fmt: skip
                    if now >= self.restart_at[index]:
                        self.slots.reset(index)  # the uploads it held are gone with it
                        self.processes[index], self.restart_at[index] = self._spawn(index), None

    def terminate(self) -> None:
        """Tells every intake process to stop, and closes the port here too: they take no more connections (new
        ones are refused, not queued for no one), and answer those they have. Once or more."""
        with self.lock:
            self.stopping.set()
            for process in self.processes:
                if process.poll() is None:
                    process.terminate()
        self.listening.close()

    def wait(self, force: Callable[[], bool] = lambda: False) -> None:
        """Waits for them to end, as a single server waits for its requests in flight (killing them when `force()`
        says so: uvicorn's second signal), and removes the engine's socket's folder. Once or more."""
        while any(process.poll() is None for process in self.processes):
            if force():
                for process in self.processes:
                    process.kill()
            time.sleep(0.1)
        self.done.set()
        shutil.rmtree(os.path.dirname(self.engine), ignore_errors=True)


def engine_server(config, intake: IntakeProcesses | None):
    """The uvicorn server of the engine process. With intake processes, it stops them first as it shuts down:
    they finish their requests in flight, whose answers come from here, and are reaped before this server stops
    (uvicorn then raises the signal that stopped it again, which would end this process before any `finally`)."""
    import uvicorn

    class EngineServer(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            if intake is not None:  # their uploads in flight are still handed over here; then this one stops
                intake.terminate()
                await asyncio.to_thread(intake.wait, lambda: self.force_exit)
            await super().shutdown(sockets)

    return EngineServer(config)


def run_engine(server, listening: socket.socket, intake: IntakeProcesses | None) -> None:
    """Runs the engine process's `server` (`engine_server`): on the port, or behind intake processes on its Unix
    socket. A server that failed to start never shut down: its intake processes are stopped here then."""
    try:
        server.run(sockets=[listening] if intake is None else [intake.engine_listening])
    finally:
        if intake is not None:
            intake.terminate()
            intake.wait()


def _query(scope: Scope) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m service.workers")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, inherited")
    parser.add_argument("--engine", required=True, help="the engine process's Unix socket")
    parser.add_argument("--slots", required=True, help="the upload slots' file (SharedSlots)")
    parser.add_argument("--index", type=int, required=True, help="this process's count in it")
    parser.add_argument("--upload-slots", type=int, required=True, help="TZN_MAX_CONCURRENT_UPLOADS")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    settings = load_settings()
    listening = socket.socket(fileno=args.fd)
    app = IntakeApp(settings, args.engine, SharedSlots(args.slots, args.index, args.upload_slots))
    # the engine process's answers carry their own Date and Server headers
    config = uvicorn.Config(app, log_level="warning", lifespan="on", server_header=False, date_header=False)
    uvicorn.Server(config).run(sockets=[listening])
    return 0


if __name__ == "__main__":
    sys.exit(main())
