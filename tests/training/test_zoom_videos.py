"""The zoom benchmark's videos: fades centred on the annotated boundaries, short and long actions, distractors,
three splits."""

from __future__ import annotations

import numpy as np
import pytest

from training.demo_videos import Scene
from training.zoom_videos import plan_zoom_video, split_of, zoom_annotation_entry


def test_a_fade_is_half_visible_at_its_annotated_boundary_and_absent_before_it():
    videos = [plan_zoom_video(i, 0, 40.0, 30, 160, 120, "training") for i in range(40)]
    faded = next(a for v in videos for a in v.actions if a.ramp_in_s > 0.6)
    assert faded.opacity(faded.start_s) == pytest.approx(0.5)
    assert faded.opacity(faded.start_s - faded.ramp_in_s / 2) == pytest.approx(0.0)
    assert faded.opacity(faded.start_s + faded.ramp_in_s / 2) == pytest.approx(1.0)
    video = next(v for v in videos if faded in v.actions)
    scene = Scene(video)
    before = round((faded.start_s - faded.ramp_in_s / 2 - 0.1) * 30)
    during = round(faded.start_s * 30)
    after = round((faded.start_s + faded.ramp_in_s / 2 + 0.1) * 30)

    def saturation(index):  # the background is grey: colour is the shape, and how strongly it shows
        frame = scene.render(index).astype(int)
        spread = frame.max(-1) - frame.min(-1)
        return int((spread > 40).sum()), float(spread[spread > 40].mean()) if (spread > 40).any() else 0.0

    assert saturation(before)[0] == 0
    (shown, half_strength), (_, full_strength) = saturation(during), saturation(after)
    assert shown > 0 and 0.35 * full_strength < half_strength < 0.75 * full_strength


def test_the_benchmark_has_short_and_long_actions_fades_cuts_and_distractors_in_three_splits():
    videos = [plan_zoom_video(i, 0, 30.0, 30, 160, 120, split_of(i, 104)) for i in range(104)]
    lengths = np.array([a.end_s - a.start_s for v in videos for a in v.actions])
    ramps = np.array([r for v in videos for a in v.actions for r in (a.ramp_in_s, a.ramp_out_s)])
    assert (lengths < 3).mean() > 0.3 and (lengths > 3).mean() > 0.3 and lengths.min() >= 0.5
    assert 0.3 < (ramps > 0).mean() < 0.7 and ramps.max() <= 2.0
    assert sum(len(v.distractors) for v in videos) > 10
    assert {v.subset for v in videos} == {"training", "validation", "test"}
    assert sum(v.subset == "validation" for v in videos) == 16 and sum(v.subset == "test" for v in videos) == 26
    for video in videos:
        actions = sorted(video.actions, key=lambda a: a.start_s)
        for first, second in zip(actions, actions[1:], strict=False):  # fades of neighbours never overlap
            assert first.end_s + first.ramp_out_s / 2 < second.start_s - second.ramp_in_s / 2
        entry = zoom_annotation_entry(video)
        assert [a["boundary_widths"] for a in entry["annotations"]] == [
            [a.ramp_in_s, a.ramp_out_s] for a in video.actions
        ]


def test_a_sharp_side_or_a_distractor_is_drawn_only_within_its_interval():
    videos = [plan_zoom_video(i, 0, 40.0, 30, 160, 120, "training") for i in range(60)]
    half = next(a for v in videos for a in v.actions if a.ramp_in_s == 0 and a.ramp_out_s > 0)
    assert half.opacity(half.start_s - 1 / 30) == 0.0 and half.opacity(half.start_s) == 1.0
    assert half.opacity(half.end_s + half.ramp_out_s / 2 + 0.01) == 0.0
    distractor = next(d for v in videos for d in v.distractors)
    assert distractor.opacity(distractor.start_s - 1 / 30) == 0.0 == distractor.opacity(distractor.end_s)
    assert distractor.opacity(distractor.start_s) == 1.0
    for video in videos[:10]:  # nothing but the annotated actions and distractors is ever drawn in colour
        scene, quiet = Scene(video), []
        for index in range(0, video.frames, 15):
            t = index / 30
            if all(a.opacity(t) == 0 for a in (*video.actions, *video.distractors)):
                frame = scene.render(index).astype(int)
                quiet.append(int((frame.max(-1) - frame.min(-1) > 40).sum()))  # saturated pixels
        assert quiet and max(quiet) == 0
