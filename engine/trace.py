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

    def zoom_points(self, zoom: dict, max_points: int = MAX_POINTS) -> list[float]:
        """For a zoom answer (engine/zoom.py's summary): the frames per second the backbone saw around each point,
        the coarse rate plus the zoom rate over the share of the point's span its windows cover; as many points as
        `depth_points`."""
        covered = window_cover(self.times_s, zoom["windows"])
        rates = zoom["coarse_fps"] + (zoom["zoom_fps"] - zoom["coarse_fps"]) * covered
        return downsample(rates, max_points).tolist()

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


def window_cover(times_s: np.ndarray, windows: list[list[float]]) -> np.ndarray:
    """(T,) the share, 0..1, of each position's span (half-way to its neighbours) that the [begin, end) `windows`
    (disjoint) cover."""
    times = np.asarray(times_s, dtype=np.float64)
    if len(times) == 0 or not windows:
        return np.zeros(len(times))
    half = np.diff(times) / 2 if len(times) > 1 else np.ones(0)
    low = times - np.concatenate([half[:1] if len(half) else [0.5], half])
    high = times + np.concatenate([half, half[-1:] if len(half) else [0.5]])
    spans = np.asarray(windows, dtype=np.float64)
    overlap = np.clip(
        np.minimum(high[:, None], spans[None, :, 1]) - np.maximum(low[:, None], spans[None, :, 0]), 0, None
    )
    return np.clip(overlap.sum(1) / np.maximum(high - low, 1e-12), 0.0, 1.0)


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
