"""Per-frame features of the zoom benchmark's videos, through the engine's decoding and backbone.

    python -m tools.zoom_frames --videos /tmp/zoom/videos --output /tmp/zoom/frames [--fps 30] [--frame-size 64]

For every .mp4 in --videos: the frames on screen at `--fps` ticks (engine/video/sampling.py; 30 = every frame of
the benchmark's 30 fps videos), fitted by the one resize rule, through the served backbone (resnet18-2d,
random-init), one feature per frame: <id>.npy (N, 512) float32 and <id>.times.npy (N,) s. --frame-size: frames
resized to that side instead of the backbone's 112 px (the coarse pass's features at 64 px: frames-64px/). Features at any lower
rate are the rows the sampling rule picks at that rate's ticks (tools/train_zoom.py, FrameCache), exactly what decoding at
that rate gives. A video already done is kept.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from engine.features.extractor import FeatureExtractor
from engine.video.decode import DecodeRequest, Decoding
from engine.video.source import VideoSource
from model.backbones import SPECS


def extract_frames(
    videos: Path, output: Path, fps: float = 30.0, backbone: str = "resnet18-2d", frame_size: int | None = None
) -> None:
    spec = SPECS[backbone].resized(frame_size)
    extractor = FeatureExtractor(spec, None, torch.device("cpu"))
    output.mkdir(parents=True, exist_ok=True)
    paths = sorted(videos.glob("*.mp4"))
    started = time.monotonic()
    for number, path in enumerate(paths, 1):
        target = output / f"{path.stem}.npy"
        if target.is_file():
            continue
        request = DecodeRequest(fps=fps, size=(spec.size, spec.size), timeout_s=3600)
        with Decoding(VideoSource.from_path(path), request, "decord") as decoding:
            found = extractor.frame_features(decoding.chunks())
        np.save(output / f"{path.stem}.times.npy", found.times)
        np.save(output / f"{path.stem}.partial.npy", found.rows.numpy().astype(np.float32))
        (output / f"{path.stem}.partial.npy").rename(target)
        print(
            f"{number}/{len(paths)} {path.stem}: {len(found.times)} frames, {time.monotonic() - started:.0f} s",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--frame-size", type=int, help="frames resized to this side (default: the backbone's, 112)")
    args = parser.parse_args(argv)
    try:
        SPECS["resnet18-2d"].resized(args.frame_size)  # the backbone extract_frames runs
    except ValueError as error:
        parser.error(f"--frame-size: {error}")
    extract_frames(args.videos, args.output, args.fps, frame_size=args.frame_size)


if __name__ == "__main__":
    main()
