"""From per-level head outputs to scored segments: decoding, boundary snapping, Soft-NMS, seconds.

Head conventions (shared with the network): per pyramid level l, stride 2**l,
`cls_logits` (B, T_l, C) sigmoid logits, `offsets` (B, T_l, 2) non-negative distances to start/end in
units of the level's stride, `masks` (B, T_l) bool. Position i of level l sits at t = i * stride in
level-0 grid steps and proposes [t - off_s * stride, t + off_e * stride].

Segments stay in level-0 grid steps, unclamped, until `detections_to_seconds`, which clamps them to
[0, duration] seconds as ActionFormer does. Clamping to the grid range [0, T] instead would cut every
action that starts with the video: grid step 0 is the centre of the first clip, num_frames / 2
frames after the video starts.

Decoding runs on the device of its inputs; Soft-NMS runs on the CPU and its result stays there (see `soft_nms`).
No compiled extension is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from model.bdr import snap_boundaries, snap_to_peaks, vote_segments
from model.config import PostprocessConfig
from model.tzn import TZNOutput

DEFAULTS = PostprocessConfig()

# ActionFormer adds 1e-6 to every segment length before computing tIoU; kept for parity of scores.
_LENGTH_EPS = 1e-6


@dataclass
class Detections:
    """Detections of one video: segments (N, 2) float [start, end], scores (N,), labels (N,) long."""

    segments: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.scores.numel()

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Detections:
        return cls(
            torch.zeros(0, 2, device=device),
            torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.long, device=device),
        )

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.segments.to(device), self.scores.to(device), self.labels.to(device))


# ---------------------------------------------------------------------------------------------------
# Decoding


def decode_segments(
    cls_logits: list[Tensor],
    offsets: list[Tensor],
    masks: list[Tensor],
    pre_nms_thresh: float = 0.001,
    pre_nms_topk: int = 2000,
    duration_thresh: float = 0.05,
) -> list[Detections]:
    """Candidate segments of every video, ActionFormer-style, in level-0 grid steps. One entry per video.

    Per level: scores = sigmoid(logits) x mask over all (position, class) pairs; keep score >
    `pre_nms_thresh`; keep the `pre_nms_topk` best of that level; drop segments not longer than
    `duration_thresh` grid steps. Levels are concatenated, finest first, each sorted by score.
    """
    batch = cls_logits[0].shape[0]
    per_video: list[list[Detections]] = [[] for _ in range(batch)]
    for level, (logits, level_offsets, level_mask) in enumerate(zip(cls_logits, offsets, masks, strict=True)):
        stride = 2**level
        num_classes = logits.shape[-1]
        probs = logits.float().sigmoid() * level_mask[..., None]
        for video in range(batch):
            flat = probs[video].flatten()
            scores, flat_index = flat.sort(descending=True, stable=True)
            keep = scores[:pre_nms_topk] > pre_nms_thresh
            scores, flat_index = scores[:pre_nms_topk][keep], flat_index[:pre_nms_topk][keep]
            position = flat_index // num_classes
            centre = position.to(scores.dtype) * stride
            distance = level_offsets[video, position].float() * stride
            segments = torch.stack([centre - distance[:, 0], centre + distance[:, 1]], dim=-1)
            long_enough = segments[:, 1] - segments[:, 0] > duration_thresh
            per_video[video].append(
                Detections(segments[long_enough], scores[long_enough], (flat_index % num_classes)[long_enough])
            )
    return [_concatenate(levels) for levels in per_video]


def _concatenate(parts: list[Detections]) -> Detections:
    return Detections(
        torch.cat([p.segments for p in parts]),
        torch.cat([p.scores for p in parts]),
        torch.cat([p.labels for p in parts]),
    )


# ---------------------------------------------------------------------------------------------------
# Soft-NMS


def pairwise_tiou(segments: Tensor, others: Tensor) -> Tensor:
    """tIoU of (N, 2) segments against (M, 2) others -> (N, M), lengths padded by 1e-6 as in ActionFormer."""
    inter = (
        torch.minimum(segments[:, None, 1], others[None, :, 1])
        - torch.maximum(segments[:, None, 0], others[None, :, 0])
    ).clamp(min=0)
    lengths = segments[:, 1] - segments[:, 0] + _LENGTH_EPS
    other_lengths = others[:, 1] - others[:, 0] + _LENGTH_EPS
    return inter / (lengths[:, None] + other_lengths[None, :] - inter)


def soft_nms(segments: Tensor, scores: Tensor, labels: Tensor, settings: PostprocessConfig = DEFAULTS) -> Detections:
    """Soft-NMS over (N, 2) segments, (N,) scores, (N,) labels -> at most `max_segments`, best first, on the CPU.

    Settings used (`model.config.PostprocessConfig`): iou_threshold, sigma, score_floor, max_segments, method,
    multiclass, voting_thresh.
    Repeatedly picks the best remaining candidate (its current, decayed score is reported; ties go to the
    earlier candidate) and decays the others by their tIoU with it: gaussian `exp(-iou^2 / sigma)` for every
    candidate (ActionFormer ignores `iou_threshold` here), linear `1 - iou` and hard `0` only where
    `iou >= iou_threshold`. Candidates whose score falls below `score_floor` are dropped, and so are those below
    it from the start, and so are candidates whose score or segment is not finite (nor do they vote).
    `multiclass`: only candidates with the picked label are decayed, the same result as ActionFormer's
    per-class Soft-NMS followed by a global top-`max_segments`.
    `voting_thresh > 0` replaces each kept segment by the score-weighted mean of the input candidates
    (of its label, when multiclass) with tIoU >= voting_thresh, as ActionFormer's `seg_voting`
    (which ActionFormer only applies class-agnostically; its THUMOS recipe is multiclass without voting).

    The loop is sequential, one pick per step, so it runs in NumPy on the CPU whatever the device of the inputs,
    and its result stays there: the candidates cross to the host once, in one copy, and postprocessing ends on
    the host, where answers are written. Each step touches only the candidates the pick overlaps, and the loop
    ends when nothing remains. As a chain of tensor ops over every candidate it was bound by per-op overhead on
    the CPU and by kernel launches on a GPU (bench/postprocess.py compares the two).
    """
    count = scores.numel()
    if count == 0 or settings.max_segments <= 0:
        return Detections.empty("cpu")
    # one copy to the host: segments, scores and labels side by side (labels are exact in float32 below 2**24)
    columns = torch.cat(
        [segments.detach().float(), scores.detach().float()[:, None], labels.detach().float()[:, None]], 1
    )
    host = columns.cpu()
    segments, scores, labels = host[:, :2], host[:, 2], host[:, 3].long()
    candidate_segments, candidate_scores, candidate_labels = segments.numpy(), scores.numpy(), labels.numpy()
    # a non-finite candidate (a broken model) can be neither compared nor reported, nor vote
    finite = np.isfinite(candidate_scores) & np.isfinite(candidate_segments).all(axis=1)
    picked_ids, picked_scores = _soft_nms_picks(
        candidate_segments, candidate_scores, candidate_labels, finite, settings
    )

    picked = torch.from_numpy(picked_ids)
    kept_segments = segments[picked]
    if settings.voting_thresh > 0:
        voters = torch.from_numpy(finite)
        kept_segments = _vote(
            kept_segments, labels[picked], segments[voters], scores[voters], labels[voters],
            settings.voting_thresh, settings.multiclass,
        )  # fmt: skip
    return Detections(kept_segments, torch.from_numpy(picked_scores), labels[picked])


def _soft_nms_picks(
    segments: np.ndarray, scores: np.ndarray, labels: np.ndarray, finite: np.ndarray, settings: PostprocessConfig
) -> tuple[np.ndarray, np.ndarray]:
    """`soft_nms`'s loop on float32 NumPy arrays -> (picked candidate ids (K,) int64, their scores (K,) float32),
    in pick order. Only candidates marked `finite` (N,) bool take part.

    Candidates are split into groups (one per label when multiclass, else one). A step picks the group whose
    best remaining score is highest (the earlier candidate on a tie), records that candidate and decays its
    group only (`_Group.decay`).
    """
    alive = np.flatnonzero((scores >= np.float32(settings.score_floor)) & finite)  # the others can never be picked
    if len(alive) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    keys = labels[alive] if settings.multiclass else np.zeros(len(alive), dtype=np.int64)
    order = np.lexsort((alive, segments[alive, 0], keys))  # by group, then start, then candidate
    parts = np.split(order, np.flatnonzero(np.diff(keys[order])) + 1)
    groups = [_Group(alive[part], segments, scores) for part in parts]
    best = np.array([group.best() for group in groups], dtype=np.int64)  # per group: its best's index
    best_score = np.array([g.remaining[i] for g, i in zip(groups, best, strict=True)], dtype=np.float32)
    best_id = np.array([g.ids[i] for g, i in zip(groups, best, strict=True)], dtype=np.int64)

    picked_ids, picked_scores = [], []
    while len(picked_ids) < settings.max_segments:
        top = best_score.max()
        if top == -np.inf:
            break
        tied = np.flatnonzero(best_score == top)
        chosen = int(tied[np.argmin(best_id[tied])])
        group, pick = groups[chosen], int(best[chosen])
        picked_ids.append(int(group.ids[pick]))
        picked_scores.append(top)
        index = group.decay(pick, settings)
        best[chosen], best_score[chosen], best_id[chosen] = index, group.remaining[index], group.ids[index]
    return np.array(picked_ids, dtype=np.int64), np.array(picked_scores, dtype=np.float32)


class _Group:
    """The candidates that one Soft-NMS pick can decay (`_soft_nms_picks`), sorted by start: those that overlap
    the pick (tIoU > 0) lie in one slice, found by binary search. The others keep their scores (a weight of
    exactly 1), except in hard NMS with iou_threshold 0, which drops the whole group.

    Unlike the rest of this module it is stateful: `remaining` (the decayed scores, -inf once picked or dropped)
    changes with every `decay`, which is the loop's whole state. tests/model/test_postprocess.py checks the
    result against a plain-Python Soft-NMS."""

    def __init__(self, ids: np.ndarray, segments: np.ndarray, scores: np.ndarray):
        self.ids = ids
        self.starts, self.ends = segments[ids, 0], segments[ids, 1]
        self.lengths = self.ends - self.starts + np.float32(_LENGTH_EPS)
        self.remaining = scores[ids].copy()
        # the longest segment, with a margin for rounding: a candidate that starts earlier than the pick's start
        # minus this ends before it (including a few more only costs time: their tIoU is 0)
        longest = float(np.max(self.ends.astype(np.float64) - self.starts))
        self.reach = np.float32(max(longest, 0.0) * (1 + 1e-5) + 1e-3)

    def best(self) -> int:
        """Index of the highest remaining score; on a tie, of the earliest candidate (as a scan in input order)."""
        index = int(self.remaining.argmax())
        tied = np.flatnonzero(self.remaining == self.remaining[index])
        return index if len(tied) == 1 else int(tied[np.argmin(self.ids[tied])])

    def decay(self, pick: int, settings: PostprocessConfig) -> int:
        """Removes candidate `pick`, decays the others by their tIoU with it -> the new best's index."""
        start, end = self.starts[pick], self.ends[pick]
        if settings.method == "hard" and settings.iou_threshold <= 0:
            near = slice(None)
        else:  # the candidates with start < the pick's end and end > its start: starts in [start - reach, end)
            near = slice(np.searchsorted(self.starts, start - self.reach), np.searchsorted(self.starts, end))
        inter = np.minimum(self.ends[near], end) - np.maximum(self.starts[near], start)
        np.maximum(inter, 0, out=inter)
        iou = inter / (self.lengths[pick] + self.lengths[near] - inter)
        if settings.method == "gaussian":
            weight = np.exp(-(iou * iou) / np.float32(settings.sigma))
        elif settings.method == "linear":
            weight = np.where(iou >= settings.iou_threshold, 1 - iou, np.float32(1))
        else:
            weight = (iou < settings.iou_threshold).astype(np.float32)
        remaining = self.remaining[near]  # a view: the updates below land in self.remaining
        with np.errstate(invalid="ignore"):  # -inf * 0 is NaN, and NaN >= score_floor is False: still dropped
            remaining *= weight
        remaining[~(remaining >= np.float32(settings.score_floor))] = -np.inf
        self.remaining[pick] = -np.inf
        return self.best()


def _vote(
    kept: Tensor,
    kept_labels: Tensor,
    segments: Tensor,
    scores: Tensor,
    labels: Tensor,
    thresh: float,
    multiclass: bool,
) -> Tensor:
    """Each kept segment -> score-weighted mean of the candidates with tIoU >= thresh (itself included)."""
    neighbour = pairwise_tiou(kept, segments) >= thresh
    if multiclass:
        neighbour &= kept_labels[:, None] == labels[None, :]
    weights = neighbour.to(scores.dtype) * scores[None, :]
    return (weights @ segments) / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)


# ---------------------------------------------------------------------------------------------------
# The whole chain, and grid <-> seconds


def postprocess(
    cls_logits: list[Tensor],
    offsets: list[Tensor],
    masks: list[Tensor],
    *,
    bdr_fields: Tensor | list[Tensor] | None = None,
    boundary_logits: Tensor | None = None,
    settings: PostprocessConfig = DEFAULTS,
) -> list[Detections]:
    """Decode, snap boundaries (optional), Soft-NMS: one `Detections` per video, level-0 grid steps.

    `bdr_fields`: BDR [d_start, d_end], (B, T_0, 2) of level 0 or a list of (B, T_k, 2) per level, finest
    first. `settings.bdr_decode` "votes" -> `vote_segments` over the first `bdr_scales` levels (1: level 0
    alone; 3: strides 1, 2, 4, the multi-scale variant) with the `vote_*` settings; "crossings" ->
    `snap_boundaries` on level 0 (`snap_radius`, `min_slope`);
    `boundary_logits` (B, T_0, 2): classification boundary head of level 0 -> `snap_to_peaks` on their
    sigmoid. Only the valid prefix of level 0 (`masks[0]`) is searched. Give at most one of them.
    `settings.snap` is not read here (`detect` decides whether to pass a boundary head).
    """
    if bdr_fields is not None and boundary_logits is not None:
        raise ValueError("give bdr_fields or boundary_logits, not both")
    candidates = decode_segments(
        cls_logits, offsets, masks, settings.pre_nms_thresh, settings.pre_nms_topk, settings.duration_thresh
    )
    valid_lengths = masks[0].sum(dim=1).tolist()
    if isinstance(bdr_fields, Tensor):
        bdr_fields = [bdr_fields]
    level_lengths = [m.sum(dim=1).tolist() for m in masks]
    votes = dict(
        max_distance=settings.vote_max_distance, max_shift=settings.vote_max_shift,
        min_weight=settings.vote_min_weight, max_spread=settings.vote_max_spread,
    )  # fmt: skip
    results = []
    for video, found in enumerate(candidates):
        segments = found.segments
        valid = int(valid_lengths[video])
        if bdr_fields is not None and settings.bdr_decode == "votes":
            scales = bdr_fields[: settings.bdr_scales]
            fields = [f[video, : int(level_lengths[k][video])].float() for k, f in enumerate(scales)]
            segments = vote_segments(segments, fields, **votes)
        elif bdr_fields is not None:
            segments = snap_boundaries(
                segments, bdr_fields[0][video, :valid].float(), settings.snap_radius, settings.min_slope
            )
        elif boundary_logits is not None:
            probs = boundary_logits[video, :valid].float().sigmoid()
            segments = snap_to_peaks(segments, probs, settings.snap_radius, settings.min_boundary_prob)
        kept = soft_nms(segments, found.scores, found.labels, settings)
        results.append(kept)
    return results


def detect(output: TZNOutput, boundary_head: str, settings: PostprocessConfig = DEFAULTS) -> list[Detections]:
    """`postprocess` of a forward pass: snaps with the boundary head the model has (BDR fields of every
    boundary level, or level-0 classification logits) unless `settings.snap` is False."""
    boundary = output.boundary if (settings.snap and output.boundary) else None
    return postprocess(
        output.cls_logits,
        output.offsets,
        output.masks,
        bdr_fields=boundary if boundary_head == "bdr" else None,
        boundary_logits=boundary[0] if boundary is not None and boundary_head == "classification" else None,
        settings=settings,
    )


def grid_to_seconds(grid: Tensor, fps: float, feat_stride: int, num_frames: int) -> Tensor:
    """Level-0 grid steps -> seconds: `(grid * feat_stride + num_frames / 2) / fps` (centre of the clip)."""
    return (grid * feat_stride + 0.5 * num_frames) / fps


def seconds_to_grid(seconds: Tensor, fps: float, feat_stride: int, num_frames: int) -> Tensor:
    """Seconds -> level-0 grid steps; the inverse of `grid_to_seconds`."""
    return (seconds * fps - 0.5 * num_frames) / feat_stride


def detections_to_seconds(
    detections: Detections,
    fps: float,
    feat_stride: int,
    num_frames: int,
    duration: float | None = None,
    start_s: float = 0.0,
) -> Detections:
    """Segments from grid steps to seconds after the first feature's first frame (clamped below at 0), shifted
    by `start_s` (that frame's time in the video), then clamped to [0, duration] when a duration is given."""
    seconds = grid_to_seconds(detections.segments, fps, feat_stride, num_frames).clamp(min=0.0) + start_s
    seconds = seconds.clamp(min=0.0) if duration is None else seconds.clamp(min=0.0, max=duration)
    return Detections(seconds, detections.scores, detections.labels)


def video_segments(
    output: TZNOutput,
    boundary_head: str,
    settings: PostprocessConfig,
    fps: float,
    feat_stride: int,
    num_frames: int,
    duration: float | None = None,
    start_s: float = 0.0,
) -> Detections:
    """The detections of the first video of a forward pass, in seconds, best first: `detect`, then
    `detections_to_seconds`. The one "features to segments" step: `tzn predict` and the service both use it."""
    detections = detect(output, boundary_head, settings)[0]
    return detections_to_seconds(detections, fps, feat_stride, num_frames, duration, start_s)
