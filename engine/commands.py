"""`tzn extract-features`: ActionFormer-format features of a folder of videos, by the engine's own path (the
decoders, the one resize rule, the clip windower and the backbone the service runs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_videos_in_and_out(parser: argparse.ArgumentParser, videos: str, output: str) -> None:
    """--videos and --output, the arguments of every command that works through many videos."""
    parser.add_argument("--videos", type=Path, required=True, help=videos)
    parser.add_argument("--output", type=Path, required=True, help=output)


def register(subcommands: argparse._SubParsersAction) -> None:
    extract = subcommands.add_parser(
        "extract-features", help="write ActionFormer-format features (<video_id>.npy, (T, C)) for a folder of videos"
    )
    add_videos_in_and_out(extract, "folder of video files", "features folder to write")
    extract.add_argument("--backbone", default="resnet18-2d")
    extract.add_argument("--backbone-weights", type=Path, help="local safetensors weights (default: random-init)")
    extract.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    extract.add_argument("--decoder", default="auto", choices=["auto", "decord", "torchcodec"])
    extract.add_argument(
        "--clip", type=int, nargs=2, metavar=("FRAMES", "STRIDE"),
        help="a per-frame backbone's features: the mean of FRAMES frames every STRIDE (default: the backbone's; "
        "1 1 is one feature per frame); train with data.num_frames and data.feat_stride set to them",
    )  # fmt: skip
    extract.add_argument(
        "--frame-size", type=int, metavar="PX",
        help="resize frames to PX x PX instead of the backbone's own size (at least 32; fewer FLOPs per frame); "
        "train with data.frame_size set to it, so that the service resizes frames the same way",
    )  # fmt: skip
    extract.set_defaults(handler=run_extract_features)


def run_extract_features(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from engine.errors import VideoError
    from engine.features.extractor import FeatureExtractor
    from engine.preflight import resolve_device
    from engine.video.choice import cpu_decoder
    from engine.video.container import VIDEO_SUFFIXES
    from engine.video.decode import DecodeRequest, Decoding
    from engine.video.source import VideoSource
    from model.backbones import SPECS

    videos = sorted(p for p in args.videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        print(f"tzn extract-features: no video files in {args.videos}", file=sys.stderr)
        return 2
    if args.backbone not in SPECS:
        print(f"tzn extract-features: unknown backbone {args.backbone!r}; choose one of {', '.join(SPECS)}",
              file=sys.stderr)  # fmt: skip
        return 2
    spec, device = SPECS[args.backbone], resolve_device(args.device)
    try:
        spec = spec.resized(args.frame_size)
    except ValueError as error:
        print(f"tzn extract-features: --frame-size: {error}", file=sys.stderr)
        return 2
    if args.clip:
        try:
            spec = spec.cut(*args.clip)
        except ValueError as error:
            print(f"tzn extract-features: --clip {args.clip[0]} {args.clip[1]}: {error}", file=sys.stderr)
            return 2
    extractor = FeatureExtractor(spec, args.backbone_weights, device)
    request = DecodeRequest(fps=spec.sample_fps, size=(spec.size, spec.size), timeout_s=24 * 3600.0)
    decoder = cpu_decoder(args.decoder, on_gpu_host=False)
    args.output.mkdir(parents=True, exist_ok=True)
    failed = []
    for video in tqdm(videos, desc="extracting", unit="video"):
        try:
            with Decoding(VideoSource.from_path(video), request, decoder) as decoding:
                extracted = extractor.features(decoding.chunks())
        except VideoError as error:
            failed.append(f"{video.name}: {error}")
            continue
        np.save(args.output / f"{video.stem}.npy", extracted.features.T.cpu().numpy().astype(np.float32))
    summary = {
        "features": str(args.output), "videos": len(videos) - len(failed), "backbone": spec.name,
        "backbone_weights": extractor.weights, "feat_stride": spec.clip_stride, "num_frames": spec.frames_per_clip,
        "fps": spec.sample_fps, "frame_size": spec.size, "decoder": decoder, "failed": failed,
    }  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 1 if failed else 0
