"""Clip maths of the video backbones: which frames make each clip and the time of its feature."""

import numpy as np
import pytest

from model.backbones import SPECS, BackboneSpec, group_clips


def test_clips_follow_the_feature_time_convention():
    spec = BackboneSpec("test", 30.0, frames_per_clip=16, clip_stride=4, size=2, feature_dim=1, per_frame=False)
    frames = np.arange(100, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 3, 3), np.uint8)
    clips, centres = group_clips(frames, np.arange(100) / 30, spec)
    assert clips.shape == (22, 16, 2, 3, 3) == (spec.num_clips(100), 16, 2, 3, 3)
    assert np.shares_memory(clips, frames)
    np.testing.assert_array_equal(clips[5, :, 0, 0, 0], np.arange(20, 36))
    np.testing.assert_allclose(centres, (np.arange(22) * 4 + 8) / 30)  # (i * feat_stride + num_frames / 2) / fps


def test_video_shorter_than_a_clip_gives_one_padded_clip():
    spec = BackboneSpec("test", 4.0, frames_per_clip=8, clip_stride=8, size=1, feature_dim=1, per_frame=False)
    frames = np.arange(5, dtype=np.uint8)[:, None, None, None] * np.ones((1, 1, 1, 3), np.uint8)
    clips, centres = group_clips(frames, np.arange(5) / 4 + 1.0, spec)
    assert clips.shape == (1, 8, 1, 1, 3)
    np.testing.assert_array_equal(clips[0, :, 0, 0, 0], [0, 1, 2, 3, 4, 4, 4, 4])
    np.testing.assert_allclose(centres, [2.0])


def test_clip_count_matches_the_clips_grouped():
    spec = SPECS["r2plus1d_18"]
    for frames in range(0, 60):
        clips, _ = group_clips(np.zeros((frames, 1, 1, 3), np.uint8), np.arange(frames) / spec.sample_fps, spec)
        assert len(clips) == spec.num_clips(frames)


def test_a_spec_without_frames_is_refused():
    with pytest.raises(ValueError, match="frames_per_clip >= 1"):
        BackboneSpec("bad", 8.0, frames_per_clip=0, clip_stride=1, size=1, feature_dim=1, per_frame=True)
