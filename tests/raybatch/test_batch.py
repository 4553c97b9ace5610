"""`tzn batch` on a real local Ray runtime (2 CPUs): the same answers as `tzn localize`, failures reported,
reruns resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from raybatch.batch import BatchError, activitynet_segments, list_videos, load_output
from tests.conftest import ffmpeg
from tzn import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archive(tmp_path_factory, camera_footage) -> Path:
    """Six real videos of different lengths, sources and containers, and one truncated upload."""
    root = tmp_path_factory.mktemp("archive")
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    for index, (source, seconds) in enumerate([("testsrc2", 4), ("mandelbrot", 6), ("testsrc", 3), ("smptebars", 5)]):
        ffmpeg("-f", "lavfi", "-i", f"{source}=size=160x120:rate=15", "-t", str(seconds), *h264,
               str(root / f"clip_{index}.mp4"))  # fmt: skip
    ffmpeg("-i", str(camera_footage), "-t", "8", *h264, str(root / "street.mkv"))
    ffmpeg("-ss", "20", "-i", str(camera_footage), "-t", "5", "-c:v", "mpeg4", str(root / "street_later.avi"))
    whole = (root / "clip_0.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(whole[: len(whole) // 3])
    return root


def tzn_batch(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tzn", "batch", "--num-cpus", "2", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_batch_on_ray_matches_tzn_localize_and_reports_the_broken_video(archive, tiny_checkpoint, tmp_path, capsys):
    output = tmp_path / "pred.json"
    run = tzn_batch("--videos", str(archive), "--output", str(output), "--checkpoint", str(tiny_checkpoint))
    assert run.returncode == 1, run.stderr  # one video failed
    assert "2 CPU actors" in run.stderr
    assert output.is_file(), run.stderr[-4000:]
    predictions = json.loads(output.read_text())
    assert set(predictions["failed"]) == {"cut"}
    assert "truncated" in predictions["failed"]["cut"]
    good = sorted(p.stem for p in archive.iterdir() if p.stem != "cut")
    assert sorted(predictions["results"]) == good
    for video_id in good:
        path = next(archive.glob(f"{video_id}.*"))
        assert main(["localize", str(path), "--checkpoint", str(tiny_checkpoint)]) == 0
        alone = json.loads(capsys.readouterr().out)
        assert predictions["results"][video_id] == activitynet_segments(alone["segments"])
        stats = predictions["videos"][video_id]
        assert stats["duration_s"] == alone["video"]["duration_s"]
        assert stats["flops"]["backbone"] == alone["flops"]["backbone"] > 0
        assert stats["timing_ms"]["total"] > 0

    # a rerun over a list of the good videos has nothing left to do: it skips them without starting Ray
    listing = tmp_path / "videos.txt"
    listing.write_text("".join(f"{next(archive.glob(f'{v}.*'))}\n" for v in good))
    again = tzn_batch("--videos", str(listing), "--output", str(output), "--checkpoint", str(tiny_checkpoint))
    assert again.returncode == 0, again.stderr
    assert f"{len(good)} of {len(good)} videos already done" in again.stderr
    assert json.loads(output.read_text())["results"] == predictions["results"]


def test_video_lists_resolve_relative_paths_and_refuse_duplicate_ids(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "y.mkv", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert list_videos(tmp_path) == {"y": tmp_path / "y.mkv"}
    listing = tmp_path / "list.txt"
    listing.write_text("# archive\na/x.mp4\n\ny.mkv\n")
    assert list_videos(listing) == {"x": tmp_path / "a/x.mp4", "y": tmp_path / "y.mkv"}
    listing.write_text("a/x.mp4\nx.mp4\n")
    with pytest.raises(BatchError, match="two videos have the id 'x'"):
        list_videos(listing)
    with pytest.raises(BatchError, match="no videos"):
        list_videos(_empty(tmp_path))


def _empty(root: Path) -> Path:
    empty = root / "empty"
    empty.mkdir()
    return empty


def test_resuming_retries_failed_videos_and_refuses_a_foreign_file(tmp_path):
    previous = tmp_path / "pred.json"
    previous.write_text(json.dumps({"results": {"a": []}, "videos": {}, "failed": {"b": "broken"}}))
    assert load_output(previous) == {"results": {"a": []}, "videos": {}, "failed": {}}
    previous.write_text("[1, 2]")
    with pytest.raises(BatchError, match="not a tzn batch output"):
        load_output(previous)


def test_segments_become_activitynet_results():
    segment = {
        "label": "run",
        "label_id": 1,
        "score": 0.5,
        "start_s": 1.0,
        "end_s": 2.5,
        "start_frame": 30,
        "end_frame": 75,
    }
    assert activitynet_segments([segment]) == [{"segment": [1.0, 2.5], "label": "run", "score": 0.5}]
