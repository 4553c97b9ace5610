"""ONNX export of a TZN checkpoint, with Adaptive Temporal Refinement kept in the graph.

The graph is the hard (inference) path of `model.tzn.TZN`: the tau predictor, the depth masks and, per stem
layer, `NonZero` over the attention blocks that hold a position with m > 0, a gather of those blocks with
their halos, the transformer block on them only, and a `ScatterND` of the results back. Nothing is dense
with a multiply by zero: a layer whose mask is zero almost everywhere really runs on a few blocks.
It is exported with the TorchScript-based exporter (`dynamo=False`), which handles the data-dependent
`nonzero`; every shape is computed in the graph, so any B and T work (the tests run several).

Inputs

| name           | type    | shape     | meaning                                                          |
|----------------|---------|-----------|------------------------------------------------------------------|
| `features`     | float32 | (B, C, T) | clip features, C = `input_dim`                                   |
| `mask`         | bool    | (B, T)    | True on valid positions (a padded batch of different lengths)    |
| `tau_override` | float32 | (B, T)    | only in test exports (`tau_input=True`): replaces the predicted  |
|                |         |           | tau after the predictor ran, to force depth patterns             |

Outputs (T_pad = T rounded up to a multiple of `max_stride`, T_k = T_pad / 2**k, L = `stem_layers`)

| name                     | type    | shape            | meaning                                                    |
|--------------------------|---------|------------------|------------------------------------------------------------|
| `cls_logits_{k}`         | float32 | (B, T_k, classes)| class logits of level k, k = 0 .. pyramid_levels-1         |
| `offsets_{k}`            | float32 | (B, T_k, 2)      | distances to start/end in level-k steps, k as above        |
| `boundary_{k}`           | float32 | (B, T_k, 2)      | BDR fields (or boundary logits), k < boundary_levels;      |
|                          |         |                  | absent when boundary_head = "none"                         |
| `tau`                    | float32 | (B, T_pad)       | ATR tau in [0, 1]; absent for the uniform model            |
| `layer_masks`            | float32 | (B, T_pad, L)    | the depth masks m (ones on valid positions when uniform)   |
| `active_positions`       | int64   | (L,)             | valid positions with m > 0, per stem layer                 |
| `executed_positions`     | int64   | (L,)             | query positions the layer computed (whole blocks)          |
| `kv_positions`           | int64   | (L,)             | positions whose keys/values were computed (blocks + halos) |

Level masks are not outputs: they are the input mask padded to T_pad and subsampled by 2**k
(`engine.heads.tzn_output`). `model.flops.head_flops` takes executed/kv positions and T_pad directly.
The graph always gathers blocks, so in a layer where every valid block is active its executed/kv counts
are those of the block path; eager PyTorch runs such a layer densely (`ATRStem.dense_shortcut`) and counts
that. Every other output, active positions included, is the same.

Metadata (`metadata_props`, strings): `tzn.format`, `tzn.checkpoint_config` (the checkpoint's config.json:
model config, labels and their annotation ids, feature spec, postprocess settings, free-form metadata),
`tzn.checkpoint_sha256` (of model.safetensors),
`tzn.precision` ("fp32" or "fp16"), `tzn.outputs` (JSON list of the output names), `tzn.tau_input`; read by
`model.exported.read_metadata`.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from model.checkpoint import WEIGHTS_NAME, CheckpointConfig, file_sha256, load_checkpoint
from model.config import ModelConfig
from model.exported import FORMAT
from model.tzn import TZN

OPSET = 17
INPUT_NAMES = ("features", "mask")
STAT_NAMES = ("active_positions", "executed_positions", "kv_positions")


def output_names(config: ModelConfig) -> list[str]:
    """Graph output names of a model with this config, in graph order (see the table above)."""
    levels = range(config.pyramid_levels)
    names = [f"cls_logits_{k}" for k in levels] + [f"offsets_{k}" for k in levels]
    if config.boundary_head != "none":
        names += [f"boundary_{k}" for k in range(config.boundary_levels)]
    if config.atr:
        names.append("tau")
    return names + ["layer_masks", *STAT_NAMES]


class ExportedHead(nn.Module):
    """TZN in hard execution with a flat tuple of outputs, in `output_names` order."""

    def __init__(self, model: TZN):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, mask: Tensor, tau: Tensor | None = None) -> tuple[Tensor, ...]:
        out = self.model(features, mask, execution="hard", tau_override=tau)
        floats = [*out.cls_logits, *out.offsets, *out.boundary]
        if out.tau is not None:
            floats.append(out.tau)
        stats = [out.stem.active_positions, out.stem.executed_positions, out.stem.kv_positions]
        return (*floats, out.layer_masks, *(t.to(torch.int64) for t in stats))


def _dynamic_axes(config: ModelConfig, tau_input: bool) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {"features": {0: "batch", 2: "length"}, "mask": {0: "batch", 1: "length"}}
    if tau_input:
        axes["tau_override"] = {0: "batch", 1: "length"}
    for name in output_names(config):
        if name in STAT_NAMES:
            continue
        level = name.rsplit("_", 1)[-1]
        length = f"length_{level}" if level.isdigit() and level != "0" else "padded_length"
        axes[name] = {0: "batch", 1: length}
    return axes


def export_model(
    model: TZN,
    checkpoint: CheckpointConfig,
    output: str | Path,
    *,
    checkpoint_sha256: str = "",
    fp16: bool = False,
    tau_input: bool = False,
    opset: int = OPSET,
) -> Path:
    """Writes `model` (hard ATR execution) as ONNX to `output`, with its metadata; returns the path.

    tau_input=True adds a `tau_override` input that replaces the predicted tau (tests force depth patterns with it;
    the predictor still runs). fp16 stores weights and computes in float16 (onnxruntime's float16 converter); inputs and outputs
    stay float32.
    """
    if checkpoint.model != model.config:
        raise ValueError("the checkpoint config's model section differs from the model being exported")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    head = ExportedHead(copy.deepcopy(model).eval())
    config = model.config
    args, inputs = trace_inputs(config, tau_input)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head,
            args,
            str(output),
            dynamo=False,
            input_names=inputs,
            output_names=output_names(config),
            dynamic_axes=_dynamic_axes(config, tau_input),
            opset_version=opset,
            do_constant_folding=True,
        )
    graph = onnx.load(str(output))
    if fp16:
        graph = _float16_graph(graph)
    onnx.helper.set_model_props(graph, metadata_props(checkpoint, checkpoint_sha256, fp16, tau_input))
    graph.doc_string = f"TZN head ({'ATR' if config.atr else 'uniform'}), exported by export/onnx.py"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(output))
    return output


def trace_inputs(config: ModelConfig, tau_input: bool) -> tuple[tuple[Tensor, ...], list[str]]:
    """The example inputs the export traces, and their names: features (2, C, T) and mask (2, T), the second
    video half padding, and with `tau_input` a tau_override (2, T); T = 3 * max_stride + 5."""
    # A padded batch with a length that is a multiple of nothing, so no shape is special.
    length = 3 * config.max_stride + 5
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, config.input_dim, length, generator=generator)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length // 2 :] = False
    args: tuple[Tensor, ...] = (features, mask)
    inputs = list(INPUT_NAMES)
    if tau_input:
        args += (torch.rand(2, length, generator=generator),)
        inputs.append("tau_override")
    return args, inputs


def _float16_graph(graph: onnx.ModelProto) -> onnx.ModelProto:
    """The traced float32 graph with float16 weights and arithmetic, its inputs and outputs still float32."""
    # Converted after tracing (tracing a half model on CPU mixes dtypes in attention); the inputs and
    # outputs keep float32, so a runtime feeds and reads the same types for both precisions.
    from onnxruntime.transformers.float16 import convert_float_to_float16

    graph = convert_float_to_float16(graph, keep_io_types=True)
    # The converter appends the casts of the graph inputs last; ONNX wants nodes topologically sorted.
    nodes = list(graph.graph.node)
    input_casts = [node for node in nodes if node.name.startswith("graph_input_cast")]
    del graph.graph.node[:]
    graph.graph.node.extend(input_casts + [node for node in nodes if node not in input_casts])
    return graph


def metadata_props(checkpoint: CheckpointConfig, checkpoint_sha256: str, fp16: bool, tau_input: bool) -> dict[str, str]:
    """The `tzn.*` metadata props of an export (the table in the module docstring; `metadata_from_props` reads them)."""
    return {
        "tzn.format": FORMAT,
        "tzn.checkpoint_config": checkpoint.model_dump_json(),
        "tzn.checkpoint_sha256": checkpoint_sha256,
        "tzn.precision": "fp16" if fp16 else "fp32",
        "tzn.outputs": json.dumps(output_names(checkpoint.model)),
        "tzn.tau_input": json.dumps(tau_input),
    }


def export_checkpoint(checkpoint_dir: str | Path, output: str | Path, fp16: bool = False) -> Path:
    """`tzn export onnx`: loads the checkpoint directory and writes the ONNX file with its metadata."""
    model, checkpoint = load_checkpoint(checkpoint_dir)
    sha256 = file_sha256(Path(checkpoint_dir) / WEIGHTS_NAME)
    return export_model(model, checkpoint, output, checkpoint_sha256=sha256, fp16=fp16)
