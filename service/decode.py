"""Video decoding with decord, isolated from the server process.

Every decode runs in a child process (multiprocessing "forkserver", with this module preloaded, so a
child starts in ~15 ms): a decoder that segfaults or hangs on a hostile upload fails only that request.
The child writes the frames to a temporary .npy file that the parent loads and deletes; only small
metadata crosses the pipe.

Failures are typed (service/errors.py, all subclasses of `VideoError`) and their messages say what to do.
Cheap checks of the file come first, in this process (service/container.py).

Sampling is by time, not by frame index: `decode_frames(path, sample_fps=8)` returns the frame shown at
t0, t0 + 1/8 s, t0 + 2/8 s, ... using the container's per-frame timestamps, so 25, 29.97, 30 fps and
variable-frame-rate sources all give the same temporal spacing.

As with any multiprocessing code, a script that calls these functions needs the
`if __name__ == "__main__":` guard around its entry point (uvicorn and console scripts have it).
"""

from __future__ import annotations

import contextlib
import faulthandler
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from service.container import SUPPORTED, precheck, sniff_container
from service.errors import (
    EmptyVideoError,
    JobCancelledError,
    NotAVideoError,
    VideoDecodeError,
    VideoError,
    VideoTimeoutError,
    VideoTooLargeError,
    VideoTooLongError,
)

DEFAULT_MAX_BYTES = 2 * 1024**3  # decoded frames held in memory for one request
DEFAULT_TIMEOUT_S = 120.0
_DECODE_CHUNK = 32  # frames per decord batch; bounds the child's memory beyond the output file
_POLL_S = 0.2  # how often a wait for the decoder checks for cancellation


# ---------------------------------------------------------------------------------------------------- types


class VideoInfo(BaseModel):
    """What the source file holds (not the decoded sample): the `video` object of the /localize answer.

    `frames` counts the frames the decoder finds; `frame_times` (not part of the answer) holds the start time
    of each, so that a time maps to the index of the frame on screen (`frame_at`) even when the header's
    frame rate promises more frames than the file holds (opencv-doc's tree.avi: 68 frames over 29.6 s at
    "15 fps").
    """

    model_config = ConfigDict(frozen=True)

    filename: str
    duration_s: float
    fps: float
    frames: int
    width: int
    height: int
    frame_times: tuple[float, ...] = Field((), exclude=True, repr=False)

    def frame_at(self, seconds: float) -> int:
        """Index of the frame shown at `seconds` (the last frame starting at or before it), in [0, frames)."""
        if not self.frame_times:
            return min(max(int(round(seconds * self.fps)), 0), max(self.frames - 1, 0))
        index = int(np.searchsorted(np.asarray(self.frame_times), seconds + 1e-6, side="right")) - 1
        return min(max(index, 0), self.frames - 1)


# ---------------------------------------------------------------------------------------------------- public API


def probe_video(path: str | os.PathLike, *, filename: str | None = None, timeout_s: float = 30.0) -> VideoInfo:
    """Duration, frame rate, frame count and size of the video at `path`, read in an isolated process.

    `filename` is the name shown in errors and in the result (the upload's name; default: the path's name).
    """
    path, name = precheck(path, filename)
    with run_isolated(_probe_child, (str(path), name), timeout_s=timeout_s, filename=name) as (result, _):
        return VideoInfo(**result)


def decode_frames(
    path: str | os.PathLike,
    *,
    sample_fps: float | None = None,
    frame_step: int | None = None,
    size: tuple[int, int] | None = None,
    max_frames: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration_s: float | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    filename: str | None = None,
    tmp_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, VideoInfo]:
    """Decode sampled frames in an isolated process.

    Returns frames (N, H, W, 3) uint8 RGB, timestamps (N,) seconds (presentation time of each returned frame)
    and the source's VideoInfo.

    Sampling: `sample_fps` takes the frame shown at each tick of a uniform grid t0 + k / sample_fps over the
    video's time (frames repeat if sample_fps exceeds the source rate); `frame_step` takes every n-th
    decoded frame; neither takes every frame. `size=(H, W)` resizes in the decoder (exact size, no crop).
    Refuses with VideoTooLongError beyond `max_duration_s`, with VideoTooLargeError when the sample has
    more than `max_frames` frames or more than `max_bytes` bytes, with VideoTimeoutError after `timeout_s`.
    `tmp_dir` holds the transfer file (default: the system's temporary directory).
    """
    if sample_fps is not None and frame_step is not None:
        raise ValueError("give sample_fps or frame_step, not both")
    if sample_fps is not None and not sample_fps > 0:
        raise ValueError(f"sample_fps must be > 0, got {sample_fps}")
    if frame_step is not None and frame_step < 1:
        raise ValueError(f"frame_step must be >= 1, got {frame_step}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (height, width) >= 1, got {size}")
    path, name = precheck(path, filename)
    request = {
        "path": str(path),
        "filename": name,
        "sample_fps": sample_fps,
        "frame_step": frame_step or 1,
        "size": tuple(size) if size else None,
        "max_frames": max_frames,
        "max_bytes": max_bytes,
        "max_duration_s": max_duration_s,
    }
    with run_isolated(_decode_child, (request,), timeout_s=timeout_s, filename=name, tmp_dir=tmp_dir) as (
        result,
        workdir,
    ):
        frames = np.load(workdir / "frames.npy")
        return frames, result["timestamps"], VideoInfo(**result["info"])


def sample_indices(
    starts: np.ndarray, end_s: float, sample_fps: float | None = None, frame_step: int = 1
) -> np.ndarray:
    """Frame indices to decode. `starts` (F,) presentation times (s, non-decreasing), `end_s` end of the last frame.

    With `sample_fps`, index k is the last frame whose start <= t0 + k / sample_fps (the frame on screen at that
    tick), for every tick before `end_s`. Otherwise every `frame_step`-th frame.
    """
    if sample_fps is None:
        return np.arange(0, len(starts), frame_step)
    t0 = float(starts[0])
    ticks = int(np.ceil((end_s - t0) * sample_fps - 1e-6))
    grid = t0 + np.arange(max(ticks, 1)) / sample_fps
    # 1e-6 s tolerance: a frame stamped 0.09999999 belongs to the tick at 0.1
    return np.clip(np.searchsorted(starts, grid + 1e-6, side="right") - 1, 0, len(starts) - 1)


# ---------------------------------------------------------------------------------------------------- child side


def _open_reader(path: str, name: str, size: tuple[int, int] | None = None):
    """decord.VideoReader, with decord's generic failures turned into typed errors."""
    import decord

    height, width = size if size else (-1, -1)
    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height)
    except AssertionError as error:  # decord asserts frame count > 0
        raise EmptyVideoError(f"'{name}' has a video stream with no frames: send a video with content") from error
    except Exception as error:  # decord raises DECORDError / RuntimeError for everything
        message = str(error)
        if "cannot find video stream" in message:
            if _has_audio(path):
                raise NotAVideoError(f"'{name}' has no video stream (audio only): {SUPPORTED}") from error
            raise NotAVideoError(f"'{name}' has no video stream: {SUPPORTED}") from error
        with open(path, "rb") as f:
            kind = sniff_container(f.read(1024))
        if kind == "unknown":
            raise NotAVideoError(f"'{name}' is not in a recognised video format: {SUPPORTED}") from error
        raise VideoDecodeError(
            f"could not decode '{name}' ({kind}): the file is truncated or corrupt; "
            "re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4) or send it again"
        ) from error


def _has_audio(path: str) -> bool:
    import decord

    try:
        decord.AudioReader(path)
    except Exception:
        return False
    return True


def _video_info(reader, name: str) -> tuple[dict[str, Any], np.ndarray, float]:
    """Info of an un-resized reader, its frame start times (F,) and the end time of the last frame."""
    frames = len(reader)
    pts = reader.get_frame_timestamp(np.arange(frames))
    starts = pts[:, 0].astype(np.float64)
    end_s = float(pts[-1, 1])
    height, width = reader[0].shape[:2]
    fps = float(reader.get_avg_fps())
    if not np.isfinite(fps) or fps <= 0:
        fps = frames / max(end_s - starts[0], 1e-9)
    info = {
        "filename": name,
        "duration_s": end_s,
        "fps": fps,
        "frames": frames,
        "width": width,
        "height": height,
    }
    return info, starts, end_s


def _probe_child(workdir: Path, path: str, name: str) -> dict[str, Any]:
    info, _, _ = _video_info(_open_reader(path, name), name)
    return info


def _decode_child(workdir: Path, request: dict[str, Any]) -> dict[str, Any]:
    path, name = request["path"], request["filename"]
    reader = _open_reader(path, name)
    info, starts, end_s = _video_info(reader, name)
    if request["max_duration_s"] is not None and info["duration_s"] > request["max_duration_s"]:
        raise VideoTooLongError(info["duration_s"], request["max_duration_s"], name)
    indices = sample_indices(starts, end_s, request["sample_fps"], request["frame_step"])
    height, width = request["size"] or (info["height"], info["width"])
    frame_bytes = height * width * 3
    limit = request["max_bytes"]
    if request["max_frames"] is not None:
        limit = min(limit, request["max_frames"] * frame_bytes)
    if len(indices) * frame_bytes > limit:
        raise VideoTooLargeError(len(indices), frame_bytes, limit, name)

    if request["size"]:
        reader = _open_reader(path, name, request["size"])
    out = np.lib.format.open_memmap(
        workdir / "frames.npy", mode="w+", dtype=np.uint8, shape=(len(indices), height, width, 3)
    )
    for first in range(0, len(indices), _DECODE_CHUNK):
        chunk = indices[first : first + _DECODE_CHUNK]
        out[first : first + len(chunk)] = reader.get_batch(chunk.tolist()).asnumpy()
    out.flush()
    del out
    return {"info": {**info, "frame_times": tuple(starts.tolist())}, "timestamps": starts[indices]}


# ---------------------------------------------------------------------------------------------------- isolation

_context: multiprocessing.context.BaseContext | None = None


def _mp_context() -> multiprocessing.context.BaseContext:
    """forkserver with this module preloaded: children start as forks of a clean, single-threaded process
    that has already imported numpy and decord (spawn would pay ~0.4 s of imports per request)."""
    global _context
    if _context is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _context = multiprocessing.get_context("forkserver")
            _context.set_forkserver_preload(_preload_modules())
        else:
            _context = multiprocessing.get_context("spawn")
    return _context


def _ready_child(workdir: Path) -> bool:
    return True


def warm_up_decoder() -> None:
    """Starts the fork server now (about a second with torch loaded) instead of during the first request."""
    with run_isolated(_ready_child, (), timeout_s=120, filename="warm-up"):
        pass


def _preload_modules() -> list[str]:
    """What the fork server imports once, so that children start with it loaded.

    Every child re-imports the parent's __main__ before it runs (multiprocessing's `prepare`); for `tzn serve`
    that pulls in torch, ~1.3 s per request unless the server already holds it. (multiprocessing ignores a
    "__main__" entry here, so the heavy modules the parent has loaded are named instead.)
    """
    # decord itself: importing it (its bundled FFmpeg) takes 0.2-0.5 s, which every request paid in its child
    # until it was preloaded here. It starts no threads at import, so forking after it is safe.
    modules = [__name__, "decord"] + [name for name in ("torch", "torchvision", "onnxruntime") if name in sys.modules]
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name and not spec.name.endswith("__main__"):
        modules.append(spec.name)
    return modules


def _child_main(conn, fatal, workdir: str, target: Callable[..., Any], args: tuple) -> None:
    conn.send(("started", None))  # tells the parent that a later silence is a crash, not a failed start
    enter_workdir(workdir, fatal)
    try:
        conn.send(("ok", target(Path(workdir), *args)))
    except VideoError as error:
        conn.send(("error", error))
    except Exception as error:
        if type(error).__module__.startswith("decord"):  # e.g. a corrupt packet in the middle of the stream
            conn.send(("decode_failed", f"{error}".strip().splitlines()[-1][:300]))
        else:  # our bug or the machine's trouble (MemoryError), not the upload's: the server answers 500
            conn.send(("failed", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


_fatal_pipe = None  # the child's end of its fatal-signal pipe, kept open for faulthandler


def enter_workdir(workdir: str, fatal) -> None:
    """Child side, first thing: work in `workdir` (so that whatever a crash handler drops in the current
    directory goes with it), send decoder chatter (ffmpeg warnings) to a log the parent can quote, and report
    a fatal signal at once on the `fatal` pipe: faulthandler writes "Fatal Python error: Segmentation fault"
    there before a crash handler installed on the machine runs, so the parent learns of the crash even where
    that handler then takes its time or turns the signal into an exit status."""
    global _fatal_pipe
    os.chdir(workdir)
    log = os.open(os.path.join(workdir, "decoder.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 2)
    os.close(log)
    _fatal_pipe = fatal
    faulthandler.enable(file=fatal.fileno(), all_threads=False)


# faulthandler's names of the fatal signals it reports
_FATAL_SIGNALS = {
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

    The child runs `target(conn, fatal, workdir, *args)`. `receive()` returns its next message
    `(status, payload)`; it raises VideoTimeoutError past the deadline (start included), JobCancelledError as
    soon as `cancelled()` is true, and ChildCrashed the moment the child reports a fatal signal or is found dead
    without a message, whoever else holds its pipes and whatever a crash handler does afterwards. `close()`
    kills the child if it still runs, reaps it (no zombie) and removes its workdir.
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
        ctx = _mp_context()
        self.receiver, sender = ctx.Pipe(duplex=False)
        self.fatal, fatal_sender = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=target, args=(sender, fatal_sender, str(self.workdir), *args), daemon=True)
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
            ready = multiprocessing.connection.wait(waiting, timeout=min(_POLL_S, remaining))
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
        return f"killed by {_FATAL_SIGNALS.get(what, what or 'a fatal signal')}"

    def _death(self) -> str:
        """How a child that stopped talking ended: its signal or exit status, once it is reaped."""
        self.process.join(timeout=1)
        if self.process.exitcode is None:  # alive with its pipes closed: it is ending anyway
            self.process.kill()
            self.process.join(timeout=5)
        return _describe_exit(self.process.exitcode)

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

    def crash_error(self, crash: ChildCrashed) -> VideoDecodeError:
        return VideoDecodeError(
            f"could not decode '{self.filename}': the decoder crashed ({crash.cause}{_log_tail(self.workdir)}); "
            "the file is probably corrupt: re-encode it or send another file"
        )

    def close(self) -> None:
        for end in (self.receiver, self.fatal):
            end.close()
        if self.process.is_alive():
            self.process.kill()
        if self.process.pid is not None:
            self.process.join()
        self.process.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.contextmanager
def run_isolated(
    target: Callable[..., Any],
    args: tuple,
    *,
    timeout_s: float,
    filename: str,
    tmp_dir: str | os.PathLike | None = None,
) -> Iterator[tuple[Any, Path]]:
    """Run `target(workdir, *args)` in a child process; yield (its return value, workdir).

    A child that dies while working (a fatal signal, an exit) raises VideoDecodeError at once, naming how it
    died; one that runs past `timeout_s` (start included) is killed and raises VideoTimeoutError; a VideoError
    raised in the child is re-raised here. A child that cannot start, or fails for a reason other than the
    file, raises RuntimeError. The workdir and the child are gone when the block exits, whatever happened.
    `target` must be importable by name (a module-level function), since the child is a fresh process.
    """
    child = DecoderChild(_child_main, (target, args), timeout_s=timeout_s, filename=filename, tmp_dir=tmp_dir)
    try:
        child.started()
        try:
            status, payload = child.receive()
        except ChildCrashed as crash:
            raise child.crash_error(crash) from None
        raise_child_failure(status, payload, filename)
        yield payload, child.workdir
    finally:
        child.close()


def raise_child_failure(status: str, payload: Any, filename: str) -> None:
    """Raises what a decode child reported ("error": a typed VideoError; "decode_failed": decord could not
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


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _log_tail(workdir: Path) -> str:
    try:
        lines = (workdir / "decoder.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f"; last decoder message: {lines[-1][:200]}" if lines else ""
