import math

import pytest
import torch

from model.bdr import bdr_loss, bdr_targets
from model.config import ModelConfig
from model.tzn import TZN
from training.losses import (
    LossNormalizer,
    LossSettings,
    assign_labels,
    boundary_guidance_loss,
    budget_loss,
    ctr_diou_loss_1d,
    detection_losses,
    kd_class_loss,
    level_points,
    regression_ranges,
    sigmoid_focal_loss,
)

RANGES = regression_ranges(6)


def brute_force_assign(points, segments, labels, num_classes, radius=1.5):
    """One point, one segment at a time, as ActionFormer's paper describes it."""
    cls = torch.zeros(len(points), num_classes)
    reg = torch.zeros(len(points), 2)
    for p, (t, low, high, stride) in enumerate(points.tolist()):
        candidates = []
        for (start, end), label in zip(segments.tolist(), labels.tolist(), strict=True):
            centre = (start + end) / 2
            inside_centre = min(t - max(centre - radius * stride, start), min(centre + radius * stride, end) - t) > 0
            reach = max(t - start, end - t)
            if inside_centre and low <= reach <= high:
                candidates.append((end - start, start, end, label))
        if not candidates:
            continue
        shortest = min(c[0] for c in candidates)
        first = next(c for c in candidates if c[0] == shortest)
        reg[p] = torch.tensor([(t - first[1]) / stride, (first[2] - t) / stride])
        for length, _, _, label in candidates:
            if length <= shortest + 1e-3:
                cls[p, label] = 1.0
    return cls, reg


def test_regression_ranges_are_actionformers_thumos_ranges():
    assert regression_ranges(6) == [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, math.inf)]


def test_points_sit_at_multiples_of_their_stride():
    points = level_points([8, 4, 2], RANGES[:3])
    assert points[:, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6, 0, 4]
    assert points[:, 3].tolist() == [1] * 8 + [2] * 4 + [4] * 2


def test_short_segment_is_assigned_to_level_zero_centre_points_only():
    points = level_points([32, 16, 8, 4, 2, 1], RANGES)
    cls, reg = assign_labels(points, torch.tensor([[10.0, 13.0]]), torch.tensor([2]), num_classes=3)
    positive = cls.sum(-1).nonzero().flatten().tolist()
    # centre 11.5, radius 1.5 strides at stride 1: t in (10, 13) -> 11, 12; reach <= 4 -> level 0
    assert positive == [11, 12]
    assert cls[11].tolist() == [0, 0, 1]
    assert reg[11].tolist() == [1.0, 2.0] and reg[12].tolist() == [2.0, 1.0]


def test_long_segment_goes_to_a_coarse_level_with_offsets_in_level_steps():
    points = level_points([64, 32, 16, 8, 4, 2], RANGES)
    cls, reg = assign_labels(points, torch.tensor([[8.0, 40.0]]), torch.tensor([0]), num_classes=1)
    rows = cls[:, 0].nonzero().flatten()
    t, stride = points[rows, 0], points[rows, 3]
    # reach = larger distance to an end: 16 at t=24 fits [8, 16] (stride 4) and [16, 32] (stride 8);
    # 32 at t=16 and t=32 only fits stride 8; centre sampling keeps t within 1.5 strides of 24
    assert list(zip(t.tolist(), stride.tolist(), strict=True)) == [(24, 4), (16, 8), (24, 8), (32, 8)]
    assert torch.allclose(reg[rows], torch.stack([(t - 8) / stride, (40 - t) / stride], 1))


def test_overlapping_segments_point_takes_the_shortest():
    points = level_points([32, 16, 8, 4, 2, 1], RANGES)
    segments = torch.tensor([[9.0, 15.0], [11.0, 13.0]])
    cls, reg = assign_labels(points, segments, torch.tensor([0, 1]), num_classes=2)
    assert cls[12].tolist() == [0, 1] and reg[12].tolist() == [1.0, 1.0]


def test_no_segments_gives_all_background():
    points = level_points([16, 8], RANGES[:2])
    cls, reg = assign_labels(points, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), num_classes=4)
    assert cls.shape == (24, 4) and not cls.any() and not reg.any()


def test_assignment_equals_brute_force_on_random_videos():
    generator = torch.Generator().manual_seed(0)
    points = level_points([128, 64, 32, 16, 8, 4], RANGES)
    for _ in range(5):
        starts = torch.rand(6, generator=generator) * 110
        lengths = torch.rand(6, generator=generator) * 60 + 0.5
        segments = torch.stack([starts, starts + lengths], 1)
        labels = torch.randint(0, 3, (6,), generator=generator)
        cls, reg = assign_labels(points, segments, labels, 3)
        cls_ref, reg_ref = brute_force_assign(points, segments, labels, 3)
        assert torch.equal(cls, cls_ref)
        assert torch.allclose(reg, reg_ref, atol=1e-5)


def test_focal_loss_equals_its_formula():
    logits, targets = torch.randn(40), (torch.rand(40) > 0.7).float()
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    for x, y, value in zip(logits.tolist(), targets.tolist(), loss.tolist(), strict=True):
        p = 1 / (1 + math.exp(-x))
        p_t = p if y else 1 - p
        alpha_t = 0.25 if y else 0.75
        assert value == pytest.approx(-alpha_t * (1 - p_t) ** 2 * math.log(p_t), rel=1e-4, abs=1e-7)


def test_ctr_diou_equals_its_definition_on_segments():
    pred, target = torch.rand(30, 2) * 5, torch.rand(30, 2) * 5 + 0.1
    loss = ctr_diou_loss_1d(pred, target)
    for (lp, rp), (lg, rg), value in zip(pred.tolist(), target.tolist(), loss.tolist(), strict=True):
        a, b = (-lp, rp), (-lg, rg)  # segments around the point at 0
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        union = (a[1] - a[0]) + (b[1] - b[0]) - inter
        hull = max(a[1], b[1]) - min(a[0], b[0])
        centre_gap = (a[0] + a[1]) / 2 - (b[0] + b[1]) / 2
        assert value == pytest.approx(1 - inter / union + centre_gap**2 / hull**2, rel=1e-4, abs=1e-6)
    assert ctr_diou_loss_1d(target, target).abs().max() < 1e-6


def test_budget_loss_uses_valid_positions_only():
    tau = torch.tensor([[0.2, 0.4, 0.9], [0.6, 5.0, 5.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    assert budget_loss(tau, mask, rho=0.5).item() == pytest.approx((0.525 - 0.5) ** 2, rel=1e-5)


def test_boundary_guidance_averages_over_positions_near_boundaries():
    tau = torch.rand(2, 20)
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 15:] = False
    segments = [torch.tensor([[5.0, 12.5]]), torch.tensor([[14.0, 30.0]])]
    expected, count = 0.0, 0
    for b in range(2):
        for t in range(20):
            near = any(abs(t - x) <= 2 for x in segments[b].flatten().tolist())
            if near and mask[b, t]:
                expected += (1 - tau[b, t].item()) ** 2
                count += 1
    assert boundary_guidance_loss(tau, mask, segments, radius=2).item() == pytest.approx(expected / count, rel=1e-5)


def test_kd_class_loss_is_minimal_at_the_teacher():
    teacher = torch.randn(2, 10, 3)
    mask = torch.ones(2, 10, dtype=torch.bool)
    at_teacher = kd_class_loss(teacher, teacher, mask)
    assert at_teacher < kd_class_loss(teacher + 0.5 * torch.randn(2, 10, 3), teacher, mask)


def test_normalizer_is_an_exponential_moving_average():
    normalizer = LossNormalizer(100.0, 0.9)
    assert normalizer.update(0) == pytest.approx(90.1)
    assert normalizer.update(20) == pytest.approx(0.9 * 90.1 + 2.0)


def tiny_model(**overrides) -> TZN:
    config = ModelConfig(
        input_dim=8, num_classes=3, embed_dim=16, n_head=2, attn_block_size=16, tau_hidden=8, **overrides
    )
    torch.manual_seed(0)
    return TZN(config)


@pytest.mark.parametrize("head", ["bdr", "classification", "none"])
def test_detection_losses_are_finite_and_reach_every_head(head):
    model = tiny_model(boundary_head=head)
    features, mask = torch.randn(2, 8, 70), torch.ones(2, 70, dtype=torch.bool)
    mask[1, 40:] = False
    output = model(features, mask)
    segments = [torch.tensor([[10.0, 20.0], [30.0, 60.0]]), torch.tensor([[5.0, 9.0]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    losses = detection_losses(output, segments, labels, model.config, LossSettings(RANGES), LossNormalizer())
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["positives"].item() > 0
    (losses["cls"] + losses["reg"] + losses["boundary"]).backward()
    assert model.reg_head.out.conv.weight.grad.abs().sum() > 0
    if head != "none":
        assert model.boundary_head.out.conv.weight.grad.abs().sum() > 0


def test_bdr_term_is_the_model_bdr_loss_on_level_zero_for_one_level():
    model = tiny_model(boundary_levels=1)
    features, mask = torch.randn(1, 8, 64), torch.ones(1, 64, dtype=torch.bool)
    output = model(features, mask)
    segments = [torch.tensor([[10.0, 20.0]])]
    losses = detection_losses(
        output, segments, [torch.tensor([1])], model.config, LossSettings(RANGES), LossNormalizer()
    )
    clip = model.config.bdr_clip
    expected = bdr_loss(output.boundary[0], bdr_targets(segments[0], 64)[None], output.masks[0], scale=clip)
    assert losses["boundary"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_normalized_bdr_loss_is_the_raw_loss_divided_by_the_clip():
    model = tiny_model(boundary_levels=1)
    output = model(torch.randn(1, 8, 64), torch.ones(1, 64, dtype=torch.bool))
    segments, labels = [torch.tensor([[10.0, 20.0]])], [torch.tensor([1])]
    raw = detection_losses(output, segments, labels, model.config, LossSettings(RANGES, bdr_normalize=False),
                           LossNormalizer())["boundary"]  # fmt: skip
    normalized = detection_losses(output, segments, labels, model.config, LossSettings(RANGES), LossNormalizer())
    assert normalized["boundary"].item() == pytest.approx(raw.item() / model.config.bdr_clip, rel=1e-5)
