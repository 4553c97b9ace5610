import json

import numpy as np
import pytest

from training.dataset import FeatureDataset, seconds_to_grid
from training.synthetic import (
    THUMOS14_ANNOTATIONS,
    ThumosStats,
    VideoTemplate,
    ar1,
    generate_synthetic_dataset,
    main,
    membership,
    sample_layout,
)

THUMOS_JSON = THUMOS14_ANNOTATIONS


@pytest.fixture
def tiny_stats():
    """Hand-made statistics: short videos, three classes."""
    return ThumosStats(
        videos=(
            VideoTemplate(40.0, {"Dive": 4}),
            VideoTemplate(30.0, {"Jump": 2, "Run": 1}),
            VideoTemplate(50.0, {"Run": 3, "Dive": 1}),
        ),
        lengths_by_class={
            "Dive": np.array([1.0, 2.0, 3.0]),
            "Jump": np.array([2.5, 4.0]),
            "Run": np.array([3.0, 5.0, 6.0]),
        },
    )


def test_generated_files_load_with_feature_dataset(tmp_path, tiny_stats):
    paths = generate_synthetic_dataset(tmp_path, num_videos=8, feature_dim=6, stats=tiny_stats, num_classes=3)
    train = FeatureDataset(paths.annotations, paths.features_dir, "validation", feat_stride=4, num_frames=16)
    test = FeatureDataset(paths.annotations, paths.features_dir, "Test", feat_stride=4, num_frames=16)
    assert len(train) + len(test) == 8 and len(test) == 4  # 212 / 412 of 8 videos
    assert train.labels == ["Dive", "Jump", "Run"] and train.feature_dim == 6
    item = train[0]
    assert item.features.shape[0] == 6 and len(item.segments) == len(item.labels) > 0
    assert (item.segments[:, 1] > item.segments[:, 0]).all()
    assert item.segments.max() < item.features.shape[1]


def test_label_ids_match_sorted_class_names(tmp_path, tiny_stats):
    paths = generate_synthetic_dataset(tmp_path, num_videos=4, feature_dim=2, stats=tiny_stats, num_classes=3)
    database = json.loads(paths.annotations.read_text())["database"]
    for info in database.values():
        for annotation in info["annotations"]:
            assert ["Dive", "Jump", "Run"][annotation["label_id"]] == annotation["label"]


def test_same_seed_gives_identical_files(tmp_path, tiny_stats):
    kwargs = dict(num_videos=3, feature_dim=4, stats=tiny_stats, num_classes=3, seed=7)
    first = generate_synthetic_dataset(tmp_path / "a", **kwargs)
    second = generate_synthetic_dataset(tmp_path / "b", **kwargs)
    other = generate_synthetic_dataset(tmp_path / "c", **{**kwargs, "seed": 8})
    assert first.annotations.read_bytes() == second.annotations.read_bytes()
    for path in sorted(first.features_dir.iterdir()):
        assert np.array_equal(np.load(path), np.load(second.features_dir / path.name))
    assert first.annotations.read_bytes() != other.annotations.read_bytes()


def boundary_jumps(paths, fps=30.0):
    """Feature jump at every action boundary, divided by the video's median step-to-step change."""
    database = json.loads(paths.annotations.read_text())["database"]
    ratios, widths = [], []
    for video_id, info in database.items():
        features = np.load(paths.features_dir / f"{video_id}.npy")
        steps = np.linalg.norm(np.diff(features, axis=0), axis=1)
        typical = np.median(steps)
        for annotation in info["annotations"]:
            start, end = seconds_to_grid(np.array(annotation["segment"]), fps, 4, 16)
            # a segment holds the steps in [start, end]: the cut is after step ceil(start)-1 and floor(end)
            cuts = (int(np.ceil(start)) - 1, int(np.floor(end)))
            for k, width in zip(cuts, annotation["boundary_widths"], strict=True):
                if 0 <= k < len(steps):
                    ratios.append(steps[k] / typical)
                    widths.append(width)
    return np.array(ratios), np.array(widths)


def test_boundary_mix_zero_gives_only_sharp_cuts(tmp_path, tiny_stats):
    paths = generate_synthetic_dataset(
        tmp_path, num_videos=6, feature_dim=16, stats=tiny_stats, num_classes=3, boundary_mix=0.0, noise=0.0
    )
    ratios, widths = boundary_jumps(paths)
    assert (widths == 0).all()
    assert ratios.min() > 3.0  # each boundary is one step that dwarfs the background drift


def test_wide_ramps_spread_the_change_over_many_steps(tmp_path, tiny_stats):
    sharp = generate_synthetic_dataset(
        tmp_path / "sharp", num_videos=6, feature_dim=16, stats=tiny_stats, boundary_mix=0.0, noise=0.0
    )
    ramped = generate_synthetic_dataset(
        tmp_path / "ramped",
        num_videos=6,
        feature_dim=16,
        stats=tiny_stats,
        boundary_mix=1.0,
        ramp_widths=(12,),
        noise=0.0,
    )
    sharp_ratios, _ = boundary_jumps(sharp)
    ramped_ratios, widths = boundary_jumps(ramped)
    assert (widths == 12).all()
    assert np.median(ramped_ratios) < 0.3 * np.median(sharp_ratios)


def test_membership_sharp_and_ramped():
    assert membership(8, 2.5, 5.5, 0, 0).tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    ramp = membership(12, 3.0, 8.0, 4, 2)
    assert ramp[3] == pytest.approx(0.5) and ramp[8] == pytest.approx(0.5)  # half-way at the annotated time
    assert ramp[1] == 0.0 and ramp[5] == 1.0 and ramp[9] == 0.0


def test_ar1_matches_a_loop():
    rng = np.random.default_rng(0)
    innovations = rng.normal(size=(300, 3))
    expected, previous = np.empty_like(innovations), np.zeros(3)
    for t in range(300):
        previous = 0.9 * previous + innovations[t]
        expected[t] = previous
    assert np.allclose(ar1(innovations, 0.9, block=64), expected)


def test_missing_thumos_annotations_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json.*stats="):
        generate_synthetic_dataset(tmp_path, num_videos=1, thumos_annotations=tmp_path / "nope.json")


def test_cli_writes_a_dataset(tmp_path, capsys):
    code = main(
        ["--output", str(tmp_path), "--videos", "2", "--feature-dim", "3", "--max-duration", "30"]
        + ["--thumos-annotations", str(THUMOS_JSON)]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["annotations"] == str(tmp_path / "annotations.json")
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2


def test_layout_statistics_follow_thumos14():
    stats = ThumosStats.from_annotations(THUMOS_JSON)
    real = stats.summary()
    assert real["median_action_length_s"] == pytest.approx(3.0) and real["median_actions_per_video"] == 8
    labels = sorted(stats.lengths_by_class)
    rng = np.random.default_rng(0)
    layouts = [sample_layout(stats, labels, rng) for _ in range(800)]
    lengths = np.array([a.end - a.start for layout in layouts for a in layout.actions])
    counts = np.array([len(layout.actions) for layout in layouts])
    assert np.median(lengths) == pytest.approx(real["median_action_length_s"], abs=0.25)
    assert np.median(counts) == pytest.approx(real["median_actions_per_video"], abs=1.5)
    assert counts.mean() == pytest.approx(real["mean_actions_per_video"], rel=0.2)
    assert np.median([layout.duration for layout in layouts]) == pytest.approx(real["median_duration_s"], rel=0.15)
    real_mix = np.array([len(stats.lengths_by_class[label]) for label in labels], dtype=float)
    synthetic_mix = np.array([sum(a.label == label for lay in layouts for a in lay.actions) for label in labels])
    total_variation = 0.5 * np.abs(real_mix / real_mix.sum() - synthetic_mix / synthetic_mix.sum()).sum()
    assert total_variation < 0.1


def test_max_duration_caps_videos_and_keeps_action_density():
    stats = ThumosStats.from_annotations(THUMOS_JSON)
    labels = sorted(stats.lengths_by_class)
    rng = np.random.default_rng(1)
    layouts = [sample_layout(stats, labels, rng, max_duration=60.0) for _ in range(300)]
    assert max(layout.duration for layout in layouts) <= 60.0
    assert all(a.end <= layout.duration for layout in layouts for a in layout.actions)
    coverage = sum(a.end - a.start for lay in layouts for a in lay.actions) / sum(lay.duration for lay in layouts)
    assert coverage == pytest.approx(stats.summary()["action_coverage"], rel=0.35)
