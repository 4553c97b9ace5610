"""What an exported TZN head says about itself, read by whoever serves it (engine/heads.py, engine/preflight.py)
and written by export/ (export/onnx.py, export/tensorrt.py): the ONNX file's `tzn.*` metadata, a TensorRT
plan's sidecar and its optimization profile, and the checks that a plan fits this machine. The contract sits
here, below both, so that data flows one way: export writes it, the engine reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from model.checkpoint import CheckpointConfig
from model.head import HeadError

FORMAT = "tzn-onnx/1"
ENGINE_FORMAT = "tzn-tensorrt/1"


class ExportError(HeadError):
    """An ONNX file that cannot be exported or served; the message says which file and why."""


@dataclass(frozen=True)
class OnnxMetadata:
    """What an exported file says about itself, enough to serve it without the checkpoint directory."""

    checkpoint: CheckpointConfig
    checkpoint_sha256: str
    precision: str
    output_names: list[str]
    tau_input: bool


def metadata_from_props(props: dict[str, str], source: str) -> OnnxMetadata:
    """Parses the `tzn.*` metadata props (of an ONNX file or a TensorRT engine's sidecar)."""
    if props.get("tzn.format") != FORMAT:
        raise ExportError(
            f"{source}: not a TZN export (metadata tzn.format is {props.get('tzn.format')!r}, expected "
            f"{FORMAT!r}); export it with `tzn export onnx --checkpoint RUN_DIR --output model.onnx`"
        )
    try:
        checkpoint = CheckpointConfig.model_validate_json(props["tzn.checkpoint_config"])
        return OnnxMetadata(
            checkpoint=checkpoint,
            checkpoint_sha256=props.get("tzn.checkpoint_sha256", ""),
            precision=props.get("tzn.precision", "fp32"),
            output_names=json.loads(props["tzn.outputs"]),
            tau_input=json.loads(props.get("tzn.tau_input", "false")),
        )
    except (KeyError, ValueError) as error:
        raise ExportError(f"{source}: broken TZN metadata ({error})") from None


def read_metadata(path: str | Path) -> OnnxMetadata:
    """The metadata of an exported ONNX file (reads the graph structure, not the weights' use)."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"ONNX file {str(path)!r} does not exist")
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and others for a file that is not ONNX
        raise ExportError(f"{path}: not a readable ONNX file ({error})") from None
    return metadata_from_props({prop.key: prop.value for prop in graph.metadata_props}, str(path))


# ---------------------------------------------------------------------------------------------------- TensorRT


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


def trt_profile_shapes(profile: Profile, channels: int) -> dict[str, tuple[tuple[int, ...], ...]]:
    """(min, opt, max) shapes of the `features` and `mask` inputs for an optimization profile."""
    batches = (profile.min_batch, profile.opt_batch, profile.max_batch)
    lengths = (profile.min_length, profile.opt_length, profile.max_length)
    return {
        "features": tuple((b, channels, t) for b, t in zip(batches, lengths, strict=True)),
        "mask": tuple((b, t) for b, t in zip(batches, lengths, strict=True)),
    }


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
