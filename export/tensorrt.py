"""TensorRT engine build from the ONNX export (the runner is engine/heads.py's `TensorRTHead`; what a plan and
its sidecar say, and the checks that it fits a machine, are model/exported.py's).

    tzn export tensorrt --onnx model.onnx --output model.plan [--fp16] [--min-t 1 --opt-t 2304 --max-t 8192]

Written against the TensorRT 10 Python API: `Builder.create_network(0)` (explicit batch), `OnnxParser`,
one optimization profile over B and T, `build_serialized_network`.

A plan only runs on the TensorRT version and GPU model it was built with, so the build writes a sidecar
`model.plan.json` (TensorRT version, GPU, compute capability, profile, the ONNX file's `tzn.*` metadata);
the runner checks it before deserializing and says what to rebuild.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from model.exported import (
    DEFAULT_PROFILE,
    ENGINE_FORMAT,
    Profile,
    TensorRTError,
    gpu_identity,
    import_tensorrt,
    read_metadata,
    require_gpu,
    sidecar_path,
    trt_profile_shapes,
)


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


def _onnx_props(onnx_path: str | Path) -> dict[str, str]:
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
