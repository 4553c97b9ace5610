"""Checkpoints whose features came from frames smaller than the backbone's own size (`features.frame_size`):
served at that size, counted at that size, and as the temporal zoom's coarse pass beside full-size windows."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ConfigurationError
from engine.localizer import Localizer
from engine.preflight import check
from engine.settings import EngineSettings, WorkLimits
from engine.video.sampling import sample_ticks
from engine.video.source import VideoSource
from model.backbones import build_backbone, flops_per_unit
from model.checkpoint import FeatureSpec
from tests.conftest import detector_zoom
from tzn import main

LIMITS = WorkLimits(max_duration_s=600, timeout_s=120)
SAMPLE = "service/demo/sample.mp4"


def at_frame_size(checkpoint: Path, parent: Path, size: int) -> Path:
    """A copy of `checkpoint` whose features say they came from `size` px frames."""
    copy = shutil.copytree(checkpoint, parent / f"{checkpoint.name}-{size}px")
    config = json.loads((copy / "config.json").read_text())
    config["features"]["frame_size"] = size
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.fixture(scope="module")
def small_frames(small_checkpoint, tmp_path_factory) -> Path:
    return at_frame_size(small_checkpoint, tmp_path_factory.mktemp("small-frames"), 64)


def test_a_checkpoint_on_smaller_frames_is_served_with_the_features_extract_features_wrote(
    small_frames, media, tmp_path, capsys
):
    """What `tzn extract-features --frame-size 64` computes for training is what the service computes for that
    checkpoint (and not what it computes at the backbone's own size)."""
    (tmp_path / "videos").mkdir()
    shutil.copy(media / "clip.mp4", tmp_path / "videos" / "clip.mp4")
    command = ["extract-features", "--videos", str(tmp_path / "videos"), "--output", str(tmp_path / "features")]
    assert main([*command, "--frame-size", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["frame_size"] == 64
    written = np.load(tmp_path / "features" / "clip.npy")
    localizer = Localizer(EngineSettings(checkpoint=small_frames, device="cpu"))
    _, _, extracted = localizer.extract(VideoSource.from_path(media / "clip.mp4"), LIMITS)
    np.testing.assert_allclose(extracted.features.T.numpy(), written, rtol=1e-5, atol=1e-5)
    assert main([*command[:-1], str(tmp_path / "full")]) == 0
    assert not np.allclose(np.load(tmp_path / "full" / "clip.npy"), written, atol=1e-3)  # other pixels, other features


def test_a_checkpoint_on_smaller_frames_counts_the_backbone_at_their_size(small_frames, media):
    backbone = build_backbone("resnet18-2d")[0]
    localizer = Localizer(EngineSettings(checkpoint=small_frames, device="cpu"))
    assert localizer.extractor.flops_per_unit == flops_per_unit(backbone, 64) < 0.35 * flops_per_unit(backbone)
    found = localizer.localize(VideoSource.from_path(media / "clip.mp4"), LIMITS)
    assert found.flops["backbone"] == 3 * 8 * flops_per_unit(backbone, 64)  # 3 s at 8 fps


def test_a_checkpoint_without_a_frame_size_writes_no_such_key(small_checkpoint):
    """Checkpoints and exports that do not use it stay readable by releases before `frame_size` existed."""
    assert "frame_size" not in json.loads((small_checkpoint / "config.json").read_text())["features"]
    assert "frame_size" not in FeatureSpec().model_dump_json() and FeatureSpec(frame_size=64).model_dump()["frame_size"]


def test_a_frame_size_under_32_px_is_refused(media, tmp_path, capsys):
    with pytest.raises(ValueError, match="greater than or equal to 32"):
        FeatureSpec(frame_size=16)
    (tmp_path / "videos").mkdir()
    shutil.copy(media / "clip.mp4", tmp_path / "videos" / "clip.mp4")
    command = ["extract-features", "--videos", str(tmp_path / "videos"), "--output", str(tmp_path / "features")]
    assert main([*command, "--frame-size", "8"]) == 2
    assert "--frame-size: frames of 8 px: at least 32 px" in capsys.readouterr().err


def test_a_zoom_whose_coarse_frames_are_smaller_reads_its_windows_at_the_backbones_size(zoom_checkpoint, tmp_path):
    """The coarse pass at 64 px and the windows at 112 px from one decode (never reused from the coarse pass), each
    counted at its own size; the coarse features are those a 64 px decode at the coarse rate gives, the windows'
    those a 112 px zoom computes for the same windows."""
    small = at_frame_size(zoom_checkpoint, tmp_path, 64)
    localizer = Localizer(EngineSettings(checkpoint=small, device="cpu"))
    computed = {"coarse": [], "windows": []}
    for name, extractor in (("coarse", localizer.extractor), ("windows", localizer.window_extractor)):
        kept_by(extractor, computed[name])
    found = localizer.localize(VideoSource.from_path(SAMPLE), LIMITS)
    zoom, flops, duration = found.zoom, found.flops, found.info.duration_s
    backbone = build_backbone("resnet18-2d")[0]
    low, full = flops_per_unit(backbone, 64), flops_per_unit(backbone)
    windows = tuple(tuple(w) for w in zoom["windows"])
    assert zoom["decode"] == "one pass" and windows
    assert zoom["frames"]["coarse"] == len(sample_ticks(0.0, duration, 2.0))
    assert zoom["frames"]["zoom"] == len(sample_ticks(0.0, duration, 16.0, windows))  # none taken from 64 px frames
    assert flops["backbone"] == zoom["frames"]["coarse"] * low + zoom["frames"]["zoom"] * full
    assert flops["backbone_dense"] == len(sample_ticks(0.0, duration, 8.0)) * full
    assert localizer.window_extractor.spec.size == 112 and localizer.extractor.spec.size == 64
    with localizer.frames(VideoSource.from_path(SAMPLE), LIMITS, fps=2.0, size=64) as (_, _, chunks):
        torch.testing.assert_close(computed["coarse"][0].rows, localizer.extractor.frame_features(chunks).rows)
    reference = Localizer(EngineSettings(checkpoint=zoom_checkpoint, device="cpu"))
    with reference.frames(VideoSource.from_path(SAMPLE), LIMITS, fps=16.0, spans=windows) as (_, _, chunks):
        torch.testing.assert_close(computed["windows"][0].rows, reference.extractor.frame_features(chunks).rows)
    # frames beyond the spool's budget: the coarse pass decodes its own frames alone (2 fps, 64 px), the windows
    # are decoded again, at 112 px, and the answer is the same
    again = Localizer(EngineSettings(checkpoint=small, device="cpu", zoom_spool_mb=0))
    decoded = decoded_by(again)
    twice = again.localize(VideoSource.from_path(SAMPLE), LIMITS)
    assert twice.zoom["decode"] == "two passes" and twice.zoom["windows"] == zoom["windows"]
    assert twice.segments == found.segments
    assert decoded == [(zoom["frames"]["coarse"], 64), (zoom["frames"]["zoom"], 112)]


def decoded_by(localizer: Localizer) -> list[tuple[int, int]]:
    """(frames, side) of each decode `localizer.frames` gives from now on, as its chunks are read."""
    decoded, real = [], localizer.frames

    @contextmanager
    def frames(*args, **kwargs):
        with real(*args, **kwargs) as (info, decoder, chunks):
            decoded.append((0, 0))

            def counted():
                for chunk in chunks:
                    decoded[-1] = (decoded[-1][0] + len(chunk.times), chunk.frames.shape[1])
                    yield chunk

            yield info, decoder, counted()

    localizer.frames = frames
    return decoded


def kept_by(extractor, outputs: list) -> None:
    """`extractor.frame_features` as it is, its outputs kept in `outputs`."""
    real = extractor.frame_features

    def kept(chunks, progress=lambda share: None):
        outputs.append(real(chunks, progress))
        return outputs[-1]

    extractor.frame_features = kept


def test_the_detector_refiner_needs_coarse_frames_of_the_backbones_size(zoom_checkpoint, tmp_path_factory):
    """It reads the coarse frames' features beside the windows' on one grid: both must come from one size."""
    directory = detector_zoom(zoom_checkpoint, tmp_path_factory.mktemp("detector"))
    small = at_frame_size(directory, tmp_path_factory.mktemp("small"), 64)
    with pytest.raises(ConfigurationError, match="must have the backbone's own size"):
        check(EngineSettings(checkpoint=small, device="cpu"))
    fine = detector_zoom(zoom_checkpoint, tmp_path_factory.mktemp("fine"), frame_size=64)
    with pytest.raises(ConfigurationError, match="reads windows at the backbone's own size"):
        check(EngineSettings(checkpoint=fine, device="cpu"))


def test_a_frame_size_equal_to_the_backbones_own_is_not_smaller_frames():
    from model.backbones import smaller_frames

    assert not smaller_frames("resnet18-2d", None) and not smaller_frames("resnet18-2d", 112)
    assert smaller_frames("resnet18-2d", 64) and smaller_frames("unknown", 64)


def test_a_backbone_resized_keeps_everything_but_its_frames_side():
    from model.backbones import SPECS

    spec = SPECS["resnet18-2d"].cut(1, 1)
    small = spec.resized(64)
    assert small.size == 64 and small.resized(None) == spec and spec.resized(None) == spec
    with pytest.raises(ValueError, match="frames of 31 px: at least 32 px"):
        spec.resized(31)


def test_the_windows_run_the_coarse_passs_network_at_their_own_size(zoom_checkpoint, tmp_path):
    """One network in memory for both sizes (a second copy of the backbone was built before), each size in its own
    batches and counted at its own size; a network of another backbone is refused."""
    from engine.features.extractor import FeatureExtractor
    from model.backbones import SPECS

    localizer = Localizer(EngineSettings(checkpoint=at_frame_size(zoom_checkpoint, tmp_path, 64), device="cpu"))
    coarse, windows = localizer.extractor, localizer.window_extractor
    assert windows.backbone is coarse.backbone and windows.batches is not coarse.batches
    backbone = build_backbone("resnet18-2d")[0]
    assert (coarse.flops_per_unit, windows.flops_per_unit) == (flops_per_unit(backbone, 64), flops_per_unit(backbone))
    with pytest.raises(ValueError, match="cannot run resnet18-2d's network"):
        FeatureExtractor(SPECS["tiny-2d"], None, torch.device("cpu"), network_of=coarse)
