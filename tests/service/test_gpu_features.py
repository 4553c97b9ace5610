import numpy as np
import pytest
import torch

from model.backbones import SPECS, group_clips
from service.gpu_features import ClipAssembler


@pytest.mark.parametrize("frames", [3, 16, 17, 40, 101])
@pytest.mark.parametrize("chunk", [1, 7, 32, 256])
def test_clips_assembled_from_chunks_equal_group_clips(frames, chunk):
    video = torch.randint(0, 255, (frames, 2, 2, 3), dtype=torch.uint8)
    expected, _ = group_clips(video.numpy(), np.arange(frames, dtype=float), SPECS["r2plus1d_18"])
    assembler = ClipAssembler(16, 4)
    pieces = [assembler.push(video[i : i + chunk]) for i in range(0, frames, chunk)]
    if (last := assembler.finish()) is not None:
        pieces.append(last)
    assert np.array_equal(torch.cat(pieces).numpy(), expected)


@pytest.fixture(scope="module")
def encoded_clip(tmp_path_factory):
    """3 s of moving squares, H.264 via torchcodec's encoder (GPU hosts may have no ffmpeg program)."""
    from torchcodec.encoders import VideoEncoder

    frames = torch.zeros(90, 3, 240, 320, dtype=torch.uint8)
    for t in range(90):
        frames[t, t % 3, 40:120, 3 * t : 3 * t + 80] = 220
    path = tmp_path_factory.mktemp("gpu") / "clip.mp4"
    VideoEncoder(frames, frame_rate=30).to_file(str(path), codec="libx264")
    return path


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("backbone", ["resnet18-2d", "r2plus1d_18"])
def test_cuda_features_match_the_cpu_path(encoded_clip, backbone):
    from model.backbones import build_backbone
    from service.gpu_features import CudaFeatureExtractor
    from service.torchcodec_video import decode_sampled

    spec = SPECS[backbone]
    extractor = CudaFeatureExtractor(backbone, chunk_frames=7, segment_s=1.0)  # 3 segments at once
    info, features, clip_times, timing, flops = extractor.extract(encoded_clip)
    frames, stamps, _ = decode_sampled(encoded_clip, sample_fps=spec.sample_fps, size=(spec.size,) * 2, device="cuda")
    assert frames.is_cuda
    reference_net, _ = build_backbone(backbone)
    reference_net = reference_net.cuda()
    with torch.no_grad():
        if spec.per_frame:
            reference = reference_net.pool_clips(reference_net.frame_features(frames))
        else:
            clips, _ = group_clips(frames.cpu().numpy(), stamps, spec)
            reference = reference_net(torch.from_numpy(np.ascontiguousarray(clips)).cuda())
    reference = reference.float().T.cpu()
    assert features.shape == reference.shape
    relative = (features - reference).norm() / reference.norm()
    assert relative < 2e-2, f"bf16 features off by {relative:.3g}"
    assert flops > 0 and timing["decode"] > 0
    assert clip_times[0] == pytest.approx(stamps[0] + spec.frames_per_clip / 2 / spec.sample_fps)
