"""Boundary Distance Regression (BDR) and the classification boundary head it is compared against.

BDR regresses two class-agnostic signed distance fields per position,
`d_start(t) = t - s*(t)` and `d_end(t) = t - e*(t)`, where `s*` / `e*` is the nearest ground-truth
start / end, in grid steps of the level, clipped to +-clip. A true boundary is an upward zero crossing
of its field (slope about +1). Two decodings ("snap") of a predicted boundary: `vote_segments` (the
default) takes the weighted median of what every nearby position's distance says (`b = t - d(t)`,
optionally from the coarser levels too: the multi-scale variant), and keeps the regression's boundary
where the votes are few or spread out; `snap_boundaries` (the first version) moves it to the nearest
upward zero crossing within a few steps, refined linearly.

The baseline is a classifier of "is t a boundary" trained on Gaussian targets, decoded by snapping to
the nearest local maximum of the boundary probability, refined with a parabola.

Everything here is a pure function of tensors; positions t are level grid steps (0..T-1).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

# ---------------------------------------------------------------------------------------------------
# BDR targets and loss


def bdr_targets(segments: Tensor, length: int, clip: float = 8.0) -> Tensor:
    """Signed distance fields of one video: (N, 2) [start, end] grid steps -> (length, 2) [d_start, d_end].

    `d(t) = t - b*(t)` with `b*` the nearest boundary of that kind (ties go to the earlier one), clipped
    to [-clip, clip]. With no segments the field is +clip everywhere: "the nearest boundary is
    infinitely far behind", the value that a position far past its last boundary also gets. A constant
    field has no zero crossing, so snapping leaves such videos alone, and the loss needs no special case.
    """
    positions = torch.arange(length, dtype=torch.float32, device=segments.device)
    if segments.numel() == 0:
        return torch.full((length, 2), clip, dtype=torch.float32, device=segments.device)
    fields = [_nearest_signed_distance(positions, segments[:, k].float()) for k in range(2)]
    return torch.stack(fields, dim=-1).clamp(-clip, clip)


def _nearest_signed_distance(positions: Tensor, boundaries: Tensor) -> Tensor:
    """(T,), (N,) -> (T,) `t - b` for the boundary b nearest to t (the earlier one on a tie)."""
    boundaries = boundaries.sort().values
    after = torch.searchsorted(boundaries, positions)  # first boundary >= t
    before = (after - 1).clamp(min=0)
    after = after.clamp(max=boundaries.numel() - 1)
    to_before = positions - boundaries[before]
    to_after = positions - boundaries[after]
    return torch.where(to_after.abs() < to_before.abs(), to_after, to_before)


def bdr_targets_batch(segments_list: list[Tensor], length: int, stride: int, clip: float = 8.0) -> Tensor:
    """Targets of a batch on one pyramid level: segments in level-0 grid steps -> (B, length, 2).

    Position i of a level with stride s sits at level-0 step i*s, so boundaries are divided by the
    stride and the fields (and `clip`) are in steps of that level.
    """
    return torch.stack([bdr_targets(segments.float() / stride, length, clip) for segments in segments_list])


def bdr_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor,
    smoothness: Literal["none", "l1", "l2"] = "l1",
    alpha: float = 0.1,
    scale: float = 1.0,
) -> Tensor:
    """Masked L1 on the fields divided by `scale` plus `alpha` x a penalty on first differences. Scalar.

    With `scale` = the clip, the fields are normalised to [-1, 1], so the loss is O(1) like the focal and
    DIoU losses instead of O(clip) (unnormalised, it outweighed them ~20x and took over the shared trunk).

    pred, target: (B, T, 2); mask: (B, T) bool. The smoothness term compares `pred[t+1] - pred[t]`
    with `target[t+1] - target[t]` (absolute or squared error) where both positions are valid, so it
    tolerates the target's own jumps between boundaries. Each term is a mean over its valid elements
    and is 0 (not NaN) when there are none.
    """
    if smoothness not in ("none", "l1", "l2"):
        raise ValueError(f"smoothness must be 'none', 'l1' or 'l2', got {smoothness!r}")
    # torch.where, not a product with the mask, so that NaN or inf in padding cannot leak in
    valid = mask[..., None].expand_as(pred)
    pred, target = pred / scale, target / scale
    error = torch.where(valid, pred - target, torch.zeros_like(pred))
    loss = error.abs().sum() / valid.sum().clamp(min=1)
    if smoothness == "none":
        return loss
    pair_valid = valid[:, 1:] & valid[:, :-1]
    step_error = error.diff(dim=1).where(pair_valid, torch.zeros_like(pair_valid, dtype=pred.dtype))
    penalty = step_error.abs() if smoothness == "l1" else step_error.square()
    return loss + alpha * penalty.sum() / pair_valid.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------------
# BDR decoding


def upward_zero_crossings(field: Tensor, min_slope: float = 0.5) -> Tensor:
    """Sub-step positions where a (T,) field crosses zero going up, steeper than `min_slope`. (K,) sorted.

    A crossing lies between t and t+1 when `field[t] < 0 <= field[t+1]` and
    `field[t+1] - field[t] > min_slope`; it is placed at `t* = t - field[t] / (field[t+1] - field[t])`,
    in (t, t+1] (a field that is exactly 0 at t+1 crosses at t+1, counted once). A field that starts
    at exactly 0 at t = 0 and rises steeply enough counts as a crossing at 0, since the boundary there
    has no left neighbour to be negative.
    """
    field = field.float()
    left, right = field[:-1], field[1:]
    slope = right - left
    rising = (left < 0) & (right >= 0) & (slope > min_slope)
    steps = torch.arange(left.numel(), dtype=field.dtype, device=field.device)
    positions = (steps - left / slope.where(rising, torch.ones_like(slope)))[rising]
    if field.numel() >= 2 and bool((field[0] == 0) & (slope[0] > min_slope)):
        positions = torch.cat([field.new_zeros(1), positions])
    return positions


def _snap_to_nearest(points: Tensor, anchors: Tensor, radius: float) -> Tensor:
    """Move each of (N,) points to the nearest of (K,) sorted anchors when it is within `radius`."""
    if anchors.numel() == 0 or points.numel() == 0:
        return points
    after = torch.searchsorted(anchors, points.contiguous())
    before = (after - 1).clamp(min=0)
    after = after.clamp(max=anchors.numel() - 1)
    distance_before = (points - anchors[before]).abs()
    distance_after = (anchors[after] - points).abs()
    nearest = torch.where(distance_after < distance_before, anchors[after], anchors[before])
    return torch.where(distance_before.minimum(distance_after) <= radius, nearest, points)


def _snap_pairs(segments: Tensor, start_anchors: Tensor, end_anchors: Tensor, radius: float) -> Tensor:
    """Snap starts and ends to their anchors; a segment whose snap would leave start >= end stays."""
    segments = segments.float()
    starts = _snap_to_nearest(segments[:, 0], start_anchors, radius)
    ends = _snap_to_nearest(segments[:, 1], end_anchors, radius)
    snapped = torch.stack([starts, ends], dim=-1)
    return torch.where((starts < ends)[:, None], snapped, segments)


def snap_boundaries(segments: Tensor, fields: Tensor, radius: float = 2.0, min_slope: float = 0.5) -> Tensor:
    """Move predicted boundaries onto the upward zero crossings of the finest-level BDR fields.

    segments: (N, 2) [start, end] level-0 grid steps; fields: (T, 2) [d_start, d_end] on level 0.
    Each start moves to the nearest crossing of d_start within +-radius steps (each end: d_end);
    boundaries with none in range stay. If snapping would make start >= end, the segment is kept as it was.
    Returns (N, 2) float.
    """
    start_crossings = upward_zero_crossings(fields[:, 0], min_slope)
    end_crossings = upward_zero_crossings(fields[:, 1], min_slope)
    return _snap_pairs(segments, start_crossings, end_crossings, radius)


# ---------------------------------------------------------------------------------------------------
# BDR decoding by field values ("votes")
#
# Zero crossings use two positions of the field; every position within reach of a boundary knows where
# it is: position i of a level with stride s says the boundary lies at (i - d(i)) * s level-0 steps.
# A weighted median of those votes is robust to the few positions that belong to a neighbouring boundary.


def weighted_median(values: Tensor, weights: Tensor) -> Tensor:
    """Row-wise weighted median of (N, M) values with (N, M) weights >= 0 -> (N,).

    The smallest value whose weights, with those of all smaller values, reach half the row's total.
    Rows with no weight give NaN.
    """
    if values.shape[1] == 0:
        return values.new_full((values.shape[0],), float("nan"))
    order = values.argsort(dim=1, stable=True)
    sorted_values = values.gather(1, order)
    cumulative = weights.gather(1, order).cumsum(dim=1)
    total = cumulative[:, -1:]
    first = (cumulative < 0.5 * total).sum(dim=1, keepdim=True).clamp(max=values.shape[1] - 1)
    median = sorted_values.gather(1, first)[:, 0]
    return torch.where(total[:, 0] > 0, median, torch.full_like(median, float("nan")))


def boundary_votes(
    points: Tensor, fields: list[Tensor], max_distance: float = 6.0, max_shift: float = 8.0
) -> tuple[Tensor, Tensor]:
    """Votes of the fields for the boundaries near each of (N,) points (level-0 steps).

    fields[k]: (T_k,) signed distances of level k (stride 2**k) in level-k steps. Position i of level k
    within `ceil(max_distance)` level-k steps of a point votes `(i - d(i)) * 2**k` when its own distance
    is small (`|d(i)| <= max_distance`, so clipped far-away positions stay out) and the vote lies within
    `max_shift` level-0 steps of the point (a vote for another boundary is no evidence about this one).
    A vote of level k weighs 1 / 2**k. Returns votes (N, M) and weights (N, M), 0 for non-votes.
    """
    all_votes, all_weights = [], []
    reach = math.ceil(max_distance)
    offsets = torch.arange(-reach, reach + 1, device=points.device)
    for level, field in enumerate(fields):
        stride = 2**level
        centre = torch.round(points.float() / stride).long()
        index = centre[:, None] + offsets[None]
        inside = (index >= 0) & (index < field.numel())
        distance = field.float()[index.clamp(0, max(field.numel() - 1, 0))] if field.numel() else index.float()
        votes = (index.float() - distance) * stride
        usable = inside & (distance.abs() <= max_distance) & ((votes - points.float()[:, None]).abs() <= max_shift)
        all_votes.append(torch.where(usable, votes, torch.zeros_like(votes)))
        all_weights.append(usable.float() / stride)
    return torch.cat(all_votes, dim=1), torch.cat(all_weights, dim=1)


def vote_boundaries(
    points: Tensor,
    fields: list[Tensor],
    max_distance: float = 6.0,
    max_shift: float = 8.0,
    min_weight: float = 3.0,
    max_spread: float = 1.5,
) -> Tensor:
    """Move each of (N,) boundaries (level-0 steps) to the weighted median of its field votes.

    A boundary stays where the regression put it when the field is not confident there: fewer than
    `min_weight` votes (by weight), or votes spread out (weighted median absolute deviation above
    `max_spread` level-0 steps, e.g. two boundaries or a field that does not fit). See `boundary_votes`.
    """
    votes, weights = boundary_votes(points, fields, max_distance, max_shift)
    median = weighted_median(votes, weights)
    spread = weighted_median((votes - median[:, None]).abs(), weights)
    confident = (weights.sum(dim=1) >= min_weight) & (spread <= max_spread)
    return torch.where(confident, median, points.float())


def vote_segments(segments: Tensor, fields: list[Tensor], **settings: float) -> Tensor:
    """`vote_boundaries` for the starts (channel 0 of every (T_k, 2) field) and ends (channel 1) of (N, 2)
    segments; a segment whose new start would not precede its new end keeps its old boundaries."""
    segments = segments.float()
    starts = vote_boundaries(segments[:, 0], [f[:, 0] for f in fields], **settings)
    ends = vote_boundaries(segments[:, 1], [f[:, 1] for f in fields], **settings)
    voted = torch.stack([starts, ends], dim=-1)
    return torch.where((starts < ends)[:, None], voted, segments)


# ---------------------------------------------------------------------------------------------------
# Classification boundary head (the baseline)


def gaussian_boundary_targets(segments: Tensor, length: int, sigma: float = 1.0) -> Tensor:
    """(N, 2) [start, end] grid steps -> (length, 2) in [0, 1]: max over Gaussians centred at each boundary.

    `exp(-(t - b)^2 / (2 sigma^2))`; all zeros when there are no segments.
    """
    positions = torch.arange(length, dtype=torch.float32, device=segments.device)
    if segments.numel() == 0:
        return torch.zeros(length, 2, device=segments.device)
    offsets = positions[:, None, None] - segments.float()[None]  # (T, N, 2)
    return torch.exp(-offsets.square() / (2 * sigma**2)).amax(dim=1)


def boundary_classification_loss(logits: Tensor, targets: Tensor, mask: Tensor, gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss for soft targets (Quality Focal Loss, Li et al. 2020). Scalar.

    logits, targets: (B, T, 2), targets in [0, 1] (e.g. Gaussian targets); mask: (B, T) bool.
    Per element `BCE(logits, y) * |y - sigmoid(logits)|^gamma`; gamma = 0 is plain BCE. Mean over valid
    elements; 0 when there are none.
    """
    valid = mask[..., None].expand_as(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if gamma:
        bce = bce * (targets - logits.sigmoid()).abs().pow(gamma)
    return bce.where(valid, torch.zeros_like(bce)).sum() / valid.sum().clamp(min=1)


def boundary_peaks(probs: Tensor, min_prob: float = 0.1, log_domain: bool = True) -> Tensor:
    """Sub-step positions of the local maxima of a (T,) boundary probability. (K,) sorted.

    A peak is a position with `p[t] >= min_prob`, `p[t] > p[t-1]` and `p[t] >= p[t+1]` (outside the
    sequence counts as -inf; a flat top gives its first position). Peaks with both neighbours are refined
    to the vertex of the parabola through the three points, which lies within +-0.5 of t. In the log
    domain (default) that parabola is exact for a Gaussian-shaped peak.
    """
    values = probs.float().clamp(min=1e-12).log() if log_domain else probs.float()
    pad = values.new_full((1,), float("-inf"))
    left = torch.cat([pad, values[:-1]])
    right = torch.cat([values[1:], pad])
    is_peak = (probs >= min_prob) & (values > left) & (values >= right)
    curvature = left - 2 * values + right
    interior = torch.isfinite(curvature)
    offset = 0.5 * (left - right) / curvature.where(interior, torch.ones_like(curvature))
    offset = offset.where(interior, torch.zeros_like(offset))
    steps = torch.arange(values.numel(), dtype=values.dtype, device=values.device)
    return (steps + offset)[is_peak]


def snap_to_peaks(
    segments: Tensor, probs: Tensor, radius: float = 2.0, min_prob: float = 0.1, log_domain: bool = True
) -> Tensor:
    """Classification-head counterpart of `snap_boundaries`: move boundaries to probability peaks.

    segments: (N, 2) level-0 grid steps; probs: (T, 2) [p_start, p_end] on level 0 (after sigmoid).
    Each boundary moves to the nearest peak (see `boundary_peaks`) within +-radius; the same
    start < end rule as `snap_boundaries`. Returns (N, 2) float.
    """
    start_peaks = boundary_peaks(probs[:, 0], min_prob, log_domain)
    end_peaks = boundary_peaks(probs[:, 1], min_prob, log_domain)
    return _snap_pairs(segments, start_peaks, end_peaks, radius)
