"""Synthetic clip features whose action statistics are resampled from the real THUMOS14 annotations.

What is resampled (empirically, from `thumos14.json`): each synthetic video copies a real video's duration,
its number of actions and its class mix; each action's length is drawn from the real lengths of its
class. So lengths, counts per video, durations and the class mix follow THUMOS14 (up to `duration_scale`
/ `max_duration`, which shorten videos for CPU runs and thin out the actions to keep their density; a cap
shifts the class mix towards the classes of short videos: median action length 2.5 s at a 120 s cap).

How features are made, per time step i of the feature grid (docs/design.md, "Data formats"):
    x_i = [(1 - W_i) * background_i + sum_a w_a(i) * content_a(i)] @ projection + noise * eps_i
- everything but the noise lives in a `latent_dim`-dimensional subspace of the C channels, so a wider
  `feature_dim` does not make the task easier; class prototypes share a common direction and differ by
  `class_separation`;
- background: a per-video scene vector plus a slow random walk (AR(1), time constant ~50 steps);
- content of an action: its class prototype, an instance offset, and a class-specific direction that it
  moves along from start to end (actions have phases, so starts and ends look different);
- distractors: unannotated segments made from prototypes that are partly similar to the classes;
- w_a: the membership of step i in segment a. A boundary is a sharp cut (step function) or, with
  probability `boundary_mix`, a linear ramp of one of `ramp_widths` grid steps centred on the annotated
  time; annotations record the widths (`boundary_widths`, 0 = sharp) so results can be split by them.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.dataset import seconds_to_grid

# The real THUMOS14 annotations (412 videos) ship with the package; TZN_THUMOS_ANNOTATIONS points elsewhere.
THUMOS14_ANNOTATIONS = Path(__file__).resolve().parent / "data" / "thumos14.json"
DEFAULT_THUMOS_ANNOTATIONS = Path(os.environ.get("TZN_THUMOS_ANNOTATIONS", THUMOS14_ANNOTATIONS))


# ------------------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class VideoTemplate:
    """What one real video contributes: its duration (s) and how many actions of each class it holds."""

    duration: float
    label_counts: dict[str, int]


@dataclass(frozen=True)
class ThumosStats:
    """Empirical statistics to resample: real videos and the real action lengths (s) of each class."""

    videos: tuple[VideoTemplate, ...]
    lengths_by_class: dict[str, np.ndarray]

    @classmethod
    def from_annotations(cls, path: str | Path = DEFAULT_THUMOS_ANNOTATIONS) -> ThumosStats:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"THUMOS14 annotations not found at {path}: synthetic data resamples their statistics; "
                "pass thumos_annotations=PATH (CLI: --thumos-annotations) or stats=ThumosStats(...)"
            )
        database = json.loads(path.read_text())["database"]
        videos, lengths = [], {}
        for info in database.values():
            counts: dict[str, int] = {}
            for annotation in info.get("annotations", []):
                start, end = annotation["segment"]
                if end <= start:
                    continue
                counts[annotation["label"]] = counts.get(annotation["label"], 0) + 1
                lengths.setdefault(annotation["label"], []).append(end - start)
            if counts:
                videos.append(VideoTemplate(float(info["duration"]), counts))
        return cls(tuple(videos), {label: np.asarray(v) for label, v in sorted(lengths.items())})

    def summary(self) -> dict[str, float]:
        """Medians and means of the statistics the generator reproduces."""
        lengths = np.concatenate(list(self.lengths_by_class.values()))
        counts = np.array([sum(v.label_counts.values()) for v in self.videos])
        durations = np.array([v.duration for v in self.videos])
        return {
            "videos": len(self.videos),
            "actions": int(lengths.size),
            "median_action_length_s": float(np.median(lengths)),
            "mean_action_length_s": float(lengths.mean()),
            "median_actions_per_video": float(np.median(counts)),
            "mean_actions_per_video": float(counts.mean()),
            "median_duration_s": float(np.median(durations)),
            "action_coverage": float(lengths.sum() / durations.sum()),
        }


# --------------------------------------------------------------------------------- layout


@dataclass
class Segment:
    """An action (label is a class name) or a distractor (label is None) in seconds, with its boundary
    ramp widths in grid steps (0 = sharp cut)."""

    start: float
    end: float
    label: str | None
    kind_index: int  # class id for actions, distractor prototype id for distractors
    start_width: int
    end_width: int


@dataclass
class VideoLayout:
    duration: float
    actions: list[Segment]
    distractors: list[Segment]


def sample_layout(
    stats: ThumosStats,
    labels: Sequence[str],
    rng: np.random.Generator,
    duration_scale: float = 1.0,
    max_duration: float | None = None,
    boundary_mix: float = 0.5,
    ramp_widths: Sequence[int] = (2, 6, 12),
    distractor_rate: float = 0.5,
    num_distractor_kinds: int = 8,
) -> VideoLayout:
    """One video's actions and distractors, resampled from a real video that holds one of `labels`."""
    wanted = set(labels)
    templates = [v for v in stats.videos if wanted & v.label_counts.keys()]
    if not templates:
        raise ValueError(f"no video of the statistics holds any of the labels {sorted(wanted)}")
    template = templates[int(rng.integers(len(templates)))]
    counts = {label: n for label, n in template.label_counts.items() if label in wanted}
    duration = template.duration * duration_scale
    if max_duration is not None:
        duration = min(duration, max_duration)
    # keep the template's action density when the video is shortened
    expected = sum(counts.values()) * duration / template.duration
    count = max(1, int(np.floor(expected + rng.random())))
    names = list(counts)
    weights = np.array([counts[n] for n in names], dtype=np.float64)
    chosen = rng.choice(len(names), size=count, p=weights / weights.sum())
    lengths = np.array([rng.choice(stats.lengths_by_class[names[c]]) for c in chosen])
    lengths = np.minimum(lengths, 0.5 * duration)
    while lengths.sum() > 0.9 * duration and len(lengths) > 1:  # too many for a shortened video
        drop = int(rng.integers(len(lengths)))
        lengths, chosen = np.delete(lengths, drop), np.delete(chosen, drop)

    gaps = rng.dirichlet(np.ones(len(lengths) + 1)) * (duration - lengths.sum())
    label_index = {label: i for i, label in enumerate(labels)}

    def widths() -> tuple[int, int]:
        start, end = (int(rng.choice(ramp_widths)) if rng.random() < boundary_mix else 0 for _ in range(2))
        return start, end

    actions, position = [], gaps[0]
    for length, c, gap in zip(lengths, chosen, gaps[1:], strict=True):
        start, end = round(position, 2), round(position + length, 2)
        actions.append(Segment(start, end, names[c], label_index[names[c]], *widths()))
        position += length + gap

    distractors = []
    all_lengths = np.concatenate(list(stats.lengths_by_class.values()))
    bounds = [0.0] + [x for a in actions for x in (a.start, a.end)] + [duration]
    for gap_start, gap_end in zip(bounds[0::2], bounds[1::2], strict=True):
        room = gap_end - gap_start - 2.0  # keep a second to each neighbour
        if room < 0.5 or rng.random() >= distractor_rate:
            continue
        length = min(float(rng.choice(all_lengths)), room)
        start = round(gap_start + 1.0 + rng.random() * (room - length), 2)
        kind = int(rng.integers(num_distractor_kinds))
        distractors.append(Segment(start, round(start + length, 2), None, kind, *widths()))
    return VideoLayout(round(duration, 2), actions, distractors)


# ------------------------------------------------------------------------------- features


def num_features(duration: float, fps: float, feat_stride: int, num_frames: int) -> int:
    """Clips of `num_frames` every `feat_stride` frames that fit into the video (at least 1)."""
    return max(1, int(np.floor((duration * fps - num_frames) / feat_stride)) + 1)


def membership(length: int, start: float, end: float, start_width: int, end_width: int) -> np.ndarray:
    """(length,) weight of grid steps 0..length-1 in a segment [start, end] (grid units): 1 inside, 0
    outside, linear ramps of the given widths centred on the boundaries (width 0 = sharp cut)."""
    steps = np.arange(length, dtype=np.float64)

    def side(distance: np.ndarray, width: int) -> np.ndarray:
        if width == 0:
            return (distance >= 0).astype(np.float64)
        return np.clip(distance / width + 0.5, 0.0, 1.0)

    return np.minimum(side(steps - start, start_width), side(end - steps, end_width))


def ar1(innovations: np.ndarray, decay: float, block: int = 128) -> np.ndarray:
    """x_t = decay * x_{t-1} + innovations_t (x_{-1} = 0), (T, C), computed in blocks of matrix products."""
    length = innovations.shape[0]
    lags = np.arange(block)
    powers = np.tril(decay ** np.clip(lags[:, None] - lags[None, :], 0, None))
    out = np.empty_like(innovations)
    previous = np.zeros(innovations.shape[1])
    carry = decay ** (lags + 1)
    for first in range(0, length, block):
        chunk = innovations[first : first + block]
        n = chunk.shape[0]
        out[first : first + n] = powers[:n, :n] @ chunk + carry[:n, None] * previous
        previous = out[first + n - 1]
    return out


@dataclass
class Prototypes:
    """Directions shared by all videos of a dataset, in a latent space of L dimensions that `projection`
    embeds into the C feature channels. Content lives in the latent space and noise in all channels, so
    the difficulty does not fall as `feature_dim` grows."""

    classes: np.ndarray  # (K, L)
    phases: np.ndarray  # (K, L): how an action of the class changes from its start to its end
    distractors: np.ndarray  # (D, L)
    projection: np.ndarray  # (L, C), orthonormal rows

    @classmethod
    def sample(
        cls,
        num_classes: int,
        feature_dim: int,
        rng: np.random.Generator,
        latent_dim: int = 16,
        class_separation: float = 0.6,
        num_distractors: int = 8,
    ) -> Prototypes:
        latent_dim = min(latent_dim, feature_dim)
        # every action shares a common "something happens" direction; classes differ by class_separation
        common = rng.normal(size=latent_dim)
        classes = common + class_separation * rng.normal(size=(num_classes, latent_dim))
        phases = rng.normal(size=(num_classes, latent_dim))
        # distractors resemble a class: hard negatives, not just "anything that is not background"
        resembled = classes[rng.integers(num_classes, size=num_distractors)]
        distractors = 0.7 * resembled + 0.7 * rng.normal(size=(num_distractors, latent_dim))
        basis, _ = np.linalg.qr(rng.normal(size=(feature_dim, latent_dim)))
        return cls(classes, phases, distractors, basis.T)


def render_features(
    layout: VideoLayout,
    prototypes: Prototypes,
    rng: np.random.Generator,
    fps: float,
    feat_stride: int,
    num_frames: int,
    noise: float = 1.0,
    drift: float = 1.0,
    instance_variation: float = 0.5,
) -> np.ndarray:
    """(T, C) float32 features of one video; see the module docstring for the model."""
    length = num_features(layout.duration, fps, feat_stride, num_frames)
    dim, channels = prototypes.projection.shape
    decay = 0.98  # time constant of the background drift: 50 steps (~7 s at stride 4, 30 fps)
    scene = 0.5 * rng.normal(size=dim)
    walk = ar1(rng.normal(size=(length, dim)) * np.sqrt(1 - decay**2), decay)  # stationary std 1
    background = scene + drift * walk

    content = np.zeros((length, dim))
    total_weight = np.zeros(length)
    for segment in layout.actions + layout.distractors:
        start, end = seconds_to_grid(np.array([segment.start, segment.end]), fps, feat_stride, num_frames)
        weight = membership(length, start, end, segment.start_width, segment.end_width)
        steps = np.flatnonzero(weight > 0)
        if steps.size == 0:
            continue
        if segment.label is None:
            base, phase = prototypes.distractors[segment.kind_index], np.zeros(dim)
        else:
            base, phase = prototypes.classes[segment.kind_index], prototypes.phases[segment.kind_index]
        progress = np.clip((steps - start) / max(end - start, 1e-6), 0.0, 1.0) - 0.5
        value = base + instance_variation * rng.normal(size=dim) + 0.5 * progress[:, None] * phase
        content[steps] += weight[steps, None] * value
        total_weight[steps] += weight[steps]
    overlap = np.maximum(total_weight, 1.0)  # neighbouring ramps may overlap: weights then sum to 1
    content /= overlap[:, None]
    total_weight /= overlap
    latent = (1.0 - total_weight)[:, None] * background + content
    features = latent @ prototypes.projection + noise * rng.normal(size=(length, channels))
    return features.astype(np.float32)


# ---------------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class SyntheticPaths:
    root: Path
    annotations: Path
    features_dir: Path


@dataclass(frozen=True)
class SyntheticSettings:
    """What a dataset is generated from: the arguments of `generate_synthetic_dataset` (num_classes resolved).
    annotations.json records them, in this order, under "synthetic"."""

    num_videos: int
    feature_dim: int
    num_classes: int
    feat_stride: int
    num_frames: int
    fps: float
    boundary_mix: float
    ramp_widths: tuple[int, ...]
    noise: float
    drift: float
    instance_variation: float
    class_separation: float
    latent_dim: int
    distractor_rate: float
    duration_scale: float
    max_duration: float | None
    test_fraction: float
    seed: int


def generate_synthetic_dataset(
    output_dir: str | Path,
    num_videos: int = 200,
    feature_dim: int = 64,
    num_classes: int | None = None,
    feat_stride: int = 4,
    num_frames: int = 16,
    fps: float = 30.0,
    boundary_mix: float = 0.5,
    ramp_widths: Sequence[int] = (2, 6, 12),
    noise: float = 1.0,
    drift: float = 1.0,
    instance_variation: float = 0.5,
    class_separation: float = 0.6,
    latent_dim: int = 16,
    distractor_rate: float = 0.5,
    duration_scale: float = 1.0,
    max_duration: float | None = None,
    test_fraction: float = 212 / 412,
    seed: int = 0,
    thumos_annotations: str | Path = DEFAULT_THUMOS_ANNOTATIONS,
    stats: ThumosStats | None = None,
    progress: bool = False,
) -> SyntheticPaths:
    """Writes `annotations.json` (ActionFormer format, subsets "validation"/"test") and
    `features/<video_id>.npy` (T, C) float32 under `output_dir`; returns their paths.

    The classes are the `num_classes` most frequent classes of the statistics (default: all, the 20 of
    THUMOS14), with their real names. `boundary_mix` is the share of boundaries that are gradual ramps rather than sharp cuts.
    Same arguments and seed give identical files.
    """
    _check_arguments(num_videos, feature_dim, boundary_mix, test_fraction)
    stats = stats if stats is not None else ThumosStats.from_annotations(thumos_annotations)
    labels = most_frequent_labels(stats, num_classes)
    settings = SyntheticSettings(
        num_videos=num_videos,
        feature_dim=feature_dim,
        num_classes=len(labels),
        feat_stride=feat_stride,
        num_frames=num_frames,
        fps=fps,
        boundary_mix=boundary_mix,
        ramp_widths=tuple(ramp_widths),
        noise=noise,
        drift=drift,
        instance_variation=instance_variation,
        class_separation=class_separation,
        latent_dim=latent_dim,
        distractor_rate=distractor_rate,
        duration_scale=duration_scale,
        max_duration=max_duration,
        test_fraction=test_fraction,
        seed=seed,
    )
    return write_synthetic_dataset(Path(output_dir), settings, stats, labels, progress)


def _check_arguments(num_videos: int, feature_dim: int, boundary_mix: float, test_fraction: float) -> None:
    if not 0.0 <= boundary_mix <= 1.0:
        raise ValueError(f"boundary_mix must be in [0, 1], got {boundary_mix}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if num_videos < 1 or feature_dim < 1:
        raise ValueError(f"num_videos and feature_dim must be positive, got {num_videos}, {feature_dim}")


def most_frequent_labels(stats: ThumosStats, num_classes: int | None) -> list[str]:
    """The `num_classes` classes with the most actions in `stats` (None: all), sorted by name."""
    frequency = {label: len(v) for label, v in stats.lengths_by_class.items()}
    num_classes = len(frequency) if num_classes is None else num_classes
    if not 1 <= num_classes <= len(frequency):
        raise ValueError(f"num_classes must be in 1..{len(frequency)} (the classes of the statistics)")
    return sorted(sorted(frequency, key=lambda label: (-frequency[label], label))[:num_classes])


def write_synthetic_dataset(
    root: Path, settings: SyntheticSettings, stats: ThumosStats, labels: list[str], progress: bool = False
) -> SyntheticPaths:
    """Writes the dataset of `settings` with the classes `labels` under `root` (see generate_synthetic_dataset).

    The prototypes and the test subset come from the generator seeded with `seed`, each video from one seeded
    with (seed, index), so a video does not depend on how many come before it."""
    features_dir = root / "features"
    features_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    prototypes = Prototypes.sample(
        len(labels), settings.feature_dim, rng, settings.latent_dim, settings.class_separation
    )
    count = settings.num_videos
    is_test = np.zeros(count, dtype=bool)
    is_test[rng.permutation(count)[: round(settings.test_fraction * count)]] = True

    database = {}
    for index in tqdm(range(count), desc="synthetic videos", disable=not progress):
        layout, features = synthetic_video(settings, stats, labels, prototypes, index)
        subset = "test" if is_test[index] else "validation"
        video_id = f"video_{subset}_{index:07d}"
        np.save(features_dir / f"{video_id}.npy", features)
        database[video_id] = video_annotations(layout, subset, settings.fps)
    annotations = root / "annotations.json"
    document = {"version": "tzn-synthetic-thumos14-v1", "synthetic": asdict(settings), "database": database}
    annotations.write_text(json.dumps(document, indent=1))
    return SyntheticPaths(root, annotations, features_dir)


def synthetic_video(
    settings: SyntheticSettings, stats: ThumosStats, labels: list[str], prototypes: Prototypes, index: int
) -> tuple[VideoLayout, np.ndarray]:
    """Video `index`: its layout and its (T, C) float32 features, from a generator seeded with (seed, index)."""
    rng = np.random.default_rng([settings.seed, index])
    layout = sample_layout(
        stats, labels, rng, settings.duration_scale, settings.max_duration, settings.boundary_mix,
        settings.ramp_widths, settings.distractor_rate,
    )  # fmt: skip
    features = render_features(
        layout, prototypes, rng, settings.fps, settings.feat_stride, settings.num_frames, settings.noise,
        settings.drift, settings.instance_variation,
    )  # fmt: skip
    return layout, features


def video_annotations(layout: VideoLayout, subset: str, fps: float) -> dict:
    """One video's entry in annotations.json: ActionFormer's fields, each action's boundary ramp widths (grid
    steps, 0 = sharp) and the distractors' segments (s)."""
    return {
        "subset": subset,
        "duration": layout.duration,
        "fps": fps,
        "annotations": [
            {
                "label": a.label,
                "segment": [a.start, a.end],
                "segment(frames)": [round(a.start * fps, 1), round(a.end * fps, 1)],
                "label_id": a.kind_index,
                "boundary_widths": [a.start_width, a.end_width],
            }
            for a in layout.actions
        ],
        "distractors": [[d.start, d.end] for d in layout.distractors],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.synthetic",
        description="Generate synthetic clip features with THUMOS14 action statistics (ActionFormer format).",
    )
    parser.add_argument("--output", required=True, type=Path, help="directory for annotations.json and features/")
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--feature-dim", type=int, default=64)
    parser.add_argument("--classes", type=int, default=None, help="the N most frequent THUMOS14 classes (all 20)")
    parser.add_argument("--feat-stride", type=int, default=4)
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--boundary-mix", type=float, default=0.5, help="share of gradual (ramped) boundaries")
    parser.add_argument("--ramp-widths", default="2,6,12", help="ramp widths in grid steps, comma separated")
    parser.add_argument("--noise", type=float, default=1.0, help="std of white noise on every channel")
    parser.add_argument("--drift", type=float, default=1.0, help="scale of the background random walk")
    parser.add_argument("--instance-variation", type=float, default=0.5, help="std of per-action offsets")
    parser.add_argument("--class-separation", type=float, default=0.6, help="spread of class prototypes")
    parser.add_argument("--latent-dim", type=int, default=16, help="dimensions that carry the content")
    parser.add_argument("--distractor-rate", type=float, default=0.5, help="chance of a distractor per gap")
    parser.add_argument("--duration-scale", type=float, default=1.0)
    parser.add_argument("--max-duration", type=float, default=None, help="cap on video length (s)")
    parser.add_argument("--test-fraction", type=float, default=212 / 412)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thumos-annotations", type=Path, default=DEFAULT_THUMOS_ANNOTATIONS)
    args = parser.parse_args(argv)
    try:
        paths = generate_synthetic_dataset(
            args.output,
            num_videos=args.videos,
            feature_dim=args.feature_dim,
            num_classes=args.classes,
            feat_stride=args.feat_stride,
            num_frames=args.num_frames,
            fps=args.fps,
            boundary_mix=args.boundary_mix,
            ramp_widths=tuple(int(w) for w in args.ramp_widths.split(",")),
            noise=args.noise,
            drift=args.drift,
            instance_variation=args.instance_variation,
            class_separation=args.class_separation,
            latent_dim=args.latent_dim,
            distractor_rate=args.distractor_rate,
            duration_scale=args.duration_scale,
            max_duration=args.max_duration,
            test_fraction=args.test_fraction,
            seed=args.seed,
            thumos_annotations=args.thumos_annotations,
            progress=True,
        )
    except (FileNotFoundError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    print(json.dumps({"annotations": str(paths.annotations), "features": str(paths.features_dir)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
