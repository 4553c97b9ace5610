"""experiments/trained_tau.py: the trained tau that bench/device/gpu_table.py times on the GPU, and the file shipped with it."""

import json

import numpy as np
import pytest
import torch

from experiments.trained_tau import DEFAULT_PATH, load_trained_tau, save_trained_tau, trained_tau
from model.checkpoint import CheckpointConfig, save_checkpoint
from model.config import ModelConfig
from model.tzn import TZN


def test_the_shipped_tau_is_a_trained_block_depth_models_and_fits_the_gpu_tables_lengths():
    tau, metadata = load_trained_tau(DEFAULT_PATH)
    assert tau.shape == (metadata["windows"], metadata["length"]) and metadata["length"] >= 4608
    assert metadata["stem_layers"] == ModelConfig().stem_layers
    depth = metadata["min_depth"] + tau * (metadata["stem_layers"] - metadata["min_depth"])
    # a trained ATR model skips: shallower than dense on average, and not the same depth everywhere
    assert metadata["min_depth"] <= depth.mean() < metadata["stem_layers"] - 1
    assert depth.std() > 0.1
    if metadata["block_depth"]:  # one depth per attention block, as hard execution runs it
        blocks = tau.reshape(tau.shape[0], -1, metadata["attn_block_size"])
        assert np.allclose(blocks, blocks[..., :1], atol=1e-6)


def test_trained_tau_is_the_models_tau_on_test_windows(tmp_path):
    config = ModelConfig(input_dim=8, num_classes=2, embed_dim=16, n_head=2, tau_hidden=8, block_depth=True)
    torch.manual_seed(0)
    model = TZN(config).eval()
    run = save_checkpoint(model, tmp_path / "run", CheckpointConfig(model=config, labels=["a", "b"]))
    data = tmp_path / "data"
    (data / "features").mkdir(parents=True)
    database = {}
    for index, (subset, steps) in enumerate([("test", 300), ("validation", 200), ("test", 500)]):
        name = f"video_{index}"
        np.save(
            data / "features" / f"{name}.npy", np.random.default_rng(index).normal(size=(steps, 8)).astype(np.float32)
        )
        database[name] = {"subset": subset, "duration": steps / 7.5, "fps": 30.0, "annotations": []}
    (data / "annotations.json").write_text(json.dumps({"database": database}))

    tau, metadata = trained_tau(run, data, windows=2, length=256)
    assert tau.shape == (2, 256) and metadata["block_depth"] is True and metadata["min_depth"] == 1.0
    # the first window starts at the first test video, followed by the second test video (the validation one
    # is not part of the test stream)
    stream = np.concatenate([np.load(data / "features" / f"video_{i}.npy") for i in (0, 2)])
    with torch.inference_mode():
        expected = model(torch.from_numpy(stream[:256].T.copy())[None], torch.ones(1, 256, dtype=torch.bool)).tau
    np.testing.assert_allclose(tau[0], expected[0].numpy(), atol=1e-6)

    save_trained_tau(tmp_path / "tau.npz", tau, metadata)
    loaded, loaded_metadata = load_trained_tau(tmp_path / "tau.npz")
    np.testing.assert_array_equal(loaded, tau)
    assert loaded_metadata == metadata


def test_a_uniform_checkpoint_has_no_tau(tmp_path):
    config = ModelConfig(input_dim=8, num_classes=2, embed_dim=16, n_head=2, atr=False)
    run = save_checkpoint(TZN(config), tmp_path / "run", CheckpointConfig(model=config, labels=["a", "b"]))
    with pytest.raises(ValueError, match="uniform model"):
        trained_tau(run, tmp_path, windows=1, length=64)


@pytest.mark.parametrize("bad", [np.full((1, 64), 1.5, np.float32), np.full((1, 64), np.nan, np.float32)])
def test_a_tau_file_out_of_range_or_with_nan_is_refused(tmp_path, bad):
    save_trained_tau(tmp_path / "tau.npz", bad, {"windows": 1, "length": 64, "stem_layers": 6, "min_depth": 1.0})
    with pytest.raises(ValueError, match=r"finite and in \[0, 1\]"):
        load_trained_tau(tmp_path / "tau.npz")
