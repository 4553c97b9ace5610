"""Decoding and Soft-NMS against plain-Python references (ActionFormer's algorithms), and the full chain."""

from __future__ import annotations

import math

import pytest
import torch

from model.bdr import bdr_targets
from model.config import PostprocessConfig
from model.postprocess import (
    Detections,
    decode_segments,
    detections_to_seconds,
    grid_to_seconds,
    postprocess,
    seconds_to_grid,
    soft_nms,
)

# ---------------------------------------------------------------------------------------------------
# plain-Python references


def reference_tiou(a: list[float], b: list[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0] + 1e-6) + (b[1] - b[0] + 1e-6) - inter)


def nms(iou_threshold, sigma, min_score, max_segments, method, multiclass=True) -> PostprocessConfig:
    return PostprocessConfig(
        iou_threshold=iou_threshold, sigma=sigma, min_score=min_score, max_segments=max_segments, method=method,
        multiclass=multiclass,
    )  # fmt: skip


def reference_soft_nms_one_group(candidates, iou_threshold, sigma, min_score, method):
    """ActionFormer's CPU loop on one group: [(start, end, score, label)] -> kept, in pick order."""
    remaining = [list(c) for c in candidates if c[2] >= min_score]
    kept = []
    while remaining:
        best = max(range(len(remaining)), key=lambda k: remaining[k][2])
        picked = remaining.pop(best)
        kept.append(tuple(picked))
        survivors = []
        for other in remaining:
            iou = reference_tiou(picked, other)
            if method == "gaussian":
                weight = math.exp(-(iou * iou) / sigma)
            elif method == "linear":
                weight = 1 - iou if iou >= iou_threshold else 1.0
            else:
                weight = 0.0 if iou >= iou_threshold else 1.0
            other[2] *= weight
            if other[2] >= min_score:
                survivors.append(other)
        remaining = survivors
    return kept


def reference_soft_nms(segments, scores, labels, iou_threshold, sigma, min_score, max_segments, method, multiclass):
    """ActionFormer's batched_nms: per class (or all together), cap each, then global sort and cap."""
    candidates = [(s, e, sc, lab) for (s, e), sc, lab in zip(segments, scores, labels, strict=True)]
    groups = sorted({c[3] for c in candidates}) if multiclass else [None]
    kept = []
    for group in groups:
        members = [c for c in candidates if group is None or c[3] == group]
        kept += reference_soft_nms_one_group(members, iou_threshold, sigma, min_score, method)[:max_segments]
    return sorted(kept, key=lambda c: -c[2])[:max_segments]


def reference_decode(cls_logits, offsets, masks, pre_nms_thresh, pre_nms_topk, duration_thresh):
    """ActionFormer's inference_single_video as loops: [(start, end, score, label)] per video."""
    results = []
    for video in range(cls_logits[0].shape[0]):
        found = []
        for level, (logits, level_offsets, mask) in enumerate(zip(cls_logits, offsets, masks, strict=True)):
            stride = 2**level
            candidates = []
            for position in range(logits.shape[1]):
                for label in range(logits.shape[2]):
                    score = 1 / (1 + math.exp(-logits[video, position, label].item())) * float(mask[video, position])
                    if score > pre_nms_thresh:
                        candidates.append((score, position, label))
            candidates = sorted(candidates, key=lambda c: -c[0])[:pre_nms_topk]
            for score, position, label in candidates:
                start = position * stride - level_offsets[video, position, 0].item() * stride
                end = position * stride + level_offsets[video, position, 1].item() * stride
                if end - start > duration_thresh:
                    found.append((start, end, score, label))
        results.append(found)
    return results


def as_rows(detections: Detections) -> list[tuple[float, float, float, int]]:
    return [
        (s, e, score, label)
        for (s, e), score, label in zip(
            detections.segments.tolist(), detections.scores.tolist(), detections.labels.tolist(), strict=True
        )
    ]


def assert_same_rows(actual, expected, atol: float = 1e-5):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got[3] == want[3]
        assert got[0] == pytest.approx(want[0], abs=1e-4) and got[1] == pytest.approx(want[1], abs=1e-4)
        assert got[2] == pytest.approx(want[2], abs=atol)


def random_candidates(seed: int, count: int = 300, classes: int = 4, device: str = "cpu"):
    generator = torch.Generator().manual_seed(seed)
    starts = torch.rand(count, generator=generator) * 100
    segments = torch.stack([starts, starts + 0.5 + torch.rand(count, generator=generator) * 20], dim=-1)
    scores = 0.0005 + torch.rand(count, generator=generator)
    labels = torch.randint(0, classes, (count,), generator=generator)
    return segments.to(device), scores.clamp(max=1).to(device), labels.to(device)


def random_head_outputs(seed: int, batch: int = 2, length: int = 32, levels: int = 3, classes: int = 4):
    generator = torch.Generator().manual_seed(seed)
    valid = torch.tensor([length, length - 11])[:batch]
    cls_logits, offsets, masks = [], [], []
    for level in range(levels):
        steps = length // 2**level
        cls_logits.append(torch.randn(batch, steps, classes, generator=generator) * 3 - 2)
        level_offsets = torch.rand(batch, steps, 2, generator=generator) * 4
        level_offsets[:, ::5] = 0.01  # too short to survive duration_thresh
        offsets.append(level_offsets)
        masks.append(torch.arange(steps)[None] * 2**level < valid[:, None])
    return cls_logits, offsets, masks


# ---------------------------------------------------------------------------------------------------
# Soft-NMS


@pytest.mark.parametrize("multiclass", [True, False])
@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
def test_soft_nms_matches_reference(method, multiclass):
    segments, scores, labels = random_candidates(seed=0)
    kept = soft_nms(segments, scores, labels, nms(0.1, 0.5, 0.001, 60, method, multiclass))
    expected = reference_soft_nms(
        segments.tolist(), scores.tolist(), labels.tolist(), 0.1, 0.5, 0.001, 60, method, multiclass
    )
    assert_same_rows(as_rows(kept), expected)


@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
def test_uncapped_soft_nms_keeps_every_survivor_once(method):
    segments, scores, labels = random_candidates(seed=1, count=80)
    kept = soft_nms(segments, scores, labels, nms(0.3, 0.5, 0.05, 1000, method))
    expected = reference_soft_nms(
        segments.tolist(), scores.tolist(), labels.tolist(), 0.3, 0.5, 0.05, 1000, method, True
    )
    assert_same_rows(as_rows(kept), expected)


@pytest.mark.parametrize("method, iou_threshold", [("gaussian", 0.1), ("linear", 0.0), ("hard", 0.0), ("hard", 0.5)])
def test_soft_nms_matches_reference_with_long_nested_and_touching_segments(method, iou_threshold):
    """Soft-NMS decays only the candidates that overlap a pick (found by their starts): segments spanning many
    others, segments inside others, segments that only touch, zero-length ones, and hard NMS at threshold 0
    (which drops non-overlapping candidates too) must all give the reference's result."""
    segments, scores, labels = random_candidates(seed=5, count=17 * 14, classes=3)
    segments[::17, 1] = segments[::17, 0] + 90  # long: they overlap candidates that start far after them
    segments[1::17] = segments[2::17].mean(dim=1, keepdim=True) + torch.tensor([-0.25, 0.25])  # nested
    segments[3::17, 0] = segments[4::17, 1]  # starts where another ends: tIoU 0
    segments[5::17, 1] = segments[5::17, 0]  # zero length
    kept = soft_nms(segments, scores, labels, nms(iou_threshold, 0.5, 0.001, 1000, method))
    expected = reference_soft_nms(
        segments.tolist(), scores.tolist(), labels.tolist(), iou_threshold, 0.5, 0.001, 1000, method, True
    )
    assert_same_rows(as_rows(kept), expected)


def test_soft_nms_breaks_ties_by_input_order():
    segments = torch.tensor([[0.0, 10.0], [40.0, 50.0], [0.0, 10.0], [60.0, 70.0], [20.0, 30.0]])
    scores = torch.tensor([0.5, 0.9, 0.9, 0.9, 0.5])
    labels = torch.tensor([1, 1, 0, 0, 1])
    for multiclass in (True, False):
        kept = soft_nms(segments, scores, labels, nms(0.1, 0.5, 0.001, 10, "hard", multiclass))
        assert [round(s) for s in kept.segments[:3, 0].tolist()] == [40, 0, 60]  # candidates 1, 2, 3


def test_soft_nms_drops_non_finite_candidates_and_they_do_not_vote():
    segments = torch.tensor([[0.0, 10.0], [1.0, 11.0], [2.0, float("nan")], [50.0, 60.0], [51.0, 61.0]])
    scores = torch.tensor([0.9, 0.5, 0.8, float("inf"), 0.7])
    labels = torch.zeros(5, dtype=torch.long)
    kept = soft_nms(segments, scores, labels, PostprocessConfig(method="hard", iou_threshold=0.5, voting_thresh=0.5))
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7])
    assert torch.isfinite(kept.segments).all()
    # [0, 10] votes with [1, 11] (0.5 / 1.4 of the weight); the NaN and infinite candidates take no part
    assert kept.segments.flatten().tolist() == pytest.approx([0.5 / 1.4, 10 + 0.5 / 1.4, 51.0, 61.0])


def test_gaussian_sigma_has_a_floor():
    with pytest.raises(ValueError, match="sigma"):
        PostprocessConfig(sigma=1e-50)


def test_soft_nms_output_is_sorted_by_score():
    kept = soft_nms(*random_candidates(seed=2))
    assert torch.all(kept.scores[:-1] >= kept.scores[1:])


def test_soft_nms_of_nothing_is_empty():
    kept = soft_nms(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert len(kept) == 0 and kept.segments.shape == (0, 2) and kept.labels.dtype == torch.long


def test_hard_nms_keeps_one_of_two_identical_segments_per_class():
    segments = torch.tensor([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    kept = soft_nms(segments, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), PostprocessConfig(method="hard"))
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7])
    assert kept.labels.tolist() == [0, 1]


def test_voting_averages_overlapping_same_class_segments_by_score():
    segments = torch.tensor([[0.0, 10.0], [1.0, 11.0], [0.0, 10.0], [50.0, 60.0]])
    scores = torch.tensor([0.9, 0.3, 0.5, 0.8])
    labels = torch.tensor([0, 0, 1, 0])
    kept = soft_nms(segments, scores, labels, PostprocessConfig(method="hard", voting_thresh=0.7))
    by_label_start = {
        (label, round(s)): (s, e) for (s, e), label in zip(kept.segments.tolist(), kept.labels.tolist(), strict=True)
    }
    assert by_label_start[(0, 0)] == pytest.approx((0.25, 10.25))  # (0.9 * 0 + 0.3 * 1) / 1.2
    assert by_label_start[(1, 0)] == pytest.approx((0.0, 10.0))  # the other class does not vote
    assert by_label_start[(0, 50)] == pytest.approx((50.0, 60.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_soft_nms_of_gpu_candidates_equals_cpu_and_ends_on_the_host():
    segments, scores, labels = random_candidates(seed=3, count=2000, classes=20)
    on_cpu = soft_nms(segments, scores, labels)
    on_gpu = soft_nms(segments.cuda(), scores.cuda(), labels.cuda())
    assert not on_gpu.segments.is_cuda  # postprocessing crosses to the host once, and stays there
    assert_same_rows(as_rows(on_gpu), as_rows(on_cpu))


# ---------------------------------------------------------------------------------------------------
# decoding


def test_decode_matches_reference():
    heads = random_head_outputs(seed=4)
    decoded = decode_segments(*heads, pre_nms_thresh=0.05, pre_nms_topk=25, duration_thresh=0.05)
    expected = reference_decode(*heads, pre_nms_thresh=0.05, pre_nms_topk=25, duration_thresh=0.05)
    assert len(decoded) == 2
    for video in range(2):
        assert_same_rows(as_rows(decoded[video]), expected[video], atol=1e-6)


def test_decode_ignores_masked_positions():
    cls_logits, offsets, masks = random_head_outputs(seed=5)
    confident_padding = [torch.where(m[..., None], c, 20.0) for c, m in zip(cls_logits, masks, strict=True)]
    expected = decode_segments(cls_logits, offsets, masks)
    for actual, wanted in zip(decode_segments(confident_padding, offsets, masks), expected, strict=True):
        assert_same_rows(as_rows(actual), as_rows(wanted), atol=0)


def test_decode_of_fully_masked_video_is_empty():
    cls_logits, offsets, masks = random_head_outputs(seed=6)
    masks = [torch.zeros_like(m) for m in masks]
    assert all(len(d) == 0 for d in decode_segments(cls_logits, offsets, masks))


# ---------------------------------------------------------------------------------------------------
# the chain, and seconds


@pytest.mark.parametrize("decode", ["votes", "crossings"])
def test_postprocess_snaps_to_bdr_fields_then_suppresses_duplicates(decode):
    truth = torch.tensor([[20.3, 41.7]])
    cls_logits = [torch.full((1, 64, 2), -10.0), torch.full((1, 32, 2), -10.0)]
    offsets = [torch.zeros(1, 64, 2), torch.zeros(1, 32, 2)]
    masks = [torch.ones(1, 64, dtype=torch.bool), torch.ones(1, 32, dtype=torch.bool)]
    cls_logits[0][0, 30, 1] = 4.0  # level 0, t = 30: proposes [21.5, 40.8]
    offsets[0][0, 30] = torch.tensor([8.5, 10.8])
    cls_logits[1][0, 15, 1] = 3.0  # level 1, t = 30: proposes [19.0, 42.5]
    offsets[1][0, 15] = torch.tensor([5.5, 6.25])
    fields = bdr_targets(truth, 64)[None]
    settings = PostprocessConfig(method="hard", bdr_decode=decode)
    (found,) = postprocess(cls_logits, offsets, masks, bdr_fields=fields, settings=settings)
    assert len(found) == 1 and found.labels.item() == 1
    torch.testing.assert_close(found.segments, truth, atol=1e-3, rtol=0)
    assert found.scores.item() == pytest.approx(torch.sigmoid(torch.tensor(4.0)).item())


def test_postprocess_votes_with_the_coarser_levels_when_asked():
    truth = torch.tensor([[20.0, 44.0]])
    cls_logits = [torch.full((1, 64, 2), -10.0), torch.full((1, 32, 2), -10.0)]
    offsets = [torch.zeros(1, 64, 2), torch.zeros(1, 32, 2)]
    masks = [torch.ones(1, 64, dtype=torch.bool), torch.ones(1, 32, dtype=torch.bool)]
    cls_logits[0][0, 32, 0] = 4.0
    offsets[0][0, 32] = torch.tensor([15.0, 9.0])  # proposes [17, 41]: 3 steps off at both ends
    level0 = bdr_targets(truth, 64)[None]
    level0[0, 36:] = 8.0  # level 0 knows nothing about the end ...
    level1 = bdr_targets(truth / 2, 32)[None]  # ... level 1 does
    single_scale = PostprocessConfig(bdr_decode="votes", bdr_scales=1)
    multi_scale = PostprocessConfig(bdr_decode="votes", bdr_scales=2)
    (single,) = postprocess(cls_logits, offsets, masks, bdr_fields=[level0, level1], settings=single_scale)
    (multi,) = postprocess(cls_logits, offsets, masks, bdr_fields=[level0, level1], settings=multi_scale)
    torch.testing.assert_close(single.segments, torch.tensor([[20.0, 41.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(multi.segments, truth, atol=1e-4, rtol=0)


def test_postprocess_settings_reject_an_unknown_bdr_decoding():
    with pytest.raises(ValueError, match="bdr_decode"):
        PostprocessConfig(bdr_decode="nearest")


def test_postprocess_of_empty_batch_entry_is_empty():
    cls_logits, offsets, masks = random_head_outputs(seed=7)
    cls_logits = [torch.full_like(c, -20.0) for c in cls_logits]
    results = postprocess(cls_logits, offsets, masks, bdr_fields=torch.zeros(2, 32, 2))
    assert [len(r) for r in results] == [0, 0]


def test_grid_and_seconds_are_inverse():
    grid = torch.tensor([0.0, 1.5, 100.25])
    seconds = grid_to_seconds(grid, fps=30.0, feat_stride=4, num_frames=16)
    torch.testing.assert_close(seconds[0], torch.tensor(8 / 30))
    torch.testing.assert_close(seconds_to_grid(seconds, fps=30.0, feat_stride=4, num_frames=16), grid)


def test_detections_to_seconds_clamps_to_video_duration():
    found = Detections(torch.tensor([[-3.0, 10.0], [40.0, 60.0]]), torch.tensor([0.9, 0.8]), torch.tensor([0, 1]))
    seconds = detections_to_seconds(found, fps=30.0, feat_stride=4, num_frames=16, duration=7.0)
    torch.testing.assert_close(seconds.segments, torch.tensor([[0.0, 48 / 30], [168 / 30, 7.0]]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_postprocess_of_gpu_outputs_equals_cpu():
    heads = random_head_outputs(seed=8)
    on_cpu = postprocess(*heads, bdr_fields=torch.zeros(2, 32, 2))
    on_gpu = postprocess(*[[t.cuda() for t in part] for part in heads], bdr_fields=torch.zeros(2, 32, 2).cuda())
    for cpu_result, gpu_result in zip(on_cpu, on_gpu, strict=True):
        assert not gpu_result.scores.is_cuda
        assert_same_rows(as_rows(gpu_result), as_rows(cpu_result))
