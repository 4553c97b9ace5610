"""The timeline of one video as a picture (PNG or SVG, matplotlib): what was found and where TZN zoomed in.

From top to bottom, on one time axis in seconds:
  thumbnails sampled from the video;
  the detected segments, one row per label, opacity = score, with the ground truth under each row;
  the ATR depth per position (stem layers run, out of L_max);
  for BDR models, optionally, the boundary distance fields (true boundaries are upward zero crossings).

`Timeline.from_answer` reads the JSON the service returns (with `include=depth,boundary`), so the picture
shows exactly what a client gets; `tzn predict --plot` builds one from a prediction run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SUFFIXES = (".png", ".svg")
THUMBNAIL_HEIGHT = 96


class TimelineError(ValueError):
    """A timeline that cannot be drawn: an unknown file type, a video id missing from the annotations."""


@dataclass(frozen=True)
class Interval:
    """A segment in seconds; score is None for ground truth."""

    label: str
    start_s: float
    end_s: float
    score: float | None = None


@dataclass(frozen=True)
class Curve:
    times_s: np.ndarray
    values: np.ndarray


@dataclass
class Timeline:
    title: str
    duration_s: float
    labels: list[str]
    segments: list[Interval]
    ground_truth: list[Interval] | None = None
    depth: Curve | None = None
    max_depth: int | None = None
    boundary: tuple[Curve, Curve] | None = None  # d_start, d_end in level-0 steps
    thumbnails: list[tuple[float, np.ndarray]] = field(default_factory=list)  # (time_s, (H, W, 3) uint8)
    note: str = ""
    zoom_windows: list[tuple[float, float]] = field(default_factory=list)  # where a zoom checkpoint looked closely
    zoom_fps: float | None = None

    @classmethod
    def from_answer(
        cls, answer: dict, labels: list[str] | None = None, ground_truth: list[Interval] | None = None
    ) -> Timeline:
        """A /localize answer (dict as parsed from its JSON) -> its timeline; depth/boundary when included."""
        segments = [Interval(s["label"], s["start_s"], s["end_s"], s["score"]) for s in answer["segments"]]
        depth = answer.get("depth")
        boundary = answer.get("boundary")
        flops = answer["flops"]
        note = (
            f"mean depth {flops['mean_depth']:.2f} · head FLOPs saved {100 * flops['head_saved_ratio']:.0f}% · "
            f"total {answer['timing_ms']['total'] / 1000:.2f} s ({answer['realtime_factor']:.1f}x real time)"
        )
        return cls(
            title=f"{answer['video']['filename']} · {answer['model']['name']}",
            duration_s=answer["video"]["duration_s"],
            labels=[*labels, *(lb for lb in row_labels([], ground_truth) if lb not in labels)]
            if labels
            else row_labels(segments, ground_truth),
            segments=segments,
            ground_truth=ground_truth,
            depth=Curve(np.asarray(depth["times_s"]), np.asarray(depth["mean_depth"])) if depth else None,
            max_depth=depth["max_depth"] if depth else None,
            boundary=(
                (
                    Curve(np.asarray(boundary["times_s"]), np.asarray(boundary["d_start"])),
                    Curve(np.asarray(boundary["times_s"]), np.asarray(boundary["d_end"])),
                )
                if boundary
                else None
            ),
            note=note,
            zoom_windows=[tuple(w) for w in answer["zoom"]["windows"]] if answer.get("zoom") else [],
            zoom_fps=answer["zoom"]["zoom_fps"] if answer.get("zoom") else None,
        )


def row_labels(segments: list[Interval], ground_truth: list[Interval] | None = None) -> list[str]:
    """Rows when the model's label list is not at hand: every label that occurs, sorted."""
    return sorted({s.label for s in segments} | {g.label for g in ground_truth or []})


def ground_truth(annotations: Path, video_id: str) -> list[Interval]:
    """The annotated segments of one video of an ActionFormer/ActivityNet annotation file."""
    database = json.loads(Path(annotations).read_text())["database"]
    if video_id not in database:
        raise TimelineError(f"video {video_id!r} is not in {annotations}; pass its id with --video-id")
    return [Interval(a["label"], *a["segment"]) for a in database[video_id].get("annotations", [])]


def write_prediction_timelines(
    directory: Path,
    results: dict[str, list[dict]],
    traces: dict[str, dict],
    annotations: Path,
    labels: list[str],
    max_depth: int,
    name: str = "checkpoint",
    fmt: str = "png",
) -> list[Path]:
    """`tzn predict --plot`: one `<video_id>.<fmt>` per video of an ActivityNet `results` dict, with the
    annotations' ground truth; `traces[video_id]` = {"duration_s", "times_s", "depth", "boundary" or None}."""
    written = []
    for video_id, predictions in results.items():
        trace = traces[video_id]
        times, boundary = trace["times_s"], trace["boundary"]
        timeline = Timeline(
            title=f"{video_id} · {name}",
            duration_s=trace["duration_s"],
            labels=list(labels),
            segments=[Interval(p["label"], *p["segment"], p["score"]) for p in predictions],
            ground_truth=ground_truth(annotations, video_id),
            depth=Curve(times, trace["depth"]),
            max_depth=max_depth,
            boundary=(Curve(times, boundary[:, 0]), Curve(times, boundary[:, 1])) if boundary is not None else None,
            note=f"mean depth {trace['depth'].mean():.2f} of {max_depth}",
        )
        written.append(render(timeline, Path(directory) / f"{video_id}.{fmt}"))
    return written


def render(timeline: Timeline, path: Path, show_boundary: bool = True) -> Path:
    """Draws `timeline` to `path`; the suffix (.png or .svg) picks the format."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise TimelineError(f"cannot write a timeline to {path.name!r}: use a .png or .svg file name")
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text in SVG: searchable, smaller
    import matplotlib.pyplot as plt

    panels = ["segments"]
    if timeline.thumbnails:
        panels.insert(0, "thumbnails")
    if timeline.depth is not None:
        panels.append("depth")
    if show_boundary and timeline.boundary is not None:
        panels.append("boundary")
    rows = max(1, len(timeline.labels))
    heights = {"thumbnails": 1.1, "segments": 0.55 * rows + 0.4, "depth": 1.3, "boundary": 1.3}
    figure, axes = plt.subplots(
        len(panels), 1, sharex=True, figsize=(12, sum(heights[p] for p in panels) + 0.9),
        gridspec_kw={"height_ratios": [heights[p] for p in panels]}, squeeze=False,
    )  # fmt: skip
    axes = dict(zip(panels, axes[:, 0], strict=True))
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(timeline.labels)}
    if "thumbnails" in axes:
        _draw_thumbnails(axes["thumbnails"], timeline)
    _draw_segments(axes["segments"], timeline, colors)
    if "depth" in axes:
        _draw_depth(axes["depth"], timeline)
    if "boundary" in axes:
        _draw_boundary(axes["boundary"], timeline)
    last = axes[panels[-1]]
    last.set_xlim(0, timeline.duration_s)
    last.set_xlabel("time (s)")
    figure.suptitle(timeline.title, x=0.01, ha="left", fontsize=11)
    if timeline.note:
        figure.text(0.99, 0.995, timeline.note, ha="right", va="top", fontsize=8, color="0.3")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _draw_thumbnails(axis, timeline: Timeline) -> None:
    slice_s = timeline.duration_s / len(timeline.thumbnails)
    for i, (_, image) in enumerate(timeline.thumbnails):
        axis.imshow(image, extent=(i * slice_s, (i + 1) * slice_s, 0, 1), aspect="auto")
    axis.set_ylim(0, 1)
    axis.set_yticks([])
    axis.set_ylabel("video", rotation=0, ha="right", va="center")


def _draw_segments(axis, timeline: Timeline, colors: dict) -> None:
    """Row i (from the top) holds label i: detections on the upper band, ground truth on the lower one."""
    rows = len(timeline.labels)
    row_of = {label: rows - 1 - i for i, label in enumerate(timeline.labels)}
    for segment in timeline.segments:
        if segment.label not in row_of:
            continue
        y = row_of[segment.label]
        alpha = 0.15 + 0.85 * float(np.clip(segment.score, 0, 1))
        axis.broken_barh(
            [(segment.start_s, segment.end_s - segment.start_s)], (y + 0.38, 0.5),
            facecolors=[colors[segment.label]], alpha=alpha, edgecolor="black", linewidth=0.4,
        )  # fmt: skip
        if segment.end_s - segment.start_s > 0.04 * timeline.duration_s:
            axis.text((segment.start_s + segment.end_s) / 2, y + 0.63, f"{segment.score:.2f}",
                      ha="center", va="center", fontsize=7)  # fmt: skip
    for truth in timeline.ground_truth or []:
        if truth.label in row_of:
            axis.broken_barh([(truth.start_s, truth.end_s - truth.start_s)], (row_of[truth.label] + 0.1, 0.2),
                             facecolors="0.25", hatch="////", edgecolor="white", linewidth=0)  # fmt: skip
    axis.set_ylim(0, rows)
    axis.set_yticks([r + 0.5 for r in range(rows)], list(reversed(timeline.labels)), fontsize=8)
    for r in range(1, rows):
        axis.axhline(r, color="0.85", linewidth=0.6)
    for begin, end in timeline.zoom_windows:
        axis.axvspan(begin, end, color="tab:orange", alpha=0.18, linewidth=0)
    legend = "detections (opacity = score)" + ("; ground truth: dark hatched bar under each row"
                                               if timeline.ground_truth is not None else "")  # fmt: skip
    if timeline.zoom_windows:
        legend += f"; orange: zoom windows ({timeline.zoom_fps:g} fps)"
    axis.set_title(legend, fontsize=8, loc="left", color="0.3")
    axis.grid(axis="x", color="0.9")
    axis.set_axisbelow(True)


def _draw_depth(axis, timeline: Timeline) -> None:
    depth, max_depth = timeline.depth, timeline.max_depth
    axis.fill_between(depth.times_s, 0, depth.values, color="tab:purple", alpha=0.25, step="mid")
    axis.plot(depth.times_s, depth.values, color="tab:purple", linewidth=1.0, drawstyle="steps-mid")
    axis.axhline(max_depth, color="0.5", linestyle="--", linewidth=0.7)
    axis.set_ylim(0, max_depth + 0.3)
    axis.set_ylabel(f"ATR depth\n(of {max_depth})", fontsize=8)
    axis.set_yticks(range(0, max_depth + 1, max(1, max_depth // 3)))
    axis.grid(axis="x", color="0.9")
    axis.set_axisbelow(True)


def _draw_boundary(axis, timeline: Timeline) -> None:
    d_start, d_end = timeline.boundary
    axis.plot(d_start.times_s, d_start.values, color="tab:green", linewidth=0.9, label="d_start")
    axis.plot(d_end.times_s, d_end.values, color="tab:red", linewidth=0.9, label="d_end")
    axis.axhline(0, color="0.4", linewidth=0.6)
    for truth in timeline.ground_truth or []:
        axis.axvline(truth.start_s, color="tab:green", linestyle=":", linewidth=0.8)
        axis.axvline(truth.end_s, color="tab:red", linestyle=":", linewidth=0.8)
    axis.set_ylabel("BDR fields\n(steps)", fontsize=8)
    axis.legend(loc="upper right", fontsize=7, ncols=2)
    axis.grid(axis="x", color="0.9")
    axis.set_axisbelow(True)
