"""Inside the isolated decoder child: what the stream holds, and its frames from decord or torchcodec on the CPU.

Both decoders give frames at the source's resolution in RGB, converted by FFmpeg's swscale with the stream's
colour tags, identical pixel for pixel (tests/engine/test_decoders.py); the child then fits them to the
backbone's size with the one resize rule (engine/video/frames.py). The frames chosen are those on screen at the
sampling ticks (engine/video/sampling.py), from decord's frame index for decord and from torchcodec's own for
torchcodec: the same frames.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import Tensor

from engine.errors import EmptyVideoError, NotAVideoError, VideoDecodeError
from engine.video.container import SUPPORTED, sniff_container
from engine.video.info import StreamFormat, describe_pixel_format
from engine.video.sampling import Spans, sample_indices, sample_ticks

CPU_DECODERS = ("decord", "torchcodec")


def _prime_abc_caches() -> None:
    """decord converts every argument with isinstance checks against numbers.Integral and numbers.Number. The
    first check of a type walks every class registered under those ABCs: with torch's modules loaded, about
    0.15 s, which every decoder child paid again (the cache lives in the process). Made once here, in the fork
    server that preloads this module (engine/video/child.py), the children inherit the answers."""
    for value in ("", 0, 0.0, True, b"", bytearray(), None, ()):
        isinstance(value, numbers.Integral), isinstance(value, numbers.Number)


_prime_abc_caches()


def open_decord(path: str, name: str):
    """A decord.VideoReader over the whole file (frames as torch tensors), decord's failures typed."""
    import decord

    decord.bridge.set_bridge("torch")
    try:
        return decord.VideoReader(path, ctx=decord.cpu(0))
    except AssertionError as error:  # decord asserts frame count > 0
        raise EmptyVideoError(f"'{name}' has a video stream with no frames: send a video with content") from error
    except Exception as error:  # decord raises DECORDError / RuntimeError for everything
        if "cannot find video stream" in str(error):
            detail = " (audio only)" if _has_audio(path) else ""
            raise NotAVideoError(f"'{name}' has no video stream{detail}: {SUPPORTED}") from error
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


def open_torchcodec(path: str, name: str, device: str = "cpu", seek_mode: str = "exact"):
    """A torchcodec VideoDecoder (frames (N, H, W, 3)), its failures typed."""
    from torchcodec.decoders import VideoDecoder

    try:
        return VideoDecoder(path, device=device, seek_mode=seek_mode, num_ffmpeg_threads=0, dimension_order="NHWC")
    except ValueError as error:
        if "no video stream" in str(error).lower() or "best stream" in str(error).lower():
            raise NotAVideoError(f"'{name}' has no video stream: {SUPPORTED}") from error
        raise VideoDecodeError(f"could not decode '{name}': {str(error).splitlines()[0][:200]}") from error
    except RuntimeError as error:
        raise VideoDecodeError(
            f"could not decode '{name}' ({str(error).splitlines()[0][:200]}): the file is probably corrupt; "
            "re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4) or send it again"
        ) from error


def stream_format(path: str) -> StreamFormat:
    """Codec, pixel format and colour tags from the file's headers (torchcodec, no decoding); an empty
    StreamFormat when torchcodec cannot read them (decord may still decode the file on the CPU)."""
    from torchcodec.decoders import VideoDecoder

    try:
        metadata = VideoDecoder(path, seek_mode="approximate").metadata
    except Exception:
        return StreamFormat()
    pixel_format = metadata.pixel_format or ""
    depth, chroma, implied_range = describe_pixel_format(pixel_format)
    return StreamFormat(
        codec=metadata.codec or "", pixel_format=pixel_format, bit_depth=depth, chroma=chroma,
        color_space=metadata.color_space, color_range=implied_range,
    )  # fmt: skip


def stream_info(path: str, name: str, reader=None) -> tuple[dict[str, Any], np.ndarray, float]:
    """The source's VideoInfo fields (frame times and stream format included), its frame start times (F,) s
    and the end of its last frame, s. Frame times come from decord's index on every path, so that every decoder
    answers with the same frame numbers. `reader`: a decord reader of `path` already open."""
    reader = reader or open_decord(path, name)
    frames = len(reader)
    pts = reader.get_frame_timestamp(np.arange(frames))
    starts = pts[:, 0].astype(np.float64)
    end_s = float(pts[-1, 1])
    height, width = reader[0].shape[:2]
    fps = float(reader.get_avg_fps())
    if not np.isfinite(fps) or fps <= 0:
        fps = frames / max(end_s - starts[0], 1e-9)
    info = {
        "filename": name, "duration_s": end_s, "fps": fps, "frames": frames, "width": width, "height": height,
        "frame_times": tuple(starts.tolist()), "stream": stream_format(path),
    }  # fmt: skip
    return info, starts, end_s


def read_frames(
    decoder: str, path: str, name: str, starts: np.ndarray, end_s: float, fps: float | None, chunk: int,
    reader=None, spans: Spans | None = None,
) -> Iterator[tuple[Tensor, np.ndarray]]:  # fmt: skip
    """The frames on screen at the ticks of `fps` (every frame when None; inside `spans` when given), `chunk` at a
    time: ((n, H, W, 3) uint8 RGB at the source's size, (n,) presentation times s). `reader`: a decord reader of
    `path` already open (its index is not built twice)."""
    if decoder == "decord":
        reader = reader or open_decord(path, name)
        indices = sample_indices(starts, end_s, fps, spans)
        for first in range(0, len(indices), chunk):
            batch = indices[first : first + chunk]
            yield reader.get_batch(batch.tolist()), starts[batch]
    elif decoder == "torchcodec":
        reader = open_torchcodec(path, name)
        if fps is None:
            for first in range(0, len(starts), chunk):
                batch = reader.get_frames_at(list(range(first, min(first + chunk, len(starts)))))
                yield batch.data, batch.pts_seconds.numpy().astype(np.float64)
            return
        ticks = sample_ticks(float(starts[0]), end_s, fps, spans)
        for first in range(0, len(ticks), chunk):
            batch = reader.get_frames_played_at(ticks[first : first + chunk].tolist())
            yield batch.data, batch.pts_seconds.numpy().astype(np.float64)
    else:
        raise ValueError(f"unknown CPU decoder {decoder!r}: choose one of {', '.join(CPU_DECODERS)}")


def sampled_count(starts: np.ndarray, end_s: float, fps: float | None, spans: Spans | None = None) -> int:
    return len(starts) if fps is None else len(sample_ticks(float(starts[0]), end_s, fps, spans))
