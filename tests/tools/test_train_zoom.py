"""The zoom's refiner training (tools/train_zoom.py) on per-frame features with known boundaries: both refiners
learn to place a boundary far more precisely than the window they are given, and a zoom checkpoint they write
is what the Localizer loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.zoom import ZoomedPass, ZoomSettings
from tools.train_zoom import FrameCache, RefinerTraining, boundary_windows, sample_batch, train_refiner

FPS, DIM = 30, 16


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> FrameCache:
    """12 videos of 20 s: per-frame features are noise plus a direction that fades in and out over each action
    (ramps of 0-1 s centred on the boundaries), as a backbone sees a shape appear."""
    root = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    direction = rng.normal(size=DIM).astype(np.float32)
    database = {}
    for index in range(12):
        times = np.arange(20 * FPS) / FPS
        start, end = rng.uniform(2, 8), rng.uniform(11, 18)
        ramp_in, ramp_out = rng.choice([0.0, 0.5, 1.0], size=2)
        up = np.clip((times - start) / max(ramp_in, 1e-3) + 0.5, 0, 1)
        down = np.clip((end - times) / max(ramp_out, 1e-3) + 0.5, 0, 1)
        rows = (
            rng.normal(scale=0.3, size=(len(times), DIM)).astype(np.float32) + np.minimum(up, down)[:, None] * direction
        )
        np.save(root / f"v{index}.npy", rows)
        np.save(root / f"v{index}.times.npy", times)
        subset = "training" if index < 9 else "test"
        database[f"v{index}"] = {
            "subset": subset,
            "duration": 20.0,
            "annotations": [{"segment": [start, end], "label": "a"}],
        }
    (root / "annotations.json").write_text(json.dumps({"database": database}))
    return FrameCache(root, {"database": database})


@pytest.mark.parametrize("mode", ["bdr", "regression"])
def test_a_trained_refiner_finds_boundaries_well_inside_its_window(cache, mode):
    settings = ZoomSettings(zoom_fps=16, window_s=1.0, refiner=mode)
    recipe = RefinerTraining(mode=mode, width=32, steps=400, batch_size=32, lr=3e-3)
    network, config = train_refiner(cache, settings, recipe, seed=0, log=lambda _: None)
    zoom = ZoomedPass(settings, network)
    errors = []
    for video_id, truth, kind in boundary_windows(cache, "test", settings):
        segments = np.array([[truth - 0.6, truth + 5]] if kind == 0 else [[truth - 5, truth + 0.6]])  # 0.6 s off
        plan = zoom.plan(segments, np.array([1.0]), 0.0, cache.end_s(video_id))
        rows, _ = cache.at(video_id, settings.zoom_fps, plan.spans)
        errors.append(abs(zoom.refine(plan, torch.from_numpy(rows), 0.0)[kind] - truth))
    assert np.mean(errors) < 0.2, errors  # the coarse boundary was 0.6 s off; a window is 2 s


def test_training_windows_lie_on_the_zoom_grid_the_plan_uses(cache):
    settings = ZoomSettings(zoom_fps=16, window_s=0.5)
    boundaries = boundary_windows(cache, "training", settings)
    windows, kinds, times, truths, centres = sample_batch(cache, boundaries, settings, 0.0, np.random.default_rng(0), 8)
    assert windows.shape == (8, DIM, 16) and kinds.shape == (8,)
    np.testing.assert_allclose((times.numpy() * 16) % 1, 0, atol=1e-9)  # ticks of the whole video's 16 fps grid
    assert (np.abs(centres.numpy() - truths.numpy()) <= 1 / 32 + 1e-9).all()  # no jitter: centred on the truth
