"""`tzn batch`: the engine's Localizer over many videos, on Ray.

Ray is the engine: one actor per GPU (`num_gpus=1`) on a cluster with GPUs, else CPU actors
(`--cpus-per-actor` cores each, as many as the cluster's CPUs allow); each actor loads the model once and
localizes the videos Ray's `ActorPool` hands it, decoding inside the worker (in its isolated decoder child,
as the service does). Without `--address` a local Ray runtime starts on this machine.

The output is the ActivityNet results format (`{"results": {video_id: [{"segment", "label", "score"}]}}`,
what `tzn eval` reads) plus, per video, what it cost (`videos`: timing and FLOPs, as /localize reports them)
and the failures (`failed`: video id -> message). A failing video does not stop the batch. The file is
rewritten every few seconds and at the end; a rerun skips the videos already in `results` (and retries
the failed ones).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from engine.video.container import VIDEO_SUFFIXES

SAVE_EVERY_S = 5.0


class BatchError(Exception):
    """A batch that cannot start: no videos, two videos with one id, an unreadable previous output."""


def list_videos(source: Path) -> dict[str, Path]:
    """Video id (file name without suffix) -> path, from a folder of videos or a text file of paths (one per
    line, relative to the list's folder; blank lines and # comments ignored)."""
    if source.is_dir():
        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    elif source.is_file():
        lines = [line.strip() for line in source.read_text().splitlines()]
        paths = [source.parent / line for line in lines if line and not line.startswith("#")]
    else:
        raise BatchError(f"{source} is neither a folder of videos nor a list of video paths")
    if not paths:
        raise BatchError(f"no videos in {source} (suffixes: {', '.join(sorted(VIDEO_SUFFIXES))})")
    videos: dict[str, Path] = {}
    for path in paths:
        if path.stem in videos:
            raise BatchError(f"two videos have the id {path.stem!r} ({videos[path.stem]}, {path}): rename one")
        videos[path.stem] = path
    return videos


def load_output(path: Path) -> dict[str, Any]:
    """A previous output to resume from, or an empty one."""
    empty = {"results": {}, "videos": {}, "failed": {}}
    if not path.exists():
        return empty
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BatchError(f"cannot resume from {path} ({error}): move it away or choose another --output") from None
    if not isinstance(previous, dict) or not isinstance(previous.get("results"), dict):
        raise BatchError(f"{path} is not a tzn batch output (no 'results' dict): choose another --output")
    return {**empty, **previous, "failed": {}}  # failed videos are tried again


def save_output(path: Path, output: dict[str, Any]) -> None:
    """Writes atomically: a killed batch leaves the previous complete file, never half of one."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(output, indent=1))
    os.replace(partial, path)


def activitynet_segments(segments: list[dict]) -> list[dict]:
    """/localize segments -> ActivityNet result entries."""
    return [{"segment": [s["start_s"], s["end_s"]], "label": s["label"], "score": s["score"]} for s in segments]


class LocalizeWorker:
    """A Ray actor: one Localizer, loaded once, localizing one video per call. Never raises for a video:
    a failure comes back as {"error": message}."""

    def __init__(self, overrides: dict[str, Any], threads: int):
        import torch

        from engine.localizer import Localizer
        from service.settings import DEMO_VIDEO, Settings

        torch.set_num_threads(threads)
        self.settings = Settings(**overrides)
        self.localizer = Localizer(self.settings.engine_settings(), warm_up_video=DEMO_VIDEO)

    def model(self) -> dict[str, Any]:
        return self.localizer.model_info()

    def localize(self, video_id: str, path: str) -> dict[str, Any]:
        from engine.errors import VideoError
        from engine.video.source import VideoSource

        settings = self.settings
        try:
            result = self.localizer.localize(
                VideoSource.from_path(path), settings.localize_limits.work, min_score=settings.min_score,
                top_k=settings.top_k,
            )  # fmt: skip
        except VideoError as error:
            return {"video_id": video_id, "error": str(error)}
        except Exception as error:
            return {"video_id": video_id, "error": f"{type(error).__name__}: {error}"}
        return {
            "video_id": video_id,
            "segments": result.segments,
            "stats": {
                "path": path,
                "duration_s": result.info.duration_s,
                "timing_ms": result.timing_ms,
                "flops": result.flops,
                "realtime_factor": result.realtime_factor,
            },
        }


def start_actors(overrides: dict[str, Any], cpus_per_actor: int) -> tuple[list, str]:
    """One actor per GPU of the cluster, else as many CPU actors of `cpus_per_actor` cores as fit."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    remote = ray.remote(max_restarts=1, max_task_retries=1)(LocalizeWorker)
    if gpus:
        actors = [
            remote.options(num_gpus=1, num_cpus=cpus_per_actor).remote({**overrides, "device": "cuda"}, cpus_per_actor)
            for _ in range(gpus)
        ]
        return actors, f"{gpus} GPU actors"
    count = max(1, int(resources.get("CPU", 1)) // cpus_per_actor)
    actors = [
        remote.options(num_cpus=cpus_per_actor).remote({**overrides, "device": "cpu"}, cpus_per_actor)
        for _ in range(count)
    ]
    return actors, f"{count} CPU actors x {cpus_per_actor} cores"


def run_batch(
    videos: dict[str, Path],
    output_path: Path,
    overrides: dict[str, Any],
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_actor: int = 1,
) -> dict[str, Any]:
    """Localizes `videos` on Ray, writing `output_path` as it goes; returns the output."""
    import ray
    from ray.util import ActorPool
    from tqdm import tqdm

    output = load_output(output_path)
    todo = {video_id: path for video_id, path in videos.items() if video_id not in output["results"]}
    skipped = len(videos) - len(todo)
    if skipped:
        print(f"tzn batch: {skipped} of {len(videos)} videos already done in {output_path}; skipping them",
              file=sys.stderr)  # fmt: skip
    if not todo:
        return output
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        actors, description = start_actors(overrides, cpus_per_actor)
        print(f"tzn batch: {len(todo)} videos on {description}", file=sys.stderr)
        output["model"] = ray.get(actors[0].model.remote())
        pool = ActorPool(actors)
        for video_id, path in todo.items():
            pool.submit(lambda actor, item: actor.localize.remote(*item), (video_id, str(path.resolve())))
        saved = time.monotonic()
        with tqdm(total=len(todo), desc="localizing", unit="video") as bar:
            while pool.has_next():
                try:
                    answer = pool.get_next_unordered()
                except ray.exceptions.RayError as error:  # an actor died twice: its video is reported below
                    print(f"tzn batch: a worker failed: {error}", file=sys.stderr)
                    bar.update()
                    continue
                record(output, answer)
                bar.update()
                if time.monotonic() - saved > SAVE_EVERY_S:
                    save_output(output_path, output)
                    saved = time.monotonic()
    except BaseException:  # Ray trouble or Ctrl-C: what finished is kept, and a rerun skips it
        if output["results"]:
            save_output(output_path, output)
        raise
    finally:
        ray.shutdown()
    for video_id in todo:
        if video_id not in output["results"] and video_id not in output["failed"]:
            output["failed"][video_id] = "the Ray worker localizing it died (twice); see the Ray logs"
    save_output(output_path, output)
    return output


def record(output: dict[str, Any], answer: dict[str, Any]) -> None:
    video_id = answer["video_id"]
    if "error" in answer:
        output["failed"][video_id] = answer["error"]
        return
    output["results"][video_id] = activitynet_segments(answer["segments"])
    output["videos"][video_id] = answer["stats"]
    output["failed"].pop(video_id, None)
