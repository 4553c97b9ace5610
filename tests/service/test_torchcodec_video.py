"""torchcodec decoding against decord: the same frames chosen by time, the same pixels at full size."""

import numpy as np
import pytest
import torch

from service.decode import decode_frames, sample_indices
from service.errors import NotAVideoError, VideoDecodeError
from service.torchcodec_video import decode_sampled, resize_frames, sample_times


def test_sample_times_are_the_ticks_of_sample_indices():
    starts = np.array([0.0, 0.04, 0.08, 0.1, 0.3, 0.33, 0.5])
    for fps in (1.0, 7.0, 10.0, 30.0):
        times = sample_times(0.0, 0.6, fps)
        brute = [np.flatnonzero(starts <= t)[-1] for t in times]
        assert brute == sample_indices(starts, 0.6, fps).tolist()


@pytest.mark.parametrize("name", ["clip.mp4", "vfr.mp4"])
def test_same_frames_as_decord(media, name):
    frames, stamps, info = decode_frames(media / name, sample_fps=8)
    ours, our_stamps, our_info = decode_sampled(media / name, sample_fps=8)
    np.testing.assert_allclose(our_stamps, stamps, atol=1e-5)
    assert np.array_equal(ours.numpy(), frames)
    assert (our_info.frames, our_info.width, our_info.height) == (info.frames, info.width, info.height)
    assert our_info.duration_s == pytest.approx(info.duration_s, abs=1e-3)


@pytest.mark.slow
def test_same_frames_as_decord_on_camera_footage(camera_footage):
    frames, stamps, info = decode_frames(camera_footage, sample_fps=2)
    ours, our_stamps, our_info = decode_sampled(camera_footage, sample_fps=2, threads=2)
    np.testing.assert_allclose(our_stamps, stamps, atol=1e-5)
    assert np.abs(ours.numpy().astype(int) - frames).max() <= 2  # two FFmpeg builds' YUV->RGB rounding
    assert our_info.fps == pytest.approx(info.fps)


def test_resized_frames_stay_close_to_decords_resize(media):
    frames, _, _ = decode_frames(media / "clip.mp4", sample_fps=4, size=(112, 112))
    ours, _, _ = decode_sampled(media / "clip.mp4", sample_fps=4, size=(112, 112))
    assert ours.shape == frames.shape and ours.dtype == torch.uint8
    # different resamplers (bilinear+antialias vs FFmpeg's scaler) on sharp test-pattern edges: ~5 levels mean;
    # a wrong frame or channel order gives tens
    assert np.abs(ours.numpy().astype(float) - frames).mean() < 8.0


def test_resize_keeps_the_size_when_it_already_fits():
    frames = torch.randint(0, 255, (2, 3, 8, 6), dtype=torch.uint8)
    assert torch.equal(resize_frames(frames, (8, 6)), frames.permute(0, 2, 3, 1))


def test_non_video_is_a_typed_error(media):
    with pytest.raises((NotAVideoError, VideoDecodeError)):
        decode_sampled(media / "tone.m4a", sample_fps=8)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_nvdec_decodes_into_gpu_memory_the_frames_the_cpu_decodes(tmp_path):
    from torchcodec.encoders import VideoEncoder

    frames = torch.zeros(60, 3, 240, 320, dtype=torch.uint8)
    for t in range(60):
        frames[t, :, 20:200, 4 * t : 4 * t + 60] = torch.tensor([200, 60, 30], dtype=torch.uint8)[:, None, None]
    path = tmp_path / "clip.mp4"
    VideoEncoder(frames, frame_rate=30).to_file(str(path), codec="libx264")
    cpu, cpu_stamps, _ = decode_sampled(path, sample_fps=8)
    gpu, gpu_stamps, _ = decode_sampled(path, sample_fps=8, device="cuda")
    assert gpu.is_cuda
    np.testing.assert_allclose(gpu_stamps, cpu_stamps)
    # NVDEC's and FFmpeg's YUV->RGB conversions round differently
    assert (gpu.cpu().float() - cpu.float()).abs().mean() < 3.0
    resized, _, _ = decode_sampled(path, sample_fps=8, size=(112, 112), device="cuda")
    assert resized.is_cuda and resized.shape[1:] == (112, 112, 3)


@pytest.mark.parametrize("name", ["clip.mp4", "vfr.mp4"])
def test_segments_decoded_at_once_give_the_frames_of_one_decoder(media, name):
    from service.torchcodec_video import iter_sampled, iter_segments, open_decoder, stream_of

    decoder = open_decoder(media / name)
    stream = stream_of(decoder, name)
    times = sample_times(stream.begin_s, stream.end_s, 8.0)
    whole = list(iter_sampled(decoder, times, None, chunk=5))
    parts = list(iter_segments(media / name, times, None, segments=3, chunk=5))
    assert torch.equal(torch.cat([f for f, _ in parts]), torch.cat([f for f, _ in whole]))
    assert np.array_equal(np.concatenate([p for _, p in parts]), np.concatenate([p for _, p in whole]))
