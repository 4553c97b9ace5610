"""Demo dataset: synthetic H.264 videos with visible actions, and their ActionFormer-format annotations.

Each video is a drifting grey texture with grey clutter moving over it. Actions are saturated coloured
shapes; colour and motion together identify the class (see CLASSES). An action is drawn exactly in the
frames i with start_s <= i / fps < end_s, and start/end lie on the frame grid, so the annotations match
the pixels. Everything is a function of (seed, video index): the same command gives the same data.

Encoding pipes raw RGB frames into the `ffmpeg` binary (libx264): Debian's ffmpeg is already a system
dependency of the service, and PyAV's wheel is not installed here.

    python -m training.demo_videos --output data/demo --videos 8 --seed 0 [--duration 20 60] [--width 320 --height 240]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("red_ball_swing", "green_square_rise", "blue_ring_pulse", "yellow_bar_sweep")
CLASS_COLOURS = np.array([(225, 35, 35), (35, 205, 60), (45, 85, 235), (240, 215, 30)], dtype=np.uint8)
# a distractor: the class's shape and motion, its colour halfway to grey (it resembles the action, it is not one)
DISTRACTOR_COLOURS = ((CLASS_COLOURS.astype(np.int32) + 128) // 2).astype(np.uint8)
ANNOTATIONS_FILE = "annotations.json"


@dataclass(frozen=True)
class Action:
    """One drawn action instance: class, frame-aligned interval (s), and where it happens (fractions of W, H).
    `ramp_in_s` / `ramp_out_s`: a fade of that length centred on the start / end (0 = a sharp cut): the shape's
    opacity rises linearly from 0 to 1 across it, so the annotated boundary is where it is half visible."""

    label_id: int
    start_s: float
    end_s: float
    x: float
    y: float
    scale: float
    ramp_in_s: float = 0.0
    ramp_out_s: float = 0.0

    def opacity(self, t: float) -> float:
        """How visible the shape is at time `t` s: a sharp side cuts at its boundary (start_s <= t < end_s, on
        the frame grid), a faded side ramps linearly across it."""
        rising = _side(t - self.start_s, self.ramp_in_s)
        falling = _side(self.end_s - t, self.ramp_out_s, inside_at_zero=False)
        return float(np.clip(min(rising, falling), 0.0, 1.0))

    @property
    def label(self) -> str:
        return CLASSES[self.label_id]


def _side(inside_s: float, ramp_s: float, inside_at_zero: bool = True) -> float:
    """One side of an action's opacity, `inside_s` seconds inside its boundary: a linear ramp centred on it, or a
    cut (the start's frame is drawn, the end's is not; frame times and boundaries are multiples of 1 / fps)."""
    if ramp_s > 0:
        return inside_s / ramp_s + 0.5
    tolerance = 1e-9
    return float(inside_s >= -tolerance if inside_at_zero else inside_s > tolerance)


@dataclass(frozen=True)
class DemoVideo:
    video_id: str
    subset: str
    frames: int
    fps: int
    width: int
    height: int
    actions: tuple[Action, ...]
    seed: int
    index: int
    distractors: tuple[Action, ...] = ()  # drawn like actions in washed-out colours, never annotated

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps


def plan_video(index: int, seed: int, duration_s: float, fps: int, width: int, height: int, subset: str) -> DemoVideo:
    """Place 2-6 non-overlapping actions of 2-8 s with gaps of at least 1 s, on the frame grid."""
    rng = np.random.default_rng([seed, index, 0])
    frames = round(duration_s * fps)
    actions, cursor = [], round(rng.uniform(0.5, 3.0) * fps)
    for _ in range(int(rng.integers(2, 7))):
        length = round(rng.uniform(2.0, 8.0) * fps)
        if cursor + length > frames - fps // 2:
            break
        actions.append(
            Action(
                label_id=int(rng.integers(len(CLASSES))),
                start_s=cursor / fps,
                end_s=(cursor + length) / fps,
                x=float(rng.uniform(0.25, 0.75)),
                y=float(rng.uniform(0.3, 0.7)),
                scale=float(rng.uniform(0.8, 1.2)),
            )
        )
        cursor += length + round(rng.uniform(1.0, 6.0) * fps)
    return DemoVideo(f"demo_{index:04d}", subset, frames, fps, width, height, tuple(actions), seed, index)


# ---------------------------------------------------------------------------------------------------- drawing


class Scene:
    """Background texture and clutter of one video; `render(i)` draws frame i with its actions."""

    def __init__(self, video: DemoVideo):
        self.video = video
        rng = np.random.default_rng([video.seed, video.index, 1])
        h, w = video.height, video.width
        # low-frequency blobs plus fine grain, nearly grey so that action colours stand out
        coarse = rng.uniform(60, 170, size=(2 * h // 16 + 2, 2 * w // 16 + 2))
        texture = np.kron(coarse, np.ones((16, 16)))[: 2 * h, : 2 * w]
        texture += rng.normal(0, 12, size=texture.shape)
        stripes = 20 * (np.sin(np.arange(2 * w) / 9.0) > 0.6)
        texture += stripes[None, :]
        tint = rng.uniform(-8, 8, size=3)
        self.texture = np.clip(texture[..., None] + tint, 0, 255).astype(np.uint8)
        self.drift = rng.uniform(0.05, 0.2, size=2)  # cycles per second of the background wander
        self.clutter = rng.uniform(0, 1, size=(4, 5))  # x, y, vx, vy, grey level of grey distractor discs

    def render(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB of frame `index`."""
        v = self.video
        t = index / v.fps
        h, w = v.height, v.width
        dy = int((h / 2) * (1 + np.sin(2 * np.pi * self.drift[0] * t)))
        dx = int((w / 2) * (1 + np.sin(2 * np.pi * self.drift[1] * t + 1.0)))
        frame = self.texture[dy : dy + h, dx : dx + w].copy()
        for x, y, vx, vy, grey in self.clutter:
            cx = _bounce(x * w + (vx - 0.5) * 80 * t, w)
            cy = _bounce(y * h + (vy - 0.5) * 80 * t, h)
            _disc(frame, cx, cy, h * 0.06, (40 + 200 * grey,) * 3)
        for action in v.actions:
            if action.ramp_in_s or action.ramp_out_s:
                _draw_faded(frame, action, t, CLASS_COLOURS[action.label_id])
            elif round(action.start_s * v.fps) <= index < round(action.end_s * v.fps):  # 62 / 30 * 30 > 62
                _draw_action(frame, action, t - action.start_s, action.end_s - action.start_s)
        for distractor in v.distractors:
            _draw_faded(frame, distractor, t, DISTRACTOR_COLOURS[distractor.label_id])
        return frame


def _draw_faded(frame: np.ndarray, action: Action, t: float, colour) -> None:
    """`action` blended in at its opacity at time `t` (its motion runs over the visible span)."""
    alpha = action.opacity(t)
    if alpha <= 0:
        return
    visible_from = action.start_s - action.ramp_in_s / 2
    length = action.end_s + action.ramp_out_s / 2 - visible_from
    drawn = frame.copy()
    _draw_action(drawn, action, t - visible_from, length, colour)
    if alpha >= 1:
        frame[:] = drawn
    else:
        frame[:] = np.round((1 - alpha) * frame + alpha * drawn.astype(np.float64)).astype(np.uint8)


def _bounce(position: float, extent: int) -> float:
    period = 2 * extent
    position %= period
    return position if position < extent else period - position


def _draw_action(frame: np.ndarray, action: Action, elapsed: float, length: float, colour=None) -> None:
    """The class's shape and motion (in the class's colour unless `colour`); `elapsed` seconds into an action
    of `length` seconds."""
    h, w = frame.shape[:2]
    colour = CLASS_COLOURS[action.label_id] if colour is None else colour
    size = min(h, w) * 0.12 * action.scale
    progress = elapsed / length
    cx, cy = action.x * w, action.y * h
    if action.label_id == 0:  # red ball swinging left and right
        _disc(frame, cx + 0.2 * w * np.sin(2 * np.pi * elapsed / 1.5), cy, size, colour)
    elif action.label_id == 1:  # green square rising from the bottom to the top
        top = (h - size) * (1 - progress)
        _box(frame, cx - size, top - size / 2, cx + size, top + size * 1.5, colour)
    elif action.label_id == 2:  # blue ring pulsing in place
        radius = size * (1.2 + 0.5 * np.sin(2 * np.pi * elapsed / 0.8))
        _disc(frame, cx, cy, radius, colour, inner=radius * 0.55)
    else:  # yellow bar sweeping left to right
        left = (w - size) * progress
        _box(frame, left, 0, left + size * 0.6, h, colour)


def _disc(frame: np.ndarray, cx: float, cy: float, radius: float, colour, inner: float = 0.0) -> None:
    h, w = frame.shape[:2]
    y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 1, h)
    x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 1, w)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    distance2 = (yy - cy) ** 2 + (xx - cx) ** 2
    frame[y0:y1, x0:x1][(distance2 <= radius**2) & (distance2 >= inner**2)] = colour


def _box(frame: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour) -> None:
    h, w = frame.shape[:2]
    frame[max(int(y0), 0) : min(int(y1), h), max(int(x0), 0) : min(int(x1), w)] = colour


# ---------------------------------------------------------------------------------------------------- encoding


def write_video(video: DemoVideo, path: Path, crf: int = 23) -> None:
    """Render every frame and encode it to H.264 (yuv420p, faststart) with the ffmpeg binary."""
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("the demo generator needs the ffmpeg binary with libx264: apt install ffmpeg")
    command = [
        "ffmpeg", "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{video.width}x{video.height}", "-r", str(video.fps), "-i", "-",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
        "-movflags", "+faststart", str(path),
    ]  # fmt: skip
    scene = Scene(video)
    encoder = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for index in range(video.frames):
            encoder.stdin.write(scene.render(index).tobytes())
        encoder.stdin.close()
    except BrokenPipeError:
        pass  # ffmpeg stopped early; its stderr says why
    finally:
        returncode = encoder.wait()
        message = encoder.stderr.read().decode(errors="replace").strip()
        encoder.stderr.close()
    if returncode != 0:
        path.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed to encode {path.name} (exit {returncode}): {message}")


def annotation_entry(video: DemoVideo) -> dict:
    """The video's entry in an ActionFormer/ActivityNet `database`."""
    return {
        "subset": video.subset,
        "duration": video.duration_s,
        "fps": float(video.fps),
        "annotations": [
            {"segment": [a.start_s, a.end_s], "label": a.label, "label_id": a.label_id} for a in video.actions
        ],
    }


def generate(
    output: str | Path,
    videos: int,
    seed: int = 0,
    duration_s: tuple[float, float] = (20.0, 60.0),
    width: int = 320,
    height: int = 240,
    fps: int = 30,
) -> dict:
    """Write `videos` .mp4 files and `annotations.json` into `output`; return the annotations.

    Durations are drawn uniformly from `duration_s` (min, max) seconds. About a quarter of the videos (at least
    one when there are two or more) form the "test" subset, the rest "training".
    """
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs an even frame size, got {width}x{height}")
    if not 0 < duration_s[0] <= duration_s[1]:
        raise ValueError(f"duration range must be 0 < min <= max, got {duration_s}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    test_count = max(1, round(videos / 4)) if videos >= 2 else 0
    database = {}
    for index in range(videos):
        rng = np.random.default_rng([seed, index, 2])
        duration = float(rng.uniform(*duration_s))
        subset = "test" if index >= videos - test_count else "training"
        video = plan_video(index, seed, duration, fps, width, height, subset)
        write_video(video, output / f"{video.video_id}.mp4")
        database[video.video_id] = annotation_entry(video)
    annotations = {"database": database}
    (output / ANNOTATIONS_FILE).write_text(json.dumps(annotations, indent=1))
    return annotations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, type=Path, help="directory for the .mp4 files and annotations.json")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--duration",
        type=float,
        nargs="+",
        default=[20.0, 60.0],
        metavar="S",
        help="seconds: one value, or MIN MAX",
    )
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args(argv)
    if len(args.duration) not in (1, 2):
        parser.error("--duration takes one value or MIN MAX")
    low, high = args.duration[0], args.duration[-1]
    annotations = generate(args.output, args.videos, args.seed, (low, high), args.width, args.height, args.fps)
    actions = sum(len(v["annotations"]) for v in annotations["database"].values())
    print(f"wrote {len(annotations['database'])} videos with {actions} actions to {args.output}")


if __name__ == "__main__":
    main()
