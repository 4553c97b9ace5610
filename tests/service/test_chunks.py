"""Chunked decoding and feature extraction: the same features as the whole video in memory, bounded work per
chunk, progress as it goes, cancellation that ends the decoder child."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.chunks import ClipCarry, complete_clips, decode_chunks
from service.errors import JobCancelledError
from service.pipeline import FeatureExtractor
from service.settings import Settings

from .conftest import ffmpeg
from .processes import decoder_children


def test_complete_clips_counts_like_a_loop_over_clip_starts():
    for frames_per_clip, stride in [(4, 2), (16, 4), (3, 3), (1, 1), (5, 7)]:
        for buffered in range(40):
            brute = sum(1 for start in range(buffered) if start + frames_per_clip <= buffered and start % stride == 0)
            assert complete_clips(buffered, frames_per_clip, stride) == brute


@pytest.mark.parametrize(("frames_per_clip", "stride"), [(4, 2), (16, 4), (5, 7)])
def test_clip_carry_yields_the_windows_of_the_whole_sequence(frames_per_clip, stride):
    items = np.arange(103)
    whole = [items[k : k + frames_per_clip] for k in range(0, len(items) - frames_per_clip + 1, stride)]
    carry = ClipCarry(frames_per_clip, stride)
    streamed = []
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(items)), size=9, replace=False))
    for part in np.split(items, cuts):
        window, clips = carry.push(part)
        streamed += [window[k * stride : k * stride + frames_per_clip] for k in range(clips)]
    assert carry.finish() is None
    assert len(streamed) == len(whole)
    for a, b in zip(streamed, whole, strict=True):
        np.testing.assert_array_equal(a, b)


def test_clip_carry_returns_a_video_shorter_than_one_clip_whole():
    carry = ClipCarry(16, 4)
    assert carry.push(np.arange(5))[1] == 0
    assert carry.push(np.arange(5, 9))[1] == 0
    np.testing.assert_array_equal(carry.finish(), np.arange(9))


@pytest.fixture(scope="module")
def extractor(tmp_path_factory) -> FeatureExtractor:
    torch.set_num_threads(1)
    settings = Settings(temp_dir=tmp_path_factory.mktemp("decode"))
    return FeatureExtractor("resnet18-2d", None, torch.device("cpu"), settings)


@pytest.mark.parametrize("chunk_frames", [7, 64, 10_000])
def test_chunked_features_equal_whole_video_features(extractor, camera_footage, chunk_frames, tmp_path):
    short = tmp_path / "walk.mp4"  # 12 s of real camera footage: 96 sampled frames, 47 clips
    ffmpeg("-i", str(camera_footage), "-t", "12", "-c:v", "libx264", "-preset", "ultrafast", str(short))
    whole = extractor.whole_video_features(short)
    extractor.chunk_frames = chunk_frames
    chunked = extractor.extract(short)
    assert chunked.features.shape == whole.features.shape == (512, 47)
    torch.testing.assert_close(chunked.features, whole.features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunked.clip_times, whole.clip_times)
    assert chunked.info == whole.info
    assert chunked.backbone_flops == whole.backbone_flops
    assert list(extractor.settings.temp_dir.iterdir()) == []


def test_a_video_shorter_than_one_clip_gives_one_padded_clip(extractor, tmp_path):
    tiny = tmp_path / "tiny.mp4"  # 0.3 s: 3 sampled frames, fewer than the 4 of a clip
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=10", "-t", "0.3", "-c:v", "libx264", str(tiny))
    extractor.chunk_frames = 2
    chunked = extractor.extract(tiny)
    whole = extractor.whole_video_features(tiny)
    assert chunked.features.shape == whole.features.shape == (512, 1)
    torch.testing.assert_close(chunked.features, whole.features, rtol=1e-5, atol=1e-5)


def test_progress_moves_through_decoding_and_features(extractor, media):
    seen = []
    extractor.chunk_frames = 5
    extractor.extract(media / "clip.mp4", progress=lambda stage, fraction: seen.append((stage, fraction)))
    assert {stage for stage, _ in seen} == {"decoding", "features"}
    fractions = [fraction for _, fraction in seen]
    assert fractions == sorted(fractions)
    assert len({f for f in fractions if 0 < f < 1}) >= 4


def test_chunks_arrive_in_order_with_their_timestamps(media):
    chunks = list(decode_chunks(media / "clip.mp4", sample_fps=8, size=(48, 64), chunk_frames=7, timeout_s=60))
    assert [c.first for c in chunks] == [0, 7, 14, 21]
    assert all(c.total == 24 for c in chunks)
    assert sum(len(c.frames) for c in chunks) == 24
    assert chunks[0].frames.shape[1:] == (48, 64, 3)
    times = np.concatenate([c.timestamps for c in chunks])
    np.testing.assert_allclose(np.diff(times), 1 / 8, atol=1 / 30 + 1e-6)


def test_cancelling_ends_the_decoder_child_and_removes_its_files(camera_footage, tmp_path):
    stop = False
    chunks = decode_chunks(
        camera_footage, sample_fps=8, size=(112, 112), chunk_frames=4, timeout_s=60, tmp_dir=tmp_path,
        cancelled=lambda: stop,
    )  # fmt: skip
    next(chunks)
    assert len(decoder_children()) == 1
    stop = True
    with pytest.raises(JobCancelledError):
        next(chunks)
    assert decoder_children() == []
    assert list(tmp_path.iterdir()) == []
