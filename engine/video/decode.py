"""Decoding an upload on the CPU, isolated: its info, then its sampled frames, a chunk at a time.

    with Decoding(source, request, decoder="decord") as decoding:     # the cheap checks, then the child
        decoding.info                                                  # VideoInfo (duration, frames, format)
        for chunk in decoding.chunks():                                # FrameChunk: frames fitted to the
            ...                                                        #   backbone's size, their times

The child (engine/video/child.py) reads the stream's info and format first, refuses a video longer than the
limit, then decodes `chunk_frames` sampled frames at a time, fits them to `size` (engine/video/frames.py) and
sends each chunk through the pipe. The pipe is the back-pressure: the child blocks on `send` until the parent
has taken the previous chunk, so memory is bounded by the chunk size whatever the video's length.

On a GPU host the child stops after the info when NVDEC decodes the stream (`nvdec=True`): the frames are
then decoded in this process, into GPU memory (engine/video/nvdec.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from engine.errors import VideoTooLongError
from engine.video.child import DecoderChild, DecoderRefusal, enter_workdir, report_failure
from engine.video.choice import NVDEC, decoder_for
from engine.video.container import precheck
from engine.video.frames import fit_frames
from engine.video.info import VideoInfo
from engine.video.readers import FrameIndex, open_decord, playable, read_frames, sampled_count, stream_info
from engine.video.sampling import Spans
from engine.video.source import VideoSource, child_path

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DecodeRequest:
    """What to decode: the frames on screen at `fps` ticks (every frame when None), only those inside `spans`
    ([begin, end) s of presentation time; the whole video when None), fitted to `size` (H, W) (the source's size
    when None), `chunk_frames` at a time; refused beyond `max_duration_s`, stopped after `timeout_s` (the whole
    decode, start included). The child decodes at most `batch_bytes` of source-size RGB frames at once, and
    fits them before it gathers a chunk (a chunk of 256 frames of 4K is 6.4 GB at the source's size: a 12 s 4K
    upload took the child to 6.5 GB; at 112 x 112 it is 9.6 MB). Small batches stay in the CPU's cache between
    the decoder's conversion and the resize: with 16 MB (5 frames of 720p) decord decodes bench/decode_cpu.py's
    30 s of 720p at 8 fps in 2.36 CPU seconds against 2.57 with 256 MB (that script prints both), and at 30 fps
    (`--fps 30`) in 3.31 against 4.23.

    `coarse_size` (H, W): every `coarse_every`-th sampled frame (numbered from 0 among all sampled frames) is also
    fitted to that size, from the same decoded frame, and comes in its chunk's `coarse`: one decode serves a
    temporal zoom whose coarse pass reads smaller frames than its windows (engine/zoom.py).

    `one_pass_bytes`: the most bytes all sampled frames at `size` may take for one decode to serve both of the
    zoom's passes (its FrameSpool budget). A longer video is sampled every `coarse_every`-th tick only, fitted to
    `coarse_size` (or `size`): the coarse pass alone, whose windows are decoded again (`for_duration`, which the
    CPU decoders' child and NvdecPool.decode both apply once they know the video's duration)."""

    fps: float | None = None
    size: tuple[int, int] | None = None
    chunk_frames: int = 256
    max_duration_s: float | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    spans: Spans | None = None
    batch_bytes: int = 16 * 2**20
    coarse_size: tuple[int, int] | None = None
    coarse_every: int = 1
    one_pass_bytes: int | None = None

    def __post_init__(self):
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 1):
            raise ValueError(f"size must be (height, width) >= 1, got {self.size}")
        if self.chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.spans is not None and self.fps is None:
            raise ValueError("spans need a sampling rate (fps)")
        if self.coarse_size is not None and (len(self.coarse_size) != 2 or min(self.coarse_size) < 1):
            raise ValueError(f"coarse_size must be (height, width) >= 1, got {self.coarse_size}")
        if self.coarse_every < 1:
            raise ValueError(f"coarse_every must be >= 1, got {self.coarse_every}")
        if self.one_pass_bytes is not None and (self.one_pass_bytes < 0 or self.fps is None or self.size is None):
            raise ValueError(f"one_pass_bytes needs fps and size and must be >= 0, got {self.one_pass_bytes}")

    def for_duration(self, duration_s: float) -> DecodeRequest:
        """The request to decode a video of `duration_s`: this one, or the coarse pass's alone where the frames
        would not fit in `one_pass_bytes` (see the class)."""
        if self.one_pass_bytes is None:
            return self
        # counted before anything is decoded, as ceil(duration x fps) frames: at least as many as sampling gives
        frames = int(np.ceil(duration_s * self.fps))
        if frames * self.size[0] * self.size[1] * 3 <= self.one_pass_bytes:
            return replace(self, one_pass_bytes=None)
        return replace(
            self, fps=self.fps / self.coarse_every, size=self.coarse_size or self.size, coarse_size=None,
            coarse_every=1, one_pass_bytes=None,
        )  # fmt: skip


@dataclass(frozen=True)
class FrameChunk:
    """Sampled frames (n, H, W, 3) uint8 RGB (on the CPU, or on the GPU from NVDEC) and their presentation times
    (n,) s; `first` is the index of the chunk's first frame among all sampled frames, `total` their number.
    `coarse`: with a DecodeRequest's `coarse_size`, the chunk's frames numbered a multiple of its `coarse_every`,
    at that size, in order; else None."""

    frames: Tensor
    times: np.ndarray
    first: int
    total: int
    coarse: Tensor | None = None


class Decoding:
    """One video decoded by `decoder` ("decord" or "torchcodec") in an isolated child; see the module's
    docstring. `decoder=None` reads the info only. With `nvdec=True` the child stops after the info when NVDEC
    decodes the stream (`self.decoder` is then None). `cancelled()` is polled while waiting for the child
    (JobCancelledError). Always close it (a `with` block does)."""

    def __init__(
        self,
        source: VideoSource,
        request: DecodeRequest,
        decoder: str | None,
        *,
        nvdec: bool = False,
        tmp_dir: str | os.PathLike | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ):
        precheck(source)
        self.request = request
        payload = {"source": source.for_child(), "name": source.name, "decoder": decoder, "nvdec": nvdec,
                   **request.__dict__}  # fmt: skip
        self.child = DecoderChild(
            decode_child, (payload,), timeout_s=request.timeout_s, filename=source.name, tmp_dir=tmp_dir,
            cancelled=cancelled,
        )  # fmt: skip
        try:
            self.child.started()
            status, info = self.child.next_message()
            if status != "info":
                raise RuntimeError(f"decoding '{source.name}': expected the video's info, got {status!r}")
        except BaseException:
            self.child.close()
            raise
        self.info = VideoInfo(**info)
        if self.info.stream.remuxed:
            log.info("%s (packets copied)", self.info.stream.remuxed)  # it names the upload
        chosen = decoder and decoder_for(decoder, self.info.stream, nvdec)
        self.decoder = None if chosen == NVDEC else chosen

    def chunks(self) -> Iterator[FrameChunk]:
        while True:
            status, payload = self.child.next_message()
            if status == "done":
                return
            if status != "chunk":
                raise RuntimeError(f"decoding '{self.child.filename}': unexpected message {status!r}")
            frames, times, first, total, coarse = payload
            yield FrameChunk(torch.from_numpy(frames), times, first, total,
                             None if coarse is None else torch.from_numpy(coarse))  # fmt: skip

    def close(self) -> None:
        self.child.close()

    def __enter__(self) -> Decoding:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def decode_child(conn, fatal, workdir: str, request: dict[str, Any]) -> None:
    """The child's side of `Decoding`."""
    conn.send(("started", None))
    enter_workdir(workdir, fatal)
    try:
        name = request["name"]
        path, remuxed = playable(child_path(request["source"]), name)
        reader = open_decord(path, name)  # its index gives every path the frame times, and decord its frames
        info, index = stream_info(path, name, reader, remuxed)
        limit = request["max_duration_s"]
        if limit is not None and info["duration_s"] > limit:
            raise VideoTooLongError(info["duration_s"], limit, name)
        conn.send(("info", info))
        fields = {field: request[field] for field in DecodeRequest.__dataclass_fields__}
        request = {**request, **DecodeRequest(**fields).for_duration(info["duration_s"]).__dict__}
        decoder = request["decoder"] and decoder_for(request["decoder"], info["stream"], request["nvdec"])
        if decoder != "decord":
            reader = None  # decord's decoder and its frame buffers go before the other decoder opens
        if decoder is not None and decoder != NVDEC:
            _send_chunks(conn, decoder, path, name, index, info, request, reader)
        conn.send(("done", None))
    except BrokenPipeError:  # the parent stopped listening (cancelled, or gone)
        pass
    except BaseException as error:
        report_failure(conn, error)
    finally:
        conn.close()


def _send_chunks(
    conn, decoder: str, path: str, name: str, index: FrameIndex, info: dict, request: dict, reader=None
) -> None:  # fmt: skip
    """The sampled frames to the parent, `chunk_frames` at a time, fitted to `size` (and every `coarse_every`-th
    to `coarse_size` as well), decoded at most `batch_bytes` at a time (DecodeRequest)."""
    spans, size, chunk = request["spans"], request["size"], request["chunk_frames"]
    total, first = sampled_count(index, request["fps"], spans), 0
    frame_bytes = info["width"] * info["height"] * 3
    batch = chunk if size is None else max(1, min(chunk, request["batch_bytes"] // frame_bytes))
    frames_iter = read_frames(decoder, path, name, index, request["fps"], batch, reader, spans)
    pending: list[tuple[Tensor, np.ndarray]] = []  # fitted frames and their times
    # fitted to coarse_size, and their numbers (None: no coarse_size)
    coarse: list[tuple[Tensor, np.ndarray]] | None = None if request["coarse_size"] is None else []
    decoded = 0
    while True:
        try:
            frames, times = next(frames_iter)
        except StopIteration:
            break
        except RuntimeError as error:  # torchcodec's failure on a corrupt packet in the middle of the stream
            raise DecoderRefusal(str(error)) from error
        numbers = decoded + np.arange(len(times))
        decoded += len(times)
        if coarse is not None:
            coarse.append(coarse_frames(frames, numbers, request["coarse_size"], request["coarse_every"]))
        pending.append((frames if size is None else fit_frames(frames, tuple(size)), times))
        while sum(len(t) for _, t in pending) >= chunk:
            _send_chunk(conn, pending, coarse, request["coarse_size"], chunk, first, total)
            first += chunk
    if pending:
        _send_chunk(conn, pending, coarse, request["coarse_size"], sum(len(t) for _, t in pending), first, total)


def coarse_frames(frames: Tensor, numbers: np.ndarray, size: tuple[int, int], every: int) -> tuple[Tensor, np.ndarray]:
    """The frames numbered `numbers` whose number is a multiple of `every`, fitted to `size`, and their numbers."""
    picked = np.flatnonzero(numbers % every == 0)
    if not len(picked):
        return torch.zeros((0, *size, 3), dtype=torch.uint8, device=frames.device), numbers[:0]
    chosen = frames if len(picked) == len(numbers) else frames[torch.as_tensor(picked, device=frames.device)]
    return fit_frames(chosen, tuple(size)), numbers[picked]


def _send_chunk(conn, pending: list, coarse: list | None, coarse_size, count: int, first: int, total: int) -> None:
    """Sends the first `count` pending frames, with the coarse frames among them (numbered below first + count);
    what is left stays in the lists."""
    frames, times = _take(pending, count)
    small = None
    if coarse:
        numbers = np.concatenate([n for _, n in coarse])
        small = _take(coarse, int(np.searchsorted(numbers, first + count)))[0].numpy()
    elif coarse is not None:  # none left: their shape from the request
        small = np.zeros((0, *coarse_size, 3), dtype=np.uint8)
    conn.send(("chunk", (frames.numpy(), times, first, total, small)))


def _take(pending: list[tuple[Tensor, np.ndarray]], count: int) -> tuple[Tensor, np.ndarray]:
    """The first `count` rows of the (tensor, array) pairs in `pending`, which keeps the rest."""
    frames, values = torch.cat([f for f, _ in pending]), np.concatenate([v for _, v in pending])
    pending[:] = [(frames[count:], values[count:])] if len(values) > count else []
    return frames[:count], values[:count]


def decode_frames(
    source: VideoSource | str | os.PathLike,
    request: DecodeRequest = DecodeRequest(),
    decoder: str = "decord",
    tmp_dir: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray, VideoInfo]:
    """Every sampled frame at once, as the reference the chunked paths are checked against: frames
    (N, H, W, 3) uint8, their presentation times (N,) s, the source's VideoInfo. Memory grows with the video."""
    if not isinstance(source, VideoSource):
        source = VideoSource.from_path(source)
    with Decoding(source, request, decoder, tmp_dir=tmp_dir) as decoding:
        chunks = list(decoding.chunks())
        info = decoding.info
    frames = torch.cat([chunk.frames for chunk in chunks]).numpy()
    return frames, np.concatenate([chunk.times for chunk in chunks]), info


def thumbnails(
    source: VideoSource | str | os.PathLike, count: int, height: int, decoder: str = "decord"
) -> list[tuple[float, np.ndarray]]:
    """`count` frames near the centres of equal slices of the video, `height` pixels high, as a request decodes
    them (by the decoder the file needs, turned as shown): [(time_s, (height, W, 3) uint8)], for the timeline
    picture (`tzn localize --plot`)."""
    info = probe_video(source)
    width = max(2, round(info.width * height / info.height / 2) * 2)
    # ticks every half slice from 0 s: the odd ones are the slices' centres
    request = DecodeRequest(fps=2 * count / info.duration_s, size=(height, width))
    frames, times, _ = decode_frames(source, request, decoder)
    return [(float(time_s), image) for time_s, image in zip(times[1::2], frames[1::2], strict=True)][:count]


def probe_video(source: VideoSource | str | os.PathLike, timeout_s: float = 30.0) -> VideoInfo:
    """The source's VideoInfo (duration, frames, size, stream format), read in the isolated child."""
    if not isinstance(source, VideoSource):
        source = VideoSource.from_path(source)
    with Decoding(source, DecodeRequest(timeout_s=timeout_s), None) as decoding:
        return decoding.info
