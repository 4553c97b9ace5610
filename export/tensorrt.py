"""TensorRT engine build from the ONNX export (the runner is service/runners.py's `TensorRTHead`).

    tzn export tensorrt --onnx model.onnx --output model.plan [--fp16] [--min-t 1 --opt-t 2304 --max-t 8192]

Written against the TensorRT 10 Python API: `Builder.create_network(0)` (explicit batch), `OnnxParser`,
one optimization profile over B and T, `build_serialized_network`.

A plan only runs on the TensorRT version and GPU model it was built with, so the build writes a sidecar
`model.plan.json` (TensorRT version, GPU, compute capability, profile, the ONNX file's `tzn.*` metadata);
the runner checks it before deserializing and says what to rebuild.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from export.onnx import read_metadata
from model.head import HeadError

ENGINE_FORMAT = "tzn-tensorrt/1"


class TensorRTError(HeadError, RuntimeError):
    """TensorRT cannot build or run this engine here; the message says what to do instead."""


class TensorRTMissingError(TensorRTError):
    pass


class NoGPUError(TensorRTError):
    pass


class EngineMismatchError(TensorRTError):
    pass


class ShapeOutsideProfileError(TensorRTError, ValueError):
    pass


@dataclass(frozen=True)
class Profile:
    """The input shapes an engine accepts: batch B and length T (before padding to the coarsest stride)."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 4
    min_length: int = 1
    opt_length: int = 2304
    max_length: int = 8192

    def __post_init__(self) -> None:
        for name, low, opt, high in [
            ("batch", self.min_batch, self.opt_batch, self.max_batch),
            ("length", self.min_length, self.opt_length, self.max_length),
        ]:
            if not 1 <= low <= opt <= high:
                raise ValueError(f"profile {name} needs 1 <= min <= opt <= max, got {low}, {opt}, {high}")


DEFAULT_PROFILE = Profile()


def check_within_profile(profile: Profile, batch: int, length: int) -> None:
    """Raises ShapeOutsideProfileError, saying how to fix it, when (batch, length) is outside the profile."""
    if not profile.min_length <= length <= profile.max_length:
        raise ShapeOutsideProfileError(
            f"T={length} is outside this engine's profile (T {profile.min_length}..{profile.max_length}): rebuild "
            f"with `tzn export tensorrt --min-t {min(length, profile.min_length)} "
            f"--max-t {max(length, profile.max_length)}`, cut the video into windows, or use onnxruntime"
        )
    if not profile.min_batch <= batch <= profile.max_batch:
        raise ShapeOutsideProfileError(
            f"batch {batch} is outside this engine's profile (B {profile.min_batch}..{profile.max_batch}): "
            f"rebuild with `tzn export tensorrt --max-batch {max(batch, profile.max_batch)}` or send smaller batches"
        )


def engine_mismatch(built: dict, tensorrt_version: str, gpu_name: str, compute_capability: str) -> str | None:
    """Why a plan built with `built` (its sidecar) cannot run here, or None when it can."""
    if built.get("tensorrt_version") != tensorrt_version:
        return f"built with TensorRT {built.get('tensorrt_version')}, this machine has TensorRT {tensorrt_version}"
    if built.get("compute_capability") != compute_capability or built.get("gpu") != gpu_name:
        return (
            f"built for {built.get('gpu')} (compute capability {built.get('compute_capability')}), "
            f"this machine has {gpu_name} (compute capability {compute_capability})"
        )
    return None


def import_tensorrt():
    try:
        import tensorrt
    except ImportError:
        raise TensorRTMissingError(
            "TensorRT is not installed: `pip install tensorrt` (10.x, on a machine with an NVIDIA GPU and driver), "
            "or serve the ONNX file with --runtime onnxruntime"
        ) from None
    return tensorrt


def require_gpu(device: torch.device | None = None) -> torch.device:
    if not torch.cuda.is_available():
        raise NoGPUError("TensorRT needs an NVIDIA GPU and none is visible (torch.cuda.is_available() is False); "
                         "use --runtime onnxruntime or torch on CPU")  # fmt: skip
    device = device if device is not None and device.type == "cuda" else torch.device("cuda")
    return device


def gpu_identity(device: torch.device) -> tuple[str, str]:
    properties = torch.cuda.get_device_properties(device)
    return properties.name, f"{properties.major}.{properties.minor}"


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    *,
    fp16: bool = False,
    profile: Profile = DEFAULT_PROFILE,
    workspace_gib: float = 4.0,
) -> Path:
    """Builds a serialized TensorRT engine from a TZN ONNX file; writes it and its sidecar JSON."""
    metadata = read_metadata(onnx_path)
    trt = import_tensorrt()
    device = require_gpu()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TensorRTError(f"{onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    channels = metadata.checkpoint.model.input_dim
    shapes = trt_profile_shapes(profile, channels)
    optimization_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        optimization_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(optimization_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TensorRTError(f"TensorRT could not build an engine from {onnx_path}; its log above says why")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(bytes(plan))
    gpu_name, capability = gpu_identity(device)
    onnx_props = _onnx_props(onnx_path)
    sidecar = {
        "format": ENGINE_FORMAT,
        "tensorrt_version": trt.__version__,
        "gpu": gpu_name,
        "compute_capability": capability,
        "fp16": fp16,
        "profile": asdict(profile),
        "onnx": str(onnx_path),
        "onnx_metadata": onnx_props,
    }
    sidecar_path(output).write_text(json.dumps(sidecar, indent=2) + "\n")
    return output


def trt_profile_shapes(profile: Profile, channels: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) shapes of the `features` and `mask` inputs for an optimization profile."""
    batches = (profile.min_batch, profile.opt_batch, profile.max_batch)
    lengths = (profile.min_length, profile.opt_length, profile.max_length)
    return {
        "features": tuple((b, channels, t) for b, t in zip(batches, lengths, strict=True)),
        "mask": tuple((b, t) for b, t in zip(batches, lengths, strict=True)),
    }


def _onnx_props(onnx_path: str | Path) -> dict[str, str]:
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(onnx_path), load_external_data=False).metadata_props}


def read_sidecar(engine: str | Path) -> dict:
    path = sidecar_path(engine)
    if not path.is_file():
        raise EngineMismatchError(
            f"{path}: missing; it is written next to the plan by `tzn export tensorrt` (rebuild the engine)"
        )
    sidecar = json.loads(path.read_text())
    if sidecar.get("format") != ENGINE_FORMAT:
        raise EngineMismatchError(f"{path}: not a TZN engine description (format {sidecar.get('format')!r})")
    return sidecar
