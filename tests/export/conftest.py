from pathlib import Path

import pytest
import torch

from export.onnx import export_checkpoint, export_model
from model.checkpoint import CheckpointConfig, FeatureSpec, save_checkpoint
from model.tzn import TZN
from tests.model.conftest import small_config

LABELS = ["BaseballPitch", "CliffDiving", "Diving", "GolfSwing", "HighJump"]
LABEL_IDS = [7, 9, 11, 14, 17]  # THUMOS14's ids of these classes


def small_checkpoint(directory: Path, seed: int = 0, **overrides) -> Path:
    """A CPU-size model with random weights, saved as a checkpoint directory."""
    torch.manual_seed(seed)
    config = small_config(**overrides)
    model = TZN(config).eval()
    spec = FeatureSpec(feat_stride=4, num_frames=16, default_fps=30.0, backbone="i3d")
    checkpoint = CheckpointConfig(model=config, labels=LABELS, label_ids=LABEL_IDS, features=spec)
    return save_checkpoint(model, directory, checkpoint)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return small_checkpoint(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="session")
def onnx_path(checkpoint_dir, tmp_path_factory) -> Path:
    return export_checkpoint(checkpoint_dir, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="session")
def tau_onnx(tmp_path_factory):
    """(model, path) of a test export with a tau_override input, to force depth patterns."""
    torch.manual_seed(1)
    config = small_config()
    model = TZN(config).eval()
    path = tmp_path_factory.mktemp("onnx_tau") / "model_tau.onnx"
    return model, export_model(model, CheckpointConfig(model=config, labels=LABELS), path, tau_input=True)
