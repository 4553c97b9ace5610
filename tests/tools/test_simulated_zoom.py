"""The grids the zoom rate's detector trains on besides real frames (tools/train_zoom.py, `simulated_grid`): real
frames in the windows around a simulated coarse pass's boundaries and at the coarse ticks, interpolated elsewhere,
as a zoomed request gives them to the "detector" refiner."""

from __future__ import annotations

import numpy as np
import pytest

from tools.train_zoom import FrameCache, simulated_grid

FPS = 30


@pytest.fixture
def cache(tmp_path) -> FrameCache:
    """A 10 s video at 30 fps, one action from 3 to 6 s, whose frame i has the features (i^2, 1): interpolation
    between frames shows."""
    frames = np.arange(10 * FPS, dtype=np.float64)
    np.save(tmp_path / "v.npy", np.stack([frames**2, np.ones_like(frames)], 1).astype(np.float32))
    np.save(tmp_path / "v.times.npy", frames / FPS)
    return FrameCache(tmp_path, {"database": {"v": {"subset": "training", "duration": 10.0,
                                                     "annotations": [{"segment": [3.0, 6.0]}]}}})  # fmt: skip


def simulated(cache, **noise):
    return simulated_grid(cache, "v", 2, 8, 0.5, np.random.default_rng(0), **noise).numpy()


def real_at(cache, ticks):
    return cache.at("v", 8)[0][ticks]


def test_the_windows_and_the_coarse_ticks_hold_real_frames_and_the_rest_is_interpolated(cache):
    grid = simulated(cache, miss=0.0, jitter_s=1e-9, false_rate=0.0)  # the candidate is the action itself
    assert grid.shape == (80, 2)
    windows = np.r_[20:28, 44:52]  # 8 ticks (2 x 0.5 s at 8 fps) around 3 s and 6 s
    coarse = np.arange(0, 80, 4)  # 2 fps: every 4th tick of 8 fps
    real = np.union1d(windows, coarse)
    assert np.array_equal(grid[real], real_at(cache, real))
    elsewhere = np.setdiff1d(np.arange(80), real)
    assert len(elsewhere) and not np.isclose(grid[elsewhere, 0], real_at(cache, elsewhere)[:, 0]).any()
    inside, after = elsewhere[elsewhere < 76], elsewhere[elsewhere > 76]
    left, right = inside // 4 * 4, inside // 4 * 4 + 4  # between the coarse ticks either side
    assert ((grid[inside, 0] > real_at(cache, left)[:, 0]) & (grid[inside, 0] < real_at(cache, right)[:, 0])).all()
    assert (grid[after] == real_at(cache, [76])).all()  # past the last coarse frame: the last known one


def test_a_missed_action_leaves_only_the_coarse_frames(cache):
    grid = simulated(cache, miss=1.0, jitter_s=0.3, false_rate=0.0)
    exact = np.flatnonzero(np.isclose(grid[:, 0], real_at(cache, np.arange(80))[:, 0]))
    assert np.array_equal(exact, np.arange(0, 80, 4))
