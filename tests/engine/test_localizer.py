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
