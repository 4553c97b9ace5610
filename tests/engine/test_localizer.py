"""The engine's Localizer on the CPU: cancellation at every stage, a video held in memory, the decoder named."""

from __future__ import annotations

import pytest

from engine.errors import JobCancelledError
from engine.localizer import Localizer
from engine.settings import EngineSettings, WorkLimits
from engine.video.source import VideoSource

LIMITS = WorkLimits(max_duration_s=600, timeout_s=120)


@pytest.fixture(scope="module")
def localizer(small_checkpoint) -> Localizer:
    return Localizer(EngineSettings(checkpoint=small_checkpoint, device="cpu"))


def test_work_cancelled_once_its_features_are_done_stops_before_the_head(localizer, media):
    reported = []

    def cancelled() -> bool:  # true from the moment the last frames went through the backbone
        return any(stage == "features" and share >= 0.95 for stage, share in reported)

    with pytest.raises(JobCancelledError):
        localizer.localize(
            VideoSource.from_path(media / "clip.mp4"), LIMITS, cancelled=cancelled,
            progress=lambda stage, share: reported.append((stage, share)),
        )  # fmt: skip
    assert "head" not in [stage for stage, _ in reported]


def test_a_video_in_memory_is_localized_as_its_file_and_names_its_decoder(localizer, media):
    from_file = localizer.localize(VideoSource.from_path(media / "clip.mp4"), LIMITS)
    source = VideoSource.from_bytes((media / "clip.mp4").read_bytes(), "upload.mp4")
    try:
        in_memory = localizer.localize(source, LIMITS)
    finally:
        source.close()
    assert in_memory.info.filename == "upload.mp4" and in_memory.decoder == from_file.decoder == "decord"
    assert in_memory.segments == from_file.segments
    assert in_memory.flops == from_file.flops


def test_the_traces_come_from_the_answer_of_the_same_request(localizer, media):
    found = localizer.localize(VideoSource.from_path(media / "clip.mp4"), LIMITS, fields=True)
    positions = found.positions()
    assert len(positions.times_s) == len(positions.depth) > 0
    assert positions.depth.max() <= positions.max_depth


def test_a_checkpoint_on_per_frame_features_gets_one_feature_per_sampled_frame(small_checkpoint, media, tmp_path):
    """The checkpoint's features.num_frames/feat_stride say how a per-frame backbone pools its frames (the zoom's
    coarse detectors read one feature per frame); the served checkpoint's 4 every 2 stays as it was."""
    import json
    import shutil

    import numpy as np

    from engine.video.sampling import sample_ticks

    per_frame = shutil.copytree(small_checkpoint, tmp_path / "per-frame")
    config = json.loads((per_frame / "config.json").read_text())
    config["features"].update(num_frames=1, feat_stride=1)
    (per_frame / "config.json").write_text(json.dumps(config))
    found = {}
    for name, checkpoint in (("clips", small_checkpoint), ("frames", per_frame)):
        localizer = Localizer(EngineSettings(checkpoint=checkpoint, device="cpu"))
        found[name] = localizer.localize(VideoSource.from_path(media / "clip.mp4"), LIMITS)
    ticks = sample_ticks(0.0, found["frames"].info.duration_s, 8.0)
    np.testing.assert_allclose(found["frames"].trace().times_s, (np.arange(len(ticks)) + 0.5) / 8.0, atol=1e-6)
    assert len(found["clips"].trace().times_s) == (len(ticks) - 4) // 2 + 1
    assert found["frames"].flops["backbone"] == found["clips"].flops["backbone"]  # the same frames, pooled otherwise


def test_a_clip_backbone_refuses_a_checkpoint_whose_features_are_cut_into_other_clips(small_checkpoint, tmp_path):
    import json
    import shutil

    from engine.errors import ConfigurationError
    from engine.preflight import check

    other = shutil.copytree(small_checkpoint, tmp_path / "other")
    config = json.loads((other / "config.json").read_text())
    config["features"]["backbone"] = "r2plus1d_18"  # 512-d too, but clips of 16 frames every 4
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigurationError, match="r2plus1d_18 computes clips of 16 frames every 4, not 4 every 2"):
        check(EngineSettings(checkpoint=other, device="cpu"))


def test_a_checkpoint_trained_at_another_rate_is_served_at_that_rate(small_checkpoint, media, tmp_path):
    """features.default_fps is the rate its features' frames were sampled at: a detector trained on 4 fps
    features samples at 4 fps (it was served at the backbone's 8 fps, where its actions last twice as many steps),
    its times in seconds at that rate, and its backbone counted for the frames it ran."""
    import json
    import shutil

    import numpy as np

    from engine.video.sampling import sample_ticks
    from model.backbones import build_backbone, flops_per_unit

    slower = shutil.copytree(small_checkpoint, tmp_path / "4fps")
    config = json.loads((slower / "config.json").read_text())
    config["features"]["default_fps"] = 4.0
    (slower / "config.json").write_text(json.dumps(config))
    localizer = Localizer(EngineSettings(checkpoint=slower, device="cpu"))
    found = localizer.localize(VideoSource.from_path(media / "clip.mp4"), LIMITS)
    ticks = sample_ticks(0.0, found.info.duration_s, 4.0)
    clips = (len(ticks) - 4) // 2 + 1
    np.testing.assert_allclose(found.trace().times_s, (np.arange(clips) * 2 + 2) / 4.0, atol=1e-6)
    assert found.flops["backbone"] == len(ticks) * flops_per_unit(build_backbone("resnet18-2d")[0])
    with localizer.frames(VideoSource.from_path(media / "clip.mp4"), LIMITS) as (_, _, chunks):
        np.testing.assert_allclose(np.concatenate([chunk.times for chunk in chunks]), ticks, atol=0.05)


def test_a_zoom_checkpoint_that_names_no_backbone_samples_its_coarse_pass_at_its_detectors_rate(
    zoom_checkpoint, tmp_path
):  # fmt: skip
    """TZN_BACKBONE chooses the backbone; the coarse detector still reads frames at its own rate (2 fps here)."""
    import json
    import shutil

    from engine.video.sampling import sample_ticks

    unnamed = shutil.copytree(zoom_checkpoint, tmp_path / "unnamed")
    config = json.loads((unnamed / "config.json").read_text())
    config["features"]["backbone"] = None
    (unnamed / "config.json").write_text(json.dumps(config))
    found = {}
    for name, checkpoint, backbone in (("named", zoom_checkpoint, None), ("unnamed", unnamed, "resnet18-2d")):
        localizer = Localizer(EngineSettings(checkpoint=checkpoint, device="cpu", backbone=backbone))
        found[name] = localizer.localize(VideoSource.from_path("service/demo/sample.mp4"), LIMITS)
    coarse = found["unnamed"].zoom["frames"]["coarse"]
    assert coarse == found["named"].zoom["frames"]["coarse"] == len(sample_ticks(0.0, 30.0, 2.0))
    assert found["unnamed"].segments == found["named"].segments
