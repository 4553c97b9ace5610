"""The one clip windower: which sampled frames make which clip, for every decoder and device.

Clip k holds sampled frames [k * stride, k * stride + F) and is centred at (k * stride + F / 2) / fps seconds
after the first sampled frame (`BackboneSpec.clip_times`). A video shorter than one clip gives one clip, its
last frame repeated to fill it. Frames after the last whole clip are dropped.

The items windowed are frames (clip models: the clip goes into the backbone) or per-frame features (2D
models: the backbone ran once per frame, a clip's feature is the mean over its frames); either way a (N, ...)
tensor. They arrive in chunks, so `ClipWindower` keeps what a later clip still needs (clips overlap when
stride < F) and skips what no clip uses (stride > F).
"""

from __future__ import annotations

import torch
from torch import Tensor


def whole_clips(count: int, frames_per_clip: int, clip_stride: int) -> int:
    """Clips that fit entirely in `count` consecutive items starting at a clip boundary."""
    return 0 if count < frames_per_clip else (count - frames_per_clip) // clip_stride + 1


def clip_windows(items: Tensor, frames_per_clip: int, clip_stride: int) -> Tensor:
    """(N, ...) -> (K, frames_per_clip, ...): the whole clips of items starting at a clip boundary (a view)."""
    count = whole_clips(len(items), frames_per_clip, clip_stride)
    if count == 0:
        return items.new_empty((0, frames_per_clip, *items.shape[1:]))
    windows = items.unfold(0, frames_per_clip, clip_stride)[:count]  # (K, ..., F)
    return windows.movedim(-1, 1)


def pad_to_clip(items: Tensor, frames_per_clip: int) -> Tensor:
    """(n, ...) with 0 < n < frames_per_clip -> (1, frames_per_clip, ...): the last item repeated."""
    padding = items[-1:].expand(frames_per_clip - len(items), *items.shape[1:])
    return torch.cat([items, padding])[None]


class ClipWindower:
    """Items arriving in chunks -> the clips they complete, in order (see the module's docstring)."""

    def __init__(self, frames_per_clip: int, clip_stride: int):
        if frames_per_clip < 1 or clip_stride < 1:
            raise ValueError(f"need frames_per_clip >= 1 and clip_stride >= 1, got {frames_per_clip}, {clip_stride}")
        self.frames_per_clip, self.clip_stride = frames_per_clip, clip_stride
        self.buffer: Tensor | None = None
        self.skip = 0  # items before the next clip's start not yet received (when clip_stride > frames_per_clip)
        self.clips = 0

    def push(self, items: Tensor) -> Tensor:
        """(n, ...) -> (K, frames_per_clip, ...): the clips these items complete (K may be 0)."""
        dropped = min(self.skip, len(items))
        items, self.skip = items[dropped:], self.skip - dropped
        buffer = items if self.buffer is None else torch.cat([self.buffer, items])
        clips = clip_windows(buffer, self.frames_per_clip, self.clip_stride)
        count = len(clips)
        consumed = count * self.clip_stride
        self.skip += max(0, consumed - len(buffer))
        self.buffer = buffer[consumed:].clone()  # a copy: the consumed part is freed with the clips
        self.clips += count
        return clips

    def finish(self) -> Tensor | None:
        """The one padded clip of a video shorter than a clip, (1, frames_per_clip, ...); else None."""
        if self.clips or self.buffer is None or len(self.buffer) == 0:
            return None
        self.clips = 1
        return pad_to_clip(self.buffer, self.frames_per_clip)
