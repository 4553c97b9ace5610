"""engine/heads.py: the onnxruntime head (TensorRT: tests/export/test_tensorrt.py) against the torch head."""

import shutil

import pytest
import torch

from engine.heads import load_head
from model.checkpoint import load_checkpoint
from model.config import PostprocessConfig
from model.head import Head, HeadError
from model.postprocess import postprocess
from tests.export.conftest import LABELS


def padded_batch(lengths: list[int], channels: int = 24, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.zeros(len(lengths), channels, max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
    for row, length in enumerate(lengths):
        features[row, :, :length] = torch.randn(channels, length, generator=generator)
        mask[row, :length] = True
    return features, mask


def detections(out):
    return postprocess(
        out.cls_logits,
        out.offsets,
        out.masks,
        bdr_fields=out.boundary[0],
        settings=PostprocessConfig(pre_nms_thresh=0.0),
    )


def test_onnxruntime_and_torch_heads_give_the_same_predictions(checkpoint_dir, onnx_path):
    torch_head = load_head("torch", checkpoint=checkpoint_dir, device="cpu")
    onnx_head = load_head("onnxruntime", onnx=onnx_path)
    features, mask = padded_batch([900, 400, 37])
    expected, found = detections(torch_head(features, mask)), detections(onnx_head(features, mask))
    for video_expected, video_found in zip(expected, found, strict=True):
        assert len(video_expected) == len(video_found) > 0
        assert torch.equal(video_expected.labels, video_found.labels)
        assert (video_expected.scores - video_found.scores).abs().max() <= 1e-4
        assert (video_expected.segments - video_found.segments).abs().max() <= 1e-3


def test_head_outputs_have_the_model_shapes(checkpoint_dir, onnx_path):
    features, mask = padded_batch([100, 70])
    torch_out = load_head("torch", checkpoint=checkpoint_dir, device="cpu")(features, mask)
    onnx_out = load_head("onnxruntime", onnx=onnx_path)(features, mask)
    assert onnx_out.padded_length == torch_out.padded_length == 128
    assert [t.shape for t in onnx_out.cls_logits] == [t.shape for t in torch_out.cls_logits]
    assert [t.shape for t in onnx_out.boundary] == [t.shape for t in torch_out.boundary]
    assert onnx_out.layer_masks.shape == torch_out.layer_masks.shape
    assert onnx_out.stem.active_positions.dtype == torch.int64


def test_an_onnx_file_serves_without_its_checkpoint_directory(checkpoint_dir, onnx_path, tmp_path):
    alone = tmp_path / "elsewhere.onnx"
    shutil.copy(onnx_path, alone)
    head = load_head("onnxruntime", onnx=alone)
    assert isinstance(head, Head)
    assert head.labels == LABELS
    assert head.config == load_checkpoint(checkpoint_dir)[1].model
    assert head.features.feat_stride == 4 and head.features.backbone == "i3d"
    assert len(head.checkpoint_sha256) == 64 and head.runtime == "onnxruntime"


def test_load_head_names_what_is_missing():
    with pytest.raises(HeadError, match="needs onnx=FILE"):
        load_head("onnxruntime")
    with pytest.raises(HeadError, match="needs checkpoint=RUN_DIR"):
        load_head("torch")
    with pytest.raises(HeadError, match="unknown runtime 'tvm'"):
        load_head("tvm", onnx="model.onnx")


def test_wrong_feature_channels_are_refused_before_running(onnx_path):
    with pytest.raises(ValueError, match="features have 7 channels, the model expects 24"):
        load_head("onnxruntime", onnx=onnx_path)(torch.randn(1, 7, 10), torch.ones(1, 10, dtype=torch.bool))
