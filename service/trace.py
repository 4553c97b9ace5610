"""What the answer carries for a picture, on request (`include=depth,boundary` on /localize).

Per feature position, the ATR depth (stem layers run, out of L_max) and, for BDR models, the boundary
distance fields, downsampled by bin means to at most `MAX_POINTS` so that an hour of video stays a small
answer. Off by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.errors import IncludeError
from service.schemas import INCLUDE_CHOICES, BoundaryTrace, DepthTrace

MAX_POINTS = 2000


@dataclass
class PositionTrace:
    """Per feature position of one video: times_s (T,) seconds, depth (T,) stem layers run (of max_depth),
    boundary (T, 2) BDR signed distances d_start, d_end in level-0 steps, or None without a BDR head."""

    times_s: np.ndarray
    depth: np.ndarray
    max_depth: int
    boundary: np.ndarray | None


def parse_include(text: str | None) -> frozenset[str]:
    """'depth,boundary' -> {'depth', 'boundary'}; None or '' -> {}."""
    if not text or not text.strip():
        return frozenset()
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in INCLUDE_CHOICES]
    if unknown:
        raise IncludeError(f"include={text!r}: choose from {', '.join(INCLUDE_CHOICES)}, comma-separated")
    return frozenset(names)


def downsample(values: np.ndarray, max_points: int = MAX_POINTS) -> np.ndarray:
    """(T, ...) -> (min(T, max_points), ...): means over consecutive, near-equal bins along the first axis."""
    values = np.asarray(values, dtype=np.float64)
    length = values.shape[0]
    if length <= max_points:
        return values.copy()
    edges = np.linspace(0, length, max_points + 1).round().astype(np.int64)
    sums = np.add.reduceat(values, edges[:-1], axis=0)
    counts = np.diff(edges).reshape((-1,) + (1,) * (values.ndim - 1))
    return sums / counts


def depth_trace(positions: PositionTrace, max_points: int = MAX_POINTS) -> DepthTrace:
    return DepthTrace(
        max_depth=positions.max_depth,
        times_s=downsample(positions.times_s, max_points).tolist(),
        mean_depth=downsample(positions.depth, max_points).tolist(),
    )


def boundary_trace(positions: PositionTrace, max_points: int = MAX_POINTS) -> BoundaryTrace | None:
    """None for models without a BDR head."""
    if positions.boundary is None:
        return None
    fields = downsample(positions.boundary, max_points)
    return BoundaryTrace(
        times_s=downsample(positions.times_s, max_points).tolist(),
        d_start=fields[:, 0].tolist(),
        d_end=fields[:, 1].tolist(),
    )
