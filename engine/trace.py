"""What a request can ask to see per feature position, for a picture: the ATR depth (stem layers run, out of
L_max) and, for BDR models, the boundary distance fields; downsampled by bin means to at most `MAX_POINTS`, so
that an hour of video stays a small answer. Computed only when asked for (`Localization.positions`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_POINTS = 2000


@dataclass
class PositionTrace:
    """Per feature position of one video: times_s (T,) seconds, depth (T,) stem layers run (of max_depth),
    boundary (T, 2) BDR signed distances d_start, d_end in level-0 steps, or None without a BDR head."""

    times_s: np.ndarray
    depth: np.ndarray
    max_depth: int
    boundary: np.ndarray | None

    def depth_points(self, max_points: int = MAX_POINTS) -> dict:
        """{"max_depth", "times_s", "mean_depth"}: the depth curve, at most `max_points` points."""
        return {
            "max_depth": self.max_depth,
            "times_s": downsample(self.times_s, max_points).tolist(),
            "mean_depth": downsample(self.depth, max_points).tolist(),
        }

    def boundary_points(self, max_points: int = MAX_POINTS) -> dict | None:
        """{"times_s", "d_start", "d_end"}: the boundary fields, at most `max_points` points; None without BDR."""
        if self.boundary is None:
            return None
        fields = downsample(self.boundary, max_points)
        return {
            "times_s": downsample(self.times_s, max_points).tolist(),
            "d_start": fields[:, 0].tolist(),
            "d_end": fields[:, 1].tolist(),
        }


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
