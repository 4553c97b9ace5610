"""The raw-video benchmark of the temporal zoom (issue 16): demo-style videos made harder where boundaries are.

Each video (30 fps, 320x240 by default) has the demo's drifting texture and grey clutter (training/demo_videos.py)
and 2-7 actions of the demo's four classes, with what the zoom has to cope with:
- short actions (0.5-3 s) as often as long ones (3-10 s);
- half the boundaries are fades (0.3-2 s, centred on the annotated boundary, `boundary_widths` in seconds),
  the others sharp cuts on the frame grid;
- 0-2 distractors per video: a class's shape and motion in a washed-out colour, not annotated;
- splits: "training", "validation" (carved from the training videos' generator, for every choice) and "test".

Annotations are ActionFormer's, plus each action's `boundary_widths` [start, end] (s, 0 = sharp) and the
distractors' segments. Everything is a function of (seed, index).

    python -m training.zoom_videos --output /tmp/zoom-videos --videos 104 --seed 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.demo_videos import ANNOTATIONS_FILE, CLASSES, Action, DemoVideo, annotation_entry, write_video

SPLIT_SHARES = {"validation": 0.15, "test": 0.25}  # the rest is "training"


def plan_zoom_video(
    index: int, seed: int, duration_s: float, fps: int, width: int, height: int, subset: str
) -> DemoVideo:
    """Actions, fades and distractors of one benchmark video (see the module docstring)."""
    rng = np.random.default_rng([seed, index, 10])
    frames = round(duration_s * fps)
    on_grid = lambda seconds: round(seconds * fps) / fps  # noqa: E731
    actions, distractors, cursor = [], [], on_grid(rng.uniform(1.0, 3.0))
    for _ in range(int(rng.integers(2, 8))):
        length = on_grid(rng.uniform(0.5, 3.0) if rng.random() < 0.5 else rng.uniform(3.0, 10.0))
        ramps = [float(rng.uniform(0.3, 2.0)) if rng.random() < 0.5 else 0.0 for _ in range(2)]
        ramps = [min(ramp, length) for ramp in ramps]  # a fade never outlasts its action
        if cursor + length + ramps[1] / 2 > duration_s - 1.0:
            break
        place = dict(
            x=float(rng.uniform(0.25, 0.75)), y=float(rng.uniform(0.3, 0.7)), scale=float(rng.uniform(0.8, 1.2))
        )
        actions.append(Action(int(rng.integers(len(CLASSES))), cursor, cursor + length, **place,
                              ramp_in_s=ramps[0], ramp_out_s=ramps[1]))  # fmt: skip
        gap = rng.uniform(1.5, 6.0)
        if rng.random() < 0.3 and gap > 3.5:  # a distractor in the gap, clear of both neighbours
            begin = on_grid(cursor + length + ramps[1] / 2 + 0.75)
            shown = on_grid(min(rng.uniform(0.5, 3.0), gap - 2.0))
            distractors.append(Action(int(rng.integers(len(CLASSES))), begin, begin + shown, **place))
        cursor = on_grid(cursor + length + ramps[1] / 2 + gap)
    return DemoVideo(f"zoom_{index:04d}", subset, frames, fps, width, height, tuple(actions), seed, index,
                     distractors=tuple(distractors))  # fmt: skip


def zoom_annotation_entry(video: DemoVideo) -> dict:
    """The video's ActionFormer entry, with each action's fade lengths and the distractors' segments."""
    entry = annotation_entry(video)
    for annotation, action in zip(entry["annotations"], video.actions, strict=True):
        annotation["boundary_widths"] = [action.ramp_in_s, action.ramp_out_s]
    entry["distractors"] = [[d.start_s, d.end_s] for d in video.distractors]
    return entry


def split_of(index: int, videos: int) -> str:
    """Test: the last quarter of the indices; validation: the 15% before them; training: the rest."""
    test = round(videos * SPLIT_SHARES["test"])
    validation = round(videos * SPLIT_SHARES["validation"])
    if index >= videos - test:
        return "test"
    return "validation" if index >= videos - test - validation else "training"


def generate_zoom_videos(
    output: str | Path, videos: int, seed: int = 0, duration_s: tuple[float, float] = (20.0, 40.0),
    width: int = 320, height: int = 240, fps: int = 30,
) -> dict:  # fmt: skip
    """Write the videos and `annotations.json` into `output` (a video already there is kept); the annotations."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    database = {}
    for index in range(videos):
        duration = float(np.random.default_rng([seed, index, 11]).uniform(*duration_s))
        video = plan_zoom_video(index, seed, duration, fps, width, height, split_of(index, videos))
        path = output / f"{video.video_id}.mp4"
        if not path.is_file():
            write_video(video, path)
        database[video.video_id] = zoom_annotation_entry(video)
    annotations = {"database": database}
    (output / ANNOTATIONS_FILE).write_text(json.dumps(annotations, indent=1))
    return annotations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--videos", type=int, default=104)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, nargs=2, default=[20.0, 40.0], metavar=("MIN", "MAX"))
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    args = parser.parse_args(argv)
    annotations = generate_zoom_videos(
        args.output, args.videos, args.seed, tuple(args.duration), args.width, args.height
    )
    actions = sum(len(v["annotations"]) for v in annotations["database"].values())
    print(f"wrote {len(annotations['database'])} videos with {actions} actions to {args.output}")


if __name__ == "__main__":
    main()
