"""The one clip windower: which frames make each clip and the time of its feature, whole or in chunks."""

import numpy as np
import pytest
import torch

from engine.features.windows import ClipWindower, clip_windows, whole_clips
from model.backbones import SPECS, BackboneSpec


def test_whole_clips_counts_like_a_loop_over_clip_starts():
    for frames_per_clip, stride in [(4, 2), (16, 4), (3, 3), (1, 1), (5, 7)]:
        for count in range(40):
            brute = sum(1 for start in range(count) if start + frames_per_clip <= count and start % stride == 0)
            assert whole_clips(count, frames_per_clip, stride) == brute


def test_clips_follow_the_feature_time_convention():
    spec = BackboneSpec("test", 30.0, frames_per_clip=16, clip_stride=4, size=2, feature_dim=1, per_frame=False)
    frames = torch.arange(100)[:, None] * torch.ones(1, 3, dtype=torch.long)
    clips = clip_windows(frames, spec.frames_per_clip, spec.clip_stride)
    assert clips.shape == (22, 16, 3) and len(clips) == spec.num_clips(100)
    np.testing.assert_array_equal(clips[5, :, 0].numpy(), np.arange(20, 36))
    np.testing.assert_allclose(spec.clip_times(22), (np.arange(22) * 4 + 8) / 30)  # (i * stride + F / 2) / fps


@pytest.mark.parametrize(("frames_per_clip", "stride"), [(4, 2), (16, 4), (5, 7), (1, 1)])
def test_streamed_clips_are_the_clips_of_the_whole_sequence(frames_per_clip, stride):
    items = torch.arange(103 * 2).reshape(103, 2)
    whole = [items[k : k + frames_per_clip] for k in range(0, len(items) - frames_per_clip + 1, stride)]
    windower = ClipWindower(frames_per_clip, stride)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(items)), size=9, replace=False)).tolist()
    streamed = torch.cat([windower.push(part) for part in torch.tensor_split(items, cuts)])
    assert windower.finish() is None
    assert len(streamed) == len(whole)
    for a, b in zip(streamed, whole, strict=True):
        torch.testing.assert_close(a, b)


def test_a_video_shorter_than_one_clip_gives_one_clip_padded_with_its_last_frame():
    windower = ClipWindower(8, 8)
    assert len(windower.push(torch.arange(3))) == 0
    assert len(windower.push(torch.arange(3, 5))) == 0
    torch.testing.assert_close(windower.finish(), torch.tensor([[0, 1, 2, 3, 4, 4, 4, 4]]))


def test_an_empty_video_gives_no_clip():
    assert ClipWindower(4, 2).finish() is None


def test_clip_count_matches_the_clips_windowed():
    spec = SPECS["r2plus1d_18"]
    for frames in range(1, 60):
        windower = ClipWindower(spec.frames_per_clip, spec.clip_stride)
        clips = len(windower.push(torch.zeros(frames, 1))) + (windower.finish() is not None)
        assert clips == spec.num_clips(frames)


def test_a_spec_without_frames_is_refused():
    with pytest.raises(ValueError, match="frames_per_clip >= 1"):
        BackboneSpec("bad", 8.0, frames_per_clip=0, clip_stride=1, size=1, feature_dim=1, per_frame=True)
