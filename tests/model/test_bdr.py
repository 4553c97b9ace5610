"""BDR targets, loss and snapping, and the classification boundary head, against plain-loop twins."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.bdr import (
    bdr_loss,
    bdr_targets,
    bdr_targets_batch,
    boundary_classification_loss,
    boundary_peaks,
    gaussian_boundary_targets,
    snap_boundaries,
    snap_to_peaks,
    upward_zero_crossings,
    vote_boundaries,
    vote_segments,
    weighted_median,
)

# ---------------------------------------------------------------------------------------------------
# brute-force twins


def loop_bdr_targets(segments: list[list[float]], length: int, clip: float) -> list[list[float]]:
    fields = []
    for t in range(length):
        row = []
        for kind in range(2):
            if not segments:
                row.append(clip)
                continue
            boundaries = sorted(segment[kind] for segment in segments)
            nearest = min(boundaries, key=lambda b: (abs(t - b), b))  # the earlier one on a tie
            row.append(max(-clip, min(clip, t - nearest)))
        fields.append(row)
    return fields


def loop_crossings(field: list[float], min_slope: float) -> list[float]:
    found = []
    if len(field) >= 2 and field[0] == 0 and field[1] - field[0] > min_slope:
        found.append(0.0)
    for t in range(len(field) - 1):
        slope = field[t + 1] - field[t]
        if field[t] < 0 <= field[t + 1] and slope > min_slope:
            found.append(t - field[t] / slope)
    return found


def loop_snap(segments: list[list[float]], crossings: list[list[float]], radius: float) -> list[list[float]]:
    snapped_segments = []
    for segment in segments:
        snapped = []
        for kind in range(2):
            point = segment[kind]
            in_range = [c for c in crossings[kind] if abs(c - point) <= radius]
            snapped.append(min(in_range, key=lambda c: (abs(c - point), c)) if in_range else point)
        snapped_segments.append(snapped if snapped[0] < snapped[1] else list(segment))
    return snapped_segments


def separated_segments(generator: torch.Generator, count: int, gap: float, min_length: float) -> torch.Tensor:
    """Segments whose starts are >= gap apart, ends too, every length >= min_length."""
    starts = 10 + torch.arange(count) * gap + torch.rand(count, generator=generator)
    lengths = min_length + torch.rand(count, generator=generator) * (gap - min_length - 1)
    return torch.stack([starts, starts + lengths], dim=-1)


# ---------------------------------------------------------------------------------------------------
# targets


def test_targets_match_loop_over_positions():
    generator = torch.Generator().manual_seed(0)
    starts = torch.rand(7, generator=generator) * 90
    segments = torch.stack([starts, starts + 1 + torch.rand(7, generator=generator) * 30], dim=-1)
    segments = torch.cat([segments, torch.tensor([[20.0, 30.0], [26.0, 34.0]])])  # integer ties at t = 23, 32
    expected = torch.tensor(loop_bdr_targets(segments.tolist(), 128, clip=8.0))
    torch.testing.assert_close(bdr_targets(segments, 128, clip=8.0), expected)


def test_targets_are_clipped_to_plus_minus_clip():
    fields = bdr_targets(torch.tensor([[50.0, 60.0]]), 200, clip=3.0)
    assert fields.min() == -3.0 and fields.max() == 3.0
    assert fields[0, 0] == -3.0 and fields[199, 1] == 3.0


def test_no_segments_gives_plus_clip_everywhere():
    fields = bdr_targets(torch.zeros(0, 2), 40, clip=8.0)
    assert fields.shape == (40, 2)
    assert torch.all(fields == 8.0)


def test_batch_targets_are_built_in_steps_of_the_level():
    segments = [torch.tensor([[16.0, 40.0]]), torch.zeros(0, 2)]
    fields = bdr_targets_batch(segments, length=32, stride=4, clip=8.0)
    assert fields.shape == (2, 32, 2)
    torch.testing.assert_close(fields[0], bdr_targets(torch.tensor([[4.0, 10.0]]), 32, 8.0))
    assert torch.all(fields[1] == 8.0)


# ---------------------------------------------------------------------------------------------------
# zero crossings


def test_crossing_of_linear_field_is_recovered_to_sub_step_precision():
    field = (torch.arange(80.0) - 37.25).clamp(-8, 8)
    crossings = upward_zero_crossings(field)
    assert crossings.shape == (1,)
    assert abs(crossings.item() - 37.25) < 1e-3


def test_crossings_of_target_fields_are_the_true_boundaries():
    generator = torch.Generator().manual_seed(1)
    segments = separated_segments(generator, count=12, gap=9.0, min_length=3.0)
    fields = bdr_targets(segments, 140)
    for kind in range(2):
        torch.testing.assert_close(upward_zero_crossings(fields[:, kind]), segments[:, kind], atol=1e-3, rtol=0)


def test_crossings_match_loop_on_a_noisy_field():
    generator = torch.Generator().manual_seed(2)
    field = bdr_targets(torch.tensor([[5.5, 30.2], [41.0, 44.7]]), 60)[:, 0]
    field = field + 0.4 * torch.randn(60, generator=generator)
    field[field.abs() < 0.05] = 0.0  # exact zeros exercise the [t, t+1) rule
    expected = torch.tensor(loop_crossings(field.tolist(), 0.5))
    torch.testing.assert_close(upward_zero_crossings(field), expected, atol=1e-5, rtol=0)


def test_shallow_upward_crossing_is_rejected():
    assert upward_zero_crossings(0.3 * (torch.arange(30.0) - 10.5), min_slope=0.5).numel() == 0


def test_downward_crossing_is_rejected():
    assert upward_zero_crossings(-(torch.arange(30.0) - 10.5)).numel() == 0


def test_exact_zero_on_the_grid_is_one_crossing():
    torch.testing.assert_close(upward_zero_crossings(torch.arange(30.0) - 10), torch.tensor([10.0]))


def test_field_starting_at_zero_crosses_at_the_first_position():
    torch.testing.assert_close(upward_zero_crossings(torch.arange(10.0)), torch.tensor([0.0]))


# ---------------------------------------------------------------------------------------------------
# snapping


def test_snap_moves_perturbed_boundaries_back_to_truth():
    generator = torch.Generator().manual_seed(3)
    truth = separated_segments(generator, count=40, gap=10.0, min_length=6.0)
    fields = bdr_targets(truth, 450)
    predicted = truth + (torch.rand(truth.shape, generator=generator) * 4 - 2)  # within +-2 steps
    torch.testing.assert_close(snap_boundaries(predicted, fields, radius=2.0), truth, atol=1e-3, rtol=0)


def test_snap_leaves_boundaries_without_crossing_in_radius():
    generator = torch.Generator().manual_seed(4)
    truth = separated_segments(generator, count=20, gap=20.0, min_length=12.0)
    fields = bdr_targets(truth, 450)
    sign = torch.randint(0, 2, truth.shape, generator=generator) * 2 - 1
    predicted = truth + sign * (2.5 + torch.rand(truth.shape, generator=generator))  # 2.5..3.5 away
    torch.testing.assert_close(snap_boundaries(predicted, fields, radius=2.0), predicted)


def test_snap_keeps_segment_that_would_invert():
    fields = bdr_targets(torch.tensor([[10.0, 9.0]]), 30)  # start crossing at 10, end crossing at 9
    predicted = torch.tensor([[9.4, 10.6], [6.0, 20.0]])
    snapped = snap_boundaries(predicted, fields)
    torch.testing.assert_close(snapped[0], predicted[0])
    assert torch.all(snapped[:, 0] < snapped[:, 1])


def test_snap_matches_loop_reference():
    generator = torch.Generator().manual_seed(5)
    fields = bdr_targets(torch.rand(15, 2, generator=generator).sort(dim=1).values * 200, 220)
    fields = fields + 0.3 * torch.randn(fields.shape, generator=generator)
    starts = torch.rand(2000, generator=generator) * 200
    predicted = torch.stack([starts, starts + torch.rand(2000, generator=generator) * 20], dim=-1)
    crossings = [loop_crossings(fields[:, kind].tolist(), 0.5) for kind in range(2)]
    expected = torch.tensor(loop_snap(predicted.tolist(), crossings, 2.0))
    torch.testing.assert_close(snap_boundaries(predicted, fields, radius=2.0), expected, atol=1e-5, rtol=0)


def test_snap_with_no_crossings_changes_nothing():
    predicted = torch.tensor([[3.0, 9.0]])
    torch.testing.assert_close(snap_boundaries(predicted, bdr_targets(torch.zeros(0, 2), 20)), predicted)


# ---------------------------------------------------------------------------------------------------
# loss


def random_fields(seed: int, batch: int = 2, length: int = 50) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = bdr_targets_batch([torch.tensor([[10.0, 22.5]]), torch.tensor([[30.2, 41.0]])], length, 1)
    pred = target + torch.randn(batch, length, 2, generator=generator)
    mask = torch.arange(length)[None] < torch.tensor([[length], [length - 13]])
    return pred, target, mask


@pytest.mark.parametrize("smoothness", ["none", "l1", "l2"])
def test_loss_is_zero_for_perfect_prediction(smoothness):
    _, target, mask = random_fields(0)
    assert bdr_loss(target.clone(), target, mask, smoothness) == 0


@pytest.mark.parametrize("smoothness", ["none", "l1", "l2"])
def test_loss_ignores_masked_positions(smoothness):
    pred, target, mask = random_fields(1)
    changed = pred.clone()
    changed[~mask] = float("nan")
    torch.testing.assert_close(bdr_loss(changed, target, mask, smoothness), bdr_loss(pred, target, mask, smoothness))


def test_loss_matches_loop_reference():
    pred, target, mask = random_fields(2)
    l1, l1_count, smooth, smooth_count = 0.0, 0, 0.0, 0
    for b in range(pred.shape[0]):
        for t in range(pred.shape[1]):
            if not mask[b, t]:
                continue
            for k in range(2):
                l1 += abs(pred[b, t, k].item() - target[b, t, k].item())
                l1_count += 1
                if t + 1 < pred.shape[1] and mask[b, t + 1]:
                    step = (pred[b, t + 1, k] - pred[b, t, k]) - (target[b, t + 1, k] - target[b, t, k])
                    smooth += step.item() ** 2
                    smooth_count += 1
    expected = l1 / l1_count + 0.1 * smooth / smooth_count
    assert bdr_loss(pred, target, mask, "l2", alpha=0.1).item() == pytest.approx(expected, rel=1e-5)


def test_smoothness_variants_give_different_losses():
    pred, target, mask = random_fields(3)
    losses = {s: bdr_loss(pred, target, mask, s).item() for s in ("none", "l1", "l2")}
    assert len(set(losses.values())) == 3
    assert losses["none"] < losses["l1"]


def test_loss_is_zero_not_nan_for_empty_mask():
    pred, target, mask = random_fields(4)
    loss = bdr_loss(pred, target, torch.zeros_like(mask), "l1")
    assert loss.item() == 0.0


def test_gradients_flow_to_every_valid_position():
    pred, target, mask = random_fields(5)
    pred.requires_grad_(True)
    bdr_loss(pred, target, mask, "l1").backward()
    assert torch.isfinite(pred.grad).all()
    assert torch.all(pred.grad[mask].abs().sum(dim=-1) > 0)
    assert torch.all(pred.grad[~mask] == 0)


# ---------------------------------------------------------------------------------------------------
# classification boundary head


def test_gaussian_targets_match_loop():
    segments = torch.tensor([[4.3, 11.0], [12.5, 30.75]])
    sigma = 1.5
    expected = [
        [max(math.exp(-((t - s[k]) ** 2) / (2 * sigma**2)) for s in segments.tolist()) for k in range(2)]
        for t in range(40)
    ]
    torch.testing.assert_close(gaussian_boundary_targets(segments, 40, sigma), torch.tensor(expected))


def test_gaussian_targets_without_segments_are_zero():
    assert torch.all(gaussian_boundary_targets(torch.zeros(0, 2), 10) == 0)


def test_peaks_of_gaussian_targets_are_the_true_boundaries_in_log_domain():
    generator = torch.Generator().manual_seed(6)
    truth = separated_segments(generator, count=30, gap=10.0, min_length=6.0)
    probs = gaussian_boundary_targets(truth, 330)
    for kind in range(2):
        torch.testing.assert_close(boundary_peaks(probs[:, kind]), truth[:, kind], atol=1e-3, rtol=0)


def test_linear_domain_parabola_is_close_but_not_exact():
    probs = gaussian_boundary_targets(torch.tensor([[20.3, 40.0]]), 60)[:, 0]
    error = (boundary_peaks(probs, log_domain=False) - 20.3).abs().item()
    assert 1e-3 < error < 0.1


def test_peaks_below_min_prob_are_ignored():
    probs = 0.05 * gaussian_boundary_targets(torch.tensor([[20.3, 40.0]]), 60)[:, 0]
    assert boundary_peaks(probs, min_prob=0.1).numel() == 0


def test_snap_to_peaks_moves_perturbed_boundaries_back_to_truth():
    generator = torch.Generator().manual_seed(7)
    truth = separated_segments(generator, count=30, gap=10.0, min_length=6.0)
    probs = gaussian_boundary_targets(truth, 330)
    predicted = truth + (torch.rand(truth.shape, generator=generator) * 4 - 2)
    torch.testing.assert_close(snap_to_peaks(predicted, probs), truth, atol=1e-3, rtol=0)


def test_classification_loss_without_focusing_is_masked_bce():
    generator = torch.Generator().manual_seed(8)
    logits = torch.randn(2, 30, 2, generator=generator)
    targets = gaussian_boundary_targets(torch.tensor([[5.0, 12.0]]), 30).expand(2, 30, 2)
    mask = torch.arange(30)[None] < torch.tensor([[30], [17]])
    expected = F.binary_cross_entropy_with_logits(logits[mask], targets[mask])
    torch.testing.assert_close(boundary_classification_loss(logits, targets, mask, gamma=0.0), expected)


def test_classification_loss_is_zero_for_empty_mask_and_has_gradients():
    logits = torch.randn(1, 10, 2, requires_grad=True)
    targets = torch.rand(1, 10, 2)
    assert boundary_classification_loss(logits, targets, torch.zeros(1, 10, dtype=torch.bool)).item() == 0.0
    boundary_classification_loss(logits, targets, torch.ones(1, 10, dtype=torch.bool)).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------
# Decoding by the fields' votes


def loop_weighted_median(values: list[float], weights: list[float]) -> float:
    pairs = sorted((v, w) for v, w in zip(values, weights, strict=True) if w > 0)
    total = sum(w for _, w in pairs)
    if total == 0:
        return math.nan
    running = 0.0
    for value, weight in pairs:
        running += weight
        if running >= 0.5 * total:
            return value
    return pairs[-1][0]


def loop_vote_boundary(
    point: float, fields: list[list[float]], max_distance: float, max_shift: float, min_weight: float, spread: float
) -> float:
    votes, weights = [], []
    for level, field in enumerate(fields):
        stride = 2**level
        for i, d in enumerate(field):
            vote = (i - d) * stride
            near = abs(i - round(point / stride)) <= math.ceil(max_distance)
            if near and abs(d) <= max_distance and abs(vote - point) <= max_shift:
                votes.append(vote)
                weights.append(1.0 / stride)
    if sum(weights) < min_weight:
        return point
    median = loop_weighted_median(votes, weights)
    deviation = loop_weighted_median([abs(v - median) for v in votes], weights)
    return median if deviation <= spread else point


def test_weighted_median_equals_a_loop():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(50, 9, generator=generator).round(decimals=1)
    weights = torch.rand(50, 9, generator=generator) * (torch.rand(50, 9, generator=generator) > 0.3)
    medians = weighted_median(values, weights)
    for row in range(50):
        expected = loop_weighted_median(values[row].tolist(), weights[row].tolist())
        if math.isnan(expected):
            assert math.isnan(medians[row].item())
        else:
            assert medians[row].item() == pytest.approx(expected)


@pytest.mark.parametrize("levels", [1, 3])
def test_vote_boundaries_equal_a_loop_over_positions(levels):
    generator = torch.Generator().manual_seed(levels)
    boundaries = torch.tensor([[12.3, 30.0], [41.0, 47.6]])
    fields = [
        bdr_targets(boundaries / 2**k, 64 // 2**k)[:, 0] + 0.4 * torch.randn(64 // 2**k, generator=generator)
        for k in range(levels)
    ]
    points = torch.tensor([10.0, 14.5, 40.0, 44.0, 3.0, 60.0, 0.0])
    settings = dict(max_distance=6.0, max_shift=8.0, min_weight=3.0, max_spread=1.5)
    voted = vote_boundaries(points, fields, **settings)
    expected = [loop_vote_boundary(p, [f.tolist() for f in fields], *settings.values()) for p in points.tolist()]
    torch.testing.assert_close(voted, torch.tensor(expected), atol=1e-5, rtol=0)


def test_votes_of_an_exact_field_recover_a_sub_step_boundary_from_far_away():
    truth = torch.tensor([[20.4, 37.7]])
    fields = [bdr_targets(truth, 64)]
    predicted = torch.tensor([[15.0, 42.0]])  # 5 steps off, beyond the +-2 of zero-crossing snapping
    torch.testing.assert_close(vote_segments(predicted, fields), truth, atol=1e-4, rtol=0)
    torch.testing.assert_close(snap_boundaries(predicted, fields[0]), predicted)


def test_multi_scale_votes_recover_the_boundary_from_coarse_levels():
    truth = torch.tensor([[20.0, 36.0]])
    fields = [bdr_targets(truth / 2**k, 64 // 2**k) for k in range(3)]
    predicted = torch.tensor([[17.0, 39.0]])
    torch.testing.assert_close(vote_segments(predicted, fields), truth, atol=1e-4, rtol=0)


def test_a_field_without_a_boundary_nearby_keeps_the_regression_boundary():
    fields = [bdr_targets(torch.tensor([[50.0, 60.0]]), 64)]
    predicted = torch.tensor([[10.0, 30.0]])
    torch.testing.assert_close(vote_segments(predicted, fields), predicted)


def test_spread_out_votes_keep_the_regression_boundary():
    generator = torch.Generator().manual_seed(0)
    noisy = bdr_targets(torch.tensor([[20.0, 40.0]]), 64) + 4.0 * torch.randn(64, 2, generator=generator)
    predicted = torch.tensor([[21.0, 39.0]])
    torch.testing.assert_close(vote_segments(predicted, [noisy], max_spread=0.5), predicted)
