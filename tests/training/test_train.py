import json
import math

import pytest
import torch

from model.atr import integer_depth_tau
from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from model.tzn import TZN
from training.config import ATRConfig, TrainConfig, TrainConfigError, load_config
from training.distill import align_level
from training.train import atr_target, learning_rate, load_state, parameter_groups, save_state
from tzn import main


def test_learning_rate_warms_up_linearly_then_follows_a_cosine():
    assert learning_rate(0, 100, 10, 1.0) == 0.0
    assert learning_rate(5, 100, 10, 1.0) == pytest.approx(0.5)
    assert learning_rate(10, 100, 10, 1.0) == pytest.approx(1.0)
    assert learning_rate(55, 100, 10, 1.0) == pytest.approx(0.5, abs=1e-6)
    assert learning_rate(100, 100, 10, 1.0) == pytest.approx(0.0, abs=1e-6)
    for step in range(11, 100):
        assert learning_rate(step, 100, 10, 1.0) <= learning_rate(step - 1, 100, 10, 1.0)


def test_rho_is_off_during_warm_up_then_ramps_from_one_to_the_target():
    atr = ATRConfig(rho=0.76, warmup_epochs=2, ramp_epochs=4)
    assert atr_target(1.99, atr) is None
    assert atr_target(2.0, atr) == pytest.approx(1.0)
    assert atr_target(4.0, atr) == pytest.approx(0.88)
    assert atr_target(9.0, atr) == pytest.approx(0.76)


def test_lambda_is_the_yaml_key_of_the_budget_weight(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("atr:\n  lambda: 3.5\n")
    config = load_config(path)
    assert config.atr.budget_weight == 3.5 and config.dump()["atr"]["lambda"] == 3.5


def test_thumos_config_has_the_actionformer_recipe():
    config = load_config("configs/thumos_i3d.yaml")
    model = config.model.build(input_dim=2048, num_classes=20)
    assert (model.embed_dim, model.n_head, model.n_mha_win_size) == (512, 4, 19)
    assert (config.data.max_seq_len, config.data.train_split, config.data.feat_stride) == (2304, "validation", 4)
    assert (config.optimizer.lr, config.optimizer.epochs, config.optimizer.warmup_epochs) == (1e-4, 35, 5)
    assert config.optimizer.batch_size == 2 and config.data.default_fps == 30


def test_invalid_model_section_is_reported_with_its_reason(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  embed_dim: 30\n  n_head: 4\n")
    with pytest.raises(TrainConfigError, match="model: .*not divisible"):
        load_config(path)


def test_a_named_backbone_without_the_features_rate_is_refused(tmp_path):
    """The service samples a checkpoint that names its backbone at its features' rate: the annotations' video
    frame rate (what ActionFormer falls back on) would be recorded instead, and served."""
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  backbone: resnet18-2d\n")
    with pytest.raises(TrainConfigError, match="set data.default_fps to the rate its features were sampled at"):
        load_config(path)
    path.write_text("data:\n  backbone: resnet18-2d\n  default_fps: 8.0\n")
    assert load_config(path).data.default_fps == 8.0


def test_yaml_syntax_error_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(TrainConfigError, match="not valid YAML"):
        load_config(path)


def test_no_weight_decay_on_biases_and_norms():
    model = TZN(ModelConfig(input_dim=8, num_classes=2, embed_dim=16, n_head=2, attn_block_size=16, tau_hidden=4))
    decay, no_decay = parameter_groups(model, 0.05)
    assert all(p.dim() >= 2 for p in decay["params"])
    assert any(p is model.reg_scales for p in no_decay["params"])
    assert sum(p.numel() for g in (decay, no_decay) for p in g["params"]) == sum(p.numel() for p in model.parameters())


def test_state_round_trip_restores_model_ema_and_optimizer(tmp_path):
    def build():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
        return model, torch.optim.AdamW(parameter_groups(model, 0.1), lr=0.01)

    model, optimizer = build()
    ema = build()[0]
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    save_state(tmp_path, model, ema, optimizer, {"epoch": 3})
    restored, restored_optimizer = build()
    restored_ema = build()[0]
    info = load_state(tmp_path, restored, restored_ema, restored_optimizer, "cpu")
    assert info["epoch"] == 3
    for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(optimizer.state.values(), restored_optimizer.state.values(), strict=True):
        assert all(torch.equal(a[key], b[key]) for key in a)
    assert restored_optimizer.param_groups[0]["weight_decay"] == 0.1


def test_state_files_are_safetensors_and_json(tmp_path):
    model, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    save_state(tmp_path, model, ema, torch.optim.AdamW(model.parameters()), {"epoch": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_state.json", "training_state.safetensors"]


def test_integer_depth_makes_every_layer_mask_binary():
    tau = torch.rand(2, 50, requires_grad=True)
    rounded = integer_depth_tau(tau, layers=6, min_depth=1.0)
    depth = 1 + 5 * rounded
    assert torch.allclose(depth, depth.round(), atol=1e-5)
    rounded.sum().backward()
    assert torch.allclose(tau.grad, torch.ones_like(tau))  # straight-through


def test_align_level_interpolates_between_teacher_positions():
    values = torch.arange(6, dtype=torch.float32)[:, None]
    aligned, valid = align_level(values, start=1.5, length=6)
    assert aligned[:4, 0].tolist() == [1.5, 2.5, 3.5, 4.5]
    assert valid.tolist() == [True, True, True, True, False, False]


def test_distillation_trains_an_integer_depth_student_from_a_cached_teacher(tiny_data, tiny_config, tmp_path):
    teacher_config = tiny_config(model={"atr": False}, optimizer={"epochs": 1})
    common = ["--annotations", str(tiny_data.annotations), "--features", str(tiny_data.features_dir)]
    assert main(["train", "--config", teacher_config, *common, "--output", str(tmp_path / "teacher")]) == 0
    student_config = tiny_config(optimizer={"epochs": 2})
    assert main(["train", "--config", student_config, *common, "--output", str(tmp_path / "student"),
                 "--distill-from", str(tmp_path / "teacher")]) == 0  # fmt: skip
    student = tmp_path / "student"
    assert (student / "teacher_cache.safetensors").is_file()
    log = [json.loads(line) for line in (student / "train_log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(entry["kd_cls"]) and math.isfinite(entry["kd_reg"]) for entry in log)
    _, config = load_checkpoint(student)
    assert config.model.integer_depth is True
    model, _ = load_checkpoint(student)
    features = torch.randn(1, 16, 100)
    with torch.no_grad():
        output = model(features, torch.ones(1, 100, dtype=torch.bool), execution="hard")
    depth = output.layer_masks[0, :100].sum(-1)
    assert torch.equal(depth, depth.round())


def test_default_config_is_valid():
    assert TrainConfig().model.build(2048, 20) == ModelConfig()
