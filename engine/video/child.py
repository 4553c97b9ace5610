"""The isolated decoder child: every decode of an upload on the CPU runs in a child process, so that a
decoder that segfaults or hangs on a hostile file fails only that request.

Children are forks of a fork server that has the decoders and torch imported already (multiprocessing
"forkserver", preloaded), so one starts in ~15 ms. A child talks to the parent over two pipes:

- messages, `(status, payload)`: "started" first, then whatever its target sends ("info", "chunk", ...),
  a final "done", or a failure: "error" (a typed VideoError), "decode_failed" (the decoder refused the
  stream), "failed" (a bug, or the machine's trouble: the server answers 500);
- fatal signals: faulthandler writes "Fatal Python error: Segmentation fault" there the moment the child
  crashes, before a crash handler installed on the machine runs, so the parent learns of a crash at once even
  where that handler takes its time or turns the signal into an exit status.

The child works in a private folder (its workdir, removed when it ends, with whatever a crash handler left
there) and sends decoder chatter (FFmpeg warnings) to a log there that the parent quotes in errors.

As with any multiprocessing code, a script that decodes videos needs the `if __name__ == "__main__":` guard
around its entry point (uvicorn and console scripts have it).
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import JobCancelledError, VideoDecodeError, VideoError, VideoTimeoutError

POLL_S = 0.2  # how often a wait for the child checks for cancellation

# faulthandler's names of the fatal signals it reports
FATAL_SIGNALS = {
    "Segmentation fault": "SIGSEGV",
    "Bus error": "SIGBUS",
    "Floating-point exception": "SIGFPE",
    "Illegal instruction": "SIGILL",
    "Aborted": "SIGABRT",
}


class ChildCrashed(Exception):
    """The decoder child died (a fatal signal, or an exit without a word); `cause` says how."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


class DecoderChild:
    """One isolated decoder process, seen from the parent: its message pipe and its fatal-signal pipe.

    The child runs `target(conn, fatal, workdir, *args)` (a module-level function). `receive()` returns its
    next message; it raises VideoTimeoutError past the deadline (start included), JobCancelledError as soon as
    `cancelled()` is true, and ChildCrashed the moment the child reports a fatal signal or is found dead without
    a message, whoever else holds its pipes. `close()` kills the child if it still runs, reaps it (no zombie)
    and removes its workdir.
    """

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple,
        *,
        timeout_s: float,
        filename: str,
        tmp_dir: str | os.PathLike | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ):
        self.filename, self.timeout_s, self.cancelled = filename, timeout_s, cancelled
        self.deadline = time.monotonic() + timeout_s
        self.workdir = Path(tempfile.mkdtemp(prefix="tzn-decode-", dir=tmp_dir)).resolve()
        context = fork_context()
        self.receiver, sender = context.Pipe(duplex=False)
        self.fatal, fatal_sender = context.Pipe(duplex=False)
        self.process = context.Process(
            target=target, args=(sender, fatal_sender, str(self.workdir), *args), daemon=True
        )
        try:
            self.process.start()
        except BaseException:
            self.close()
            raise
        finally:
            sender.close()
            fatal_sender.close()

    def receive(self) -> tuple[str, Any]:
        while True:
            if self.cancelled():
                raise JobCancelledError(f"decoding '{self.filename}' was cancelled")
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise VideoTimeoutError(
                    f"decoding '{self.filename}' took longer than {self.timeout_s:g} s and was stopped: "
                    "try again later or send a shorter or lower-resolution video"
                )
            waiting = [self.receiver, self.fatal, self.process.sentinel]
            ready = multiprocessing.connection.wait(waiting, timeout=min(POLL_S, remaining))
            if self.receiver.poll(0):
                try:
                    return self.receiver.recv()
                except (EOFError, OSError):
                    raise ChildCrashed(self._death()) from None
            if self.fatal in ready and (report := self._fatal_report()) is not None:
                raise ChildCrashed(report)
            if self.fatal in ready or self.process.sentinel in ready:  # its pipe closed, or it is gone
                raise ChildCrashed(self._death())

    def _fatal_report(self) -> str | None:
        """faulthandler's first line ("Fatal Python error: Segmentation fault") as "killed by SIGSEGV"; None
        when the pipe just closed (the child is exiting)."""
        text = b""
        give_up = time.monotonic() + 0.5
        while b"\n" not in text and time.monotonic() < give_up:
            if not multiprocessing.connection.wait([self.fatal], timeout=0.1):
                continue
            piece = os.read(self.fatal.fileno(), 4096)
            if not piece:
                break
            text += piece
        if not text:
            return None
        what = text.decode(errors="replace").splitlines()[0].removeprefix("Fatal Python error: ").strip()
        return f"killed by {FATAL_SIGNALS.get(what, what or 'a fatal signal')}"

    def _death(self) -> str:
        """How a child that stopped talking ended: its signal or exit status, once it is reaped."""
        self.process.join(timeout=1)
        if self.process.exitcode is None:  # alive with its pipes closed: it is ending anyway
            self.process.kill()
            self.process.join(timeout=5)
        return describe_exit(self.process.exitcode)

    def started(self) -> None:
        """Waits for the child's first message; a child that dies before it failed to start (RuntimeError)."""
        try:
            status, _ = self.receive()
        except ChildCrashed as crash:
            raise RuntimeError(
                f"the decoder process failed to start ({crash.cause}); see its traceback in stderr. "
                "A script that decodes videos needs `if __name__ == '__main__':` around its entry point"
            ) from None
        if status != "started":
            raise RuntimeError(f"decoding '{self.filename}': unexpected first message {status!r} from the decoder")

    def next_message(self) -> tuple[str, Any]:
        """The next message that is not a failure: a failure the child reported, or its death, is raised."""
        try:
            status, payload = self.receive()
        except ChildCrashed as crash:
            raise VideoDecodeError(
                f"could not decode '{self.filename}': the decoder crashed ({crash.cause}{log_tail(self.workdir)}); "
                "the file is probably corrupt: re-encode it or send another file"
            ) from None
        raise_child_failure(status, payload, self.filename)
        return status, payload

    def close(self) -> None:
        for end in (self.receiver, self.fatal):
            end.close()
        if self.process.is_alive():
            self.process.kill()
        if self.process.pid is not None:
            self.process.join()
        self.process.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def raise_child_failure(status: str, payload: Any, filename: str) -> None:
    """Raises what a child reported ("error": a typed VideoError; "decode_failed": the decoder could not
    decode; "failed": a bug); returns for any other status."""
    if status == "error":
        raise payload
    if status == "decode_failed":
        raise VideoDecodeError(
            f"could not decode '{filename}' ({payload}); the file is probably corrupt: "
            "re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4) or send another file"
        )
    if status == "failed":
        raise RuntimeError(f"decoding '{filename}' failed: {payload}")


def describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def log_tail(workdir: Path) -> str:
    try:
        lines = (workdir / "decoder.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f"; last decoder message: {lines[-1][:200]}" if lines else ""


# ---------------------------------------------------------------------------------------------------- child side

_fatal_pipe = None  # the child's end of its fatal-signal pipe, kept open for faulthandler


def enter_workdir(workdir: str, fatal) -> None:
    """Child side, first thing: work in `workdir`, send stderr to its decoder.log, report fatal signals on
    `fatal` (see the module's docstring)."""
    global _fatal_pipe
    os.chdir(workdir)
    log = os.open(os.path.join(workdir, "decoder.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 2)
    os.close(log)
    _fatal_pipe = fatal
    faulthandler.enable(file=fatal.fileno(), all_threads=False)


def report_failure(conn, error: BaseException) -> None:
    """Child side: sends what went wrong as the parent's `raise_child_failure` reads it."""
    if isinstance(error, VideoError):
        conn.send(("error", error))
    elif type(error).__module__.startswith(("decord", "torchcodec")) or isinstance(error, DecoderRefusal):
        conn.send(("decode_failed", f"{error}".strip().splitlines()[-1][:300]))
    else:  # our bug or the machine's trouble (MemoryError), not the upload's: the server answers 500
        conn.send(("failed", f"{type(error).__name__}: {error}"))


class DecoderRefusal(Exception):
    """A decoder library refused the stream with an error of its own (decord's, torchcodec's RuntimeError)."""


# ---------------------------------------------------------------------------------------------------- fork server

_context: multiprocessing.context.BaseContext | None = None


def fork_context() -> multiprocessing.context.BaseContext:
    """forkserver with the decoders preloaded: children start as forks of a clean, single-threaded process
    that has already imported them (spawn would pay ~0.4 s of imports per request)."""
    global _context
    if _context is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(preload_modules())
        else:
            _context = multiprocessing.get_context("spawn")
    return _context


def preload_modules() -> list[str]:
    """What the fork server imports once, so that children start with it loaded.

    The decoders (decord's and torchcodec's FFmpeg take 0.2-0.5 s to import; neither starts threads at import,
    so forking after them is safe), torch (the child fits frames to the backbone's size), and the modules of the
    children's own functions: a child that imports anything after the fork was seen to wait ~0.2 s on an import
    lock in `tzn serve`. Every child also re-imports the parent's __main__ (multiprocessing's `prepare`), so
    that module is named too.
    """
    modules = ["multiprocessing.popen_forkserver", "engine.video.child", "engine.video.decode", "engine.video.readers",
               "decord", "torch",
               "torchcodec.decoders"]  # fmt: skip
    modules += [name for name in ("torchvision", "onnxruntime") if name in sys.modules]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        modules.append(spec.name)
    return modules


def _ready_child(conn, fatal, workdir: str) -> None:
    try:
        conn.send(("started", None))
        conn.send(("done", None))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server stopped while it warmed up (SIGTERM during start-up): nobody waits for the answer


def warm_up_children() -> None:
    """Starts the fork server now (about a second with torch loaded) instead of during the first request."""
    child = DecoderChild(_ready_child, (), timeout_s=120, filename="warm-up")
    try:
        child.started()
        child.next_message()
    finally:
        child.close()
