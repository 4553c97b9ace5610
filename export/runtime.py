"""One call signature for every runtime: `head(features, mask) -> model.tzn.TZNOutput`.

    head = load_head("onnxruntime", onnx="model.onnx")          # or "torch" + checkpoint=RUN_DIR,
    out = head(features, mask)                                  #    or "tensorrt" + engine=model.plan
    head.config, head.labels, head.features, head.checkpoint_sha256

features (B, C, T) float and mask (B, T) bool are torch tensors (any device); the output lives on
`head.device`. An ONNX file or engine carries the checkpoint's config, labels and feature spec, so no
checkpoint directory is needed to serve it. Every runtime runs the hard ATR path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from export.onnx import ExportError
from model.atr import StemStats
from model.attention import pad_to_multiple
from model.checkpoint import WEIGHTS_NAME, CheckpointConfig, FeatureSpec, file_sha256, load_checkpoint
from model.config import ModelConfig
from model.tzn import TZNOutput

Runtime = Literal["torch", "onnxruntime", "tensorrt"]


class Head:
    """A loaded detector head; call it like the model in hard mode. Subclasses implement `run`."""

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

    def __call__(self, features: Tensor, mask: Tensor) -> TZNOutput:
        if features.dim() != 3 or mask.shape != (features.shape[0], features.shape[2]):
            raise ValueError(
                f"expected features (B, C, T) and mask (B, T), got {tuple(features.shape)} and {tuple(mask.shape)}"
            )
        if features.shape[1] != self.config.input_dim:
            raise ValueError(f"features have {features.shape[1]} channels, the model expects {self.config.input_dim}")
        return self.run(features, mask.to(torch.bool))

    def run(self, features: Tensor, mask: Tensor) -> TZNOutput:
        raise NotImplementedError


class TorchHead(Head):
    runtime = "torch"

    def __init__(self, checkpoint_dir: str | Path, device: torch.device):
        self.model, checkpoint = load_checkpoint(checkpoint_dir, device)
        super().__init__(checkpoint, file_sha256(Path(checkpoint_dir) / WEIGHTS_NAME), device)

    def run(self, features: Tensor, mask: Tensor) -> TZNOutput:
        with torch.inference_mode():
            return self.model(features.to(self.device, torch.float32), mask.to(self.device), execution="hard")


def tzn_output(outputs: dict[str, Tensor], mask: Tensor, config: ModelConfig) -> TZNOutput:
    """Rebuilds a TZNOutput from graph outputs by name (see export/onnx.py) and the input mask (B, T)."""
    padded = pad_to_multiple(mask.to(torch.bool), config.max_stride)
    levels = range(config.pyramid_levels)
    boundary_levels = config.boundary_levels if config.boundary_head != "none" else 0
    return TZNOutput(
        cls_logits=[outputs[f"cls_logits_{k}"] for k in levels],
        offsets=[outputs[f"offsets_{k}"] for k in levels],
        masks=[padded[:, :: 2**k] for k in levels],
        boundary=[outputs[f"boundary_{k}"] for k in range(boundary_levels)],
        tau=outputs.get("tau"),
        layer_masks=outputs["layer_masks"],
        stem=StemStats(outputs["active_positions"], outputs["executed_positions"], outputs["kv_positions"]),
        padded_length=padded.shape[1],
    )


def onnxruntime_providers(device: torch.device, tensorrt: bool = False) -> list[str]:
    """Execution providers for `device` among those installed (CPU always last, as the fallback)."""
    import onnxruntime

    available = set(onnxruntime.get_available_providers())
    wanted = ["CPUExecutionProvider"]
    if device.type == "cuda":
        wanted = ["CUDAExecutionProvider", *wanted]
        if tensorrt:
            wanted = ["TensorrtExecutionProvider", *wanted]
    missing = [name for name in wanted if name not in available]
    if missing:
        raise RuntimeError(
            f"onnxruntime has no {', '.join(missing)} here (installed: {', '.join(sorted(available))}); "
            "install onnxruntime-gpu for CUDA/TensorRT providers, or use device='cpu'"
        )
    return wanted


class OnnxRuntimeHead(Head):
    runtime = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: torch.device, providers: list[str] | None = None, threads=0):
        import onnxruntime

        from export.onnx import read_metadata

        metadata = read_metadata(onnx_path)
        super().__init__(metadata.checkpoint, metadata.checkpoint_sha256, device)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=providers or onnxruntime_providers(device)
        )
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.tau_input = metadata.tau_input

    def run(self, features: Tensor, mask: Tensor, tau_override: Tensor | None = None) -> TZNOutput:
        inputs = {"features": features.detach().float().cpu().numpy(), "mask": mask.cpu().numpy()}
        if self.tau_input:
            if tau_override is None:
                raise ValueError("this ONNX file was exported for tests with a tau_override input: pass one")
            inputs["tau_override"] = tau_override.detach().float().cpu().numpy()
        values = self.session.run(self.output_names, inputs)
        outputs = {
            name: torch.from_numpy(value).to(self.device) for name, value in zip(self.output_names, values, strict=True)
        }
        return tzn_output(outputs, mask.to(self.device), self.config)


def load_head(
    runtime: Runtime,
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    device: str | torch.device | None = None,
) -> Head:
    """A head for `runtime`: "torch" needs `checkpoint` (a run directory), "onnxruntime" `onnx`, "tensorrt"
    `engine` (a plan from `tzn export tensorrt`; an `onnx` file instead runs through onnxruntime's TensorRT
    execution provider). device defaults to cuda when available for torch/tensorrt, cpu for onnxruntime."""
    if runtime == "torch":
        if checkpoint is None:
            raise ExportError("runtime 'torch' needs checkpoint=RUN_DIR (a directory with config.json)")
        return TorchHead(checkpoint, _device(device, "cuda" if torch.cuda.is_available() else "cpu"))
    if runtime == "onnxruntime":
        if onnx is None:
            raise ExportError("runtime 'onnxruntime' needs onnx=FILE (from `tzn export onnx`)")
        return OnnxRuntimeHead(onnx, _device(device, "cpu"))
    if runtime == "tensorrt":
        from export.tensorrt import TensorRTHead, tensorrt_execution_provider_head

        if engine is not None:
            return TensorRTHead(engine, _device(device, "cuda"))
        if onnx is not None:
            return tensorrt_execution_provider_head(onnx, _device(device, "cuda"))
        raise ExportError("runtime 'tensorrt' needs engine=FILE (from `tzn export tensorrt`) or onnx=FILE")
    raise ExportError(f"unknown runtime {runtime!r}: choose torch, onnxruntime or tensorrt")


def _device(device: str | torch.device | None, default: str) -> torch.device:
    return torch.device(device if device is not None else default)
