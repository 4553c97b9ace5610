"""The zoom's refiner training (tools/train_zoom.py) on per-frame features with known boundaries: both refiners
learn to place a boundary far more precisely than the window they are given, and a zoom checkpoint they write
is what the Localizer loads; a verifier learns which windows hold a boundary."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ConfigurationError
from engine.zoom import VERIFIER_FILE, ZOOM_FILE, ZoomedPass, ZoomSettings
from model.backbones import SPECS
from model.refiner import BoundaryRefiner, BoundaryVerifier, RefinerConfig
from tools.train_zoom import (
    FrameCache,
    RefinerTraining,
    boundary_windows,
    sample_batch,
    train_refiner,
    train_verifier,
    verifier_batch,
    write_zoom_checkpoint,
)  # fmt: skip

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


@pytest.mark.parametrize("inputs", ["raw", "standardized, with differences"])
@pytest.mark.parametrize("mode", ["bdr", "regression"])
def test_a_trained_refiner_finds_boundaries_well_inside_its_window(cache, mode, inputs):
    settings = ZoomSettings(zoom_fps=16, window_s=1.0, refiner=mode)
    options = inputs != "raw"
    recipe = RefinerTraining(
        mode=mode, width=32, steps=400, batch_size=32, lr=3e-3, standardize=options, differences=options
    )
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


def test_a_standardizing_refiner_keeps_the_training_frames_statistics_and_its_checkpoint_refines_the_same(
    cache, zoom_checkpoint, tmp_path
):
    settings = ZoomSettings(zoom_fps=16, window_s=1.0, refiner="bdr")
    recipe = RefinerTraining(mode="bdr", width=16, steps=20, batch_size=8)
    network, config = train_refiner(cache, settings, recipe, seed=0, log=lambda _: None)
    assert config.standardize and config.differences  # the recipe's defaults
    training = np.concatenate([cache.rows(f"v{index}")[0] for index in range(9)])
    np.testing.assert_allclose(network.input_mean.numpy(), training.mean(0), atol=1e-5)
    np.testing.assert_allclose(network.input_std.numpy(), training.std(0, ddof=1), rtol=1e-4)
    windows = torch.from_numpy(training[:48].T.copy())[None]
    seen = network.inputs(windows)[0]
    standardized = (windows[0] - network.input_mean[:, None]) / network.input_std[:, None]
    torch.testing.assert_close(seen[:DIM], standardized)
    torch.testing.assert_close(seen[DIM:, 1:], standardized[:, 1:] - standardized[:, :-1])
    assert (seen[DIM:, 0] == 0).all()  # the window's first frame has nothing before it inside the window

    written = write_zoom_checkpoint(zoom_checkpoint, tmp_path / "zoom", settings, network, config)
    loaded = ZoomedPass.load(written, SPECS["resnet18-2d"], torch.device("cpu"))
    assert json.loads((written / ZOOM_FILE).read_text())["refiner"]["differences"] is True
    video_id, truth, kind = boundary_windows(cache, "test", settings)[0]
    plan = loaded.plan(np.array([[truth - 0.4, truth + 3.0]]), np.array([1.0]), 0.0, cache.end_s(video_id))
    rows = torch.from_numpy(cache.at(video_id, settings.zoom_fps, plan.spans)[0])
    np.testing.assert_array_equal(loaded.refine(plan, rows, 0.0), ZoomedPass(settings, network).refine(plan, rows, 0.0))


def test_a_refiner_written_before_the_input_options_loads_as_it_was_trained():
    old = {"input_dim": DIM, "width": 8, "dilations": [1, 2, 4], "kernel": 5, "mode": "bdr", "clip_s": 0.5}
    config = RefinerConfig.from_dict(old)
    assert not config.standardize and not config.differences
    torch.manual_seed(0)
    weights = BoundaryRefiner(config).state_dict()
    network = BoundaryRefiner(config)
    network.load_state_dict(weights)  # strict: no statistics buffers expected, none missing
    windows = torch.randn(2, DIM, 10)
    torch.testing.assert_close(network.inputs(windows), windows)


@pytest.mark.parametrize("inputs", ["raw", "standardized, with differences"])
def test_a_verifier_tells_windows_around_true_boundaries_from_windows_elsewhere_on_unseen_videos(cache, inputs):
    settings = ZoomSettings(zoom_fps=16, window_s=0.5, verify_weight=1.0)
    options = inputs != "raw"
    recipe = RefinerTraining(mode="presence", width=16, steps=300, batch_size=32, lr=3e-3,
                             standardize=options, differences=options)  # fmt: skip
    network, config = train_verifier(cache, settings, recipe, seed=0, log=lambda _: None)
    assert config.mode == "presence" and isinstance(network, BoundaryVerifier)
    test = boundary_windows(cache, "test", settings)
    windows, kinds, labels = verifier_batch(cache, test, settings, 0.8, np.random.default_rng(1), 300)
    with torch.no_grad():
        guessed = torch.sigmoid(network(windows, kinds)) > 0.5
    assert (guessed == labels.bool()).float().mean() > 0.85


def test_the_verifier_rescores_the_candidates_it_has_windows_for_and_the_checkpoint_keeps_it(
    cache, zoom_checkpoint, tmp_path
):
    settings = ZoomSettings(zoom_fps=16, window_s=0.5, min_score=0.3, max_candidates=2, refiner="bdr",
                            verify_weight=0.5)  # fmt: skip
    refiner = BoundaryRefiner(RefinerConfig(input_dim=DIM, width=8, clip_s=0.5)).eval()
    recipe = RefinerTraining(mode="presence", width=8, steps=5, batch_size=8, standardize=False, differences=False)
    verifier, config = train_verifier(cache, settings, recipe, seed=0, log=lambda _: None)
    zoom = ZoomedPass(settings, refiner, verifier)
    video_id, truth, _ = boundary_windows(cache, "test", settings)[0]
    segments = np.array([[truth - 0.2, truth + 4.0], [12.0, 13.0], [1.0, 2.0]])
    scores = np.array([0.9, 0.5, 0.2])  # the third is below min_score: no windows
    plan = zoom.plan(segments, scores, 0.0, cache.end_s(video_id))
    rows = torch.from_numpy(cache.at(video_id, settings.zoom_fps, plan.spans)[0])
    presence = zoom.presence(plan, rows)
    assert presence.shape == (4,) and ((presence > 0) & (presence < 1)).all()
    expected = scores[:2] * np.sqrt(presence[[0, 2]] * presence[[1, 3]]) ** 0.5
    np.testing.assert_allclose(zoom.rescore(scores, plan, presence), [*expected, 0.2])
    np.testing.assert_array_equal(
        ZoomedPass(replace(settings, verify_weight=0.0), refiner).rescore(scores, plan, None), scores
    )

    written = write_zoom_checkpoint(zoom_checkpoint, tmp_path / "zoom", settings, refiner, refiner.config, verifier)
    loaded = ZoomedPass.load(written, SPECS["resnet18-2d"], torch.device("cpu"))
    assert (
        loaded.settings.verify_weight == 0.5
        and json.loads((written / ZOOM_FILE).read_text())["verifier"] == config.to_dict()
    )
    np.testing.assert_array_equal(loaded.presence(plan, rows), presence)
    (written / VERIFIER_FILE).unlink()
    with pytest.raises(ConfigurationError, match="verifier.safetensors is missing"):
        ZoomedPass.load(written, SPECS["resnet18-2d"], torch.device("cpu"))
    with pytest.raises(ValueError, match="exactly when it has a verifier"):
        ZoomedPass(settings, refiner)


def test_the_detector_refiner_trains_a_per_frame_detector_at_the_zoom_rate_into_the_checkpoint(cache, tmp_path):
    """`zoom.refiner.mode: detector`: one command trains the coarse detector and, in fine/, a detector on one
    feature per frame at the zoom rate; the checkpoint loads with the zoom rate's detector and no refiner."""
    import yaml

    from engine.zoom import FINE_DIR, hybrid_rows, read_zoom
    from model.checkpoint import read_checkpoint_config
    from tools.train_zoom import train_zoom

    config = yaml.safe_load(Path("configs/zoom.yaml").read_text())
    config["optimizer"]["epochs"], config["model"]["embed_dim"] = 2, 16
    config["data"].update(max_seq_len=128, val_split="test")
    config["zoom"].update(coarse_fps=2.0, zoom_fps=8.0, refiner={"mode": "detector"})
    path = tmp_path / "zoom.yaml"
    path.write_text(yaml.safe_dump(config))
    written = train_zoom(path, cache.frames, cache.frames, tmp_path / "run", log=lambda _: None)
    features = tmp_path / "run" / "features" / "8fps-zoomed"  # real frames and 2 simulated grids per training video
    names = json.loads((features / "annotations.json").read_text())["database"]
    assert sorted(n for n in names if n.startswith("v0")) == ["v0", "v0~1", "v0~2"] and "v9~1" not in names
    assert not np.array_equal(np.load(features / "v0~1.npy"), np.load(features / "v0.npy"))
    assert np.array_equal(np.load(features / "v0.npy"), cache.at("v0", 8.0)[0].astype(np.float32))
    coarse, fine = read_checkpoint_config(written), read_checkpoint_config(written / FINE_DIR)
    assert (coarse.features.default_fps, fine.features.default_fps) == (2.0, 8.0)
    assert (fine.features.num_frames, fine.features.feat_stride) == (1, 1) and fine.labels == coarse.labels
    assert json.loads((written / ZOOM_FILE).read_text())["refiner"] is None
    settings, refiner, _ = read_zoom(written, SPECS["resnet18-2d"])
    assert settings.redetects and refiner is None and not (written / "refiner.safetensors").exists()
    zoom = ZoomedPass.load(written, SPECS["resnet18-2d"], torch.device("cpu"))
    assert zoom.refiner is None and zoom.fine.fps == 8.0
    rows = torch.from_numpy(cache.at("v9", 8.0)[0])
    segments, scores, labels, _, _ = zoom.fine(hybrid_rows(np.arange(len(rows)), rows, len(rows)), 0.0, 20.0)
    assert len(segments) == len(scores) == len(labels) and np.all(np.diff(scores) <= 0)
    with pytest.raises(ValueError, match="only it, needs the zoom rate's detector"):
        write_zoom_checkpoint(written, tmp_path / "other", settings, None, None)


def test_a_coarse_detector_on_smaller_frames_trains_on_their_features_and_says_so(cache, tmp_path):
    """`data.frame_size`: the coarse detector trains on --coarse-frames (features of frames of that size, kept
    apart from other sizes' features) and its checkpoint records the size, so that the service decodes its frames
    so."""
    import shutil

    import yaml

    from model.checkpoint import read_checkpoint_config
    from tools.train_zoom import train_zoom

    small = shutil.copytree(cache.frames, tmp_path / "frames-64px")
    for path in small.glob("v*.npy"):
        if not path.name.endswith(".times.npy"):
            np.save(path, np.load(path) * 0.5 + 1.0)  # other features than the 112 px frames'
    config = yaml.safe_load(Path("configs/zoom_space.yaml").read_text())  # data.frame_size: 64
    config["optimizer"]["epochs"], config["model"]["embed_dim"] = 2, 16
    config["data"].update(max_seq_len=128, val_split="test")
    config["zoom"].update(coarse_fps=2.0, refiner={**config["zoom"]["refiner"], "steps": 20})
    path = tmp_path / "zoom.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="give --coarse-frames"):
        train_zoom(path, cache.frames, cache.frames, tmp_path / "none", log=lambda _: None)
    written = train_zoom(path, cache.frames, cache.frames, tmp_path / "run", log=lambda _: None, coarse_frames=small)
    assert read_checkpoint_config(written).features.frame_size == 64
    coarse = np.load(tmp_path / "run" / "features" / "2fps-1x1-64px" / "v0.npy")
    assert np.allclose(coarse, FrameCache(small, {"database": cache.database}).at("v0", 2.0)[0])
    config["zoom"]["refiner"] = {"mode": "detector"}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="no data.frame_size with it"):
        train_zoom(path, cache.frames, cache.frames, tmp_path / "detector", log=lambda _: None, coarse_frames=small)
    del config["data"]["frame_size"]  # frames of another size given, but the config does not say they are
    config["zoom"]["refiner"] = {**yaml.safe_load(Path("configs/zoom_space.yaml").read_text())["zoom"]["refiner"]}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="set data.frame_size"):
        train_zoom(path, cache.frames, cache.frames, tmp_path / "unsized", log=lambda _: None, coarse_frames=small)
