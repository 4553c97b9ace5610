"""The exported heads the engine runs: onnxruntime and TensorRT, with the call of `model.head.Head`.

    head = load_head("onnxruntime", onnx="model.onnx")          # or "torch" + checkpoint=RUN_DIR,
    out = head(features, mask)                                  #    or "tensorrt" + engine=model.plan

An ONNX file or engine carries the checkpoint's config, labels and feature spec (export/onnx.py writes them),
so no checkpoint directory is needed to serve it (model/exported.py reads it). export/ builds these files; this
module only runs them.

TensorRT (10.x Python API): `Runtime.deserialize_cuda_engine`, `IExecutionContext.set_input_shape` /
`set_tensor_address` / `execute_async_v3` on torch's current CUDA stream; device buffers are torch CUDA
tensors (no pycuda). The graph's `NonZero` makes internal shapes data-dependent; an output that TensorRT
reports with an unknown (-1) dimension gets an `IOutputAllocator` that allocates torch memory once its size
is known. Where onnxruntime-gpu with the TensorRT execution provider is installed instead of the `tensorrt`
package, `load_head("tensorrt", onnx=...)` runs the ONNX file through that provider.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from model.atr import StemStats
from model.attention import pad_to_multiple
from model.config import ModelConfig, Runtime
from model.exported import (
    DEFAULT_PROFILE,
    EngineMismatchError,
    Profile,
    TensorRTError,
    TensorRTMissingError,
    check_within_profile,
    engine_mismatch,
    gpu_identity,
    import_tensorrt,
    metadata_from_props,
    read_metadata,
    read_sidecar,
    require_gpu,
    sidecar_path,
    trt_profile_shapes,
)
from model.head import Head, HeadError, TorchHead
from model.tzn import TZNOutput


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

    def run(
        self, features: Tensor, mask: Tensor, boundary: bool = True, tau_override: Tensor | None = None
    ) -> TZNOutput:
        """The graph computes the boundary fields whatever `boundary` says."""
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
        problem = engine_mismatch(sidecar, trt.__version__, *gpu_identity(device))
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

    def run(self, features: Tensor, mask: Tensor, boundary: bool = True) -> TZNOutput:
        """The engine computes the boundary fields whatever `boundary` says."""
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
    onnx_path: str | Path, device: torch.device, profile: Profile = DEFAULT_PROFILE, cache_dir: str | Path | None = None
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


def timed_call(head: Head, features: Tensor, fields: bool = False) -> tuple[TZNOutput, float]:
    """`head` on one video's features (C, K), every position valid, and the ms it took (a GPU waited for). The
    caller holds the head's lock if it shares the head between threads."""
    mask = torch.ones(1, features.shape[-1], dtype=torch.bool, device=features.device)
    started = time.perf_counter()
    output = head(features[None], mask, fields=fields)
    if head.device.type == "cuda":
        torch.cuda.synchronize(head.device)
    return output, (time.perf_counter() - started) * 1000


def load_head(
    runtime: Runtime,
    checkpoint: str | Path | None = None,
    onnx: str | Path | None = None,
    engine: str | Path | None = None,
    device: str | torch.device | None = None,
    cuda_graphs: bool = False,
) -> Head:
    """A head for `runtime`: "torch" needs `checkpoint` (a run directory), "onnxruntime" `onnx`, "tensorrt"
    `engine` (a plan from `tzn export tensorrt`; an `onnx` file instead runs through onnxruntime's TensorRT
    execution provider). device defaults to cuda when available for torch/tensorrt, cpu for onnxruntime.
    cuda_graphs: the torch head on CUDA replays CUDA graphs (model/graphs.py)."""
    if runtime == "torch":
        if checkpoint is None:
            raise HeadError("runtime 'torch' needs checkpoint=RUN_DIR (a directory with config.json)")
        device = _device(device, "cuda" if torch.cuda.is_available() else "cpu")
        return TorchHead.from_checkpoint(checkpoint, device, graphs=cuda_graphs)
    if runtime == "onnxruntime":
        if onnx is None:
            raise HeadError("runtime 'onnxruntime' needs onnx=FILE (from `tzn export onnx`)")
        return OnnxRuntimeHead(onnx, _device(device, "cpu"))
    if runtime == "tensorrt":
        if engine is not None:
            return TensorRTHead(engine, _device(device, "cuda"))
        if onnx is not None:
            return tensorrt_execution_provider_head(onnx, _device(device, "cuda"))
        raise HeadError("runtime 'tensorrt' needs engine=FILE (from `tzn export tensorrt`) or onnx=FILE")
    raise HeadError(f"unknown runtime {runtime!r}: choose torch, onnxruntime or tensorrt")


def _device(device: str | torch.device | None, default: str) -> torch.device:
    return torch.device(device if device is not None else default)
