"""`tzn batch`: many videos localized on Ray, written as ActivityNet results with per-video timing and FLOPs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.commands import add_videos_in_and_out


def register(subcommands: argparse._SubParsersAction) -> None:
    batch = subcommands.add_parser(
        "batch", help="localize many videos on Ray; ActivityNet results JSON with per-video timing and FLOPs"
    )
    add_videos_in_and_out(
        batch, "folder of videos, or a text file of video paths", "PRED.json to write (a rerun resumes it)"
    )
    batch.add_argument("--address", help="an existing Ray cluster (ray://host:10001 or auto); default: start one here")
    batch.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: TZN_CHECKPOINT or the demo)")
    batch.add_argument("--num-cpus", type=int, help="CPUs of the local Ray runtime (default: all)")
    batch.add_argument("--cpus-per-actor", type=int, default=1, help="cores per CPU actor (torch threads)")
    batch.set_defaults(handler=run_batch)


def run_batch(args: argparse.Namespace) -> int:
    from raybatch import batch

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
