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

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.container import precheck
from service.decode import (
    ChildCrashed,
    DecoderChild,
    VideoInfo,
    _open_reader,
    _video_info,
    enter_workdir,
    raise_child_failure,
    sample_indices,
)
from service.errors import VideoError, VideoTooLongError

CHUNK_FRAMES = 256  # sampled frames per chunk: 9.6 MB at 112 x 112; a multiple of the backbone batch (64)
FEATURES_SHARE = 0.95  # share of a job's progress taken by decoding + features (the head is fast)

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
    child = DecoderChild(_chunk_child_main, (request,), timeout_s=timeout_s, filename=name, tmp_dir=tmp_dir,
                         cancelled=cancelled)  # fmt: skip
    try:
        child.started()
        while True:
            try:
                status, payload = child.receive()
            except ChildCrashed as crash:
                raise child.crash_error(crash) from None
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
        child.close()


def _chunk_child_main(conn, fatal, workdir: str, request: dict[str, Any]) -> None:
    conn.send(("started", None))
    enter_workdir(workdir, fatal)
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
