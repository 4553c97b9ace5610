"""The embedded default: a fresh service with no settings serves the bundled demo model, and it finds the
actions of the bundled sample video (held out from the demo's training videos)."""

from __future__ import annotations

import json

import pytest

from engine.localizer import Localizer
from engine.video.source import VideoSource
from service.settings import DEMO_CHECKPOINT, DEMO_ZOOM, Settings

SAMPLE = DEMO_CHECKPOINT.parent / "sample.mp4"
SAMPLE_ANNOTATIONS = DEMO_CHECKPOINT.parent / "sample.json"


def tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
    overlap = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return overlap / (max(a[1], b[1]) - min(a[0], b[0]))


@pytest.fixture(scope="module")
def demo_answer():
    settings = Settings(device="cpu")  # the defaults: no checkpoint given
    localizer = Localizer(settings.engine_settings())
    return localizer, localizer.localize(VideoSource.from_path(SAMPLE), settings.localize_limits.work, min_score=0.2)


def test_default_settings_serve_the_bundled_demo(demo_answer):
    localizer, _ = demo_answer
    assert localizer.config.features.backbone == "resnet18-2d"
    assert localizer.extractor.weights == "random-init"
    assert localizer.config.labels == sorted(localizer.config.labels) and len(localizer.config.labels) == 4


def found_actions(segments: list[dict]) -> tuple[int, int]:
    """How many of the sample's annotated actions have an answer of their label at tIoU >= 0.5, of how many."""
    truth = json.loads(SAMPLE_ANNOTATIONS.read_text())["database"]["sample"]["annotations"]
    assert len(truth) >= 2
    found = 0
    for action in truth:
        overlaps = [
            tiou((s["start_s"], s["end_s"]), tuple(action["segment"]))
            for s in segments
            if s["label"] == action["label"]
        ]
        found += max(overlaps, default=0.0) >= 0.5
    return found, len(truth)


def test_demo_finds_most_actions_of_the_sample_video(demo_answer):
    _, answer = demo_answer
    found, total = found_actions(answer.segments)
    assert found >= 0.75 * total, answer.segments[:10]


def test_the_bundled_zoom_checkpoint_finds_the_sample_videos_actions_in_one_decode():
    """service/demo/zoom, trained by the README's command (tools/train_zoom.py, configs/zoom.yaml) on the zoom
    benchmark's videos, none of which is the sample: zoom-average, a coarse pass on one feature per frame at
    4 fps, 16 fps windows, and the 16 fps detector over both (docs/zoom.md): a third less backbone than the dense
    default on this video."""
    settings = Settings(device="cpu", checkpoint=DEMO_ZOOM)
    answer = Localizer(settings.engine_settings()).localize(
        VideoSource.from_path(SAMPLE), settings.localize_limits.work, min_score=0.2
    )
    assert answer.zoom["decode"] == "one pass" and answer.zoom["refiner"] == "detector"
    assert answer.zoom["coarse_fps"] == 4.0 and answer.zoom["frames"]["zoom"] > 0
    assert 0.2 <= answer.flops["backbone_saved_ratio"] < 0.5
    found, total = found_actions(answer.segments)
    assert found == total, answer.segments[:10]


def test_a_zoom_checkpoint_answers_include_boundary_with_its_coarse_pass_fields_and_the_same_actions():
    """The bundled zoom's coarse detector is a BDR model: asked for the fields (include=boundary, a plot), the
    answer carries them at the coarse pass's positions, where it used to leave them out without a word."""
    settings = Settings(device="cpu", checkpoint=DEMO_ZOOM)
    localizer = Localizer(settings.engine_settings())
    plain, traced = (
        localizer.localize(VideoSource.from_path(SAMPLE), settings.localize_limits.work, min_score=0.2, fields=asked)
        for asked in (False, True)
    )
    positions = traced.positions()
    assert positions.boundary is not None and positions.boundary.shape == (len(positions.times_s), 2)
    assert len(positions.times_s) == traced.zoom["frames"]["coarse"]
    assert plain.positions().boundary is None
    assert [s["label"] for s in traced.segments] == [s["label"] for s in plain.segments]
    for a, b in zip(traced.segments, plain.segments, strict=True):
        assert (a["start_s"], a["end_s"], a["score"]) == pytest.approx((b["start_s"], b["end_s"], b["score"]))
    assert traced.flops["head"] > plain.flops["head"]


def test_label_ids_are_the_annotations_ids(demo_answer):
    _, answer = demo_answer
    truth = json.loads(SAMPLE_ANNOTATIONS.read_text())["database"]["sample"]["annotations"]
    ids = {action["label"]: action["label_id"] for action in truth}
    answered = {segment["label"]: segment["label_id"] for segment in answer.segments}
    assert ids and all(answered[label] == ids[label] for label in ids if label in answered)
    assert any(label in answered for label in ids)
