import numpy as np
import pytest
import yaml

from training.synthetic import ThumosStats, VideoTemplate, generate_synthetic_dataset

TINY_CONFIG = {
    "model": {
        "embed_dim": 16,
        "n_head": 2,
        "n_mha_win_size": 9,
        "attn_block_size": 16,
        "mlp_ratio": 2,
        "stem_layers": 3,
        "pyramid_levels": 4,
        "head_layers": 1,
        "tau_hidden": 8,
        "boundary_levels": 2,
    },
    "data": {"train_split": "validation", "feat_stride": 4, "num_frames": 16, "max_seq_len": 96},
    "optimizer": {"lr": 1e-3, "warmup_epochs": 0.5, "epochs": 2, "batch_size": 2, "ema_decay": 0.9},
    "atr": {"warmup_epochs": 1, "ramp_epochs": 1, "boundary_guidance_weight": 0.1, "boundary_guidance_epochs": 2},
    "postprocess": {"max_segments": 20},
    "seed": 0,
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Six short synthetic videos (~30 s, 16-d features, three classes), half for training, half for test."""
    stats = ThumosStats(
        videos=(VideoTemplate(30.0, {"Dive": 3}), VideoTemplate(25.0, {"Jump": 2, "Run": 1})),
        lengths_by_class={"Dive": np.array([1.0, 2.0]), "Jump": np.array([2.5, 4.0]), "Run": np.array([3.0, 5.0])},
    )
    root = tmp_path_factory.mktemp("tiny_data")
    return generate_synthetic_dataset(root, num_videos=6, feature_dim=16, stats=stats, test_fraction=0.5, seed=1)


@pytest.fixture
def tiny_config(tmp_path):
    def write(**section_overrides) -> str:
        config = {
            section: dict(values) if isinstance(values, dict) else values for section, values in TINY_CONFIG.items()
        }
        for section, values in section_overrides.items():
            config[section] = {**config.get(section, {}), **values}
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    return write
