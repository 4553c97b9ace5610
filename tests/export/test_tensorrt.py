import importlib.util
import json

import pytest
import torch

from engine.heads import load_head
from model.exported import (
    EngineMismatchError,
    Profile,
    ShapeOutsideProfileError,
    TensorRTMissingError,
    check_within_profile,
    engine_mismatch,
    sidecar_path,
    trt_profile_shapes,
)
from tzn import main

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_tensorrt = pytest.mark.skipif(
    not (HAS_TENSORRT and torch.cuda.is_available()), reason="needs the tensorrt package and a CUDA GPU"
)


def test_lengths_inside_the_profile_pass():
    profile = Profile(min_length=1, opt_length=2304, max_length=8192, max_batch=4)
    for batch, length in [(1, 1), (4, 8192), (2, 2304)]:
        check_within_profile(profile, batch, length)


def test_a_length_beyond_the_profile_says_how_to_rebuild():
    with pytest.raises(ShapeOutsideProfileError, match=r"T=9000 is outside .*T 1\.\.8192.*--max-t 9000"):
        check_within_profile(Profile(max_length=8192), 1, 9000)
    with pytest.raises(ShapeOutsideProfileError, match=r"T=10 is outside .*--min-t 10"):
        check_within_profile(Profile(min_length=64), 1, 10)


def test_a_batch_beyond_the_profile_is_refused():
    with pytest.raises(ShapeOutsideProfileError, match="batch 8 is outside .*--max-batch 8"):
        check_within_profile(Profile(max_batch=4), 8, 100)


def test_an_inconsistent_profile_is_refused():
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Profile(min_length=100, opt_length=50)


def test_profile_shapes_cover_features_and_mask():
    shapes = trt_profile_shapes(Profile(max_batch=2, max_length=4096), channels=2048)
    assert shapes["features"] == ((1, 2048, 1), (1, 2048, 2304), (2, 2048, 4096))
    assert shapes["mask"] == ((1, 1), (1, 2304), (2, 4096))


def test_an_engine_from_another_tensorrt_version_or_gpu_is_named():
    built = {"tensorrt_version": "10.3.0", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    assert engine_mismatch(built, "10.3.0", "NVIDIA H100 80GB HBM3", "9.0") is None
    assert "built with TensorRT 10.3.0, this machine has TensorRT 10.7.0" in engine_mismatch(
        built, "10.7.0", "NVIDIA H100 80GB HBM3", "9.0"
    )
    assert "this machine has NVIDIA L4 (compute capability 8.9)" in engine_mismatch(built, "10.3.0", "NVIDIA L4", "8.9")


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message when TensorRT is not installed")
def test_missing_tensorrt_is_a_plain_error(tmp_path):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"not an engine")
    with pytest.raises(TensorRTMissingError, match="TensorRT is not installed.*--runtime onnxruntime"):
        load_head("tensorrt", engine=engine)


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message when TensorRT is not installed")
def test_export_tensorrt_command_without_tensorrt_exits_with_the_reason(onnx_path, tmp_path, capsys):
    code = main(["export", "tensorrt", "--onnx", str(onnx_path), "--output", str(tmp_path / "m.plan")])
    assert code == 2
    assert "TensorRT is not installed" in capsys.readouterr().err


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message when TensorRT is not installed")
def test_tensorrt_through_onnxruntime_without_the_provider_is_a_plain_error(onnx_path):
    with pytest.raises(TensorRTMissingError, match="TensorrtExecutionProvider"):
        load_head("tensorrt", onnx=onnx_path)


def test_missing_sidecar_says_to_rebuild(tmp_path):
    from model.exported import read_sidecar

    engine = tmp_path / "model.plan"
    with pytest.raises(EngineMismatchError, match="model.plan.json: missing"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(EngineMismatchError, match="not a TZN engine"):
        read_sidecar(engine)


@pytest.mark.tensorrt
@needs_tensorrt
def test_tensorrt_engine_equals_onnxruntime(onnx_path, tmp_path):
    from export.tensorrt import build_engine

    engine = build_engine(onnx_path, tmp_path / "model.plan", profile=Profile(max_length=4096, max_batch=3))
    trt_head = load_head("tensorrt", engine=engine)
    ort_head = load_head("onnxruntime", onnx=onnx_path)
    for length in [1, 37, 256, 2304]:
        features, mask = torch.randn(1, 24, length), torch.ones(1, length, dtype=torch.bool)
        got, expected = trt_head(features, mask), ort_head(features, mask)
        for a, b in zip(got.cls_logits + got.offsets, expected.cls_logits + expected.offsets, strict=True):
            assert (a.cpu() - b).abs().max() <= 1e-3
        assert torch.equal(got.stem.active_positions.cpu(), expected.stem.active_positions)
    with pytest.raises(ShapeOutsideProfileError):
        trt_head(torch.randn(1, 24, 5000), torch.ones(1, 5000, dtype=torch.bool))
