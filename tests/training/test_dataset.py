import json

import numpy as np
import pytest
import torch

from training.dataset import (
    DatasetError,
    FeatureDataset,
    annotation_label_ids,
    collate,
    grid_to_seconds,
    seconds_to_grid,
    truncate,
)

STRIDE, FRAMES, FPS = 4, 16, 30.0


def write_data(tmp_path, videos, lengths, channels=8, fps=FPS):
    """videos: {video_id: (subset, [(start_s, end_s, label)])}; lengths: {video_id: T}."""
    database = {
        video_id: {
            "subset": subset,
            "duration": lengths[video_id] * STRIDE / FPS,
            "fps": fps,
            "annotations": [{"segment": [s, e], "label": label} for s, e, label in items],
        }
        for video_id, (subset, items) in videos.items()
    }
    annotations = tmp_path / "annotations.json"
    annotations.write_text(json.dumps({"database": database}))
    features = tmp_path / "features"
    features.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for video_id, length in lengths.items():
        np.save(features / f"{video_id}.npy", rng.normal(size=(length, channels)).astype(np.float32))
    return annotations, features


@pytest.fixture
def data(tmp_path):
    videos = {
        "train_a": ("Validation", [(2.0, 4.0, "Jump"), (10.0, 12.0, "Dive")]),
        "train_b": ("Validation", [(1.0, 3.0, "Dive")]),
        "test_a": ("Test", [(5.0, 9.0, "Run")]),
    }
    return write_data(tmp_path, videos, {"train_a": 200, "train_b": 50, "test_a": 120})


def test_segments_are_in_grid_units(data):
    dataset = FeatureDataset(*data, split="validation", feat_stride=STRIDE, num_frames=FRAMES)
    item = dataset[0]
    expected = [[(2.0 * FPS - 8) / 4, (4.0 * FPS - 8) / 4], [(10.0 * FPS - 8) / 4, (12.0 * FPS - 8) / 4]]
    assert np.allclose(item.segments.numpy(), expected)
    assert item.features.shape == (8, 200) and item.features.dtype == torch.float32
    assert item.video_id == "train_a" and item.fps == FPS


def test_grid_and_seconds_are_inverse():
    seconds = np.array([0.0, 1.5, 100.0])
    grid = seconds_to_grid(seconds, 29.97, STRIDE, FRAMES)
    assert grid_to_seconds(grid, 29.97, STRIDE, FRAMES) == pytest.approx(seconds)
    assert grid_to_seconds(np.array([0.0]), FPS, STRIDE, FRAMES) == pytest.approx([8 / FPS])  # centre of clip 0


def test_label_ids_are_sorted_over_all_splits(data):
    train = FeatureDataset(*data, split="Validation", feat_stride=STRIDE, num_frames=FRAMES)
    test = FeatureDataset(*data, split="TEST", feat_stride=STRIDE, num_frames=FRAMES)
    assert train.labels == test.labels == ["Dive", "Jump", "Run"]
    assert train[0].labels.tolist() == [1, 0]
    assert test[0].labels.tolist() == [2]


def test_given_labels_set_the_ids(data):
    dataset = FeatureDataset(
        *data, split="validation", feat_stride=STRIDE, num_frames=FRAMES, labels=["Run", "Jump", "Dive"]
    )
    assert dataset[0].labels.tolist() == [1, 2]


def test_unknown_label_names_the_video(data):
    with pytest.raises(DatasetError, match="'train_a'.*'Dive'"):
        FeatureDataset(*data, split="validation", feat_stride=STRIDE, num_frames=FRAMES, labels=["Jump", "Run"])


def test_empty_split_lists_available_subsets(data):
    with pytest.raises(DatasetError, match=r"available subsets: \['Test', 'Validation'\]"):
        FeatureDataset(*data, split="training", feat_stride=STRIDE, num_frames=FRAMES)


def test_missing_feature_file_names_video_and_path(data):
    annotations, features = data
    (features / "train_b.npy").unlink()
    with pytest.raises(DatasetError, match=r"'train_b'.*train_b\.npy"):
        FeatureDataset(annotations, features, split="validation", feat_stride=STRIDE, num_frames=FRAMES)


def test_wrong_ndim_is_an_error(data):
    annotations, features = data
    np.save(features / "train_b.npy", np.zeros((50, 8, 1), np.float32))
    with pytest.raises(DatasetError, match=r"'train_b'.*\(T, C\).*\(50, 8, 1\)"):
        FeatureDataset(annotations, features, split="validation", feat_stride=STRIDE, num_frames=FRAMES)


def test_channel_mismatch_is_an_error(data):
    annotations, features = data
    np.save(features / "train_b.npy", np.zeros((50, 6), np.float32))
    with pytest.raises(DatasetError, match="disagree in channels.*6 channels in 'train_b'"):
        FeatureDataset(annotations, features, split="validation", feat_stride=STRIDE, num_frames=FRAMES)


def test_non_finite_features_are_an_error_on_load(data):
    annotations, features = data
    values = np.zeros((50, 8), np.float32)
    values[7, 3] = np.nan
    np.save(features / "train_b.npy", values)
    dataset = FeatureDataset(annotations, features, split="validation", feat_stride=STRIDE, num_frames=FRAMES)
    with pytest.raises(DatasetError, match="'train_b'.*non-finite.*row 7"):
        dataset[1]


def test_missing_fps_uses_default_or_fails(tmp_path):
    annotations, features = write_data(tmp_path, {"v": ("test", [])}, {"v": 10})
    data = json.loads(annotations.read_text())
    del data["database"]["v"]["fps"]
    annotations.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="'v'.*default_fps"):
        FeatureDataset(annotations, features, split="test", feat_stride=STRIDE, num_frames=FRAMES)
    dataset = FeatureDataset(
        annotations, features, split="test", feat_stride=STRIDE, num_frames=FRAMES, default_fps=25.0
    )
    assert dataset[0].fps == 25.0


def test_default_fps_overrides_the_videos_fps_as_in_actionformer(tmp_path):
    annotations, features = write_data(tmp_path, {"v": ("test", [])}, {"v": 10})
    dataset = FeatureDataset(
        annotations, features, split="test", feat_stride=STRIDE, num_frames=FRAMES, default_fps=8.0
    )
    assert dataset[0].fps == 8.0


def test_evaluation_items_are_whole_videos(data):
    dataset = FeatureDataset(*data, split="validation", feat_stride=STRIDE, num_frames=FRAMES, max_seq_len=64)
    assert dataset[0].features.shape[1] == 200


def test_training_crops_keep_overlapping_actions(data):
    dataset = FeatureDataset(
        *data, split="validation", feat_stride=STRIDE, num_frames=FRAMES, max_seq_len=64, training=True
    )
    full = FeatureDataset(*data, split="validation", feat_stride=STRIDE, num_frames=FRAMES)[0]
    for epoch in range(10):
        dataset.set_epoch(epoch)
        item = dataset[0]
        assert item.features.shape == (8, 64)
        assert torch.equal(item.features, full.features[:, item.offset : item.offset + 64])
        assert len(item.segments) >= 1  # each crop was retried until it holds an action
        assert (item.segments >= 0).all() and (item.segments <= 64).all()
    assert dataset[1].features.shape == (8, 50)  # shorter than max_seq_len: not cropped


def test_training_crops_are_reproducible_and_vary_by_epoch(data):
    kwargs = dict(split="validation", feat_stride=STRIDE, num_frames=FRAMES, max_seq_len=64, training=True)
    first, second = FeatureDataset(*data, **kwargs, seed=3), FeatureDataset(*data, **kwargs, seed=3)
    offsets = []
    for epoch in range(6):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        assert first[0].offset == second[0].offset
        offsets.append(first[0].offset)
    assert len(set(offsets)) > 1


class FixedStart:
    """Stands in for the generator: every crop starts at `start`."""

    def __init__(self, start):
        self.start = start

    def integers(self, low, high):
        assert low <= self.start < high
        return self.start


def test_truncate_keeps_segments_by_threshold():
    segments = np.array([[0.0, 10.0], [15.0, 25.0], [40.0, 50.0]])
    # window [10, 30): segment 0 has 0% inside, segment 1 100%, segment 2 0%
    start, keep = truncate(100, segments, 20, 0.5, FixedStart(10))
    assert start == 10 and keep.tolist() == [False, True, False]
    # window [20, 40): half of segment 1 is inside: kept at threshold 0.5, dropped at 0.6
    assert truncate(100, segments, 20, 0.5, FixedStart(20))[1].tolist() == [False, True, False]
    assert truncate(100, segments, 20, 0.6, FixedStart(20))[1].tolist() == [False, False, False]


def test_truncate_retries_until_an_action_is_kept():
    segments = np.array([[90.0, 95.0]])
    start, keep = truncate(100, segments, 20, 0.5, np.random.default_rng(0))
    assert keep.tolist() == [True] and 73 <= start <= 80  # at least 2.5 of [90, 95] inside


def test_collate_pads_and_masks(data):
    dataset = FeatureDataset(*data, split="validation", feat_stride=STRIDE, num_frames=FRAMES)
    batch = collate([dataset[0], dataset[1]])
    assert batch.features.shape == (2, 8, 200)
    assert batch.mask.dtype == torch.bool and batch.mask.shape == (2, 200)
    assert batch.mask[0].all() and batch.mask[1, :50].all() and not batch.mask[1, 50:].any()
    assert (batch.features[1, :, 50:] == 0).all()
    assert torch.equal(batch.features[1, :, :50], dataset[1].features)
    assert [len(s) for s in batch.segments] == [2, 1] and batch.video_ids == ["train_a", "train_b"]


def test_feature_statistics_are_the_per_channel_mean_and_std_of_whole_videos(tmp_path):
    annotations, features = write_data(tmp_path, {"a": ("test", []), "b": ("test", [])}, {"a": 10, "b": 7})
    dataset = FeatureDataset(annotations, features, split="test", feat_stride=STRIDE, num_frames=FRAMES)
    everything = np.concatenate([np.load(features / "a.npy"), np.load(features / "b.npy")])
    mean, std = dataset.feature_statistics()
    assert np.allclose(mean.numpy(), everything.mean(0), atol=1e-5)
    assert np.allclose(std.numpy(), everything.std(0), atol=1e-5)


def test_annotation_label_ids_follow_the_label_order():
    database = {"v": {"annotations": [{"label": "Run", "label_id": 7}, {"label": "Dive", "label_id": 3}]}}
    assert annotation_label_ids(database, ["Dive", "Run"], "a.json") == [3, 7]


def test_a_label_without_an_id_leaves_ids_to_the_index():
    database = {"v": {"annotations": [{"label": "Run", "label_id": 7}, {"label": "Dive"}]}}
    assert annotation_label_ids(database, ["Dive", "Run"], "a.json") is None


def test_a_label_with_two_ids_is_an_error():
    database = {"v": {"annotations": [{"label": "Run", "label_id": 7}, {"label": "Run", "label_id": 8}]}}
    with pytest.raises(DatasetError, match="label 'Run' has label_id 7 and 8"):
        annotation_label_ids(database, ["Run"], "a.json")
