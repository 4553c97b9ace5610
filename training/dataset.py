"""Pre-extracted clip features with ActionFormer/ActivityNet annotations (docs/design.md, "Data formats").

Feature i of a video covers the clip centred at `(i * feat_stride + num_frames / 2) / fps` seconds, so a
time in seconds maps to grid units (fractional feature indices) as `(sec * fps - num_frames / 2) / feat_stride`.
Segments of an item are in grid units; `grid_to_seconds` maps predictions back.

Training items are randomly cropped to `max_seq_len` like ActionFormer's `truncate_feats`; evaluation
items are whole videos. The crop is drawn from a generator seeded by (seed, epoch, index), so it is
reproducible and does not repeat across DataLoader workers; call `set_epoch` once per epoch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class DatasetError(ValueError):
    """Annotations or feature files that cannot be used; the message names the video and the path."""


def seconds_to_grid(seconds: np.ndarray, fps: float, feat_stride: int, num_frames: int) -> np.ndarray:
    """Seconds -> grid units: the fractional index of the feature whose clip is centred there."""
    return (np.asarray(seconds, dtype=np.float64) * fps - 0.5 * num_frames) / feat_stride


def grid_to_seconds(grid: np.ndarray, fps: float, feat_stride: int, num_frames: int) -> np.ndarray:
    """Grid units -> seconds; the inverse of `seconds_to_grid`."""
    return (np.asarray(grid, dtype=np.float64) * feat_stride + 0.5 * num_frames) / fps


@dataclass
class VideoItem:
    """One video (or training crop). features (C, T) float32; segments (N, 2) grid units of this item."""

    video_id: str
    features: Tensor
    segments: Tensor
    labels: Tensor
    fps: float
    duration: float
    feat_stride: int
    num_frames: int
    offset: int = 0  # index of the item's first feature in the whole video (non-zero for crops)


@dataclass
class Batch:
    """Items padded to the longest T: features (B, C, T), mask (B, T) True where a feature is real."""

    video_ids: list[str]
    features: Tensor
    mask: Tensor
    segments: list[Tensor]
    labels: list[Tensor]
    fps: list[float]
    durations: list[float]
    feat_stride: int
    num_frames: int
    offsets: list[int]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.video_ids,
            self.features.to(device),
            self.mask.to(device),
            [s.to(device) for s in self.segments],
            [lab.to(device) for lab in self.labels],
            self.fps,
            self.durations,
            self.feat_stride,
            self.num_frames,
            self.offsets,
        )


def collate(items: Sequence[VideoItem]) -> Batch:
    """Pads features with zeros to the longest T of the batch; segments and labels stay per video."""
    if not items:
        raise ValueError("cannot collate an empty list of items")
    lengths = [item.features.shape[1] for item in items]
    channels = items[0].features.shape[0]
    features = items[0].features.new_zeros((len(items), channels, max(lengths)))
    mask = torch.zeros((len(items), max(lengths)), dtype=torch.bool)
    for i, (item, length) in enumerate(zip(items, lengths, strict=True)):
        features[i, :, :length] = item.features
        mask[i, :length] = True
    return Batch(
        video_ids=[item.video_id for item in items],
        features=features,
        mask=mask,
        segments=[item.segments for item in items],
        labels=[item.labels for item in items],
        fps=[item.fps for item in items],
        durations=[item.duration for item in items],
        feat_stride=items[0].feat_stride,
        num_frames=items[0].num_frames,
        offsets=[item.offset for item in items],
    )


def truncate(
    length: int,
    segments: np.ndarray,
    window: int,
    trunc_thresh: float,
    rng: np.random.Generator,
    max_trials: int = 200,
) -> tuple[int, np.ndarray]:
    """Random crop of `window` positions out of `length` (ActionFormer's `truncate_feats`).

    segments (N, 2) grid units. Returns the crop start and a bool (N,) of the segments kept: those with
    at least `trunc_thresh` of their length inside the crop. Tries up to `max_trials` starts for a crop
    that keeps an action (when the video has any); the last try is used otherwise.
    """
    keep = np.zeros(len(segments), dtype=bool)
    start = 0
    for _ in range(max_trials):
        start = int(rng.integers(0, length - window + 1))
        inside = np.minimum(segments[:, 1], start + window) - np.maximum(segments[:, 0], start)
        lengths = np.abs(segments[:, 1] - segments[:, 0])
        ratio = np.clip(inside, 0.0, None) / np.maximum(lengths, 1e-6)
        keep = ratio >= trunc_thresh
        if keep.any() or len(segments) == 0:
            break
    return start, keep


@dataclass
class _Video:
    video_id: str
    path: Path
    length: int
    channels: int
    fps: float
    duration: float
    segments: np.ndarray  # (N, 2) grid units
    labels: np.ndarray  # (N,) int64


class FeatureDataset(Dataset):
    """Videos of one split of an ActionFormer annotation file with their `<video_id>.npy` features (T, C).

    Label ids index `self.labels`: the given `labels`, or the sorted label names of the whole annotation
    file (every split), so ids agree between the training and the test split. Every feature file is
    checked (by its header) on construction; non-finite values are found when a video is loaded.
    """

    def __init__(
        self,
        annotations_path: str | Path,
        features_dir: str | Path,
        split: str,
        feat_stride: int,
        num_frames: int,
        default_fps: float | None = None,
        labels: Sequence[str] | None = None,
        max_seq_len: int | None = None,
        training: bool = False,
        trunc_thresh: float = 0.5,
        crop_ratio: tuple[float, float] | None = None,
        seed: int = 0,
    ) -> None:
        if feat_stride <= 0 or num_frames <= 0:
            raise ValueError(f"feat_stride and num_frames must be positive, got {feat_stride}, {num_frames}")
        self.annotations_path = Path(annotations_path)
        self.features_dir = Path(features_dir)
        self.split = split
        self.feat_stride = feat_stride
        self.num_frames = num_frames
        self.max_seq_len = max_seq_len
        self.training = training
        self.trunc_thresh = trunc_thresh
        self.crop_ratio = crop_ratio
        self.seed = seed
        self.epoch = 0

        database = _read_database(self.annotations_path)
        if labels is None:
            labels = sorted({a["label"] for info in database.values() for a in info.get("annotations", [])})
        self.labels: list[str] = list(labels)
        self.label_ids = {label: i for i, label in enumerate(self.labels)}
        self.annotation_label_ids = annotation_label_ids(database, self.labels, self.annotations_path)

        wanted = split.lower()
        chosen = [vid for vid, info in database.items() if str(info.get("subset", "")).lower() == wanted]
        if not chosen:
            subsets = sorted({str(info.get("subset")) for info in database.values()})
            raise DatasetError(
                f"split {split!r} has no videos in {self.annotations_path}; available subsets: {subsets}"
            )
        self.videos = [self._video(vid, database[vid], default_fps) for vid in chosen]
        dims: dict[int, str] = {}
        for video in self.videos:
            dims.setdefault(video.channels, video.video_id)
        if len(dims) > 1:
            examples = ", ".join(f"{c} channels in {vid!r}" for c, vid in dims.items())
            raise DatasetError(f"feature files in {self.features_dir} disagree in channels: {examples}")
        self.feature_dim: int = next(iter(dims))

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def video_ids(self) -> list[str]:
        return [video.video_id for video in self.videos]

    def set_epoch(self, epoch: int) -> None:
        """Selects the training crops of `epoch` (each epoch draws new ones, reproducibly)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos)

    def feature_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std (C,) over every position of every video of the split (whole videos)."""
        total = squares = None
        count = 0
        for video in self.videos:
            features = np.load(video.path).astype(np.float64)
            total = features.sum(0) if total is None else total + features.sum(0)
            squares = (features**2).sum(0) if squares is None else squares + (features**2).sum(0)
            count += features.shape[0]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        return torch.from_numpy(mean).float(), torch.from_numpy(std).float()

    def __getitem__(self, index: int) -> VideoItem:
        video = self.videos[index]
        features = np.load(video.path)
        if not np.isfinite(features).all():
            bad = np.argwhere(~np.isfinite(features))[0]
            raise DatasetError(
                f"video {video.video_id!r}: non-finite feature values in {video.path} (first at row {bad[0]})"
            )
        features = np.ascontiguousarray(features.T, dtype=np.float32)  # (C, T)
        segments, labels, offset = video.segments, video.labels, 0
        rng = np.random.default_rng([self.seed, self.epoch, index])
        window = self._crop_length(video.length, rng) if self.training else None
        if window is not None:
            offset, keep = truncate(video.length, segments, window, self.trunc_thresh, rng)
            features = features[:, offset : offset + window]
            segments = np.clip(segments[keep], offset, offset + window) - offset
            labels = labels[keep]
        return VideoItem(
            video_id=video.video_id,
            features=torch.from_numpy(np.ascontiguousarray(features)),
            segments=torch.from_numpy(segments.astype(np.float32)).reshape(-1, 2),
            labels=torch.from_numpy(labels.astype(np.int64)),
            fps=video.fps,
            duration=video.duration,
            feat_stride=self.feat_stride,
            num_frames=self.num_frames,
            offset=offset,
        )

    # ------------------------------------------------------------------------------------- helpers

    def _crop_length(self, length: int, rng: np.random.Generator) -> int | None:
        """Crop size for a video of `length` features, None for no crop (ActionFormer's rule)."""
        window = self.max_seq_len
        if window is not None and length > window:
            return window
        if self.crop_ratio is None:
            return None
        low = max(round(self.crop_ratio[0] * length), 1)
        high = min(round(self.crop_ratio[1] * length), length)
        window = int(rng.integers(low, high + 1))
        return None if window >= length else window

    def _video(self, video_id: str, info: dict, default_fps: float | None) -> _Video:
        path = self.features_dir / f"{video_id}.npy"
        if not path.is_file():
            raise DatasetError(f"video {video_id!r}: feature file not found: {path}")
        try:
            header = np.load(path, mmap_mode="r")
        except (ValueError, OSError) as error:
            raise DatasetError(f"video {video_id!r}: cannot read {path} as .npy: {error}") from error
        if header.ndim != 2 or header.shape[0] == 0 or header.shape[1] == 0:
            raise DatasetError(
                f"video {video_id!r}: features in {path} must have shape (T, C) with T, C > 0, got {header.shape}"
            )
        if not np.issubdtype(header.dtype, np.floating):
            raise DatasetError(f"video {video_id!r}: features in {path} must be floating point, got {header.dtype}")
        # ActionFormer's rule: default_fps, when given, is the rate the features were sampled at and wins
        # over the video's own fps (e.g. features extracted at 8 fps from 30 fps videos).
        fps = default_fps if default_fps is not None else info.get("fps")
        if fps is None or not fps > 0:
            raise DatasetError(
                f"video {video_id!r}: no valid 'fps' in {self.annotations_path} ({fps!r}); pass default_fps"
            )
        fps = float(fps)
        length = int(header.shape[0])
        duration = info.get("duration")
        if duration is None:  # the span of the clips, when the annotation does not say
            duration = ((length - 1) * self.feat_stride + self.num_frames) / fps
        seconds, label_ids = [], []
        for annotation in info.get("annotations", []):
            label = annotation.get("label")
            if label not in self.label_ids:
                raise DatasetError(
                    f"video {video_id!r}: label {label!r} in {self.annotations_path} is not in the given labels "
                    f"{self.labels}"
                )
            start, end = (float(v) for v in annotation["segment"])
            if not end >= start:
                raise DatasetError(f"video {video_id!r}: segment {annotation['segment']} ends before it starts")
            seconds.append((start, end))
            label_ids.append(self.label_ids[label])
        segments = seconds_to_grid(np.asarray(seconds).reshape(-1, 2), fps, self.feat_stride, self.num_frames)
        return _Video(
            video_id,
            path,
            length,
            int(header.shape[1]),
            fps,
            float(duration),
            segments,
            np.asarray(label_ids, np.int64),
        )


def annotation_label_ids(database: dict, labels: Sequence[str], source: Path) -> list[int] | None:
    """The annotations' `label_id` of each of `labels` (kept through training so that answers use the ids the
    annotations use); None when some label has no id. Two ids for one label are an error."""
    seen: dict[str, set[int]] = {}
    for info in database.values():
        for annotation in info.get("annotations", []):
            if "label_id" in annotation and annotation.get("label") is not None:
                seen.setdefault(annotation["label"], set()).add(int(annotation["label_id"]))
    conflicting = {label: sorted(ids) for label, ids in seen.items() if len(ids) > 1}
    if conflicting:
        label, ids = next(iter(conflicting.items()))
        raise DatasetError(f"{source}: label {label!r} has label_id {ids[0]} and {ids[1]}; give each label one id")
    if any(label not in seen for label in labels):
        return None
    ids = [next(iter(seen[label])) for label in labels]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{source}: two labels share a label_id ({dict(zip(labels, ids, strict=True))})")
    return ids


def _read_database(path: Path) -> dict:
    try:
        with path.open() as handle:
            data = json.load(handle)
    except FileNotFoundError as error:
        raise DatasetError(f"annotation file not found: {path}") from error
    except json.JSONDecodeError as error:
        raise DatasetError(f"annotation file {path} is not valid JSON: {error}") from error
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise DatasetError(f"{path} has no 'database' dict (ActionFormer/ActivityNet format expected)")
    return database
