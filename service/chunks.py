"""Decode and extract features chunk by chunk, so that a video of any length never has all its frames in memory.

The decoder still runs in an isolated child process (service.decode's forkserver): the child decodes
`chunk_frames` sampled frames at a time and sends each chunk through the pipe. The pipe is the
back-pressure: the child blocks on `send` until the parent has taken the previous chunk, so at most one
chunk waits in the child and one is worked on in the parent. Memory is then bounded by the chunk size
plus the clip features (512 floats per clip, ~7 MB per hour at the CPU default), not by the video length.

Clips overlap (clip k holds sampled frames [k * stride, k * stride + F)), so each chunk's leftovers (the
frames, or per-frame features, that a later clip still needs) are carried into the next chunk. The
result equals whole-video extraction: same clips, same features (tests/service/test_chunks.py).

Progress is reported as `progress(stage, fraction)`: stage "decoding" while waiting for the decoder,
"features" while the backbone runs; fraction is the share of the sampled frames handled so far, scaled
into [0, FEATURES_SHARE] of the whole job (the head and postprocessing take the rest).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.container import precheck
from service.decode import (
    VideoInfo,
    _describe_exit,
    _log_tail,
    _mp_context,
    _open_reader,
    _video_info,
    end_child,
    raise_child_failure,
    sample_indices,
)
from service.errors import JobCancelledError, VideoDecodeError, VideoError, VideoTimeoutError, VideoTooLongError

CHUNK_FRAMES = 256  # sampled frames per chunk: 9.6 MB at 112 x 112; a multiple of the backbone batch (64)
FEATURES_SHARE = 0.95  # share of a job's progress taken by decoding + features (the head is fast)
_POLL_S = 0.2  # how often a wait for the decoder checks for cancellation

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class FrameChunk:
    """Sampled frames (N, H, W, 3) uint8 RGB and their presentation times (N,) seconds; `first` is the index
    of the chunk's first frame among all sampled frames, `total` the number of sampled frames in the video."""

    frames: np.ndarray
    timestamps: np.ndarray
    first: int
    total: int


def decode_chunks(
    path: str | Path,
    *,
    sample_fps: float,
    size: tuple[int, int],
    chunk_frames: int = CHUNK_FRAMES,
    max_duration_s: float | None = None,
    timeout_s: float,
    filename: str | None = None,
    tmp_dir: str | Path | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    on_info: Callable[[VideoInfo], None] | None = None,
) -> Iterator[FrameChunk]:
    """Sampled frames of the video at `path`, `chunk_frames` at a time, decoded in an isolated child process.

    Sampling and errors as `service.decode.decode_frames` (VideoTooLongError beyond `max_duration_s`,
    VideoTimeoutError past `timeout_s` for the whole decode). `on_info` receives the source's VideoInfo before
    the first chunk. When `cancelled()` turns true the child is killed and JobCancelledError raised. Closing
    the generator early (break, exception in the consumer) also ends the child.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    path, name = precheck(path, filename)
    request = {
        "path": str(path),
        "filename": name,
        "sample_fps": sample_fps,
        "size": tuple(size),
        "chunk_frames": chunk_frames,
        "max_duration_s": max_duration_s,
    }
    deadline = time.monotonic() + timeout_s
    workdir = Path(tempfile.mkdtemp(prefix="tzn-decode-", dir=tmp_dir))
    ctx = _mp_context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_chunk_child_main, args=(sender, str(workdir), request), daemon=True)
    try:
        process.start()
        sender.close()
        started = _receive(receiver, process, deadline, cancelled, name, timeout_s, workdir, starting=True)
        assert started[0] == "started", started
        while True:
            status, payload = _receive(receiver, process, deadline, cancelled, name, timeout_s, workdir)
            if status == "info":
                if on_info is not None:
                    on_info(VideoInfo(**payload))
            elif status == "chunk":
                yield FrameChunk(*payload)
            elif status == "done":
                return
            else:
                raise_child_failure(status, payload, name)
                raise RuntimeError(f"decoding '{name}': unexpected message {status!r} from the decoder")
    finally:
        end_child(process, receiver, workdir)


def _receive(receiver, process, deadline, cancelled, name, timeout_s, workdir, starting=False) -> tuple[str, Any]:
    """The child's next message; raises on cancellation, timeout, or a child that died without a word."""
    while True:
        if cancelled():
            raise JobCancelledError(f"decoding '{name}' was cancelled")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise VideoTimeoutError(
                f"decoding '{name}' took longer than {timeout_s:g} s and was stopped: "
                "try again later or send a shorter or lower-resolution video"
            )
        if multiprocessing.connection.wait([receiver, process.sentinel], timeout=min(_POLL_S, remaining)):
            break
    try:
        return receiver.recv()
    except (EOFError, OSError):
        process.join(timeout=5)
        if starting:
            raise RuntimeError(
                f"the decoder process failed to start ({_describe_exit(process.exitcode)}); see its traceback in "
                "stderr. A script that decodes videos needs `if __name__ == '__main__':` around its entry point"
            ) from None
        raise VideoDecodeError(
            f"could not decode '{name}': the decoder crashed ({_describe_exit(process.exitcode)}"
            f"{_log_tail(workdir)}); the file is probably corrupt: re-encode it or send another file"
        ) from None


def _chunk_child_main(conn, workdir: str, request: dict[str, Any]) -> None:
    import os

    conn.send(("started", None))
    log = os.open(os.path.join(workdir, "decoder.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 2)
    try:
        path, name = request["path"], request["filename"]
        reader = _open_reader(path, name)
        info, starts, end_s = _video_info(reader, name)
        if request["max_duration_s"] is not None and info["duration_s"] > request["max_duration_s"]:
            raise VideoTooLongError(info["duration_s"], request["max_duration_s"], name)
        indices = sample_indices(starts, end_s, request["sample_fps"])
        # frame_times: segment frame indices count the frames the file really holds (VideoInfo.frame_at)
        conn.send(("info", {**info, "frame_times": tuple(starts.tolist())}))
        del reader  # the un-resized reader holds decoder state; the resizing one replaces it
        reader = _open_reader(path, name, request["size"])
        step = request["chunk_frames"]
        for first in range(0, len(indices), step):
            chunk = indices[first : first + step]
            frames = reader.get_batch(chunk.tolist()).asnumpy()
            conn.send(("chunk", (frames, starts[chunk], first, len(indices))))
        conn.send(("done", None))
    except VideoError as error:
        conn.send(("error", error))
    except BrokenPipeError:  # the parent stopped listening (cancelled, or gone)
        pass
    except Exception as error:
        if type(error).__module__.startswith("decord"):
            conn.send(("decode_failed", f"{error}".strip().splitlines()[-1][:300]))
        else:
            conn.send(("failed", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------- clip carry


def complete_clips(buffered: int, frames_per_clip: int, clip_stride: int) -> int:
    """Whole clips in `buffered` consecutive sampled frames that start at a clip boundary."""
    if buffered < frames_per_clip:
        return 0
    return (buffered - frames_per_clip) // clip_stride + 1


class ClipCarry:
    """Items (frames or per-frame features) streamed in chunks -> the windows of whole clips, in order.

    `push(items)` returns the items of the clips completed so far, as a contiguous block starting at a clip
    boundary, plus the number of clips in it; what a later clip still needs stays buffered. `finish()`
    returns the remaining buffer when no clip was ever complete (a video shorter than one clip: the caller
    pads it as the whole-video path does), else nothing.
    """

    def __init__(self, frames_per_clip: int, clip_stride: int):
        self.frames_per_clip, self.clip_stride = frames_per_clip, clip_stride
        self.buffer: np.ndarray | Any = None
        self.clips = 0
        self.skip = 0  # items before the next clip's start not yet received (when clip_stride > frames_per_clip)

    def push(self, items) -> tuple[Any, int]:
        dropped = min(self.skip, len(items))
        items, self.skip = items[dropped:], self.skip - dropped
        buffer = items if self.buffer is None else _concat(self.buffer, items)
        count = complete_clips(len(buffer), self.frames_per_clip, self.clip_stride)
        used = buffer[: (count - 1) * self.clip_stride + self.frames_per_clip] if count else buffer[:0]
        rest = buffer[count * self.clip_stride :]
        self.skip += max(0, count * self.clip_stride - len(buffer))
        self.buffer = rest.copy() if isinstance(rest, np.ndarray) else rest.clone()  # frees the consumed part
        self.clips += count
        return used, count

    def finish(self):
        if self.clips == 0 and self.buffer is not None and len(self.buffer):
            return self.buffer
        return None


def _concat(a, b):
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b])
    import torch

    return torch.cat([a, b])
