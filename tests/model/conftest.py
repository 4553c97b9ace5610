import pytest
import torch

from model.config import ModelConfig
from model.tzn import TZN


def small_config(**overrides) -> ModelConfig:
    """A CPU-size TZN: 2-layer heads, d=32, 16-position attention blocks."""
    values = dict(input_dim=24, num_classes=5, embed_dim=32, n_head=4, attn_block_size=16, tau_hidden=8)
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture
def small_model() -> TZN:
    torch.manual_seed(0)
    return TZN(small_config()).eval()
