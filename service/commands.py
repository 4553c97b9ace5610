"""`tzn serve` and `tzn localize VIDEO`: the service, and its answer for one video from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path


def register(subcommands: argparse._SubParsersAction, draw_timeline: Callable[..., Path]) -> None:
    """`draw_timeline(answer, labels, path, video, annotations, video_id, show_boundary)` draws `tzn localize
    --plot` (viz.timeline, wired in by tzn.py, so that the service does not import the pictures)."""
    serve = subcommands.add_parser("serve", help="run the HTTP service (settings from TZN_* variables)")
    serve.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0, every interface; 127.0.0.1: this "
        "machine only)",
    )  # fmt: skip
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
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
    localize.set_defaults(handler=lambda args: run_localize(args, draw_timeline))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _startup_errors() -> tuple[type[Exception], ...]:
    """Failures of settings and files that a command reports as one line (exit code 2), not a traceback."""
    from engine.errors import ConfigurationError
    from model.backbones import BackboneError
    from model.checkpoint import CheckpointError
    from model.head import HeadError
    from service.settings import SettingsError

    return SettingsError, ConfigurationError, CheckpointError, HeadError, BackboneError


def run_serve(args: argparse.Namespace) -> int:
    """Checks the settings, binds the port, then serves; the model loads in the background. Exits 2 with one
    line on bad settings or a busy port, 1 when the model fails to load (unless TZN_KEEP_UP_ON_LOAD_ERROR)."""
    import logging
    import socket

    import uvicorn

    from engine import preflight
    from service.app import create_app
    from service.settings import load_settings
    from service.workers import engine_server, run_engine, start_intake

    try:
        settings = load_settings()
        preflight.check(settings.engine_settings())
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
    logging.getLogger("tzn.serve").info(
        "listening on %s:%d; the model loads now, and GET /health/ready answers 200 once it serves",
        args.host, args.port,
    )  # fmt: skip
    failures: list[str] = []
    servers: list[uvicorn.Server] = []

    def stop_on_load_failure(message: str) -> None:
        failures.append(message)
        servers[0].should_exit = True

    on_load_failure = None if settings.keep_up_on_load_error else stop_on_load_failure
    intake = start_intake(settings, sock, f"{args.host}:{args.port}")
    engine_socket = intake.engine if intake else None
    app = create_app(settings, on_load_failure=on_load_failure, intake_socket=engine_socket,
                     upload_slots=intake.engine_slots if intake else None)  # fmt: skip
    server = engine_server(uvicorn.Config(app, log_level="info"), intake)
    servers.append(server)
    run_engine(server, sock, intake)
    if failures:
        print(
            f"tzn serve: the model failed to load: {_one_line(failures[0])} "
            "(set TZN_KEEP_UP_ON_LOAD_ERROR=true to keep serving 503 instead)",
            file=sys.stderr,
        )
        return 1
    return 0


def run_localize(args: argparse.Namespace, draw_timeline: Callable[..., Path]) -> int:
    import uuid

    from engine.errors import VideoError
    from engine.localizer import Localizer
    from engine.video.source import VideoSource
    from service.answers import answer_json
    from service.settings import DEMO_VIDEO, load_settings

    if not args.video.is_file():
        problem = "is a directory" if args.video.is_dir() else "no such file"
        print(f"tzn localize: {args.video}: {problem}; give the path of a video file", file=sys.stderr)
        return 2
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".svg"):
        print(f"tzn localize: --plot {args.plot}: use a .png or .svg file name", file=sys.stderr)
        return 2
    overrides = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    try:
        settings = load_settings(**overrides)
        localizer = Localizer(settings.engine_settings(), warm_up_video=DEMO_VIDEO)
        drawn = args.plot is not None and not args.no_boundary  # the plot draws the boundary fields
        result = localizer.localize(
            VideoSource.from_path(args.video), settings.localize_limits.work,
            min_score=settings.min_score if args.min_score is None else args.min_score,
            top_k=settings.top_k if args.top_k is None else args.top_k, fields=drawn,
        )  # fmt: skip
    except (VideoError, *_startup_errors()) as error:
        print(f"tzn localize: {_one_line(error)}", file=sys.stderr)
        return 2
    request_id = uuid.uuid4().hex
    print(json.dumps(answer_json(result, localizer, request_id), indent=2))
    if args.plot is not None:
        answer = answer_json(result, localizer, request_id, frozenset({"depth", "boundary"}))
        try:
            path = draw_timeline(
                answer, localizer.config.labels, args.plot, video=args.video, annotations=args.annotations,
                video_id=args.video_id or args.video.stem, show_boundary=not args.no_boundary,
            )  # fmt: skip
        except (ValueError, OSError) as error:  # TimelineError is a ValueError
            print(f"tzn localize: {error}", file=sys.stderr)
            return 2
        print(f"timeline written to {path}", file=sys.stderr)
    return 0
