"""NVDEC on a CUDA host, held to the CPU decoders on real footage in every format: the same frames, the same
pixels within tolerance on the backbone's input, features within 1%, the same actions. Formats NVDEC does not
decode go to a CPU decoder, which the answer names. Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import JobCancelledError
from engine.localizer import Localizer
from engine.settings import EngineSettings, WorkLimits
from engine.video.choice import nvdec_decodes
from engine.video.decode import DecodeRequest, Decoding, decode_frames
from engine.video.source import VideoSource
from service.settings import DEMO_CHECKPOINT, DEMO_VIDEO

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

LIMITS = WorkLimits(max_duration_s=3600, timeout_s=300)
INPUT = DecodeRequest(fps=8.0, size=(112, 112), chunk_frames=64, timeout_s=300)


@pytest.fixture(scope="module")
def gpu() -> Localizer:
    return Localizer(EngineSettings(checkpoint=DEMO_CHECKPOINT, device="cuda"), warm_up_video=DEMO_VIDEO)


@pytest.fixture(scope="module")
def cpu() -> Localizer:
    return Localizer(EngineSettings(checkpoint=DEMO_CHECKPOINT, device="cpu", decoder="decord"))


def nvdec_frames(localizer: Localizer, path) -> tuple[np.ndarray, np.ndarray, str]:
    source = VideoSource.from_path(path)
    with localizer.frames(source, LIMITS) as (info, decoder, chunks):
        pieces = list(chunks)
    frames = torch.cat([chunk.frames.cpu() for chunk in pieces]).numpy()
    return frames, np.concatenate([chunk.times for chunk in pieces]), decoder


def test_nvdec_decodes_what_it_can_and_the_cpu_the_rest_named_in_the_answer(gpu, parity_media):
    for name, path in parity_media.items():
        with Decoding(VideoSource.from_path(path), INPUT, None) as decoding:
            stream = decoding.info.stream
        # NVDEC where it decodes the stream, but decord's in-order decode for an AVI with B-frames (readers.py)
        expected = "decord" if stream.decoder == "decord" else "torchcodec-nvdec" if nvdec_decodes(stream) else \
            "torchcodec"  # fmt: skip
        assert gpu.localize(VideoSource.from_path(path), LIMITS).decoder == expected, name


def test_nvdec_gives_the_backbone_the_frames_and_pixels_of_both_cpu_decoders(gpu, parity_media):
    for name, path in parity_media.items():
        ours, our_times, decoder = nvdec_frames(gpu, path)
        for cpu_decoder in ("decord", "torchcodec"):
            theirs, their_times, _ = decode_frames(path, INPUT, cpu_decoder)
            np.testing.assert_allclose(our_times, their_times, atol=1e-5, err_msg=f"{name} {cpu_decoder}")
            difference = ours.astype(np.float64) - theirs
            bias = np.abs(difference.mean(axis=(0, 1, 2))).max()
            assert bias <= 1.0 and np.abs(difference).mean() <= 2.0, (name, decoder, cpu_decoder, bias)


def test_gpu_features_and_answers_match_the_cpu_path(gpu, cpu, parity_media):
    step_s = cpu.spec.clip_stride / cpu.spec.sample_fps
    for name, path in parity_media.items():
        _, _, ours = gpu.extract(VideoSource.from_path(path), LIMITS)
        _, _, theirs = cpu.extract(VideoSource.from_path(path), LIMITS)
        relative = (ours.features.float().cpu() - theirs.features).norm() / theirs.features.norm()
        assert relative <= 0.01, (name, float(relative))
        # the same actions: every action one side scores clearly above the threshold (0.22) has its twin on the
        # other side among those above 0.18, so that a segment scored 0.201 on one side and 0.199 on the other,
        # the threshold's doing, does not count as a different answer
        found = gpu.localize(VideoSource.from_path(path), LIMITS, min_score=0.18).segments
        expected = cpu.localize(VideoSource.from_path(path), LIMITS, min_score=0.18).segments
        for ours, theirs in ((found, expected), (expected, found)):
            for action in (s for s in ours if s["score"] >= 0.22):
                assert any(same_action(action, other, step_s) for other in theirs), (name, action)


def same_action(a: dict, b: dict, step_s: float) -> bool:
    """Same label, boundaries within one feature step, score within 0.02."""
    return (
        a["label"] == b["label"] and abs(a["start_s"] - b["start_s"]) <= step_s
        and abs(a["end_s"] - b["end_s"]) <= step_s and abs(a["score"] - b["score"]) <= 0.02
    )  # fmt: skip


def test_a_cancelled_nvdec_request_stops_and_ends_cancelled(gpu, parity_media):
    path = parity_media["untagged_25fps.mp4"]
    seen = []  # cancelled once the first frames went through the backbone: mid-run, on NVDEC's frames

    with pytest.raises(JobCancelledError):
        gpu.localize(
            VideoSource.from_path(path), LIMITS, progress=lambda stage, share: seen.append(stage),
            cancelled=lambda: "features" in seen,
        )  # fmt: skip
    assert "head" not in seen


def test_cuda_graph_head_and_eager_head_give_the_same_segments(gpu, parity_media):
    eager = Localizer(EngineSettings(checkpoint=DEMO_CHECKPOINT, device="cuda", cuda_graphs=False))
    path = parity_media["untagged_25fps.mp4"]
    graphed = gpu.localize(VideoSource.from_path(path), LIMITS).segments
    plain = eager.localize(VideoSource.from_path(path), LIMITS).segments
    assert [s["label"] for s in graphed] == [s["label"] for s in plain]
    for ours, theirs in zip(graphed, plain, strict=True):
        assert ours["score"] == pytest.approx(theirs["score"], abs=1e-3)


def test_nvdec_windows_are_the_cpu_decoders_windows(gpu, parity_media):
    """DecodeRequest.spans on NVDEC (the zoom's second decode): the frames a CPU window decode gives."""
    spans = ((0.4, 1.3), (2.2, 2.9))
    path = parity_media["untagged_25fps.mp4"]
    with gpu.frames(VideoSource.from_path(path), LIMITS, fps=16.0, spans=spans) as (_, decoder, chunks):
        pieces = list(chunks)
    assert decoder == "torchcodec-nvdec"
    ours = torch.cat([chunk.frames.cpu() for chunk in pieces]).numpy()
    request = DecodeRequest(fps=16.0, size=(112, 112), spans=spans, timeout_s=300)
    theirs, their_times, _ = decode_frames(path, request, "decord")
    np.testing.assert_allclose(np.concatenate([chunk.times for chunk in pieces]), their_times, atol=1e-5)
    difference = ours.astype(np.float64) - theirs
    assert np.abs(difference.mean(axis=(0, 1, 2))).max() <= 1.0 and np.abs(difference).mean() <= 2.0


def test_nvdec_coarse_frames_are_the_cpu_decoders_at_that_size(gpu, parity_media):
    """DecodeRequest.coarse_size on NVDEC (a zoom whose coarse pass reads 64 px frames, in one decode): every n-th
    frame also at 64 px, in its chunk, the pixels a CPU decode at 64 px gives."""
    path = parity_media["untagged_25fps.mp4"]
    with gpu.frames(VideoSource.from_path(path), LIMITS, fps=16.0, coarse_size=64, coarse_every=4) as (_, _, chunks):
        pieces = list(chunks)
    ours = torch.cat([chunk.coarse.cpu() for chunk in pieces]).numpy()
    assert [len(c.coarse) for c in pieces] == [
        len(range(-(-c.first // 4) * 4, c.first + len(c.times), 4)) for c in pieces
    ]
    theirs, _, _ = decode_frames(path, DecodeRequest(fps=4.0, size=(64, 64), timeout_s=300), "decord")
    difference = ours.astype(np.float64) - theirs
    assert np.abs(difference.mean(axis=(0, 1, 2))).max() <= 1.0 and np.abs(difference).mean() <= 2.0


@pytest.mark.parametrize("spool_mb", [1024.0, 0.0])
def test_a_zoom_checkpoint_runs_on_nvdec_with_one_decode_and_with_two(zoom_checkpoint, parity_media, spool_mb):
    """The zoom on a GPU host, one decode (NVDEC frames spooled from GPU memory) and two, beside the CPU: as many
    coarse frames, decoded as often. Its random-weight detector is not held to the CPU's actions (bf16 moves
    its near-tied candidates); the windows' pixels are held to the CPU's by the test above."""
    path = parity_media["untagged_25fps.mp4"]
    answers = {}
    for device, decoder in (("cuda", "auto"), ("cpu", "decord")):
        settings = EngineSettings(checkpoint=zoom_checkpoint, device=device, decoder=decoder, zoom_spool_mb=spool_mb)
        answers[device] = Localizer(settings).localize(VideoSource.from_path(path), LIMITS)
    gpu_answer, cpu_answer = answers["cuda"], answers["cpu"]
    assert gpu_answer.decoder == "torchcodec-nvdec"
    assert gpu_answer.zoom["decode"] == cpu_answer.zoom["decode"] == ("one pass" if spool_mb else "two passes")
    assert gpu_answer.zoom["frames"]["coarse"] == cpu_answer.zoom["frames"]["coarse"]
    assert gpu_answer.zoom["frames"]["zoom"] > 0
    assert gpu_answer.segments and all(0 <= s["start_s"] < s["end_s"] for s in gpu_answer.segments)


def test_the_detector_refiner_runs_on_the_gpu_as_on_the_cpu(zoom_checkpoint, tmp_path, parity_media):
    """The "detector" refiner on a GPU host (hybrid grid and second head on the device): the same windows as the
    CPU's from the same coarse frames, and the zoom rate's detector's actions."""
    from tests.conftest import detector_zoom

    checkpoint = detector_zoom(zoom_checkpoint, tmp_path)
    path = parity_media["untagged_25fps.mp4"]
    answers = {
        device: Localizer(EngineSettings(checkpoint=checkpoint, device=device, decoder=decoder)).localize(
            VideoSource.from_path(path), LIMITS
        )
        for device, decoder in (("cuda", "auto"), ("cpu", "decord"))
    }
    gpu_answer, cpu_answer = answers["cuda"], answers["cpu"]
    assert gpu_answer.zoom["refiner"] == cpu_answer.zoom["refiner"] == "detector"
    assert gpu_answer.zoom["frames"]["coarse"] == cpu_answer.zoom["frames"]["coarse"]
    assert gpu_answer.flops["head"] > 0 and gpu_answer.segments
    assert all(0 <= s["start_s"] < s["end_s"] <= gpu_answer.info.duration_s for s in gpu_answer.segments)
