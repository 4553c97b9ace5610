import math

import pytest
import torch

from model.atr import block_mean, depth_masks, executed_fraction
from model.tzn import TZN

from .conftest import small_config


def test_depth_masks_equal_a_loop_over_positions_and_layers():
    tau = torch.rand(3, 17)
    masks = depth_masks(tau, layers=6, min_depth=1.0)
    for b in range(3):
        for t in range(17):
            depth = 1.0 + tau[b, t].item() * 5
            for layer in range(6):
                expected = min(max(depth - layer, 0.0), 1.0)
                assert abs(masks[b, t, layer].item() - expected) < 1e-6


def test_depth_masks_sum_to_the_depth():
    tau = torch.rand(2, 50)
    assert torch.allclose(depth_masks(tau, 6, 1.0).sum(-1), 1 + 5 * tau, atol=1e-5)


def boundary_shaped_tau(length: int, generator: torch.Generator) -> torch.Tensor:
    """Deep around a few random boundaries, 0 elsewhere: the pattern ATR is meant to produce."""
    positions = torch.arange(length, dtype=torch.float32)
    boundaries = torch.rand(max(1, length // 200), generator=generator) * length
    distance = (positions[:, None] - boundaries[None]).abs().min(dim=1).values
    return (1 - distance / 12).clamp(min=0)


def max_output_difference(a, b) -> float:
    diffs = []
    for left, right, masks in [(a.cls_logits, b.cls_logits, a.masks), (a.offsets, b.offsets, a.masks)]:
        for x, y, m in zip(left, right, masks, strict=True):
            diffs.append((x - y)[m].abs().max().item() if m.any() else 0.0)
    for x, y, m in zip(a.boundary, b.boundary, a.masks, strict=False):
        diffs.append((x - y)[m].abs().max().item() if m.any() else 0.0)
    return max(diffs)


@pytest.mark.parametrize("length", [1, 37, 255, 4100])
@pytest.mark.parametrize("pattern", ["zeros", "ones", "random", "boundary"])
def test_hard_skip_equals_soft_masks(length, pattern):
    torch.manual_seed(1)
    model = TZN(small_config()).eval()
    generator = torch.Generator().manual_seed(length)
    features = torch.randn(2, 24, length, generator=generator)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, (length + 1) // 2 :] = False
    tau = {
        "zeros": torch.zeros(2, length),
        "ones": torch.ones(2, length),
        "random": torch.rand(2, length, generator=generator),
        "boundary": torch.stack([boundary_shaped_tau(length, generator) for _ in range(2)]),
    }[pattern]
    with torch.no_grad():
        soft = model(features, mask, execution="soft", tau_override=tau)
        hard = model(features, mask, execution="hard", tau_override=tau)
    assert max_output_difference(soft, hard) <= 1e-5
    assert torch.equal(soft.stem.active_positions, hard.stem.active_positions)


def test_hard_skip_equals_soft_with_predicted_tau():
    torch.manual_seed(2)
    model = TZN(small_config()).eval()
    features, mask = torch.randn(1, 24, 500), torch.ones(1, 500, dtype=torch.bool)
    with torch.no_grad():
        assert max_output_difference(model(features, mask, "soft"), model(features, mask, "hard")) <= 1e-5


def test_hard_skip_runs_only_blocks_with_active_positions():
    torch.manual_seed(3)
    model = TZN(small_config(attn_block_size=16)).eval()
    length = 640
    tau = torch.zeros(1, length)
    tau[0, 100:110] = 1.0  # one deep region inside block 6
    with torch.no_grad():
        hard = model(torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool), "hard", tau_override=tau)
        soft = model(torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool), "soft", tau_override=tau)
    executed = hard.stem.executed_positions.tolist()
    assert executed[0] == length  # D_min = 1: the first layer runs everywhere
    assert executed[1:] == [16] * 5  # every deeper layer runs one 16-position block
    assert hard.stem.active_positions.tolist() == [length] + [10] * 5
    assert soft.stem.executed_positions.tolist() == [length] * 6


def test_full_depth_runs_every_layer_everywhere():
    model = TZN(small_config()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 24, 100), torch.ones(1, 100, dtype=torch.bool), full_depth=True)
    assert torch.all(out.layer_masks[0, :100] == 1)
    assert out.tau is not None


def test_soft_masks_pass_gradients_to_the_tau_predictor():
    model = TZN(small_config()).train()
    out = model(torch.randn(2, 24, 64), torch.ones(2, 64, dtype=torch.bool), "soft")
    out.cls_logits[0].sum().backward()
    gradient = model.tau_predictor.conv2.weight.grad
    assert gradient is not None and gradient.abs().sum() > 0


def test_integer_depth_gives_binary_layer_masks_and_whole_depths():
    torch.manual_seed(4)
    model = TZN(small_config(integer_depth=True)).eval()
    features, mask = torch.randn(1, 24, 300), torch.ones(1, 300, dtype=torch.bool)
    with torch.no_grad():
        soft, hard = model(features, mask, "soft"), model(features, mask, "hard")
    masks = soft.layer_masks[0, :300]
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(masks.sum(-1), masks.sum(-1).round())
    assert max_output_difference(soft, hard) <= 1e-5


def test_integer_depth_passes_the_continuous_gradient_in_training():
    model = TZN(small_config(integer_depth=True)).train()
    out = model(torch.randn(2, 24, 64), torch.ones(2, 64, dtype=torch.bool), "soft")
    out.tau.sum().backward()
    assert model.tau_predictor.conv2.weight.grad.abs().sum() > 0


def test_block_mean_equals_a_loop_over_the_valid_positions_of_each_block():
    values, mask = torch.rand(2, 70), torch.ones(2, 70, dtype=torch.bool)
    mask[1, 40:] = False
    pooled = block_mean(values, mask, 16)
    for b in range(2):
        for t in range(70):
            start = t // 16 * 16
            inside = [values[b, u].item() for u in range(start, min(start + 16, 70)) if mask[b, u]]
            expected = sum(inside) / len(inside) if mask[b, t] else 0.0
            assert pooled[b, t].item() == pytest.approx(expected, abs=1e-6)


def test_executed_fraction_counts_ceil_of_the_deepest_position_per_valid_block():
    depth, mask = 1 + 5 * torch.rand(2, 70), torch.ones(2, 70, dtype=torch.bool)
    mask[1, 40:] = False
    expected, blocks = 0.0, 0
    for b in range(2):
        for start in range(0, 70, 16):
            valid = mask[b, start : start + 16]
            if not valid.any():
                continue
            blocks += 1
            expected += math.ceil(depth[b, start : start + 16][valid].max().item())
    assert executed_fraction(depth, mask, 16, 6).item() == pytest.approx(expected / (blocks * 6), rel=1e-6)


def test_executed_fraction_passes_a_gradient_to_the_depth():
    depth = torch.full((1, 32), 3.0, requires_grad=True)
    executed_fraction(depth, torch.ones(1, 32, dtype=torch.bool), 16, 6).backward()
    assert depth.grad.abs().sum() > 0


def test_block_depth_makes_the_trained_fraction_what_hard_execution_runs():
    torch.manual_seed(5)
    model = TZN(small_config(block_depth=True, attn_block_size=16)).eval()
    with torch.no_grad():
        model.tau_predictor.conv2.bias.fill_(-1.0)
        features, mask = torch.randn(1, 24, 320), torch.ones(1, 320, dtype=torch.bool)
        soft, hard = model(features, mask, "soft"), model(features, mask, "hard")
    masks = soft.layer_masks[0].reshape(-1, 16, soft.layer_masks.shape[-1])
    assert torch.equal(masks, masks[:, :1].expand_as(masks))  # one depth per block
    executed_share = hard.stem.executed_positions.sum().item() / (320 * 6)
    depth = 1 + 5 * soft.tau
    assert executed_fraction(depth, soft.masks[0], 16, 6).item() == pytest.approx(executed_share)
    assert executed_share < 1.0
    assert max_output_difference(soft, hard) <= 1e-5
