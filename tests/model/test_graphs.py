import math

import numpy as np
import pytest
import torch

from model.graphs import GraphedHead, bucket_count, bucket_length, count_buckets, padded_block_index
from model.tzn import TZN
from tests.model.conftest import small_config


def test_bucket_length_is_the_smallest_multiple_that_fits():
    for step in (1, 7, 256):
        for length in range(1, 600, 13):
            brute = next(b for b in range(step, 10_000, step) if b >= length)
            assert bucket_length(length, step) == brute


def test_count_buckets_cover_every_count_with_bounded_waste():
    for blocks in (1, 5, 72, 144):
        for levels in (1, 4, 8):
            buckets = count_buckets(blocks, levels)
            assert buckets == sorted(set(buckets)) and buckets[-1] == blocks
            for count in range(1, blocks + 1):
                size = bucket_count(count, buckets)
                assert size == min(b for b in buckets if b >= count)
                assert size - count < math.ceil(blocks / levels) + 1


def test_bucket_count_refuses_counts_beyond_the_largest_bucket():
    with pytest.raises(ValueError, match="exceeds"):
        bucket_count(9, [4, 8])


def test_padded_block_index_repeats_the_first_active_block():
    active = np.array([False, True, False, True, True, False])
    assert padded_block_index(active, 5).tolist() == [1, 3, 4, 1, 1]
    assert padded_block_index(active, 3).tolist() == [1, 3, 4]
    with pytest.raises(ValueError):
        padded_block_index(np.zeros(4, dtype=bool), 2)


def _spread_tau(model: TZN) -> TZN:
    """Random init predicts tau ~ 0.95 everywhere (nothing to skip): spread it so that layers skip blocks."""
    with torch.no_grad():
        model.tau_predictor.conv2.bias.fill_(-1.0)
        model.tau_predictor.conv2.weight.mul_(30.0)
    return model


def _assert_same_outputs(reference, output, length):
    for ours, theirs in zip(output.cls_logits, reference.cls_logits, strict=True):
        valid = theirs.shape[1]
        torch.testing.assert_close(ours[:, :valid], theirs, atol=2e-5, rtol=1e-4)
    for ours, theirs in zip(output.offsets + output.boundary, reference.offsets + reference.boundary, strict=True):
        torch.testing.assert_close(ours[:, : theirs.shape[1]], theirs, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(output.layer_masks[:, :length], reference.layer_masks[:, :length])


@pytest.mark.parametrize("atr", [True, False])
def test_bucketed_head_equals_hard_execution(atr):
    torch.manual_seed(0)
    model = TZN(small_config(atr=atr)).eval()
    if atr:
        _spread_tau(model)
    head = GraphedHead(model, length_step=64, count_levels=4, use_graphs=False)
    for length in (128, 192, 384):
        features, mask = torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool)
        with torch.no_grad():
            reference = model(features, mask, execution="hard")
        output = head(features, mask)
        assert output.padded_length == length
        _assert_same_outputs(reference, output, length)
        assert output.stem.active_positions.tolist() == reference.stem.active_positions.tolist()


def test_bucketed_head_pads_block_lists_and_counts_the_padding_as_executed():
    torch.manual_seed(1)
    model = _spread_tau(TZN(small_config()).eval())
    head = GraphedHead(model, length_step=64, count_levels=4, use_graphs=False)
    length = 512
    features, mask = torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool)
    with torch.no_grad():
        reference = model(features, mask, execution="hard")
    output = head(features, mask)
    _assert_same_outputs(reference, output, length)
    executed, exact = output.stem.executed_positions, reference.stem.executed_positions
    assert (executed >= exact).all()
    assert (executed < length).any(), "the test needs a layer that skips blocks"
    buckets = [size * 16 for size in count_buckets(length // 16, 4)] + [0, length]
    assert all(int(n) in buckets for n in executed)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("atr", [True, False])
def test_cuda_graph_replays_equal_eager_hard_execution(atr):
    torch.manual_seed(2)
    model = TZN(small_config(atr=atr)).eval().cuda()
    if atr:
        _spread_tau(model)
    head = GraphedHead(model, length_step=64, count_levels=4)
    assert head.use_graphs
    for length in (256, 256, 320, 256):  # replays of captured graphs, and a new bucket
        features = torch.randn(1, 24, length, device="cuda")
        mask = torch.ones(1, length, dtype=torch.bool, device="cuda")
        with torch.no_grad():
            reference = model(features, mask, execution="hard")
        _assert_same_outputs(reference, head(features, mask), length)


def test_bucketed_head_takes_a_tau_override_like_the_model():
    torch.manual_seed(3)
    model = TZN(small_config()).eval()
    head = GraphedHead(model, length_step=64, use_graphs=False, tau_override=True)
    length = 256
    features, mask = torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool)
    tau = (torch.arange(length) % 100 < 20).float()[None] * 0.9 + 0.05
    with torch.no_grad():
        reference = model(features, mask, execution="hard", tau_override=tau)
    output = head(features, mask, tau)
    _assert_same_outputs(reference, output, length)
    assert output.stem.active_positions.tolist() == reference.stem.active_positions.tolist()


@pytest.mark.parametrize("atr", [True, False])
def test_bucketed_head_reports_its_phases_in_order_without_changing_outputs(atr):
    torch.manual_seed(4)
    model = TZN(small_config(atr=atr)).eval()
    head = GraphedHead(model, length_step=64, use_graphs=False, tau_override=atr)
    length = 256
    features, mask = torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool)
    tau = None
    if atr:  # depth 1 outside [0, 64): layers 1.. skip blocks, and every layer runs somewhere
        tau = torch.where(torch.arange(length) < 64, 1.0, 0.0)[None]
    unmarked = head(features, mask, tau)
    phases = []
    head.on_phase = phases.append
    marked = head(features, mask, tau)
    _assert_same_outputs(unmarked, marked, length)
    layers = model.config.stem_layers
    stem = [f"stem {layer}" for layer in range(layers)] if atr else ["stem"]
    assert phases == ["start", "embed"] + (["sync"] if atr else []) + stem + ["heads"]


def test_bucketed_head_skips_the_boundary_head_when_asked():
    torch.manual_seed(5)
    model = _spread_tau(TZN(small_config()).eval())
    head = GraphedHead(model, length_step=64, use_graphs=False)
    length = 192
    features, mask = torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool)
    with torch.no_grad():
        reference = model(features, mask, execution="hard", boundary=False)
    without = head(features, mask, boundary=False)
    assert without.boundary == [] and reference.boundary == []
    _assert_same_outputs(reference, without, length)
    assert len(head(features, mask).boundary) == model.config.boundary_levels  # its own phase, built on demand
