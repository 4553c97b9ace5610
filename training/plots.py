"""`tzn predict --plot DIR`: one timeline per video, the researcher's qualitative figure.

Each picture shows a video's predictions (one row per label, opacity = score) over its annotated ground
truth, the ATR depth per feature position and, for BDR models, the boundary fields. Feature runs have no
frames, so there is no thumbnail strip. The drawing is `viz.timeline.write_prediction_timelines`, the
same as `tzn localize --plot`; the `tzn` dispatcher passes it in, so that training does not import viz/.
"""

from __future__ import annotations

import numpy as np

from model.checkpoint import CheckpointConfig
from model.tzn import TZNOutput
from training.dataset import VideoItem


class TimelineCollector:
    """Keeps, per video, what the picture needs from the head output (passed as `on_video` to predict)."""

    def __init__(self, config: CheckpointConfig):
        self.config = config
        # video_id -> {"duration_s", "times_s" (T,) s, "depth" (T,) layers, "boundary" (T, 2) steps or None}
        self.traces: dict[str, dict] = {}

    def __call__(self, item: VideoItem, output: TZNOutput) -> None:
        length = item.features.shape[-1]
        positions = np.arange(length)
        bdr = self.config.model.boundary_head == "bdr" and output.boundary
        self.traces[item.video_id] = {
            "duration_s": item.duration,
            # time of feature i: (i * feat_stride + num_frames / 2) / fps (docs/design.md, "Data formats")
            "times_s": (positions * item.feat_stride + item.num_frames / 2) / item.fps,
            "depth": output.layer_masks[0, :length].float().sum(-1).cpu().numpy(),
            "boundary": output.boundary[0][0, :length].float().cpu().numpy() if bdr else None,
        }
