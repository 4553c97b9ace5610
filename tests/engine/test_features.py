"""Clip features from decoded frames: the same on the CPU and the GPU, whatever the chunking, equal to a
brute-force computation over the whole video; progress as it goes; cancellation that ends the decoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import JobCancelledError
from engine.features.extractor import FeatureExtractor
from engine.video.decode import DecodeRequest, Decoding, FrameChunk, decode_frames
from engine.video.nvdec import split_ticks
from engine.video.source import VideoSource
from model.backbones import SPECS, build_backbone
from tests.conftest import ffmpeg
from tests.service.processes import decoder_children

SPEC = SPECS["resnet18-2d"]
REQUEST = DecodeRequest(fps=SPEC.sample_fps, size=(SPEC.size, SPEC.size))


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    torch.set_num_threads(1)
    return FeatureExtractor(SPEC, None, torch.device("cpu"))


@pytest.fixture(scope="module")
def walk(camera_footage, tmp_path_factory):
    """12 s of real camera footage: 96 sampled frames, 47 clips."""
    path = tmp_path_factory.mktemp("walk") / "walk.mp4"
    ffmpeg("-i", str(camera_footage), "-t", "12", "-c:v", "libx264", "-preset", "ultrafast", str(path))
    return path


def brute_force_features(frames: np.ndarray) -> torch.Tensor:
    """(C, K): the backbone on every frame, then clip k = the mean of frames [k * stride, k * stride + F)."""
    backbone, _ = build_backbone(SPEC.name)
    with torch.inference_mode():
        per_frame = backbone.frame_features(torch.from_numpy(frames))
    count = max(1, (len(frames) - SPEC.frames_per_clip) // SPEC.clip_stride + 1)
    clips = [per_frame[k * SPEC.clip_stride : k * SPEC.clip_stride + SPEC.frames_per_clip] for k in range(count)]
    if len(frames) < SPEC.frames_per_clip:  # one clip, its last frame repeated
        clips = [torch.cat([per_frame, per_frame[-1:].expand(SPEC.frames_per_clip - len(frames), -1)])]
    return torch.stack([clip.mean(0) for clip in clips]).T


def as_chunks(frames: np.ndarray, times: np.ndarray, cuts: list[int]) -> list[FrameChunk]:
    tensor = torch.from_numpy(frames)
    starts = [0, *cuts]
    return [
        FrameChunk(part, times[start : start + len(part)], start, len(frames))
        for start, part in zip(starts, torch.tensor_split(tensor, cuts), strict=True)
    ]


@pytest.mark.parametrize("chunk_frames", [7, 64, 10_000])
def test_features_of_decoded_chunks_equal_the_brute_force_over_the_whole_video(extractor, walk, chunk_frames):
    request = DecodeRequest(**{**REQUEST.__dict__, "chunk_frames": chunk_frames})
    with Decoding(VideoSource.from_path(walk), request, "decord") as decoding:
        extracted = extractor.features(decoding.chunks())
    frames, times, _ = decode_frames(walk, REQUEST)
    expected = brute_force_features(frames)
    assert extracted.features.shape == expected.shape == (512, 47)
    torch.testing.assert_close(extracted.features, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(extracted.clip_times, SPEC.clip_times(47, start_s=times[0]))
    assert extracted.backbone_flops == len(frames) * extractor.flops_per_unit


def test_the_cpu_and_the_gpu_chunking_give_the_same_clips_times_and_padding(walk, tmp_path):
    """The CPU decoder's chunks and NVDEC's parts (engine/video/nvdec.py) through the one extractor, built as
    on a GPU host (its batch sizes) but on the CPU: the same features, clip times and padding."""
    frames, times, _ = decode_frames(walk, REQUEST)
    cpu = FeatureExtractor(SPEC, None, torch.device("cpu"))
    gpu_shaped = FeatureExtractor(SPEC, None, torch.device("cpu"), batch=512, batch_wait_ms=1.0)
    cpu_cuts = list(range(256, len(frames), 256))
    parts = split_ticks(times, SPEC.sample_fps, part_s=1.3)
    gpu_cuts = np.cumsum([len(part) for part in parts])[:-1].tolist()
    for length in (len(frames), 3):  # the whole video, and one shorter than a clip (padded)
        ours = cpu.features(as_chunks(frames[:length], times[:length], [c for c in cpu_cuts if c < length]))
        theirs = gpu_shaped.features(as_chunks(frames[:length], times[:length], [c for c in gpu_cuts if c < length]))
        torch.testing.assert_close(ours.features, theirs.features, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(ours.clip_times, theirs.clip_times)
        torch.testing.assert_close(ours.features, brute_force_features(frames[:length]), rtol=1e-4, atol=1e-4)


def test_parts_are_cut_at_the_keyframe_nearest_each_even_cut_within_half_a_part():
    ticks = np.arange(80) / 8  # 10 s at 8 fps; parts of 2 s: even cuts at 2, 4, 6, 8 s
    parts = split_ticks(ticks, 8, 2.0, key_times=(0.0, 2.6, 3.7, 7.1))
    np.testing.assert_array_equal(np.concatenate(parts), ticks)
    # 2 s -> 2.6 (the first tick at or after it, 2.625); 4 s -> 3.7 (3.75); 6 s: none within 1 s, kept; 8 s -> 7.1
    assert [part[0] for part in parts] == [0.0, 2.625, 3.75, 6.0, 7.125]
    assert [len(part) for part in split_ticks(ticks, 8, 2.0)] == [16] * 5  # no keyframes known: even cuts


def test_the_nvdec_pool_cuts_at_keyframes_and_decodes_no_frame_twice(walk, tmp_path):
    """With a keyframe every 2.5 s and parts of about 3 s, every part after the first begins at a keyframe
    that comes after the previous part's last frame (its decoder starts there: nothing is decoded twice), and the
    pool, run through torchcodec on the CPU, still gives one decoder's frames."""
    from engine.video.decode import probe_video
    from engine.video.nvdec import NvdecPool
    from engine.video.sampling import sample_ticks

    path = tmp_path / "short_gop.mp4"
    ffmpeg("-i", str(walk), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-keyint_min", "25", str(path))
    info = probe_video(path)
    assert len(info.key_times) >= 4
    ticks = sample_ticks(info.frame_times[0], info.duration_s, REQUEST.fps)
    parts = split_ticks(ticks, REQUEST.fps, 3.0, info.key_times)
    assert len(parts) >= 3
    for before, part in zip(parts[:-1], parts[1:], strict=False):
        start_key = max(key for key in info.key_times if key <= part[0])
        assert info.frame_at(before[-1]) < info.frame_at(start_key)
    expected, _, _ = decode_frames(path, REQUEST, "torchcodec")
    pool = NvdecPool(torch.device("cpu"), engines=4, longest_part_s=3.0)
    chunks = list(pool.decode(VideoSource.from_path(path), info, REQUEST))
    pool.close()
    np.testing.assert_array_equal(torch.cat([c.frames for c in chunks]).numpy(), expected)


def test_progress_moves_to_the_end(extractor, media):
    seen = []
    request = DecodeRequest(**{**REQUEST.__dict__, "chunk_frames": 5})
    with Decoding(VideoSource.from_path(media / "clip.mp4"), request, "decord") as decoding:
        extractor.features(decoding.chunks(), progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) >= 4


def test_cancelling_ends_the_decoder_child_and_removes_its_files(camera_footage, tmp_path):
    stop = False
    request = DecodeRequest(fps=8, size=(112, 112), chunk_frames=4, timeout_s=60)
    decoding = Decoding(VideoSource.from_path(camera_footage), request, "decord", tmp_dir=tmp_path,
                        cancelled=lambda: stop)  # fmt: skip
    chunks = decoding.chunks()
    try:
        next(chunks)
        assert len(decoder_children()) == 1
        stop = True
        with pytest.raises(JobCancelledError):
            next(chunks)
    finally:
        decoding.close()
    assert decoder_children() == []
    assert list(tmp_path.iterdir()) == []


def test_the_nvdec_pool_gives_the_frames_of_one_decoder_in_time_order(media, walk):
    """The pool's parts, queues and ordering, run through torchcodec on the CPU where no GPU is present: the
    frames and times the isolated child's torchcodec gives, whatever the part length and how many run ahead;
    every third frame also at 48 px (coarse_size), in the chunk that holds it, as a 48 px decode gives it."""
    from engine.video.decode import probe_video
    from engine.video.nvdec import NvdecPool

    for path in (media / "vfr.mp4", walk):
        expected, expected_times, _ = decode_frames(path, REQUEST, "torchcodec")
        small, _, _ = decode_frames(path, DecodeRequest(fps=REQUEST.fps, size=(48, 48)), "torchcodec")
        info = probe_video(path)
        for longest_s, ahead in ((2.0, 2), (100.0, 1), (2.0, 6)):
            pool = NvdecPool(torch.device("cpu"), engines=3, longest_part_s=longest_s, parts_ahead=ahead)
            request = DecodeRequest(
                **{**REQUEST.__dict__, "chunk_frames": 5, "coarse_size": (48, 48), "coarse_every": 3}
            )
            chunks = list(pool.decode(VideoSource.from_path(path), info, request))
            pool.close()
            np.testing.assert_array_equal(torch.cat([c.frames for c in chunks]).numpy(), expected)
            np.testing.assert_array_equal(torch.cat([c.coarse for c in chunks]).numpy(), small[::3])
            for chunk in chunks:
                assert len(chunk.coarse) == len(range(-(-chunk.first // 3) * 3, chunk.first + len(chunk.times), 3))
            np.testing.assert_allclose(np.concatenate([c.times for c in chunks]), expected_times, atol=1e-6)
            assert [c.first for c in chunks] == list(np.cumsum([0] + [len(c.times) for c in chunks[:-1]]))
            assert max(len(c.times) for c in chunks) <= 5
            assert {c.total for c in chunks} == {len(expected)}


def test_the_nvdec_pool_decodes_the_coarse_pass_alone_beyond_one_pass_bytes(media):
    """NvdecPool.decode fits the request to the video's duration as the CPU child does (DecodeRequest.for_duration):
    one byte short of one pass, only every 2nd tick, at the coarse size, as a decode at half the rate gives."""
    from engine.video.decode import probe_video
    from engine.video.nvdec import NvdecPool

    path, info = media / "vfr.mp4", probe_video(media / "vfr.mp4")
    needed = int(np.ceil(info.duration_s * REQUEST.fps)) * SPEC.size * SPEC.size * 3
    request = DecodeRequest(
        **{**REQUEST.__dict__, "coarse_size": (48, 48), "coarse_every": 2, "one_pass_bytes": needed - 1}
    )
    pool = NvdecPool(torch.device("cpu"), engines=2, longest_part_s=2.0)
    try:
        chunks = list(pool.decode(VideoSource.from_path(path), info, request))
    finally:
        pool.close()
    small, times, _ = decode_frames(path, DecodeRequest(fps=REQUEST.fps / 2, size=(48, 48)), "torchcodec")
    assert all(c.coarse is None for c in chunks) and {c.total for c in chunks} == {len(small)}
    np.testing.assert_array_equal(torch.cat([c.frames for c in chunks]).numpy(), small)
    np.testing.assert_allclose(np.concatenate([c.times for c in chunks]), times, atol=1e-6)
