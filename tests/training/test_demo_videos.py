"""The demo generator draws what its annotations say, decodably, and deterministically."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from engine.video.decode import DecodeRequest, decode_frames
from training.demo_videos import ANNOTATIONS_FILE, CLASS_COLOURS, CLASSES, Scene, generate, plan_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg binary (apt install ffmpeg)")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("demo")
    annotations = generate(output, videos=4, seed=7, duration_s=(14.0, 18.0), width=192, height=144)
    return output, annotations


def class_pixel_fractions(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) -> (N, classes): share of pixels within a small RGB distance of each class colour."""
    distance = np.linalg.norm(frames[:, :, :, None, :].astype(np.float32) - CLASS_COLOURS.astype(np.float32), axis=-1)
    return (distance < 60).mean(axis=(1, 2))


def test_annotations_are_actionformer_format(demo):
    output, annotations = demo
    assert json.loads((output / ANNOTATIONS_FILE).read_text()) == annotations
    database = annotations["database"]
    assert sorted(database) == ["demo_0000", "demo_0001", "demo_0002", "demo_0003"]
    assert [database[v]["subset"] for v in sorted(database)] == ["training", "training", "training", "test"]
    for entry in database.values():
        assert 14.0 <= entry["duration"] <= 18.0 and entry["fps"] == 30.0
        assert entry["annotations"], "every demo video has at least one action"
        ends = 0.0
        for action in entry["annotations"]:
            start, end = action["segment"]
            assert ends < start < end <= entry["duration"]  # ordered, non-overlapping
            assert CLASSES[action["label_id"]] == action["label"]
            ends = end


def test_video_decodes_with_annotated_duration_and_size(demo):
    output, annotations = demo
    for video_id, entry in annotations["database"].items():
        _, _, info = decode_frames(output / f"{video_id}.mp4", DecodeRequest(fps=0.01))
        assert (info.width, info.height, info.fps) == (192, 144, 30.0)
        assert info.duration_s == pytest.approx(entry["duration"], abs=1 / 30)


def test_action_colour_is_visible_exactly_inside_annotated_intervals(demo):
    output, annotations = demo
    for video_id, entry in annotations["database"].items():
        frames, timestamps, _ = decode_frames(output / f"{video_id}.mp4", DecodeRequest(fps=5))
        fractions = class_pixel_fractions(frames)
        frame_numbers = np.round(timestamps * entry["fps"])  # decord's timestamps are float32
        expected = np.full(len(frames), -1)
        for action in entry["annotations"]:
            start, end = np.round(np.array(action["segment"]) * entry["fps"])
            expected[(frame_numbers >= start) & (frame_numbers < end)] = action["label_id"]
        for index, label_id in enumerate(expected):
            if label_id >= 0:
                assert fractions[index, label_id] > 0.004, (video_id, timestamps[index], CLASSES[label_id])
                others = np.delete(fractions[index], label_id)
                assert others.max() < 0.001, (video_id, timestamps[index])
            else:
                assert fractions[index].max() < 0.001, (video_id, timestamps[index], fractions[index])


def test_same_seed_gives_same_plan_and_pixels():
    first = plan_video(3, seed=11, duration_s=20, fps=30, width=160, height=120, subset="training")
    second = plan_video(3, seed=11, duration_s=20, fps=30, width=160, height=120, subset="training")
    other = plan_video(3, seed=12, duration_s=20, fps=30, width=160, height=120, subset="training")
    assert first == second and first != other
    np.testing.assert_array_equal(Scene(first).render(95), Scene(second).render(95))


def test_background_moves_without_actions():
    video = plan_video(0, seed=1, duration_s=10, fps=30, width=160, height=120, subset="training")
    scene = Scene(video)
    assert np.abs(scene.render(0).astype(int) - scene.render(15).astype(int)).mean() > 5


def test_command_line_writes_videos_and_annotations(tmp_path):
    command = [sys.executable, "-m", "training.demo_videos", "--output", str(tmp_path), "--videos", "1"]
    command += ["--seed", "2", "--duration", "4", "--width", "128", "--height", "96"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "wrote 1 videos" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [ANNOTATIONS_FILE, "demo_0000.mp4"]


def test_odd_frame_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        generate(tmp_path, videos=1, width=321, height=240)


def test_action_starts_and_ends_on_the_annotated_frame(demo):
    output, annotations = demo
    entry = annotations["database"]["demo_0000"]
    frames, _, _ = decode_frames(output / "demo_0000.mp4")
    for action in entry["annotations"]:
        first, stop = np.round(np.array(action["segment"]) * entry["fps"]).astype(int)
        fractions = class_pixel_fractions(frames[[first - 1, first, stop - 1, stop]])[:, action["label_id"]]
        assert fractions[0] < 0.001 and fractions[1] > 0.004 and fractions[2] > 0.004 and fractions[3] < 0.001
