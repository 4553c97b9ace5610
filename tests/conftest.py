"""Settings and fixtures shared by every test: small real media files made with ffmpeg, real camera footage,
small TZN checkpoints (random weights) for the resnet18-2d and tiny-2d backbones."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model.backbones import SPECS
from model.checkpoint import CheckpointConfig, FeatureSpec, save_checkpoint
from model.config import ModelConfig
from model.tzn import TZN
from tests.export.conftest import checkpoint_dir, onnx_path  # noqa: F401  (the head tests use these)
from tests.parity_media import OPENCV_DATA, ffmpeg, make_parity_media


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    """Small real files: H.264 at 30 fps, variable frame rate, odd size, audio only (AAC, Vorbis in Ogg), PNG,
    random, empty, and a bare H.264 stream without a container."""
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
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "libvorbis", str(root / "tone.ogg"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1", str(root / "still.png"))
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48", "-t", "1", *h264, "-f", "h264", str(root / "bare.h264"))
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


def random_checkpoint(tmp_path_factory, name: str, seed: int, backbone: str, fps: float, labels: list[str]) -> Path:
    """A CPU-size TZN with random weights (seeded) over `backbone`'s features, saved as a checkpoint."""
    torch.manual_seed(seed)
    input_dim = SPECS[backbone].feature_dim
    config = ModelConfig(input_dim=input_dim, num_classes=len(labels), embed_dim=32, n_head=4, attn_block_size=16,
                         tau_hidden=8)  # fmt: skip
    spec = FeatureSpec(feat_stride=2, num_frames=4, default_fps=fps, backbone=backbone)
    directory = tmp_path_factory.mktemp("checkpoint") / name
    return save_checkpoint(TZN(config), directory, CheckpointConfig(model=config, labels=labels, features=spec))


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    """Over resnet18-2d features: exercises the whole pipeline fast."""
    labels = ["red_ball_swing", "green_square_rise", "blue_ring_pulse", "yellow_bar_sweep"]
    return random_checkpoint(tmp_path_factory, "small", 0, "resnet18-2d", 8.0, labels)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """Over the tiny-2d backbone: hour-long videos in seconds."""
    return random_checkpoint(tmp_path_factory, "tiny", 1, "tiny-2d", 4.0, ["walk", "run"])


@pytest.fixture(scope="session")
def zoom_checkpoint(tmp_path_factory) -> Path:
    """A zoom checkpoint (engine/zoom.py) with random weights: a 2 fps coarse detector over resnet18-2d and a bdr
    refiner; every candidate gets windows (min_score 0), at most three."""
    from safetensors.torch import save_file

    from engine.zoom import REFINER_FILE, ZOOM_FILE, ZoomSettings, zoom_document
    from model.refiner import BoundaryRefiner, RefinerConfig

    labels = ["red_ball_swing", "green_square_rise", "blue_ring_pulse", "yellow_bar_sweep"]
    directory = random_checkpoint(tmp_path_factory, "zoom", 3, "resnet18-2d", 2.0, labels)
    torch.manual_seed(0)
    config = RefinerConfig(width=16, clip_s=0.5)
    save_file(BoundaryRefiner(config).state_dict(), directory / REFINER_FILE)
    settings = ZoomSettings(zoom_fps=16, window_s=0.5, min_score=0.0, max_candidates=3)
    (directory / ZOOM_FILE).write_text(json.dumps(zoom_document(settings, config)))
    return directory


def detector_zoom(zoom_checkpoint: Path, parent: Path, **fine_spec) -> Path:
    """A copy of zoom_checkpoint in `parent` with the "detector" refiner: a random per-frame TZN at 16 fps in fine/
    (`fine_spec` changes its FeatureSpec fields, or its "labels")."""
    from engine.zoom import FINE_DIR, ZOOM_FILE
    from model.checkpoint import read_checkpoint_config

    directory = shutil.copytree(zoom_checkpoint, parent / "zoom")
    labels = read_checkpoint_config(zoom_checkpoint).labels
    torch.manual_seed(5)
    config = ModelConfig(input_dim=SPECS["resnet18-2d"].feature_dim, num_classes=len(labels), embed_dim=32, n_head=4,
                         attn_block_size=16, tau_hidden=8)  # fmt: skip
    labels = fine_spec.pop("labels", labels)
    spec = {"feat_stride": 1, "num_frames": 1, "default_fps": 16.0, "backbone": "resnet18-2d", **fine_spec}
    fine = CheckpointConfig(model=config, labels=labels, features=FeatureSpec(**spec))
    save_checkpoint(TZN(config), directory / FINE_DIR, fine)
    document = json.loads((directory / ZOOM_FILE).read_text())
    document["settings"]["refiner"], document["refiner"] = "detector", None
    (directory / ZOOM_FILE).write_text(json.dumps(document))
    return directory


@pytest.fixture(scope="session")
def long_videos(tmp_path_factory) -> dict[str, Path]:
    """Generated 64x48 H.264 at 4 fps: 3 minutes, and 1 and 60 minutes for the memory check."""
    root = tmp_path_factory.mktemp("long")
    found = {}
    for name, seconds in [("three_minutes", 180), ("one_minute", 60), ("sixty_minutes", 3600)]:
        found[name] = root / f"{name}.mp4"
        ffmpeg(
            "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=4", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(found[name]),
        )  # fmt: skip
    return found


@pytest.fixture(autouse=True, scope="session")
def private_jobs_dir(tmp_path_factory):
    """Every app and server a test starts keeps its jobs (SQLite store, spooled uploads) in this run's own
    folder, never in the default /tmp/tzn-jobs-<uid> that a real service or another test run may be using."""
    if "TZN_JOBS_DIR" in os.environ:
        yield
        return
    os.environ["TZN_JOBS_DIR"] = str(tmp_path_factory.mktemp("jobs"))
    yield
    del os.environ["TZN_JOBS_DIR"]


@pytest.fixture(scope="session")
def parity_media(tmp_path_factory, request) -> dict[str, Path]:
    """tests/parity_media.py's files: real footage in every format the decoders must agree on. TZN_PARITY_MEDIA
    names a folder of them made elsewhere (`python -m tests.parity_media DIR`, for a GPU host without ffmpeg)."""
    given = os.environ.get("TZN_PARITY_MEDIA")
    if given:
        return {path.name: path for path in sorted(Path(given).iterdir())}
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs the ffmpeg binary (apt install ffmpeg) or TZN_PARITY_MEDIA")
    return make_parity_media(tmp_path_factory.mktemp("parity"), request.getfixturevalue("camera_footage"))
