"""The one sampling rule of every decoder: sample by time, not by frame index.

A video sampled at `fps` gives the frame on screen at each tick t0 + k / fps before the end of its last frame,
t0 being the first frame's presentation time: the last frame whose start is at or before the tick. So 25,
29.97, 30 fps and variable-frame-rate sources all give the same temporal spacing, and every decoder (decord,
torchcodec on the CPU, NVDEC) picks the same frames: decord through `frames_on_screen` over the frames' start
times, torchcodec through `get_frames_played_at(ticks)`, which answers the same question.
"""

from __future__ import annotations

import numpy as np

# A frame stamped 0.09999999 s belongs to the tick at 0.1 s: containers round timestamps to their time base.
TICK_TOLERANCE_S = 1e-6
# decord gives frame times as float32 seconds, rounded by up to half a float32 step: 1.9 us at 32 s, 0.12 ms at
# 1 h. So a tick also reaches one float32 step past itself: a 30 fps frame that starts at 964 / 30 s and is stamped
# 32.13333511 belongs to the tick at 32.1333333, as torchcodec's float64 times say (the step stays far below any
# frame interval).


Spans = tuple[tuple[float, float], ...]  # [begin, end) s intervals of presentation time


def sample_ticks(begin_s: float, end_s: float, fps: float, spans: Spans | None = None) -> np.ndarray:
    """(N,) seconds: the ticks begin_s + k / fps before end_s (at least one), moved by the tolerance and kept
    inside [begin_s, end_s), so that the frame on screen at each tick is defined. With `spans`, only the ticks
    inside one of them (possibly none): a window decodes the frames the whole video's sampling would give there."""
    if not fps > 0:
        raise ValueError(f"sampling needs fps > 0, got {fps}")
    end_margin = TICK_TOLERANCE_S + float(np.spacing(np.float32(abs(end_s))))  # a float32 end, as the frames
    count = int(np.ceil((end_s - end_margin - begin_s) * fps))
    ticks = np.minimum(nudged(begin_s + np.arange(max(count, 1)) / fps), np.nextafter(end_s, begin_s))
    return ticks if spans is None else ticks[inside_spans(ticks, spans)]


def nudged(times: np.ndarray) -> np.ndarray:
    """`times` moved past themselves by the tolerance and a float32 step: a frame starting at one of them (as a
    container or decord rounds it) is on screen at its nudged time."""
    return times + TICK_TOLERANCE_S + np.spacing(np.abs(times).astype(np.float32)).astype(np.float64)


def inside_spans(ticks: np.ndarray, spans: Spans) -> np.ndarray:
    """(N,) bool: which `ticks` fall inside one of the [begin, end) `spans`."""
    inside = np.zeros(len(ticks), dtype=bool)
    for low, high in spans:
        inside |= (ticks >= low) & (ticks < high)
    return inside


def frames_on_screen(starts: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """Index of the frame on screen at each tick: `starts` (F,) frame start times, non-decreasing."""
    return np.clip(np.searchsorted(starts, ticks, side="right") - 1, 0, len(starts) - 1)


def sample_indices(
    starts: np.ndarray, end_s: float, fps: float | None = None, spans: Spans | None = None
) -> np.ndarray:
    """Frame indices to decode from frames starting at `starts` (F,) s, the last ending at `end_s`: those on
    screen at the ticks of `fps` (inside `spans` when given), or every frame when fps is None."""
    if fps is None:
        if spans is not None:
            raise ValueError("spans need a sampling rate (fps)")
        return np.arange(len(starts))
    return frames_on_screen(starts, sample_ticks(float(starts[0]), end_s, fps, spans))
