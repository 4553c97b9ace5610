import collections
import copy

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from engine.heads import OnnxRuntimeHead, load_head
from export.onnx import export_model, output_names
from model.checkpoint import WEIGHTS_NAME, CheckpointConfig, file_sha256, load_checkpoint
from model.config import ModelConfig
from model.exported import ExportError, read_metadata
from model.tzn import TZN, TZNOutput
from tests.model.conftest import small_config

from .conftest import LABEL_IDS, LABELS

TOLERANCE = 1e-4


def reference(model: TZN, features, mask, tau=None) -> TZNOutput:
    """Eager PyTorch, hard mode, counting exactly what the graph runs (no dense shortcut)."""
    model = copy.deepcopy(model)
    model.stem.dense_shortcut = False
    with torch.no_grad():
        return model(features, mask, execution="hard", tau_override=tau)


def differences(graph: TZNOutput, torch_out: TZNOutput) -> dict[str, float]:
    """Max abs difference per output name, over every position (padding included)."""
    named = {}
    for prefix, left, right in [
        ("cls_logits", graph.cls_logits, torch_out.cls_logits),
        ("offsets", graph.offsets, torch_out.offsets),
        ("boundary", graph.boundary, torch_out.boundary),
    ]:
        assert len(left) == len(right)
        for level, (a, b) in enumerate(zip(left, right, strict=True)):
            named[f"{prefix}_{level}"] = (a - b).abs().max().item() if a.numel() else 0.0
    if torch_out.tau is not None:
        named["tau"] = (graph.tau - torch_out.tau).abs().max().item()
    named["layer_masks"] = (graph.layer_masks - torch_out.layer_masks).abs().max().item()
    for name in ("active_positions", "executed_positions", "kv_positions"):
        named[name] = (getattr(graph.stem, name) - getattr(torch_out.stem, name)).abs().max().item()
    return named


def assert_same(graph: TZNOutput, torch_out: TZNOutput) -> None:
    assert graph.padded_length == torch_out.padded_length
    for level, (a, b) in enumerate(zip(graph.masks, torch_out.masks, strict=True)):
        assert torch.equal(a, b), f"mask of level {level}"
    diffs = differences(graph, torch_out)
    worst = {name: value for name, value in diffs.items() if value > TOLERANCE}
    assert not worst, f"outputs beyond {TOLERANCE}: {worst}"
    assert torch.equal(graph.stem.active_positions, torch_out.stem.active_positions)


def test_graph_outputs_have_the_documented_names(onnx_path, checkpoint_dir):
    names = [o.name for o in onnx.load(str(onnx_path)).graph.output]
    config = load_checkpoint(checkpoint_dir)[1].model
    assert names == output_names(config)
    assert names[:2] == ["cls_logits_0", "cls_logits_1"] and "boundary_2" in names and "boundary_3" not in names
    assert names[-5:] == ["tau", "layer_masks", "active_positions", "executed_positions", "kv_positions"]
    assert [i.name for i in onnx.load(str(onnx_path)).graph.input] == ["features", "mask"]


def test_uniform_model_has_no_tau_output():
    names = output_names(small_config(atr=False, boundary_head="none"))
    assert "tau" not in names and not any(n.startswith("boundary") for n in names)


def test_file_carries_config_labels_feature_spec_and_checkpoint_sha(onnx_path, checkpoint_dir):
    metadata = read_metadata(onnx_path)
    _, checkpoint = load_checkpoint(checkpoint_dir)
    assert metadata.checkpoint == checkpoint
    assert metadata.checkpoint.labels == LABELS and metadata.checkpoint.features.backbone == "i3d"
    assert metadata.checkpoint.label_ids == LABEL_IDS
    assert metadata.checkpoint_sha256 == file_sha256(checkpoint_dir / WEIGHTS_NAME)
    assert metadata.precision == "fp32" and metadata.tau_input is False


def test_graph_skips_blocks_with_nonzero_gather_scatter(onnx_path):
    ops = collections.Counter(node.op_type for node in onnx.load(str(onnx_path)).graph.node)
    layers = small_config().stem_layers
    assert ops["NonZero"] == layers, "one NonZero over active blocks per stem layer"
    assert ops["ScatterND"] >= layers, "results scattered back into the sequence per stem layer"
    assert ops["Gather"] > 0 or ops["GatherND"] > 0
    assert ops["Sigmoid"] >= 1, "the tau predictor is in the graph"


@pytest.mark.parametrize("length", [1, 37, 256, 2304, 5000])
def test_onnxruntime_equals_pytorch_batch_of_one(onnx_path, checkpoint_dir, length):
    model, _ = load_checkpoint(checkpoint_dir)
    head = load_head("onnxruntime", onnx=onnx_path)
    features = torch.randn(1, 24, length, generator=torch.Generator().manual_seed(length))
    mask = torch.ones(1, length, dtype=torch.bool)
    assert_same(head(features, mask), reference(model, features, mask))


@pytest.mark.parametrize("length", [37, 256, 2304, 5000])
def test_onnxruntime_equals_pytorch_padded_batch_of_three_lengths(onnx_path, checkpoint_dir, length):
    model, _ = load_checkpoint(checkpoint_dir)
    head = load_head("onnxruntime", onnx=onnx_path)
    features = torch.randn(3, 24, length, generator=torch.Generator().manual_seed(length))
    mask = torch.zeros(3, length, dtype=torch.bool)
    for row, valid in enumerate([length, max(1, length // 2), max(1, length // 5)]):
        mask[row, :valid] = True
    features = features * mask[:, None]
    assert_same(head(features, mask), reference(model, features, mask))


def test_graph_computes_the_same_tau_and_active_counts_as_pytorch(onnx_path, checkpoint_dir):
    model, _ = load_checkpoint(checkpoint_dir)
    features, mask = torch.randn(1, 24, 700), torch.ones(1, 700, dtype=torch.bool)
    graph = load_head("onnxruntime", onnx=onnx_path)(features, mask)
    with torch.no_grad():
        eager = model(features, mask, execution="hard")  # with the dense shortcut: tau and active counts agree
    assert (graph.tau - eager.tau).abs().max() <= 1e-6
    assert torch.equal(graph.stem.active_positions, eager.stem.active_positions)


def run_tau_pattern(tau_onnx, tau: torch.Tensor, mask: torch.Tensor | None = None):
    model, path = tau_onnx
    batch, length = tau.shape
    features = torch.randn(batch, 24, length, generator=torch.Generator().manual_seed(7))
    mask = torch.ones(batch, length, dtype=torch.bool) if mask is None else mask
    graph = OnnxRuntimeHead(path, torch.device("cpu")).run(features, mask, tau_override=tau)
    return graph, reference(model, features, mask, tau)


def test_few_active_blocks_execute_few_positions(tau_onnx):
    length, block = 640, small_config().attn_block_size
    tau = torch.zeros(1, length)
    tau[0, 100:110] = 1.0  # one deep region inside block 6
    graph, torch_out = run_tau_pattern(tau_onnx, tau)
    assert_same(graph, torch_out)
    assert graph.stem.active_positions.tolist() == [length] + [10] * 5
    assert graph.stem.executed_positions.tolist() == [length] + [block] * 5
    halo = small_config().halo
    assert graph.stem.kv_positions.tolist() == [length // block * (block + 2 * halo)] + [block + 2 * halo] * 5


def test_all_positions_active(tau_onnx):
    graph, torch_out = run_tau_pattern(tau_onnx, torch.ones(2, 300))
    assert_same(graph, torch_out)
    assert graph.stem.active_positions.tolist() == [600] * 6


def test_shallow_tau_runs_only_the_first_layer(tau_onnx):
    graph, torch_out = run_tau_pattern(tau_onnx, torch.zeros(2, 300))
    assert_same(graph, torch_out)
    assert graph.stem.executed_positions.tolist()[1:] == [0] * 5


def test_no_active_positions_at_all(tmp_path):
    """min_depth = 0 and tau = 0: no stem layer runs anywhere; and a batch with no valid position."""
    torch.manual_seed(3)
    config = small_config(min_depth=0.0)
    model = TZN(config).eval()
    path = export_model(model, CheckpointConfig(model=config, labels=LABELS), tmp_path / "m.onnx", tau_input=True)
    graph, torch_out = run_tau_pattern((model, path), torch.zeros(2, 100))
    assert_same(graph, torch_out)
    assert graph.stem.executed_positions.tolist() == [0] * 6
    empty_mask = torch.zeros(2, 100, dtype=torch.bool)
    graph, torch_out = run_tau_pattern((model, path), torch.rand(2, 100), empty_mask)
    assert_same(graph, torch_out)
    assert graph.stem.active_positions.tolist() == [0] * 6


def test_a_file_that_is_not_a_tzn_export_is_refused(tmp_path):
    path = tmp_path / "other.onnx"
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "g", [value("x", 1, [1])], [value("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(ExportError, match="not a TZN export"):
        read_metadata(path)
    with pytest.raises(ExportError, match="does not exist"):
        read_metadata(tmp_path / "missing.onnx")


def test_fp16_export_keeps_float32_inputs_and_outputs_and_stays_close(checkpoint_dir, tmp_path):
    model, checkpoint = load_checkpoint(checkpoint_dir)
    path = export_model(model, checkpoint, tmp_path / "fp16.onnx", fp16=True)
    assert read_metadata(path).precision == "fp16"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)"
    features, mask = torch.randn(1, 24, 200), torch.ones(1, 200, dtype=torch.bool)
    values = session.run(None, {"features": features.numpy(), "mask": mask.numpy()})
    with torch.no_grad():
        eager = model(features, mask, execution="hard")
    assert values[0].dtype == np.float32
    assert np.abs(values[0] - eager.cls_logits[0].numpy()).max() < 0.05


@pytest.mark.slow
def test_thumos_size_graph_equals_pytorch_at_2304(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig()
    model = TZN(config).eval()
    labels = [f"class_{i}" for i in range(config.num_classes)]
    path = export_model(model, CheckpointConfig(model=config, labels=labels), tmp_path / "thumos.onnx")
    features, mask = torch.randn(1, config.input_dim, 2304), torch.ones(1, 2304, dtype=torch.bool)
    assert_same(load_head("onnxruntime", onnx=path)(features, mask), reference(model, features, mask))
