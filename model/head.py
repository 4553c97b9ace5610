"""The detector head as every runtime serves it: `head(features, mask) -> TZNOutput`, and the torch head.

    head = TorchHead.from_checkpoint("runs/demo")               # service/runners.py adds the onnxruntime
    out = head(features, mask)                                  #    and TensorRT heads, same call
    head.config, head.labels, head.features, head.checkpoint_sha256

features (B, C, T) float and mask (B, T) bool are torch tensors (any device); the output lives on
`head.device`. Every runtime runs the hard ATR path unless told otherwise (`TorchHead(execution="soft")`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from model.atr import Execution
from model.checkpoint import WEIGHTS_NAME, CheckpointConfig, FeatureSpec, file_sha256, load_checkpoint
from model.config import ModelConfig, PostprocessConfig
from model.graphs import GraphedHead
from model.tzn import TZN, TZNOutput


class HeadError(Exception):
    """A head that cannot be loaded here (missing file, wrong runtime, no GPU); the message says what to do."""


class Head:
    """A loaded detector head; call it like the model. Subclasses implement `run`."""

    runtime: str = ""

    def __init__(self, checkpoint: CheckpointConfig, checkpoint_sha256: str, device: torch.device):
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256
        self.device = device

    @property
    def config(self) -> ModelConfig:
        return self.checkpoint.model

    @property
    def labels(self) -> list[str]:
        return self.checkpoint.labels

    @property
    def features(self) -> FeatureSpec:
        return self.checkpoint.features

    @property
    def postprocess(self) -> PostprocessConfig:
        """The training run's decoding and Soft-NMS settings (the checkpoint's postprocess section)."""
        return self.checkpoint.postprocess

    def __call__(self, features: Tensor, mask: Tensor, fields: bool = True) -> TZNOutput:
        """fields=False: the caller needs no boundary fields. The boundary head then runs only when the decoding
        uses them (postprocess.snap); a head that can skip it does (the PyTorch model, eager or as CUDA graphs),
        an exported graph computes the fields anyway."""
        if features.dim() != 3 or mask.shape != (features.shape[0], features.shape[2]):
            raise ValueError(
                f"expected features (B, C, T) and mask (B, T), got {tuple(features.shape)} and {tuple(mask.shape)}"
            )
        if features.shape[1] != self.config.input_dim:
            raise ValueError(f"features have {features.shape[1]} channels, the model expects {self.config.input_dim}")
        return self.run(features, mask.to(torch.bool), boundary=fields or self.postprocess.snap)

    def run(self, features: Tensor, mask: Tensor, boundary: bool = True) -> TZNOutput:
        raise NotImplementedError


class TorchHead(Head):
    """The PyTorch model itself, in eval mode, without autograd."""

    runtime = "torch"

    def __init__(
        self,
        model: TZN,
        checkpoint: CheckpointConfig,
        checkpoint_sha256: str = "",
        device: torch.device | None = None,
        execution: Execution = "hard",
        graphs: bool = False,
    ):
        """graphs: on CUDA, batch-1 hard execution replays CUDA graphs over bucketed lengths and active-block
        counts (model/graphs.py); the same outputs on the valid positions, without kernel-launch overhead."""
        device = device if device is not None else next(model.parameters()).device
        super().__init__(checkpoint, checkpoint_sha256, device)
        self.model = model.to(device).eval()
        self.execution = execution
        use_graphs = graphs and torch.device(device).type == "cuda" and execution == "hard"
        self.graphed = GraphedHead(self.model) if use_graphs else None

    @classmethod
    def from_checkpoint(
        cls, directory: str | Path, device: str | torch.device = "cpu", execution: Execution = "hard",
        graphs: bool = False,
    ) -> TorchHead:  # fmt: skip
        """Loads a checkpoint directory (config.json + model.safetensors) onto `device`."""
        device = torch.device(device)
        model, checkpoint = load_checkpoint(directory, device)
        return cls(model, checkpoint, file_sha256(Path(directory) / WEIGHTS_NAME), device, execution, graphs)

    def run(self, features: Tensor, mask: Tensor, boundary: bool = True) -> TZNOutput:
        if self.graphed is not None and features.shape[0] == 1:
            return self.graphed(features.to(self.device, torch.float32), mask.to(self.device), boundary=boundary)
        with torch.inference_mode():
            return self.model(
                features.to(self.device, torch.float32), mask.to(self.device), execution=self.execution,
                boundary=boundary,
            )  # fmt: skip
