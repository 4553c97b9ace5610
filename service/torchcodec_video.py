"""Decoding with torchcodec: on the CPU (testable anywhere) and with NVDEC on CUDA hosts, where frames are
decoded into GPU memory, resized there, and never copied to the host.

The frames chosen are those of the decord path (`service.decode.sample_indices`): the frame on screen at each
tick t0 + k / sample_fps before the end of the last frame, t0 being the first frame's presentation time.
torchcodec's `get_frames_played_at` answers exactly "the frame on screen at t" from the container's
timestamps (seek_mode="exact" scans them), so the choice is by time, as with decord.

decord stays the CPU decoder and the default without a GPU (service/decode.py, isolated in a child process);
this module is what the CUDA path uses (service/gpu_features.py). NVDEC runs in the server process: the
hardware decoder parses only the bitstream, and a decoder per GPU is kept warm (`warm_up`).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from service.decode import VideoInfo
from service.errors import EmptyVideoError, NotAVideoError, VideoDecodeError, VideoTooLongError

_TICK_TOLERANCE_S = 1e-6  # as sample_indices: a frame stamped 0.09999999 belongs to the tick at 0.1


@dataclass(frozen=True)
class Stream:
    """What the scan found: the source's VideoInfo, and the first frame's start and the last frame's end (s)."""

    info: VideoInfo
    begin_s: float
    end_s: float


def sample_times(begin_s: float, end_s: float, sample_fps: float) -> np.ndarray:
    """(N,) seconds: the ticks begin_s + k / sample_fps before end_s (at least one), shifted by the tolerance
    and kept inside [begin_s, end_s) so that the frame on screen at each tick is defined."""
    ticks = int(np.ceil((end_s - begin_s) * sample_fps - 1e-6))
    grid = begin_s + np.arange(max(ticks, 1)) / sample_fps + _TICK_TOLERANCE_S
    return np.minimum(grid, np.nextafter(end_s, begin_s))


def open_decoder(path: str | os.PathLike, device: str = "cpu", filename: str | None = None, threads: int = 0):
    """A torchcodec VideoDecoder over the whole file (exact seek mode), with failures as typed VideoErrors.
    `threads` is FFmpeg's CPU decoding threads (0: as many as FFmpeg chooses)."""
    from torchcodec.decoders import VideoDecoder

    name = filename or os.path.basename(path)
    try:
        return VideoDecoder(str(path), device=device, seek_mode="exact", num_ffmpeg_threads=threads)
    except ValueError as error:
        if "no video stream" in str(error).lower() or "best stream" in str(error).lower():
            raise NotAVideoError(f"'{name}' has no video stream: upload a video file") from error
        raise VideoDecodeError(f"could not decode '{name}': {str(error).splitlines()[0][:200]}") from error
    except RuntimeError as error:
        raise VideoDecodeError(
            f"could not decode '{name}' ({str(error).splitlines()[0][:200]}): the file is probably corrupt; "
            "re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4) or send it again"
        ) from error


def stream_of(decoder, name: str) -> Stream:
    meta = decoder.metadata
    frames = meta.num_frames
    if not frames:
        raise EmptyVideoError(f"'{name}' has a video stream with no frames: send a video with content")
    begin_s, end_s = float(meta.begin_stream_seconds), float(meta.end_stream_seconds)
    # the header's rate, as decord reports it (the scan's average is frames / duration, off for sparse AVIs)
    fps = getattr(meta, "average_fps_from_header", None) or meta.average_fps or frames / max(end_s - begin_s, 1e-9)
    fps = float(fps)
    info = VideoInfo(filename=name, duration_s=end_s, fps=fps, frames=frames, width=meta.width, height=meta.height)
    return Stream(info, begin_s, end_s)


def resize_frames(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, 3, H, W) uint8 -> (N, size[0], size[1], 3) uint8, bilinear with antialiasing, on the frames' device."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames.permute(0, 2, 3, 1).contiguous()
    resized = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def iter_sampled(
    decoder, times: np.ndarray, size: tuple[int, int] | None, chunk: int = 64
) -> Iterator[tuple[Tensor, np.ndarray]]:
    """Frames on screen at `times`, `chunk` at a time: ((n, H, W, 3) uint8 on the decoder's device, (n,) pts s).
    Times must be increasing (the decoder then reads the file once, front to back)."""
    for first in range(0, len(times), chunk):
        batch = decoder.get_frames_played_at(times[first : first + chunk].tolist())
        frames = batch.data
        frames = resize_frames(frames, size) if size else frames.permute(0, 2, 3, 1).contiguous()
        yield frames, batch.pts_seconds.cpu().numpy().astype(np.float64)


def iter_segments(
    path: str | os.PathLike,
    times: np.ndarray,
    size: tuple[int, int] | None,
    *,
    device: str = "cpu",
    segments: int = 1,
    chunk: int = 64,
    decoder=None,
    filename: str | None = None,
) -> Iterator[tuple[Tensor, np.ndarray]]:
    """iter_sampled over `segments` contiguous parts of `times` decoded concurrently, each by its own decoder
    (which starts at the keyframe before its first tick), yielded in time order: the same frames as one
    decoder, and one video spread over several NVDEC engines. `decoder` (optional) serves the first part.
    Each part runs at most 4 chunks ahead of the consumer, so memory stays bounded."""
    parts = [part for part in np.array_split(times, max(1, min(segments, len(times)))) if len(part)]
    queues = [queue.Queue(maxsize=4) for _ in parts]

    def work(index: int) -> None:
        try:
            target = torch.device(device)
            if target.type == "cuda":
                # NVDEC needs a current CUDA context in this thread (else "failed to create decoder: 201")
                torch.cuda.set_device(target.index if target.index is not None else 0)
                torch.cuda.synchronize()
            own = decoder if (index == 0 and decoder is not None) else open_decoder(path, device, filename)
            for item in iter_sampled(own, parts[index], size, chunk):
                queues[index].put(item)
            queues[index].put(None)
        except BaseException as error:  # handed to the consumer, raised there
            queues[index].put(error)

    for index in range(len(parts)):
        threading.Thread(target=work, args=(index,), daemon=True, name=f"decode-{index}").start()
    for part_queue in queues:
        while (item := part_queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item


def decode_sampled(
    path: str | os.PathLike,
    *,
    sample_fps: float,
    size: tuple[int, int] | None = None,
    device: str = "cpu",
    max_duration_s: float | None = None,
    filename: str | None = None,
    threads: int = 0,
) -> tuple[Tensor, np.ndarray, VideoInfo]:
    """decode_frames' contract through torchcodec: frames (N, H, W, 3) uint8 on `device`, timestamps (N,) s,
    the source's VideoInfo. `size=(H, W)` resizes (on the GPU when decoding there)."""
    name = filename or os.path.basename(path)
    decoder = open_decoder(path, device, name, threads)
    stream = stream_of(decoder, name)
    if max_duration_s is not None and stream.info.duration_s > max_duration_s:
        raise VideoTooLongError(stream.info.duration_s, max_duration_s, name)
    times = sample_times(stream.begin_s, stream.end_s, sample_fps)
    pieces, stamps = [], []
    for frames, pts in iter_sampled(decoder, times, size):
        pieces.append(frames)
        stamps.append(pts)
    return torch.cat(pieces), np.concatenate(stamps), stream.info


def warm_up(device: str, path: str | os.PathLike) -> None:
    """Decodes a few frames of `path` on `device`: creates the CUDA context and torchcodec's cached NVDEC
    decoder, which otherwise dominate the first small request."""
    decoder = open_decoder(path, device)
    stream = stream_of(decoder, os.path.basename(path))
    decoder.get_frames_played_at(sample_times(stream.begin_s, stream.end_s, 4.0)[:4].tolist())
