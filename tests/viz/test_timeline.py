"""The timeline picture: drawn from an answer's data, PNG and SVG, with thumbnails decoded as a request decodes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.video.decode import thumbnails as video_thumbnails
from tzn import main
from viz.timeline import Curve, Interval, Timeline, TimelineError, ground_truth, render


def small_timeline(**changes) -> Timeline:
    times = np.linspace(0.25, 9.75, 40)
    fields = dict(
        title="clip.mp4 · test",
        duration_s=10.0,
        labels=["jump", "run", "wave"],
        segments=[Interval("jump", 1.0, 3.0, 0.91), Interval("run", 4.0, 8.0, 0.42), Interval("jump", 6, 6.2, 0.07)],
        ground_truth=[Interval("jump", 1.2, 2.8), Interval("run", 4.5, 8.5)],
        depth=Curve(times, 1 + 5 * np.abs(np.sin(times))),
        max_depth=6,
        boundary=(Curve(times, np.clip(times - 1.2, -8, 8)), Curve(times, np.clip(times - 2.8, -8, 8))),
    )
    return Timeline(**(fields | changes))


def test_svg_timeline_shows_every_label_row_the_depth_and_the_boundary_fields(tmp_path):
    svg = render(small_timeline(), tmp_path / "t.svg").read_text()
    for text in ("jump", "run", "wave", "0.91", "0.42", "ATR depth", "BDR fields", "ground truth"):
        assert text in svg, text
    assert "0.07" not in svg  # too narrow (2% of the video) to carry its score


def test_panels_follow_the_data_present(tmp_path):
    svg = render(small_timeline(depth=None, boundary=None, ground_truth=None), tmp_path / "t.svg").read_text()
    assert "ATR depth" not in svg and "BDR fields" not in svg and "ground truth" not in svg
    svg = render(small_timeline(), tmp_path / "t.svg", show_boundary=False).read_text()
    assert "ATR depth" in svg and "BDR fields" not in svg


def test_png_timeline_with_thumbnails_decoded_from_the_video(tmp_path, media):
    thumbnails = video_thumbnails(media / "clip.mp4", count=5, height=48)
    assert [image.shape for _, image in thumbnails] == [(48, 64, 3)] * 5
    times = [t for t, _ in thumbnails]
    assert times == sorted(times) and 0 < times[0] < 0.6 and 2.4 < times[-1] < 3.0
    assert all(image.std() > 5 for _, image in thumbnails)  # real pictures, not blank frames
    path = render(small_timeline(duration_s=3.0, thumbnails=thumbnails), tmp_path / "t.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_thumbnails_are_decoded_as_the_service_decodes_the_file(parity_media):
    """A stream decord fails on (real-time VP9, a narrow frame) is decoded by the decoder it needs, and a phone's
    portrait video is shown turned, as in the answer's frames."""
    for name in ("vp9.webm", "narrow_444.mp4", "rotated.mp4"):
        thumbnails = video_thumbnails(parity_media[name], count=4, height=48)
        assert len(thumbnails) == 4, name
        assert all(image.std() > 5 for _, image in thumbnails), name
        height, width, _ = thumbnails[0][1].shape
        assert height == 48 and (width < height if name == "rotated.mp4" else width > height), (name, width)


def test_a_file_name_that_is_not_png_or_svg_is_refused(tmp_path):
    with pytest.raises(TimelineError, match="use a .png or .svg"):
        render(small_timeline(), tmp_path / "t.jpg")


def test_from_answer_reads_the_service_json():
    answer = {
        "video": {"filename": "a.mp4", "duration_s": 12.0},
        "model": {"name": "m"},
        "segments": [{"label": "run", "score": 0.5, "start_s": 1.0, "end_s": 2.0}],
        "flops": {"mean_depth": 3.0, "head_saved_ratio": 0.4},
        "timing_ms": {"total": 1500.0},
        "realtime_factor": 8.0,
        "depth": {"max_depth": 6, "times_s": [0.5, 1.5], "mean_depth": [2.0, 4.0]},
    }
    timeline = Timeline.from_answer(answer)
    assert timeline.segments == [Interval("run", 1.0, 2.0, 0.5)] and timeline.labels == ["run"]
    assert timeline.max_depth == 6 and timeline.depth.values.tolist() == [2.0, 4.0] and timeline.boundary is None
    assert "head FLOPs saved 40%" in timeline.note


def test_ground_truth_of_a_video_id_missing_from_the_annotations_says_what_to_pass(tmp_path):
    annotations = tmp_path / "a.json"
    annotations.write_text(json.dumps({"database": {"v1": {"annotations": [{"segment": [1, 2], "label": "x"}]}}}))
    assert ground_truth(annotations, "v1") == [Interval("x", 1, 2)]
    with pytest.raises(TimelineError, match="--video-id"):
        ground_truth(annotations, "clip")


def test_localize_plot_writes_the_timeline_of_the_answer(small_checkpoint, media, tmp_path, capsys):
    annotations = tmp_path / "a.json"
    annotations.write_text(
        json.dumps({"database": {"clip": {"annotations": [{"segment": [0.5, 1.5], "label": "unseen_action"}]}}})
    )
    plot = tmp_path / "clip.svg"
    argv = ["localize", str(media / "clip.mp4"), "--checkpoint", str(small_checkpoint), "--min-score", "0"]
    assert main([*argv, "--plot", str(plot), "--annotations", str(annotations)]) == 0
    answer = json.loads(capsys.readouterr().out)
    svg = plot.read_text()
    assert "depth" not in answer  # stdout stays the default answer
    assert "clip.mp4" in svg and "ATR depth" in svg and "BDR fields" in svg and "ground truth" in svg
    assert all(label in svg for label in ("red_ball_swing", "yellow_bar_sweep", "unseen_action"))


def test_a_zoomed_answer_shades_where_it_looked_closely(tmp_path):
    answer = {
        "video": {"filename": "a.mp4", "duration_s": 10.0}, "model": {"name": "zoom"},
        "segments": [{"label": "run", "score": 0.8, "start_s": 2.0, "end_s": 6.0}],
        "flops": {"mean_depth": 6.0, "head_saved_ratio": 0.0}, "timing_ms": {"total": 900.0}, "realtime_factor": 11.0,
        "zoom": {"zoom_fps": 16.0, "windows": [[1.5, 2.5], [5.5, 6.5]]},
    }  # fmt: skip
    timeline = Timeline.from_answer(answer)
    assert timeline.zoom_windows == [(1.5, 2.5), (5.5, 6.5)]
    zoomed = render(timeline, tmp_path / "zoomed.svg").read_text()
    plain = render(
        Timeline.from_answer({k: v for k, v in answer.items() if k != "zoom"}), tmp_path / "p.svg"
    ).read_text()
    assert "zoom windows (16 fps)" in zoomed and "zoom windows" not in plain
    assert zoomed.count("<path") >= plain.count("<path") + 2  # one shaded span per window
