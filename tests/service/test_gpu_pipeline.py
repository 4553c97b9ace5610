"""The served request path on a CUDA host: NVDEC features, shared batches, the graphed head."""

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory):
    from torchcodec.encoders import VideoEncoder

    frames = torch.zeros(150, 3, 240, 320, dtype=torch.uint8)
    for t in range(150):
        frames[t, t % 3, 40:120, 2 * t : 2 * t + 80] = 220
    path = tmp_path_factory.mktemp("gpu") / "clip.mp4"
    VideoEncoder(frames, frame_rate=30).to_file(str(path), codec="libx264")
    return path


def test_cuda_localizer_answers_with_the_gpu_path_and_matches_the_cpu_path(moving_clip):
    from service.pipeline import GpuFeatureExtractor, Localizer
    from service.settings import Settings

    gpu = Localizer(Settings(device="cuda"))
    assert isinstance(gpu.extractor, GpuFeatureExtractor) and gpu.head.graphed is not None
    answer = gpu.localize(moving_clip, min_score=0.0)
    cpu = Localizer(Settings(device="cpu")).localize(moving_clip, min_score=0.0)
    assert answer.info.frames == cpu.info.frames == 150
    assert answer.timing_ms["total"] > 0 and answer.flops["backbone"] == cpu.flops["backbone"]
    assert answer.segments and cpu.segments
    # bf16 backbone, NVDEC colour conversion and GPU resize vs decord: close features, close top scores
    assert answer.segments[0]["score"] == pytest.approx(cpu.segments[0]["score"], abs=0.05)


def test_cuda_graph_head_and_eager_head_give_the_same_segments(moving_clip):
    from service.pipeline import Localizer
    from service.settings import Settings

    graphed = Localizer(Settings(device="cuda")).localize(moving_clip, min_score=0.0)
    eager = Localizer(Settings(device="cuda", cuda_graphs=False)).localize(moving_clip, min_score=0.0)
    assert len(graphed.segments) == len(eager.segments)
    for ours, theirs in zip(graphed.segments, eager.segments, strict=True):
        assert ours["label"] == theirs["label"]
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-3)
