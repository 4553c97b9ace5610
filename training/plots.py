"""`tzn predict --plot DIR`: one timeline per video, the researcher's qualitative figure.

Each picture shows a video's predictions (one row per label, opacity = score) over its annotated ground
truth, the ATR depth per feature position and, for BDR models, the boundary fields. Feature runs have no
frames, so there is no thumbnail strip. The drawing is `service.timeline`, the same as `tzn localize --plot`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.checkpoint import CheckpointConfig
from model.tzn import TZNOutput
from training.dataset import VideoItem


class TimelineCollector:
    """Keeps, per video, what the picture needs from the head output (passed as `on_video` to predict)."""

    def __init__(self, config: CheckpointConfig):
        self.config = config
        self.traces: dict[str, dict] = {}

    def __call__(self, item: VideoItem, output: TZNOutput) -> None:
        length = item.features.shape[-1]
        positions = np.arange(length)
        bdr = self.config.model.boundary_head == "bdr" and output.boundary
        self.traces[item.video_id] = {
            "duration_s": item.duration,
            # time of feature i: (i * feat_stride + num_frames / 2) / fps (DESIGN §2)
            "times_s": (positions * item.feat_stride + item.num_frames / 2) / item.fps,
            "depth": output.layer_masks[0, :length].float().sum(-1).cpu().numpy(),
            "boundary": output.boundary[0][0, :length].float().cpu().numpy() if bdr else None,
        }


def write_timelines(
    directory: Path, results: dict[str, list[dict]], collector: TimelineCollector, annotations: Path, fmt: str = "png"
) -> list[Path]:
    """One `<video_id>.<fmt>` per predicted video in `directory`, with the annotations' ground truth."""
    from service.timeline import Curve, Interval, Timeline, ground_truth, render

    config = collector.config
    written = []
    for video_id, predictions in results.items():
        trace = collector.traces[video_id]
        times = trace["times_s"]
        boundary = trace["boundary"]
        timeline = Timeline(
            title=f"{video_id} · {config.metadata.get('name', 'checkpoint')}",
            duration_s=trace["duration_s"],
            labels=list(config.labels),
            segments=[Interval(p["label"], *p["segment"], p["score"]) for p in predictions],
            ground_truth=ground_truth(annotations, video_id),
            depth=Curve(times, trace["depth"]),
            max_depth=config.model.stem_layers,
            boundary=(Curve(times, boundary[:, 0]), Curve(times, boundary[:, 1])) if boundary is not None else None,
            note=f"mean depth {trace['depth'].mean():.2f} of {config.model.stem_layers}",
        )
        written.append(render(timeline, Path(directory) / f"{video_id}.{fmt}"))
    return written
