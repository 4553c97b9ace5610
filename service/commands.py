"""`tzn serve`, `tzn localize VIDEO` and `tzn extract-features`: the service's pipeline from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subcommands: argparse._SubParsersAction) -> None:
    serve = subcommands.add_parser("serve", help="run the HTTP service (settings from TZN_* variables)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=run_serve)

    localize = subcommands.add_parser("localize", help="localize actions in one video; JSON to stdout")
    localize.add_argument("video", type=Path)
    localize.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the bundled demo)")
    localize.add_argument("--min-score", type=float)
    localize.add_argument("--top-k", type=int)
    localize.set_defaults(handler=run_localize)

    extract = subcommands.add_parser(
        "extract-features", help="write ActionFormer-format features (<video_id>.npy, (T, C)) for a folder of videos"
    )
    extract.add_argument("--videos", type=Path, required=True, help="folder of video files")
    extract.add_argument("--output", type=Path, required=True, help="features folder to write")
    extract.add_argument("--backbone", default="resnet18-2d")
    extract.add_argument("--backbone-weights", type=Path, help="local safetensors weights (default: random-init)")
    extract.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    extract.set_defaults(handler=run_extract_features)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    uvicorn.run(create_app(Settings()), host=args.host, port=args.port, log_level="info")
    return 0


def run_localize(args: argparse.Namespace) -> int:
    import uuid

    from service.errors import VideoError
    from service.pipeline import Localizer
    from service.settings import Settings

    overrides = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    localizer = Localizer(Settings(**overrides))
    try:
        result = localizer.localize(args.video, args.video.name, args.min_score, args.top_k)
    except VideoError as error:
        print(f"tzn localize: {error}", file=sys.stderr)
        return 2
    answer = result.response(localizer.model_info(), uuid.uuid4().hex)
    print(json.dumps(answer.model_dump(), indent=2))
    return 0


VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts"}


def run_extract_features(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from service.errors import VideoError
    from service.pipeline import FeatureExtractor, resolve_device
    from service.settings import Settings

    videos = sorted(p for p in args.videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        print(f"tzn extract-features: no video files in {args.videos}", file=sys.stderr)
        return 2
    extractor = FeatureExtractor(args.backbone, args.backbone_weights, resolve_device(args.device), Settings())
    args.output.mkdir(parents=True, exist_ok=True)
    failed = []
    for video in tqdm(videos, desc="extracting", unit="video"):
        try:
            extracted = extractor.extract(video, video.name)
        except VideoError as error:
            failed.append(f"{video.name}: {error}")
            continue
        np.save(args.output / f"{video.stem}.npy", extracted.features.T.numpy().astype(np.float32))
    spec = extractor.spec
    summary = {
        "features": str(args.output),
        "videos": len(videos) - len(failed),
        "backbone": spec.name,
        "backbone_weights": extractor.weights,
        "feat_stride": spec.clip_stride,
        "num_frames": spec.frames_per_clip,
        "fps": spec.sample_fps,
        "failed": failed,
    }
    print(json.dumps(summary, indent=2))
    return 1 if failed else 0
