"""TensorRT engine build from the ONNX export, and a runner with the same call as the other runtimes.

    tzn export tensorrt --onnx model.onnx --output model.plan [--fp16] [--min-t 1 --opt-t 2304 --max-t 8192]

Written against the TensorRT 10 Python API: `Builder.create_network(0)` (explicit batch), `OnnxParser`,
one optimization profile over B and T, `build_serialized_network`; at run time
`Runtime.deserialize_cuda_engine`, `IExecutionContext.set_input_shape` / `set_tensor_address` /
`execute_async_v3` on torch's current CUDA stream. Device buffers are torch CUDA tensors (no pycuda).
The graph's `NonZero` makes internal shapes data-dependent; every output's shape follows from the input
shapes, but an output that TensorRT reports with an unknown (-1) dimension gets an `IOutputAllocator`
that allocates torch memory once its size is known.

A plan only runs on the TensorRT version and GPU model it was built with, so the build writes a sidecar
`model.plan.json` (TensorRT version, GPU, compute capability, profile, the ONNX file's `tzn.*` metadata);
the runner checks it before deserializing and says what to rebuild.

Where onnxruntime-gpu with the TensorRT execution provider is installed instead of the `tensorrt` package,
`load_head("tensorrt", onnx=...)` runs the ONNX file through that provider (with the same profile).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from export.onnx import metadata_from_props, read_metadata
from export.runtime import Head, OnnxRuntimeHead, tzn_output
from model.tzn import TZNOutput

ENGINE_FORMAT = "tzn-tensorrt/1"


class TensorRTError(RuntimeError):
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


def _gpu(device: torch.device) -> tuple[str, str]:
    properties = torch.cuda.get_device_properties(device)
    return properties.name, f"{properties.major}.{properties.minor}"


def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    *,
    fp16: bool = False,
    profile: Profile = Profile(),
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
    gpu_name, capability = _gpu(device)
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


class TensorRTHead(Head):
    """Runs a TZN plan; features (B, C, T), mask (B, T) -> TZNOutput on the GPU."""

    runtime = "tensorrt"

    def __init__(self, engine_path: str | Path, device: torch.device):
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise TensorRTError(f"engine {str(engine_path)!r} does not exist; build it with `tzn export tensorrt`")
        trt = import_tensorrt()
        device = require_gpu(device)
        sidecar = read_sidecar(engine_path)
        problem = engine_mismatch(sidecar, trt.__version__, *_gpu(device))
        if problem:
            raise EngineMismatchError(
                f"{engine_path}: {problem}; rebuild it here with `tzn export tensorrt --onnx {sidecar.get('onnx')}`"
            )
        metadata = metadata_from_props(sidecar["onnx_metadata"], str(sidecar_path(engine_path)))
        super().__init__(metadata.checkpoint, metadata.checkpoint_sha256, device)
        self.profile = Profile(**sidecar["profile"])
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(device):
            self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise EngineMismatchError(f"{engine_path}: TensorRT could not deserialize it; rebuild the engine")
            self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._dtypes = {
            trt.float32: torch.float32, trt.float16: torch.float16, trt.int64: torch.int64,
            trt.int32: torch.int32, trt.bool: torch.bool,
        }  # fmt: skip

    def run(self, features: Tensor, mask: Tensor) -> TZNOutput:
        batch, _, length = features.shape
        check_within_profile(self.profile, batch, length)
        features = features.to(self.device, torch.float32).contiguous()
        mask = mask.to(self.device, torch.bool).contiguous()
        context = self.context
        for name, tensor in (("features", features), ("mask", mask)):
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, tensor.data_ptr())
        outputs: dict[str, Tensor] = {}
        allocator = None
        for name in self.output_names:
            shape = tuple(context.get_tensor_shape(name))
            dtype = self._dtypes[self.engine.get_tensor_dtype(name)]
            if all(size >= 0 for size in shape):
                # Keep a 1-element allocation for empty tensors: TensorRT rejects a null address.
                outputs[name] = torch.empty(shape, dtype=dtype, device=self.device)
                address = outputs[name].data_ptr() or _placeholder(self.device).data_ptr()
                context.set_tensor_address(name, address)
            else:
                allocator = allocator or _output_allocator(self._trt, self.device)
                context.set_output_allocator(name, allocator)
        stream = torch.cuda.current_stream(self.device)
        if not context.execute_async_v3(stream.cuda_stream):
            raise TensorRTError("TensorRT execution failed; its log above says why")
        stream.synchronize()
        for name in self.output_names:
            if name not in outputs:
                dtype = self._dtypes[self.engine.get_tensor_dtype(name)]
                outputs[name] = allocator.tensor(name, dtype)
        outputs = {name: t.float() if t.is_floating_point() else t for name, t in outputs.items()}
        return tzn_output(outputs, mask, self.config)


_PLACEHOLDERS: dict[torch.device, Tensor] = {}


def _placeholder(device: torch.device) -> Tensor:
    if device not in _PLACEHOLDERS:
        _PLACEHOLDERS[device] = torch.empty(16, dtype=torch.uint8, device=device)
    return _PLACEHOLDERS[device]


def _output_allocator(trt, device: torch.device):
    """An IOutputAllocator backed by torch CUDA memory, for outputs whose shape is only known after running."""

    class TorchOutputAllocator(trt.IOutputAllocator):
        def __init__(self) -> None:
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, Tensor] = {}
            self.shapes: dict[str, tuple[int, ...]] = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            buffer = self.buffers.get(tensor_name)
            if buffer is None or buffer.numel() < size:
                buffer = torch.empty(max(int(size), 1), dtype=torch.uint8, device=device)
                self.buffers[tensor_name] = buffer
            return buffer.data_ptr()

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(shape)

        def tensor(self, name: str, dtype: torch.dtype) -> Tensor:
            shape = self.shapes[name]
            count = 1
            for size in shape:
                count *= size
            itemsize = torch.empty(0, dtype=dtype).element_size()
            return self.buffers[name][: count * itemsize].view(dtype).reshape(shape).clone()

    return TorchOutputAllocator()


def tensorrt_execution_provider_head(
    onnx_path: str | Path, device: torch.device, profile: Profile = Profile(), cache_dir: str | Path | None = None
) -> OnnxRuntimeHead:
    """The ONNX file through onnxruntime's TensorRT execution provider (onnxruntime-gpu), CUDA as fallback."""
    import onnxruntime

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        raise TensorRTMissingError(
            "neither the tensorrt package nor onnxruntime's TensorrtExecutionProvider is installed: "
            "`pip install tensorrt onnxruntime-gpu`, or use --runtime onnxruntime"
        )
    require_gpu(device)
    metadata = read_metadata(onnx_path)
    shapes = trt_profile_shapes(profile, metadata.checkpoint.model.input_dim)

    def spec(index: int) -> str:
        return ",".join(f"{name}:{'x'.join(map(str, dims[index]))}" for name, dims in shapes.items())

    options = {
        "device_id": device.index or 0,
        "trt_fp16_enable": metadata.precision == "fp16",
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir or Path(onnx_path).parent / "trt_cache"),
        "trt_profile_min_shapes": spec(0),
        "trt_profile_opt_shapes": spec(1),
        "trt_profile_max_shapes": spec(2),
    }
    providers = [("TensorrtExecutionProvider", options), "CUDAExecutionProvider", "CPUExecutionProvider"]
    head = OnnxRuntimeHead(onnx_path, device, providers=providers)
    head.runtime = "tensorrt"
    return head
