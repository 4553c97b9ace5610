"""Training targets and losses of TZN, as pure functions of tensors.

In reading order: ActionFormer's label assignment (points, centre sampling, regression ranges), the
detection losses (sigmoid focal loss, centre-DIoU), the boundary losses (BDR from `model.bdr`, or the
Gaussian classification baseline), the ATR losses (budget, boundary guidance), the distillation losses,
and `detection_losses`, which applies all of them to one `TZNOutput`.

Units: segments are in level-0 grid steps (fractional feature indices, `training.dataset`). Position i of
pyramid level k sits at t = i * 2**k level-0 steps; offsets and BDR fields are in steps of their level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from model.atr import executed_fraction
from model.bdr import bdr_loss, bdr_targets_batch, boundary_classification_loss, gaussian_boundary_targets
from model.config import ModelConfig
from model.tzn import TZNOutput

# ---------------------------------------------------------------------------------------------------
# Label assignment (ActionFormer's `label_points_single_video`)


def regression_ranges(levels: int, first: float = 4.0) -> list[tuple[float, float]]:
    """ActionFormer's THUMOS ranges in level-0 steps: [0,4], [4,8], [8,16], ... and [.., inf) on the last level.

    A point regresses a segment only when its larger distance to the segment's ends lies in its level's range.
    """
    bounds = [0.0] + [first * 2**k for k in range(levels - 1)] + [math.inf]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def level_points(lengths: Sequence[int], ranges: Sequence[tuple[float, float]], device=None) -> Tensor:
    """Points of every level, finest first: (sum T_k, 4) rows [t, range_low, range_high, stride].

    Level k (stride 2**k) has `lengths[k]` points at t = i * 2**k, i = 0..T_k-1, in level-0 steps.
    """
    if len(lengths) != len(ranges):
        raise ValueError(f"{len(lengths)} levels but {len(ranges)} regression ranges")
    rows = []
    for level, (length, (low, high)) in enumerate(zip(lengths, ranges, strict=True)):
        stride = 2**level
        t = torch.arange(length, dtype=torch.float32, device=device) * stride
        rows.append(torch.stack([t, torch.full_like(t, low), torch.full_like(t, high), torch.full_like(t, stride)], 1))
    return torch.cat(rows)


def assign_labels(
    points: Tensor, segments: Tensor, labels: Tensor, num_classes: int, center_radius: float = 1.5
) -> tuple[Tensor, Tensor]:
    """Targets of one video: points (P, 4) from `level_points`, segments (N, 2) level-0 steps, labels (N,).

    A point is a candidate for a segment when it lies within `center_radius` strides of the segment's
    centre (and inside the segment), and its larger distance to the ends falls into its regression range.
    It takes the shortest candidate; segments as short as that one (within 1e-3) all give their class,
    as in ActionFormer. Returns class targets (P, num_classes) in {0, 1} and offsets (P, 2) to the chosen
    segment's start and end in steps of the point's level (zeros where the point has no segment).
    """
    count = points.shape[0]
    if segments.numel() == 0:
        return points.new_zeros(count, num_classes), points.new_zeros(count, 2)
    segments = segments.to(points.dtype)
    t, low, high, stride = (points[:, i, None] for i in range(4))  # each (P, 1)
    left = t - segments[None, :, 0]
    right = segments[None, :, 1] - t
    offsets = torch.stack([left, right], dim=-1)  # (P, N, 2)

    centre = 0.5 * (segments[:, 0] + segments[:, 1])[None]
    near_left = t - torch.maximum(centre - stride * center_radius, segments[None, :, 0])
    near_right = torch.minimum(centre + stride * center_radius, segments[None, :, 1]) - t
    in_centre = torch.minimum(near_left, near_right) > 0
    reach = offsets.max(dim=-1).values
    in_range = (reach >= low) & (reach <= high)

    lengths = (segments[:, 1] - segments[:, 0])[None].expand(count, -1)
    lengths = lengths.masked_fill(~(in_centre & in_range), math.inf)
    shortest, chosen = lengths.min(dim=1)
    ties = (lengths <= shortest[:, None] + 1e-3) & torch.isfinite(lengths)
    one_hot = F.one_hot(labels.long(), num_classes).to(points.dtype)
    cls_targets = (ties.to(points.dtype) @ one_hot).clamp(max=1.0)
    reg_targets = offsets[torch.arange(count, device=points.device), chosen] / stride
    reg_targets = reg_targets * torch.isfinite(shortest)[:, None]
    return cls_targets, reg_targets


def assign_batch(
    level_lengths: Sequence[int],
    segments: Sequence[Tensor],
    labels: Sequence[Tensor],
    num_classes: int,
    ranges: Sequence[tuple[float, float]],
    center_radius: float = 1.5,
) -> tuple[Tensor, Tensor]:
    """`assign_labels` for every video of a batch: -> class targets (B, P, C), offsets (B, P, 2)."""
    points = level_points(level_lengths, ranges, device=segments[0].device if segments else None)
    assigned = [
        assign_labels(points, s, lab, num_classes, center_radius) for s, lab in zip(segments, labels, strict=True)
    ]
    return torch.stack([a[0] for a in assigned]), torch.stack([a[1] for a in assigned])


# ---------------------------------------------------------------------------------------------------
# Detection losses


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Elementwise focal loss (Lin et al. 2017; torchvision's / ActionFormer's form), same shape as logits.

    `alpha_t * BCE(logits, y) * (1 - p_t)^gamma` with p_t = p y + (1 - p)(1 - y); alpha < 0 disables alpha_t.
    """
    probs = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def ctr_diou_loss_1d(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Centre-DIoU of 1-D segments given as (N, 2) distances [left, right] from the same point -> (N,).

    `1 - IoU + rho^2 / c^2`: rho is the distance between the two centres, c the length of the smallest
    segment enclosing both (ActionFormer's `ctr_diou_loss_1d`).
    """
    lp, rp = pred[:, 0], pred[:, 1]
    lg, rg = target[:, 0], target[:, 1]
    intersection = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - intersection
    iou = intersection / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)
    return 1.0 - iou + rho.square() / enclosing.square().clamp(min=eps)


@dataclass
class LossNormalizer:
    """ActionFormer's running number of positives: value <- momentum * value + (1 - momentum) * max(n, 1).

    Dividing by a smoothed count (not the batch's own) keeps the loss scale steady across batches.
    """

    value: float = 100.0
    momentum: float = 0.9

    def update(self, positives: int) -> float:
        self.value = self.momentum * self.value + (1 - self.momentum) * max(positives, 1)
        return self.value


# ---------------------------------------------------------------------------------------------------
# ATR losses


def budget_loss(tau: Tensor, mask: Tensor, rho: float) -> Tensor:
    """(mean tau - rho)^2 with the mean over valid positions of the whole batch; tau, mask (B, T). Scalar."""
    valid = mask.to(tau.dtype)
    mean_tau = (tau * valid).sum() / valid.sum().clamp(min=1)
    return (mean_tau - rho).square()


def executed_budget_loss(tau: Tensor, mask: Tensor, config: ModelConfig, rho: float) -> Tensor:
    """(executed share of the stem - rho)^2: rho is the share of the stem's block-layers that run
    (model.atr.executed_fraction), the unit hard execution pays in. tau, mask (B, T). Scalar."""
    depth = config.min_depth + tau * (config.stem_layers - config.min_depth)
    return (executed_fraction(depth, mask, config.attn_block_size, config.stem_layers) - rho).square()


def near_boundaries(segments: Sequence[Tensor], length: int, radius: float) -> Tensor:
    """(B, length) bool: level-0 positions within `radius` steps of a start or end of a segment of the video."""
    positions = torch.arange(length, dtype=torch.float32)
    rows = []
    for video in segments:
        if video.numel() == 0:
            rows.append(torch.zeros(length, dtype=torch.bool))
            continue
        boundaries = video.detach().float().cpu().reshape(-1)
        rows.append((positions[:, None] - boundaries[None]).abs().min(dim=1).values <= radius)
    return torch.stack(rows).to(segments[0].device if segments else "cpu")


def boundary_guidance_loss(tau: Tensor, mask: Tensor, segments: Sequence[Tensor], radius: float = 2.0) -> Tensor:
    """Mean of (1 - tau)^2 over valid positions within `radius` level-0 steps of a ground-truth boundary.

    Used early in training: it tells the tau predictor, before the task loss does, that boundaries need
    the full stem. 0 when no valid position is near a boundary. tau, mask (B, T); segments per video (N, 2).
    """
    near = near_boundaries(segments, tau.shape[1], radius).to(tau.device) & mask
    weight = near.to(tau.dtype)
    return ((1 - tau).square() * weight).sum() / weight.sum().clamp(min=1)


def depth_per_position(output: TZNOutput) -> Tensor:
    """(B, T_pad) stem layers each position received: the sum of its layer masks (= D where tau drives them)."""
    return output.layer_masks.sum(dim=-1)


# ---------------------------------------------------------------------------------------------------
# Distillation losses (student against cached teacher outputs)


def kd_class_loss(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """Binary KD for sigmoid classifiers: BCE(student / T, sigmoid(teacher / T)) * T^2, summed over classes,
    averaged over valid positions. logits (B, P, C), mask (B, P) bool. Scalar."""
    soft_targets = (teacher_logits / temperature).sigmoid()
    bce = F.binary_cross_entropy_with_logits(student_logits / temperature, soft_targets, reduction="none").sum(-1)
    valid = mask.to(bce.dtype)
    return temperature**2 * (bce * valid).sum() / valid.sum().clamp(min=1)


def kd_offset_loss(student_offsets: Tensor, teacher_offsets: Tensor, teacher_logits: Tensor, mask: Tensor) -> Tensor:
    """Centre-DIoU of the student's offsets against the teacher's, weighted by the teacher's top class
    probability (its confidence that the position proposes a segment). offsets (B, P, 2), logits (B, P, C)."""
    weight = teacher_logits.sigmoid().amax(dim=-1) * mask.to(teacher_logits.dtype)
    usable = (teacher_offsets.sum(-1) > 0) & mask
    if not usable.any():
        return student_offsets.sum() * 0.0
    loss = ctr_diou_loss_1d(student_offsets[usable], teacher_offsets[usable])
    return (loss * weight[usable]).sum() / weight[usable].sum().clamp(min=1e-6)


# ---------------------------------------------------------------------------------------------------
# Everything on one forward pass


@dataclass
class LossSettings:
    """What `detection_losses` needs besides the output and the ground truth (from `TrainConfig.loss`).

    The weights of the terms (`loss.cls`, `loss.reg`, `loss.boundary`) are applied by the training loop,
    which adds the ATR and distillation terms to the same total."""

    ranges: list[tuple[float, float]]
    center_radius: float = 1.5
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    bdr_smoothness: str = "l1"
    bdr_alpha: float = 0.1
    bdr_normalize: bool = True
    boundary_sigma: float = 1.0


def detection_losses(
    output: TZNOutput,
    segments: Sequence[Tensor],
    labels: Sequence[Tensor],
    config: ModelConfig,
    settings: LossSettings,
    normalizer: LossNormalizer,
) -> dict[str, Tensor]:
    """Ground-truth losses of one batch: {"cls", "reg", "boundary"} (scalars, unweighted) and "positives".

    cls: focal loss over valid (point, class) pairs / normaliser; reg: centre-DIoU over positives /
    normaliser; boundary: BDR (or Gaussian classification) loss averaged over the boundary levels.
    Updates `normalizer` with the batch's number of positives.
    """
    lengths = [logits.shape[1] for logits in output.cls_logits]
    cls_targets, reg_targets = assign_batch(
        lengths, segments, labels, config.num_classes, settings.ranges, settings.center_radius
    )
    logits = torch.cat(output.cls_logits, dim=1)
    offsets = torch.cat(output.offsets, dim=1)
    valid = torch.cat(output.masks, dim=1)
    positive = (cls_targets.sum(-1) > 0) & valid
    positives = int(positive.sum())
    norm = normalizer.update(positives)

    cls_loss = (
        sigmoid_focal_loss(logits[valid], cls_targets[valid], settings.focal_alpha, settings.focal_gamma).sum() / norm
    )
    if positives:
        reg_loss = ctr_diou_loss_1d(offsets[positive], reg_targets[positive]).sum() / norm
    else:
        reg_loss = offsets.sum() * 0.0
    losses = {"cls": cls_loss, "reg": reg_loss, "boundary": boundary_losses(output, segments, config, settings)}
    losses["positives"] = torch.tensor(float(positives))
    return losses


def boundary_losses(
    output: TZNOutput, segments: Sequence[Tensor], config: ModelConfig, settings: LossSettings
) -> Tensor:
    """Mean over the boundary levels of the BDR loss (signed distance fields) or, for the classification
    head, of the quality focal loss against Gaussian boundary targets. 0 without a boundary head."""
    if not output.boundary:
        return output.cls_logits[0].sum() * 0.0
    terms = []
    for level, prediction in enumerate(output.boundary):
        stride, length = 2**level, prediction.shape[1]
        mask = output.masks[level]
        if config.boundary_head == "bdr":
            target = bdr_targets_batch(list(segments), length, stride, config.bdr_clip).to(prediction.device)
            scale = config.bdr_clip if settings.bdr_normalize else 1.0
            terms.append(bdr_loss(prediction, target, mask, settings.bdr_smoothness, settings.bdr_alpha, scale))
        else:
            target = torch.stack(
                [gaussian_boundary_targets(s.float() / stride, length, settings.boundary_sigma) for s in segments]
            ).to(prediction.device)
            terms.append(boundary_classification_loss(prediction, target, mask))
    return torch.stack(terms).mean()
