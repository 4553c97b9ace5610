"""Shared fixtures of the service tests: small real media files made with ffmpeg, real camera footage,
a small TZN checkpoint (random weights) for the resnet18-2d backbone."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from model.checkpoint import CheckpointConfig, FeatureSpec, save_checkpoint
from model.config import ModelConfig
from model.tzn import TZN
from tests.export.conftest import checkpoint_dir, onnx_path  # noqa: F401  (the runner tests use these)

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    """Small real files: H.264 at 30 fps, variable frame rate, odd size, audio only, PNG, random, empty."""
    root = tmp_path_factory.mktemp("media")
    h264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "3", *h264, str(root / "clip.mp4"))
    # 2 s at 30 fps, 2 s at 10 fps, 2 s at 25 fps in one stream, with millisecond-level timestamps
    setpts = "if(lt(N,60),N/30/TB,if(lt(N,80),(2+(N-60)/10)/TB,(4+(N-80)/25)/TB))"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", "6",
        "-vf", f"settb=1/600,setpts='{setpts}'", "-fps_mode", "vfr", "-enc_time_base", "1/600",
        *h264, str(root / "vfr.mp4"),
    )  # fmt: skip
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "2", "-vf", "scale=321:177",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p", str(root / "odd.mp4"),
    )  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(root / "tone.m4a"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(root / "still.png"))
    whole = (root / "clip.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (root / "random.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (root / "notes.txt").write_text("this is not a video\n" * 20)
    (root / "empty.mp4").write_bytes(b"")
    return root


@pytest.fixture(scope="session")
def camera_footage(tmp_path_factory) -> Path:
    """OpenCV's vtest.avi (768x576, 10 fps, real pedestrians), decompressed if Debian shipped it as .gz."""
    plain, packed = OPENCV_DATA / "vtest.avi", OPENCV_DATA / "vtest.avi.gz"
    if plain.exists():
        return plain
    if packed.exists():
        target = tmp_path_factory.mktemp("camera") / "vtest.avi"
        with gzip.open(packed) as source, open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)
        return target
    pytest.skip("vtest.avi not found: apt install opencv-doc")


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """A CPU-size TZN with random weights over resnet18-2d features: exercises the whole pipeline fast."""
    torch.manual_seed(0)
    config = ModelConfig(input_dim=512, num_classes=4, embed_dim=32, n_head=4, attn_block_size=16, tau_hidden=8)
    spec = FeatureSpec(feat_stride=2, num_frames=4, default_fps=8.0, backbone="resnet18-2d")
    directory = tmp_path_factory.mktemp("checkpoint") / "small"
    labels = ["red_ball_swing", "green_square_rise", "blue_ring_pulse", "yellow_bar_sweep"]
    return save_checkpoint(TZN(config), directory, CheckpointConfig(model=config, labels=labels, features=spec))
