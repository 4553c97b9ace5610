"""The simulated zoom grid the hybrid-trained detector learns from (experiments/zoom_hybrid.py): real frames in the
windows around the simulated candidates' boundaries and at the coarse ticks, interpolated elsewhere."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from experiments.zoom_hybrid import simulated_grid
from tools.train_zoom import FrameCache

FPS = 30


@pytest.fixture
def bench(tmp_path):
    """A 10 s video at 30 fps whose frame i has the features (i^2, 1): interpolation between frames shows."""
    frames = np.arange(10 * FPS, dtype=np.float64)
    np.save(tmp_path / "v.npy", np.stack([frames**2, np.ones_like(frames)], 1).astype(np.float32))
    np.save(tmp_path / "v.times.npy", frames / FPS)
    truth = {"database": {"v": {"subset": "training", "duration": 10.0, "annotations": [{"segment": [3.0, 6.0]}]}}}
    return SimpleNamespace(truth=truth, cache=FrameCache(tmp_path, truth))


def real_at(bench, ticks):
    return bench.cache.at("v", 8)[0][ticks]


def simulated(bench, **noise):
    return simulated_grid(bench, "v", 2, 8, 0.5, np.random.default_rng(0), **noise).numpy()


def test_the_windows_and_the_coarse_ticks_hold_real_frames_and_the_rest_is_interpolated(bench):
    grid = simulated(bench, miss=0.0, jitter_s=1e-9, false_rate=0.0)  # the candidate is the action itself
    assert grid.shape == (80, 2)
    windows = np.r_[20:28, 44:52]  # 8 ticks (2 x 0.5 s at 8 fps) around 3 s and 6 s
    coarse = np.arange(0, 80, 4)  # 2 fps: every 4th tick of 8 fps
    real = np.union1d(windows, coarse)
    assert np.array_equal(grid[real], real_at(bench, real))
    elsewhere = np.setdiff1d(np.arange(80), real)
    assert len(elsewhere) and not np.isclose(grid[elsewhere, 0], real_at(bench, elsewhere)[:, 0]).any()
    inside, after = elsewhere[elsewhere < 76], elsewhere[elsewhere > 76]
    left, right = inside // 4 * 4, inside // 4 * 4 + 4  # between the coarse ticks either side
    assert ((grid[inside, 0] > real_at(bench, left)[:, 0]) & (grid[inside, 0] < real_at(bench, right)[:, 0])).all()
    assert (grid[after] == real_at(bench, [76])).all()  # past the last coarse frame: the last known one


def test_a_missed_action_leaves_only_the_coarse_frames(bench):
    grid = simulated(bench, miss=1.0, jitter_s=0.3, false_rate=0.0)
    exact = np.flatnonzero(np.isclose(grid[:, 0], real_at(bench, np.arange(80))[:, 0]))
    assert np.array_equal(exact, np.arange(0, 80, 4))
