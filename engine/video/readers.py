"""Inside the isolated decoder child: what the stream holds, and its frames from decord or torchcodec on the CPU.

Both decoders give frames at the source's resolution in RGB, converted by FFmpeg's swscale with the stream's
colour tags, identical pixel for pixel (tests/engine/test_decoders.py); the child then fits them to the
backbone's size with the one resize rule (engine/video/frames.py). The frames chosen are those on screen at the
sampling ticks (engine/video/sampling.py), from decord's frame index for decord and from torchcodec's own for
torchcodec: the same frames.
"""

from __future__ import annotations

import logging
import numbers
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from engine.errors import EmptyVideoError, NotAVideoError, VideoDecodeError
from engine.video.choice import DECORD_MIN_WIDTH
from engine.video.container import SUPPORTED, sniff_container
from engine.video.info import StreamFormat, describe_pixel_format
from engine.video.sampling import TICK_TOLERANCE_S, Spans, nudged, sample_indices, sample_ticks

log = logging.getLogger(__name__)

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
        if "broken metadata" in str(error):  # e.g. 1000 fps in Matroska: no frame count, no frame rate FFmpeg finds
            raise VideoDecodeError(
                f"could not decode '{name}' ({kind}): decord cannot count its frames (its headers give neither a "
                "frame count nor a frame rate); remux it to MP4 (ffmpeg -i in -c copy out.mp4, no re-encoding) and "
                "send that"
            ) from error
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
        if any(words in str(error).lower() for words in ("no video stream", "best stream", "best video stream")):
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
        rotation=round(getattr(metadata, "rotation", None) or 0), width=metadata.width or 0,
        height=metadata.height or 0,
    )  # fmt: skip


@dataclass(frozen=True)
class FrameIndex:
    """The frames a player shows: their start times `starts` (F,) s, strictly increasing, and the end of the
    last. `decoder`: the one decoder that gets these frames right (see `frame_index`), or None for either;
    `in_order`: decord decodes them front to back, every one, never seeking; `seek_mode`: torchcodec's."""

    starts: np.ndarray
    end_s: float
    decoder: str | None = None
    in_order: bool = False
    seek_mode: str = "exact"


def frame_index(reader, name: str) -> FrameIndex:
    """The frames of a video as players show them, from decord's reader of it, where its index holds them:

    - decord gives a frame without a timestamp an absurd one (-3e17 s) and then seeks to the wrong frames. Every
      AVI with B-frames has such frames (an AVI stores no presentation times; opencv-doc's Megamind.avi: 182 of
      270 frames). torchcodec misnumbers those streams near their end. decord decoding front to back gives
      exactly ffmpeg's frames, and the frames of an AVI are evenly spaced by its frame rate: a stream whose times
      are not finite and strictly increasing is decoded that way (every frame decoded and converted, the
      sampled ones kept), at the container's frame rate.
    - a cut made with `ffmpeg -ss T -i in -c copy` starts at the keyframe before T, and its edit list hides the
      frames before T. decord lists those at negative times and, once it has seeked, counts them in its frame
      numbers (before it has, it does not: its frame 500 of such a cut is frame 461 on screen, its frame 39 is
      frame 39). The video is the frames from 0 s on, as in every player (a frame on screen at 0 s starts at
      0 s), and torchcodec, which follows the edit list, decodes it, seeking by time ("approximate"): its exact
      index leaves out the hidden keyframe, finds none before the first shown frames and decodes from the start
      for each (a 28.7 s 320x240 cut at 16 fps: 3.0 s instead of 0.2, the same frames)."""
    pts = reader.get_frame_timestamp(np.arange(len(reader)))
    starts = pts[:, 0].astype(np.float64)
    end_s = float(pts[-1, 1])
    if not (np.isfinite(pts).all() and (np.diff(starts) > 0).all()):
        fps = float(reader.get_avg_fps())
        if not (np.isfinite(fps) and fps > 0):
            raise VideoDecodeError(
                f"'{name}' has neither frame times nor a frame rate: re-encode it (e.g. ffmpeg -i in -c:v libx264 "
                "out.mp4) or send another file"
            )  # fmt: skip
        log.info("'%s': frames without timestamps (an AVI with B-frames?); decord decodes it in order", name)
        return FrameIndex(np.arange(len(reader)) / fps, len(reader) / fps, decoder="decord", in_order=True)
    if starts[0] < 0 < end_s:
        starts = starts[np.searchsorted(starts, TICK_TOLERANCE_S, side="right") - 1 :].copy()
        starts[0] = max(starts[0], 0.0)
        return FrameIndex(starts, end_s, decoder="torchcodec", seek_mode="approximate")
    return FrameIndex(starts, end_s)


SETPRIV = shutil.which("setpriv")


def dies_with_caller(command: list[str]) -> list[str]:
    """`command`, made to be killed when the process that starts it dies, where util-linux's setpriv is installed
    (Debian and its images: util-linux is essential): the decoder child is killed on a time limit or a cancel,
    and a remux it started must not outlive it."""
    return [SETPRIV, "--pdeathsig", "KILL", *command] if SETPRIV else command


# Containers the CPU decoders can need a copy of in another container: (its name, a file suffix for the advice,
# the container the copy goes into)
REMUXED = {
    "mpeg-ts": ("MPEG-TS", "ts", "mp4"),
    "mpeg-ps": ("MPEG program stream", "mpg", "mp4"),
    "ogg": ("Ogg", "ogv", "matroska"),
    "mkv": ("Matroska/WebM", "webm", "matroska"),
}


def playable(path: str, name: str, ffmpeg: str | None = shutil.which("ffmpeg")) -> tuple[str, str | None]:
    """The file to decode for `path`, and why it is a remux of `path` (None when it is `path`; `remux_reason`
    says which files are remuxed). The ffmpeg program remuxes in the working folder, packets copied, and the copy
    decodes as ffmpeg decodes the original; without the program such a file is refused, with what to do."""
    with open(path, "rb") as file:
        kind = sniff_container(file.read(1024))
    if kind not in REMUXED or (problem := remux_reason(path, name, kind)) is None:
        return path, None
    _, suffix, target_format = REMUXED[kind]
    target_suffix = "mkv" if target_format == "matroska" else target_format
    remux = f"remux it (ffmpeg -i in.{suffix} -c copy out.{target_suffix}, no re-encoding) and send that"
    if ffmpeg is None:
        raise VideoDecodeError(f"{problem}, and this server has no ffmpeg program to remux it: {remux}")
    target = os.path.abspath(f"remuxed.{target_suffix}")  # the child's working folder, removed with it
    held = path.removeprefix("/proc/self/fd/")  # an upload held in memory: the program reads the same descriptor
    done = subprocess.run(
        dies_with_caller([ffmpeg, "-v", "error", "-nostdin", "-y", "-i", path, "-map", "0:v:0", "-c", "copy", "-f",
                          target_format, target]),
        capture_output=True, text=True, pass_fds=(int(held),) if held != path else (),
    )  # fmt: skip
    if done.returncode != 0:
        raise VideoDecodeError(f"{problem}, and remuxing it failed ({done.stderr.strip()[:200]}): {remux}")
    return target, f"{problem}; remuxed to {target_suffix.upper()}"


def remux_reason(path: str, name: str, kind: str) -> str | None:
    """Why the CPU decoders need a remux of `path`, a `kind` of container (REMUXED), or None where they do not.

    - FFmpeg's seek to the start of an MPEG stream (TS, M2TS, PS) whose first frame is not a keyframe that decodes
      alone lands on a later keyframe, and decord and torchcodec both seek there: they gave a 30 s x264 TS from its
      second keyframe (8.3 s) on, numbered from 0, and an MPEG-2 program stream (.mpg, DVD's .vob) from its second
      GOP; an AVCHD camcorder's .mts did not decode at all. Such a file (its first frame, decoded, is not at the
      stream's start, or torchcodec cannot decode its start) goes to MP4.
    - decord cannot open an Ogg file (Theora .ogv: "broken metadata", its headers carry no duration or frame
      count): it goes to Matroska.
    - Neither opens a Matroska/WebM file without a duration or an index (a browser's MediaRecorder writes them so,
      as does ffmpeg streaming live): it goes to Matroska, where the copy gets both.
    An audio-only file raises NotAVideoError."""
    container = REMUXED[kind][0]
    try:
        decoder = open_torchcodec(path, name, seek_mode="approximate")  # reads the headers only
    except VideoDecodeError as error:
        if kind == "mkv":
            return f"the {container} file '{name}' has no duration in its headers, as recorders stream it ({error})"
        return f"could not decode the start of the {container} '{name}' ({error})"
    if kind == "mkv":
        return None
    if kind == "ogg":
        return f"decord cannot index the Ogg file '{name}' (no duration or frame count in its headers)"
    try:
        late = float(decoder.get_frame_at(0).pts_seconds) - (decoder.metadata.begin_stream_seconds or 0.0)
    except (VideoDecodeError, RuntimeError, IndexError) as error:
        return f"could not decode the start of the {container} '{name}' ({error})"
    if abs(late) <= 1e-3:
        return None
    return f"the decoders cannot reach the first {late:.2f} s of the {container} '{name}'"


def stream_info(path: str, name: str, reader=None, remuxed: str | None = None) -> tuple[dict[str, Any], FrameIndex]:
    """The source's VideoInfo fields (frame times and stream format included) and its FrameIndex. Frame times
    come from decord's index on every path (`frame_index`), so that every decoder answers with the same frame
    numbers. The frames' size comes from the headers where they give it and the stream is not turned: decoding
    the first frame to learn it cost a 60 s 720p request about 60 ms. `reader`: a decord reader of `path` already
    open; `remuxed`: why `path` is a remux of the upload (`playable`; only the CPU decoders see it), None when it
    is the upload."""
    reader = reader or open_decord(path, name)
    index = frame_index(reader, name)
    starts, end_s = index.starts, index.end_s
    frames = len(starts)
    fps = float(reader.get_avg_fps())
    if not np.isfinite(fps) or fps <= 0:
        fps = frames / max(end_s - starts[0], 1e-9)
    pins = {"decoder": index.decoder, "cpu_only": index.in_order or remuxed is not None,
            "seek_mode": index.seek_mode, "remuxed": remuxed}  # fmt: skip
    stream = stream_format(path).model_copy(update=pins)
    if stream.width and stream.height and stream.rotation == 0:
        height, width = stream.height, stream.width
    else:  # no size in the headers torchcodec reads, or a turn decord may not apply: the first frame says
        height, width = reader[0].shape[:2]
    keys = np.asarray(reader.get_key_indices(), dtype=np.int64) if index.decoder is None else np.empty(0, np.int64)
    info = {
        "filename": name, "duration_s": end_s, "fps": fps, "frames": frames, "width": width, "height": height,
        "frame_times": tuple(starts.tolist()), "key_times": tuple(starts[keys[keys < frames]].tolist()),
        "stream": stream,
    }  # fmt: skip
    return info, index


def read_frames(
    decoder: str, path: str, name: str, index: FrameIndex, fps: float | None, chunk: int, reader=None,
    spans: Spans | None = None,
) -> Iterator[tuple[Tensor, np.ndarray]]:  # fmt: skip
    """The frames on screen at the ticks of `fps` (every frame when None; inside `spans` when given), `chunk` at a
    time: ((n, H, W, 3) uint8 RGB at the source's size, (n,) presentation times s). `reader`: a decord reader of
    `path` already open (its index is not built twice)."""
    starts, end_s = index.starts, index.end_s
    if index.decoder not in (None, decoder):
        raise ValueError(f"{decoder} does not decode '{name}' right: {index.decoder} does (frame_index)")
    if decoder == "decord":
        indices = sample_indices(starts, end_s, fps, spans)
        try:
            if index.in_order:
                yield from _in_order(open_decord(path, name), indices, starts, chunk)
                return
            reader = reader or open_decord(path, name)
            for first in range(0, len(indices), chunk):
                batch = indices[first : first + chunk]
                yield reader.get_batch(batch.tolist()), starts[batch]
        except Exception as error:  # a size decord cannot convert, where no other decoder may run (choice.py)
            if "from_size == to_size" not in str(error):
                raise
            raise VideoDecodeError(
                f"could not decode '{name}': decord cannot convert frames of its width (some widths under "
                f"{DECORD_MIN_WIDTH} px), and only decord decodes this file right here (AV1, or an AVI with "
                "B-frames); re-encode it wider, e.g. ffmpeg -i in -vf scale=-2:240 -c:v libx264 out.mp4"
            ) from error
    elif decoder == "torchcodec":
        reader = open_torchcodec(path, name, seek_mode=index.seek_mode)
        if fps is None:  # every frame: the one on screen where each starts (torchcodec may hold fewer than its
            # metadata counts, AVI's packed B-frames, and numbers them its own way there)
            ticks = np.minimum(nudged(starts), np.nextafter(end_s, starts[0]))
        else:
            ticks = sample_ticks(float(starts[0]), end_s, fps, spans)
        for first in range(0, len(ticks), chunk):
            yield played_at(reader, ticks[first : first + chunk], float(starts[0]))
    else:
        raise ValueError(f"unknown CPU decoder {decoder!r}: choose one of {', '.join(CPU_DECODERS)}")


def played_at(decoder, ticks: np.ndarray, first_s: float) -> tuple[Tensor, np.ndarray]:
    """A torchcodec decoder's frames on screen at `ticks`, and their times, both in the frame index's time, where
    the first frame is at `first_s`. decord counts a stream's time from its first frame (an MPEG-TS that starts
    at 1.4 s, a fragmented MP4 whose B-frames put its first frame at 0.067 s: both start at 0 there), torchcodec
    keeps the container's: the difference goes onto the ticks and off the times."""
    offset = (decoder.metadata.begin_stream_seconds or 0.0) - first_s
    wanted = np.asarray(ticks, dtype=np.float64) + offset
    # torchcodec plays nothing from end_stream_seconds on, and where the last frame has no duration (packets that
    # carry none: an MP4 written from an AVI's packets, a last sample of length 0) the stream ends where that
    # frame starts: ticks from there on (the last ones, ticks ascend) show the last frame, which only its index
    # reaches
    end = decoder.metadata.end_stream_seconds
    shown = len(wanted) if end is None else int(np.searchsorted(wanted, end))
    played = decoder.get_frames_played_at(wanted[:shown].tolist())
    data, times = played.data, played.pts_seconds.cpu().numpy()
    if shown < len(wanted):
        last = decoder.get_frames_at([len(decoder) - 1])
        data = torch.cat([data, last.data.expand(len(wanted) - shown, *last.data.shape[1:])])
        times = np.concatenate([times, np.repeat(last.pts_seconds.cpu().numpy(), len(wanted) - shown)])
    return data, times.astype(np.float64) - offset


def _in_order(reader, indices: np.ndarray, starts: np.ndarray, chunk: int) -> Iterator[tuple[Tensor, np.ndarray]]:
    """decord's frames at `indices` (non-decreasing), decoding every frame from the first, never seeking nor
    skipping (its skip_frames counts packets, and an AVI's packed B-frames put two frames in one)."""
    frames, times, position, last = [], [], 0, None
    for wanted in indices.tolist():
        while position <= wanted:
            last = reader.next()
            position += 1
        frames.append(last)
        times.append(starts[wanted])
        if len(frames) == chunk:
            yield torch.stack(frames), np.asarray(times)
            frames, times = [], []
    if frames:
        yield torch.stack(frames), np.asarray(times)


def sampled_count(index: FrameIndex, fps: float | None, spans: Spans | None = None) -> int:
    starts = index.starts
    return len(starts) if fps is None else len(sample_ticks(float(starts[0]), index.end_s, fps, spans))
