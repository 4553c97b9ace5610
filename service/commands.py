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
    localize.add_argument("--plot", type=Path, help="also draw the timeline to this .png or .svg file")
    localize.add_argument("--annotations", type=Path, help="with --plot: draw this annotation file's ground truth")
    localize.add_argument("--video-id", help="the video's id in --annotations (default: the file name's stem)")
    localize.add_argument("--no-boundary", action="store_true", help="with --plot: leave out the BDR fields")
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

    batch = subcommands.add_parser(
        "batch", help="localize many videos on Ray; ActivityNet results JSON with per-video timing and FLOPs"
    )
    batch.add_argument("--videos", type=Path, required=True, help="folder of videos, or a text file of video paths")
    batch.add_argument("--output", type=Path, required=True, help="PRED.json to write (a rerun resumes it)")
    batch.add_argument("--address", help="an existing Ray cluster (ray://host:10001 or auto); default: start one here")
    batch.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: TZN_CHECKPOINT or the demo)")
    batch.add_argument("--num-cpus", type=int, help="CPUs of the local Ray runtime (default: all)")
    batch.add_argument("--cpus-per-actor", type=int, default=1, help="cores per CPU actor (torch threads)")
    batch.set_defaults(handler=run_batch)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _startup_errors() -> tuple[type[Exception], ...]:
    """Failures of settings and files that a command reports as one line (exit code 2), not a traceback."""
    from model.backbones import BackboneError
    from model.checkpoint import CheckpointError
    from model.head import HeadError
    from service.errors import ConfigurationError
    from service.settings import SettingsError

    return SettingsError, ConfigurationError, CheckpointError, HeadError, BackboneError


def run_serve(args: argparse.Namespace) -> int:
    """Checks the settings, binds the port, then serves; the model loads in the background. Exits 2 with one
    line on bad settings or a busy port, 1 when the model fails to load (unless TZN_KEEP_UP_ON_LOAD_ERROR)."""
    import logging
    import socket

    import uvicorn

    from service import preflight
    from service.app import create_app
    from service.settings import load_settings

    try:
        settings = load_settings()
        preflight.check(settings)
    except _startup_errors() as error:
        print(f"tzn serve: {_one_line(error)}", file=sys.stderr)
        return 2
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as error:
        sock.close()
        print(
            f"tzn serve: cannot listen on {args.host}:{args.port} ({error.strerror}); is another server running "
            "there? Stop it or choose another port with --port",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    failures: list[str] = []
    servers: list[uvicorn.Server] = []

    def stop_on_load_failure(message: str) -> None:
        failures.append(message)
        servers[0].should_exit = True

    on_load_failure = None if settings.keep_up_on_load_error else stop_on_load_failure
    server = uvicorn.Server(uvicorn.Config(create_app(settings, on_load_failure=on_load_failure), log_level="info"))
    servers.append(server)
    server.run(sockets=[sock])
    if failures:
        print(
            f"tzn serve: the model failed to load: {_one_line(failures[0])} "
            "(set TZN_KEEP_UP_ON_LOAD_ERROR=true to keep serving 503 instead)",
            file=sys.stderr,
        )
        return 1
    return 0


def run_localize(args: argparse.Namespace) -> int:
    import uuid

    from service.errors import VideoError
    from service.pipeline import Localizer
    from service.settings import load_settings
    from service.timeline import TimelineError

    if not args.video.is_file():
        problem = "is a directory" if args.video.is_dir() else "no such file"
        print(f"tzn localize: {args.video}: {problem}; give the path of a video file", file=sys.stderr)
        return 2
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".svg"):
        print(f"tzn localize: --plot {args.plot}: use a .png or .svg file name", file=sys.stderr)
        return 2
    overrides = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    try:
        localizer = Localizer(load_settings(**overrides))
        drawn = args.plot is not None and not args.no_boundary  # the plot draws the boundary fields
        result = localizer.localize(args.video, args.video.name, args.min_score, args.top_k, fields=drawn)
    except (VideoError, *_startup_errors()) as error:
        print(f"tzn localize: {_one_line(error)}", file=sys.stderr)
        return 2
    request_id = uuid.uuid4().hex
    print(json.dumps(result.response(localizer.model_info(), request_id).model_dump(exclude_none=True), indent=2))
    if args.plot is not None:
        answer = result.response(localizer.model_info(), request_id, frozenset({"depth", "boundary"}))
        try:
            path = plot_answer(answer.model_dump(exclude_none=True), args, localizer.config.labels)
        except (TimelineError, OSError) as error:
            print(f"tzn localize: {error}", file=sys.stderr)
            return 2
        print(f"timeline written to {path}", file=sys.stderr)
    return 0


def plot_answer(answer: dict, args: argparse.Namespace, labels: list[str]) -> Path:
    from service.timeline import Timeline, ground_truth, render, sample_thumbnails

    truth = ground_truth(args.annotations, args.video_id or args.video.stem) if args.annotations else None
    timeline = Timeline.from_answer(answer, labels, truth)
    timeline.thumbnails = sample_thumbnails(args.video)
    return render(timeline, args.plot, show_boundary=not args.no_boundary)


def run_batch(args: argparse.Namespace) -> int:
    from service import batch

    try:
        videos = batch.list_videos(args.videos)
        overrides = {"checkpoint": str(args.checkpoint)} if args.checkpoint else {}
        output = batch.run_batch(videos, args.output, overrides, args.address, args.num_cpus, args.cpus_per_actor)
    except batch.BatchError as error:
        print(f"tzn batch: {error}", file=sys.stderr)
        return 2
    failed = output["failed"]
    for video_id, message in failed.items():
        print(f"tzn batch: {video_id} failed: {message}", file=sys.stderr)
    print(json.dumps({"output": str(args.output), "done": len(output["results"]), "failed": len(failed)}))
    return 1 if failed else 0


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
