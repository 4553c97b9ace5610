"""`tzn localize` and `tzn extract-features` through the real command entry point."""

from __future__ import annotations

import json

import numpy as np

from training.dataset import FeatureDataset
from training.demo_videos import generate
from tzn import main


def test_extract_features_writes_actionformer_features_that_the_dataset_loads(tmp_path, capsys):
    generate(tmp_path / "videos", videos=2, seed=3, duration_s=(6.0, 8.0))
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"not a video")
    code = main(["extract-features", "--videos", str(tmp_path / "videos"), "--output", str(tmp_path / "features")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["videos"] == 2 and "broken.mp4" in summary["failed"][0]
    assert summary["backbone_weights"] == "random-init"
    features = np.load(tmp_path / "features" / "demo_0000.npy")
    assert features.dtype == np.float32 and features.shape[1] == 512
    # (T - 1) * stride + frames = sampled frames: 6-8 s at 8 fps
    assert 6 * 8 <= (features.shape[0] - 1) * summary["feat_stride"] + summary["num_frames"] <= 8 * 8 + 1
    dataset = FeatureDataset(
        tmp_path / "videos" / "annotations.json", tmp_path / "features", split="training",
        feat_stride=summary["feat_stride"], num_frames=summary["num_frames"], default_fps=summary["fps"],
    )  # fmt: skip
    assert dataset[0].features.shape[0] == 512


def test_localize_prints_the_same_json_as_the_service(small_checkpoint, media, capsys):
    assert main(["localize", str(media / "clip.mp4"), "--checkpoint", str(small_checkpoint), "--top-k", "2"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["video"]["frames"] == 90 and len(answer["segments"]) <= 2
    assert set(answer) == {"request_id", "video", "segments", "model", "timing_ms", "flops", "realtime_factor"}


def test_localize_of_a_bad_file_is_a_one_line_error(small_checkpoint, media, capsys):
    assert main(["localize", str(media / "still.png"), "--checkpoint", str(small_checkpoint)]) == 2
    assert "PNG image, not a video" in capsys.readouterr().err
