"""`tzn localize` and `tzn extract-features` through the real command entry point."""

from __future__ import annotations

import json
import shutil
import socket

import numpy as np
import pytest

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


# ------------------------------------------------------------------------------------------ failing fast


def serve(capsys, *args: str) -> tuple[int, str]:
    code = main(["serve", "--host", "127.0.0.1", *args])
    return code, capsys.readouterr().err.strip()


def test_a_misspelled_setting_stops_start_up_naming_the_closest_one(monkeypatch, capsys):
    monkeypatch.setenv("TZN_MAX_UPLAOD_MB", "5")
    code, err = serve(capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert "unknown setting TZN_MAX_UPLAOD_MB; did you mean TZN_MAX_UPLOAD_MB?" in err


def test_a_wrong_value_stops_start_up_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("TZN_MAX_CONCURRENT", "zero")
    code, err = serve(capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "TZN_MAX_CONCURRENT" in err


@pytest.mark.parametrize(
    ("variables", "words"),
    [
        ({"TZN_CHECKPOINT": "/nonexistent/run"}, "checkpoint directory '/nonexistent/run' does not exist"),
        ({"TZN_RUNTIME": "onnxruntime"}, "TZN_RUNTIME=onnxruntime needs TZN_ONNX"),
        ({"TZN_RUNTIME": "onnxruntime", "TZN_ONNX": "/nonexistent.onnx"}, "'/nonexistent.onnx' does not exist"),
        ({"TZN_BACKBONE": "vgg"}, "not 'vgg'"),
        ({"TZN_BACKBONE_WEIGHTS": "/nonexistent.safetensors"}, "TZN_BACKBONE_WEIGHTS=/nonexistent.safetensors"),
    ],
)
def test_settings_that_cannot_serve_stop_start_up_with_one_line(monkeypatch, capsys, variables, words):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    code, err = serve(capsys)
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err


def test_a_checkpoint_with_an_unknown_postprocess_key_stops_start_up(monkeypatch, capsys, small_checkpoint, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(small_checkpoint, broken)
    config = json.loads((broken / "config.json").read_text())
    config["postprocess"]["nms_sigma"] = 0.5
    (broken / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("TZN_CHECKPOINT", str(broken))
    code, err = serve(capsys)
    assert code == 2 and "postprocess.nms_sigma: Extra inputs are not permitted" in err


def test_a_busy_port_is_one_clear_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, err = serve(capsys, "--port", str(taken.getsockname()[1]))
    assert code == 2 and len(err.splitlines()) == 1
    assert "cannot listen on 127.0.0.1:" in err and "--port" in err


def test_localize_of_a_missing_file_is_one_line(capsys):
    assert main(["localize", "/nonexistent.mp4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "tzn localize: /nonexistent.mp4: no such file; give the path of a video file"


def test_localize_of_a_text_file_does_not_ask_for_an_upload(media, capsys, small_checkpoint):
    assert main(["localize", str(media / "notes.txt"), "--checkpoint", str(small_checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a text file, not a video" in err and "upload" not in err


def test_extract_features_cuts_a_per_frame_backbones_frames_into_the_clips_asked_for(tmp_path, capsys):
    generate(tmp_path / "videos", videos=1, seed=4, duration_s=(6.0, 6.5))
    arguments = ["extract-features", "--videos", str(tmp_path / "videos")]
    assert main([*arguments, "--output", str(tmp_path / "clips")]) == 0
    clips = json.loads(capsys.readouterr().out)
    assert main([*arguments, "--output", str(tmp_path / "frames"), "--clip", "1", "1"]) == 0
    frames = json.loads(capsys.readouterr().out)
    assert (clips["num_frames"], clips["feat_stride"], frames["num_frames"], frames["feat_stride"]) == (4, 2, 1, 1)
    per_frame, pooled = np.load(tmp_path / "frames" / "demo_0000.npy"), np.load(tmp_path / "clips" / "demo_0000.npy")
    assert len(pooled) == (len(per_frame) - 4) // 2 + 1  # the same sampled frames
    np.testing.assert_allclose(pooled[1], per_frame[2:6].mean(0), rtol=1e-5, atol=1e-6)  # clip 1: frames 2-5
    code = main([*arguments, "--output", str(tmp_path / "r2"), "--backbone", "r2plus1d_18", "--clip", "1", "1"])
    assert code == 2 and "only a per-frame backbone pools other clips" in capsys.readouterr().err
    assert main([*arguments, "--output", str(tmp_path / "zero"), "--clip", "0", "1"]) == 2  # not a clip at all
    assert "frames_per_clip >= 1" in capsys.readouterr().err
