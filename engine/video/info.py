"""What a video file holds: its stream format (codec, pixel format, colour) and the `video` object of an answer."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class StreamFormat(BaseModel):
    """The coded stream, as the decoder child reads it from the file's headers.

    `pixel_format` is FFmpeg's name (yuv420p, yuvj420p, yuv444p, yuv420p10le, ...); `chroma` "4:2:0", "4:2:2",
    "4:4:4" or "gray"; `color_space` the matrix tag (bt709, smpte170m, ...; None when untagged, which every
    decoder reads as BT.601); `color_range` "pc" (full) or "tv" (limited: also what an untagged stream is);
    `decoder` names the one CPU decoder that gets this file's frames right where only one does (decord for an AVI
    with B-frames, torchcodec for a cut whose edit list hides frames; engine/video/readers.py, `frame_index`);
    `cpu_only` keeps it off NVDEC: its frames are decoded front to back only (NVDEC's parts seek), or the CPU
    decoders decode a remux of it (an MPEG-TS, `readers.playable`); `seek_mode` is torchcodec's for it;
    `rotation` the display matrix's turn in degrees (a phone's portrait video: 90 or -90; 0 when none), which the
    CPU decoders apply (the frames come out as shown); `remuxed` why the CPU decoders decode a remux of the upload
    (`readers.playable`; None when they decode the upload itself); `width` and `height` the frames' size as the
    headers give it (0 when they do not).
    """

    model_config = ConfigDict(frozen=True)

    codec: str = ""
    pixel_format: str = ""
    bit_depth: int = 8
    chroma: str = "4:2:0"
    color_space: str | None = None
    color_range: str = "tv"
    decoder: str | None = None
    cpu_only: bool = False
    seek_mode: str = "exact"
    rotation: int = 0
    remuxed: str | None = None
    width: int = 0
    height: int = 0


def describe_pixel_format(pixel_format: str) -> tuple[int, str, str]:
    """FFmpeg's pixel format name -> (bit depth, chroma subsampling, range implied by the name)."""
    name = pixel_format.lower()
    depth = 8
    for bits in (16, 14, 12, 10, 9):
        if f"p{bits}" in name:
            depth = bits
            break
    if name.startswith(("gray", "y8", "y16")):
        chroma = "gray"
    elif "444" in name or name.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "rgba", "bgra")):
        chroma = "4:4:4"
    elif "422" in name or name.startswith(("yuyv", "uyvy", "nv16")):
        chroma = "4:2:2"
    elif "411" in name or "410" in name:
        chroma = "4:1:1"
    else:
        chroma = "4:2:0"
    full = name.startswith("yuvj")
    return depth, chroma, "pc" if full else "tv"


class VideoSummary(BaseModel):
    """What the source file holds (not the decoded sample): the `video` object of every answer. `frames` counts
    the frames the decoder finds."""

    model_config = ConfigDict(frozen=True)

    filename: str
    duration_s: float
    fps: float
    frames: int
    width: int
    height: int


class VideoInfo(VideoSummary):
    """VideoSummary, and what the engine needs beside it: `frame_times` holds the start time of each frame, so
    that a time maps to the index of the frame on screen (`frame_at`) even when the header's frame rate
    promises more frames than the file holds (opencv-doc's tree.avi: 68 frames over 29.6 s at "15 fps");
    `key_times` the start times of its keyframes, where the frame index knows them (NVDEC cuts its parts there:
    engine/video/nvdec.py, `split_ticks`; empty otherwise); `stream` is the coded format the decoder was chosen
    by. None of the three is part of the answer.
    """

    frame_times: tuple[float, ...] = Field((), exclude=True, repr=False)
    key_times: tuple[float, ...] = Field((), exclude=True, repr=False)
    stream: StreamFormat = Field(StreamFormat(), exclude=True)

    def frame_at(self, seconds: float) -> int:
        """Index of the frame shown at `seconds` (the last frame starting at or before it), in [0, frames)."""
        if not self.frame_times:
            return min(max(int(round(seconds * self.fps)), 0), max(self.frames - 1, 0))
        index = int(np.searchsorted(np.asarray(self.frame_times), seconds + 1e-6, side="right")) - 1
        return min(max(index, 0), self.frames - 1)
