"""The `tzn` command: one entry point; each package registers its own subcommands.

This module is the only place that wires the packages together (training's `tzn predict` runs exported
heads through the engine's runners, and draws timelines with viz/, without training importing either).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import commands as engine_commands
from export import commands as export_commands
from model.head import Head
from raybatch import commands as batch_commands
from service import commands as service_commands
from training import commands as training_commands


def load_exported_head(*args, **kwargs) -> Head:
    """`engine.heads.load_head`, imported when a command asks for an exported head."""
    from engine.heads import load_head

    return load_head(*args, **kwargs)


def write_timelines(*args, **kwargs) -> list[Path]:
    """`viz.timeline.write_prediction_timelines`, imported (with matplotlib) only when a picture is asked for."""
    from viz.timeline import write_prediction_timelines

    return write_prediction_timelines(*args, **kwargs)


def draw_timeline(
    answer: dict, labels: list[str], path: Path, video: Path, annotations: Path | None, video_id: str,
    show_boundary: bool,
) -> Path:  # fmt: skip
    """The timeline of one answer with thumbnails of its video (`tzn localize --plot`): viz.timeline."""
    from engine.video.decode import thumbnails
    from viz.timeline import THUMBNAIL_HEIGHT, Timeline, ground_truth, render

    truth = ground_truth(annotations, video_id) if annotations else None
    timeline = Timeline.from_answer(answer, labels, truth)
    ran = answer.get("model", {}).get("decoder")
    cpu_decoder = ran if ran in ("decord", "torchcodec") else "torchcodec"
    timeline.thumbnails = thumbnails(video, count=10, height=THUMBNAIL_HEIGHT, decoder=cpu_decoder)
    return render(timeline, path, show_boundary=show_boundary)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tzn", description="Temporal Zoom Network: temporal action localization")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    training_commands.register(subcommands, load_exported_head, write_timelines)
    export_commands.register(subcommands)
    engine_commands.register(subcommands)
    service_commands.register(subcommands, draw_timeline)
    batch_commands.register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())
