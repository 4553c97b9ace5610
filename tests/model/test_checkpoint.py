import json

import pytest
import torch

from model.checkpoint import CheckpointConfig, CheckpointError, label_id, load_checkpoint, save_checkpoint
from model.tzn import TZN

from .conftest import small_config

LABELS = ["a", "b", "c", "d", "e"]


@pytest.fixture
def checkpoint_dir(tmp_path, small_model):
    return save_checkpoint(small_model, tmp_path / "run", CheckpointConfig(model=small_model.config, labels=LABELS))


def test_round_trip_restores_config_labels_and_outputs(checkpoint_dir, small_model):
    loaded, config = load_checkpoint(checkpoint_dir)
    assert config.labels == LABELS and loaded.config == small_model.config
    features, mask = torch.randn(1, 24, 90), torch.ones(1, 90, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(loaded(features, mask).cls_logits[0], small_model(features, mask).cls_logits[0])


def test_checkpoint_is_safetensors_and_json_not_pickle(checkpoint_dir):
    assert sorted(p.name for p in checkpoint_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((checkpoint_dir / "config.json").read_text())["format"] == "tzn-checkpoint/1"


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")


def test_truncated_weights_name_the_file(checkpoint_dir):
    weights = checkpoint_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable safetensors file"):
        load_checkpoint(checkpoint_dir)


def test_garbage_weights_name_the_file(checkpoint_dir):
    (checkpoint_dir / "model.safetensors").write_bytes(b"\x80\x04pickle, not safetensors" * 10)
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        load_checkpoint(checkpoint_dir)


def test_malformed_config_json_names_the_file(checkpoint_dir):
    (checkpoint_dir / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: invalid config"):
        load_checkpoint(checkpoint_dir)


def test_unknown_config_key_is_an_error(checkpoint_dir):
    config = json.loads((checkpoint_dir / "config.json").read_text())
    config["model"]["n_heads"] = 8
    (checkpoint_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model.n_heads: Extra inputs"):
        load_checkpoint(checkpoint_dir)


def test_weights_of_another_model_are_a_mismatch(checkpoint_dir):
    other = TZN(small_config(embed_dim=64))
    save_checkpoint(other, checkpoint_dir.parent / "other", CheckpointConfig(model=other.config, labels=LABELS))
    (checkpoint_dir / "model.safetensors").write_bytes(
        (checkpoint_dir.parent / "other" / "model.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match="does not match the model described by config.json: .*wrong shapes"):
        load_checkpoint(checkpoint_dir)


def test_label_count_must_match_num_classes(small_model):
    with pytest.raises(ValueError, match="3 labels for a model with num_classes=5"):
        CheckpointConfig(model=small_model.config, labels=["a", "b", "c"])


def test_label_ids_must_name_each_label_once(small_model):
    with pytest.raises(ValueError, match="4 label_ids for 5 labels"):
        CheckpointConfig(model=small_model.config, labels=LABELS, label_ids=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="repeat an id"):
        CheckpointConfig(model=small_model.config, labels=LABELS, label_ids=[1, 2, 3, 4, 4])


def test_label_id_is_the_annotations_id_else_the_index(small_model):
    with_ids = CheckpointConfig(model=small_model.config, labels=LABELS, label_ids=[10, 20, 30, 40, 50])
    assert [label_id(with_ids, i) for i in range(5)] == [10, 20, 30, 40, 50]
    assert [label_id(CheckpointConfig(model=small_model.config, labels=LABELS), i) for i in range(5)] == [0, 1, 2, 3, 4]


def test_postprocess_saved_in_metadata_by_older_checkpoints_becomes_the_typed_section(checkpoint_dir):
    path = checkpoint_dir / "config.json"
    raw = json.loads(path.read_text())
    del raw["postprocess"]
    raw["metadata"] = {"postprocess": {"max_segments": 7, "sigma": 0.25}, "name": "old"}
    path.write_text(json.dumps(raw))
    _, config = load_checkpoint(checkpoint_dir)
    assert config.postprocess.max_segments == 7 and config.postprocess.sigma == 0.25
    assert config.metadata == {"name": "old"}


def test_an_unknown_postprocess_key_fails_at_load_naming_it(checkpoint_dir):
    path = checkpoint_dir / "config.json"
    raw = json.loads(path.read_text())
    raw["postprocess"]["iou_treshold"] = 0.3
    path.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"postprocess\.iou_treshold: Extra inputs are not permitted"):
        load_checkpoint(checkpoint_dir)
