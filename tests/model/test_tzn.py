import pytest
import torch

from model.config import ModelConfig
from model.tzn import TZN

from .conftest import small_config


@pytest.mark.parametrize("length", [1, 2, 31, 33, 100, 2305])
def test_any_length_gives_six_levels_with_halving_lengths(small_model, length):
    with torch.no_grad():
        out = small_model(torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool))
    assert out.padded_length % 32 == 0 and out.padded_length >= length
    assert [o.shape[1] for o in out.cls_logits] == [out.padded_length >> k for k in range(6)]
    assert out.cls_logits[0].shape[-1] == 5 and out.offsets[0].shape[-1] == 2
    assert len(out.boundary) == 3
    assert int(out.masks[0].sum()) == length
    assert all(bool((o >= 0).all()) for o in out.offsets)


def test_a_padded_batch_gives_each_video_what_it_gets_alone(small_model):
    lengths = [70, 200, 133]
    videos = [torch.randn(24, n) for n in lengths]
    features = torch.zeros(3, 24, 200)
    mask = torch.zeros(3, 200, dtype=torch.bool)
    for i, (video, n) in enumerate(zip(videos, lengths, strict=True)):
        features[i, :, :n], mask[i, :n] = video, True
    with torch.no_grad():
        batched = small_model(features, mask, "hard")
        for i, (video, n) in enumerate(zip(videos, lengths, strict=True)):
            alone = small_model(video[None], torch.ones(1, n, dtype=torch.bool), "hard")
            for level, (b, a) in enumerate(zip(batched.cls_logits, alone.cls_logits, strict=True)):
                valid = alone.masks[level][0]
                assert torch.allclose(b[i, : valid.shape[0]][valid], a[0][valid], atol=1e-5)


def test_uniform_model_has_no_tau_and_full_masks():
    model = TZN(small_config(atr=False)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 24, 50), torch.ones(1, 50, dtype=torch.bool), "hard")
    assert out.tau is None and model.tau_predictor is None
    assert torch.all(out.layer_masks[0, :50] == 1)
    assert out.stem.executed_positions.tolist() == [64] * 6


def test_wrong_feature_channels_name_both_numbers(small_model):
    with pytest.raises(ValueError, match="features have 7 channels, the model expects 24"):
        small_model(torch.randn(1, 7, 10), torch.ones(1, 10, dtype=torch.bool))


def test_thumos_size_config_builds_the_actionformer_sizes():
    config = ModelConfig()
    assert (config.input_dim, config.embed_dim, config.n_head, config.n_mha_win_size) == (2048, 512, 4, 19)
    assert (config.stem_layers, config.pyramid_levels, config.max_stride) == (6, 6, 32)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"embed_dim": 30, "n_head": 4}, "not divisible"),
        ({"n_mha_win_size": 18}, "must be odd"),
        ({"attn_block_size": 4, "n_mha_win_size": 19}, "half the window"),
        ({"boundary_levels": 7}, "exceeds pyramid_levels"),
        ({"embed_dimension": 64}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_configs_are_rejected_with_the_reason(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**overrides)


def test_input_statistics_standardize_features_before_the_embedding():
    torch.manual_seed(0)
    model = TZN(small_config()).eval()
    features = torch.randn(1, 24, 40) * 3 + 5
    mean, std = torch.full((24,), 5.0), torch.full((24,), 3.0)
    reference = TZN(small_config()).eval()
    reference.load_state_dict(model.state_dict())
    model.set_input_statistics(mean, std)
    mask = torch.ones(1, 40, dtype=torch.bool)
    with torch.no_grad():
        standardized = reference(((features - 5) / 3), mask).cls_logits[0]
        assert torch.allclose(model(features, mask).cls_logits[0], standardized, atol=1e-5)
    unchanged = TZN(small_config(standardize_input=False))
    unchanged.set_input_statistics(mean, std)
    assert torch.equal(unchanged.input_mean, torch.zeros(24))


def test_a_detached_boundary_head_trains_itself_but_not_the_trunk():
    torch.manual_seed(0)
    features, mask = torch.randn(1, 24, 64), torch.ones(1, 64, dtype=torch.bool)
    grads = {}
    for detach in (False, True):
        model = TZN(small_config(boundary_head="bdr", boundary_detach=detach))
        output = model(features, mask)
        sum(field.square().sum() for field in output.boundary).backward()
        grads[detach] = (model.embed[0].conv.weight.grad, model.boundary_head.out.conv.weight.grad)
    trunk, head = grads[False]
    assert trunk is not None and trunk.abs().sum() > 0 and head.abs().sum() > 0
    trunk, head = grads[True]
    assert (trunk is None or trunk.abs().sum() == 0) and head.abs().sum() > 0


@pytest.mark.parametrize("atr", [True, False])
def test_forward_is_its_public_phases_in_order(atr):
    """model/graphs.py runs these same methods; forward must not compute anything they do not."""
    torch.manual_seed(0)
    model = TZN(small_config(atr=atr)).eval()
    model.set_input_statistics(torch.randn(24), torch.rand(24) + 0.5)
    features, mask = torch.randn(2, 24, 70), torch.ones(2, 70, dtype=torch.bool)
    mask[1, 50:] = False
    with torch.no_grad():
        output = model(features, mask, execution="hard")
        padded_mask = torch.zeros(2, 96, dtype=torch.bool)
        padded_mask[:, :70] = mask
        embedding = model.embedding(torch.cat([features, torch.zeros(2, 24, 26)], dim=2), padded_mask)
        tau, layer_masks = model.depth(embedding, padded_mask)
        stem_out, _ = model.stem(embedding.transpose(1, 2), padded_mask, layer_masks, "hard")
        cls_logits, offsets, _, boundary = model.pyramid_and_heads(stem_out, padded_mask)
    assert embedding.shape == (2, 32, 96) and (tau is None) == (not atr)
    phases, whole = cls_logits + offsets + boundary, output.cls_logits + output.offsets + output.boundary
    assert len(phases) == len(whole) and all(torch.equal(a, b) for a, b in zip(phases, whole, strict=True))
