import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from model.flops import output_flops, uniform_head_flops
from model.tzn import TZN

from .conftest import small_config


def counted_flops(model: TZN, features, mask, **kwargs):
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        output = model(features, mask, **kwargs)
    return counter.get_total_flops(), output


@pytest.mark.parametrize("length, batch", [(300, 1), (1000, 2)])
def test_uniform_flops_match_flop_counter(length, batch):
    model = TZN(small_config(atr=False)).eval()
    measured, output = counted_flops(model, torch.randn(batch, 24, length), torch.ones(batch, length, dtype=bool))
    analytic = output_flops(model.config, output, batch).total
    assert abs(analytic - measured) / measured < 0.02
    assert analytic == uniform_head_flops(model.config, batch, output.padded_length).total


def test_hard_skip_flops_match_flop_counter_for_a_fixed_mask_pattern():
    model = TZN(small_config()).eval()
    length = 800
    tau = torch.zeros(1, length)
    tau[0, 100:180] = 1.0
    tau[0, 500:520] = 0.5
    measured, output = counted_flops(
        model, torch.randn(1, 24, length), torch.ones(1, length, dtype=bool), execution="hard", tau_override=tau
    )
    analytic = output_flops(model.config, output, 1)
    assert abs(analytic.total - measured) / measured < 0.02
    uniform = uniform_head_flops(model.config, 1, output.padded_length)
    assert analytic.stem < 0.5 * uniform.stem  # the skipped work was really not done


def test_soft_execution_counts_every_layer_everywhere():
    model = TZN(small_config()).eval()
    tau = torch.zeros(1, 200)
    measured, output = counted_flops(
        model, torch.randn(1, 24, 200), torch.ones(1, 200, dtype=bool), execution="soft", tau_override=tau
    )
    analytic = output_flops(model.config, output, 1)
    assert abs(analytic.total - measured) / measured < 0.02
    assert analytic.total > uniform_head_flops(model.config, 1, output.padded_length).total  # plus tau predictor


def test_a_forward_without_the_boundary_head_skips_its_flops_and_nothing_else():
    model = TZN(small_config(boundary_head="bdr")).eval()
    features, mask = torch.randn(1, 24, 600), torch.ones(1, 600, dtype=bool)
    tau = torch.rand(1, 600)
    with_fields, full = counted_flops(model, features, mask, execution="hard", tau_override=tau)
    without_fields, bare = counted_flops(model, features, mask, execution="hard", tau_override=tau, boundary=False)
    assert bare.boundary == [] and len(full.boundary) == model.config.boundary_levels
    for a, b in zip(full.cls_logits + full.offsets, bare.cls_logits + bare.offsets, strict=True):
        assert torch.equal(a, b)
    analytic_full, analytic_bare = output_flops(model.config, full, 1), output_flops(model.config, bare, 1)
    assert abs(analytic_bare.total - without_fields) / without_fields < 0.02
    # exactly the boundary head's convolutions are gone
    assert analytic_full.total - analytic_bare.total == analytic_full.heads - analytic_bare.heads > 0
    assert with_fields - without_fields == pytest.approx(analytic_full.heads - analytic_bare.heads, rel=0.02)
    uniform = uniform_head_flops(model.config, 1, bare.padded_length, boundary=False)
    assert uniform.heads == analytic_bare.heads
