"""Run a checkpoint over a split: ActivityNet results JSON and what the run cost (`tzn predict`).

The head is a `model.head.Head`: the loaded TZN (`TorchHead`, soft or hard ATR execution) or an exported
model (onnxruntime, TensorRT) from the loader the `tzn` dispatcher passes in (`engine.heads.load_head`;
training does not import the service). Features to segments is `model.postprocess.video_segments`, with the
settings the training run saved in the checkpoint (`head.postprocess`), the same call the service makes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from model.checkpoint import load_checkpoint
from model.config import Runtime
from model.flops import output_flops, uniform_head_flops
from model.head import Head, TorchHead
from model.postprocess import video_segments
from model.tzn import TZNOutput
from training.dataset import FeatureDataset, VideoItem

HeadLoader = Callable[..., Head]


class PredictError(Exception):
    """A prediction run that cannot start: wrong runtime, missing files, features the model cannot read."""


def predict_dataset(
    head: Head,
    dataset: FeatureDataset,
    device: str = "cpu",
    progress: bool = True,
    on_video: Callable[[VideoItem, TZNOutput], None] | None = None,
) -> tuple[dict[str, list[dict]], dict[str, float]]:
    """Detections of every video of `dataset` (whole videos, one at a time) -> (results, stats).

    `on_video(item, output)` sees each video's head output (`tzn predict --plot` draws its timeline).

    results: {video_id: [{"segment": [start_s, end_s], "label": name, "score": s}]}, best first.
    stats: totals over the split: videos, seconds (annotated durations), mean_depth (stem layers per valid
    position), head_flops (what ran) and head_flops_uniform (Uniform-L_max at the same shapes).
    """
    config = head.checkpoint
    model_config = config.model
    if dataset.feature_dim != model_config.input_dim:
        raise PredictError(
            f"features in {dataset.features_dir} have {dataset.feature_dim} channels, the checkpoint expects "
            f"{model_config.input_dim}"
        )
    results: dict[str, list[dict]] = {}
    seconds = depth_sum = positions = flops = flops_uniform = 0.0
    for index in tqdm(range(len(dataset)), desc="predict", disable=None if progress else True):
        item = dataset[index]
        features = item.features[None].to(device)
        mask = torch.ones(1, features.shape[2], dtype=torch.bool, device=device)
        output = head(features, mask, fields=on_video is not None)  # `on_video` may want the boundary fields
        if on_video is not None:
            on_video(item, output)
        detections = video_segments(
            output, model_config.boundary_head, head.postprocess, item.fps, item.feat_stride, item.num_frames,
            item.duration,
        )  # fmt: skip
        results[item.video_id] = [
            {"segment": [round(float(s), 4), round(float(e), 4)], "label": config.labels[int(c)], "score": float(p)}
            for (s, e), p, c in zip(
                detections.segments.tolist(), detections.scores.tolist(), detections.labels.tolist(), strict=True
            )
        ]
        valid = output.masks[0]
        depth_sum += float(output.layer_masks.float().sum(-1)[valid].sum())
        positions += float(valid.sum())
        seconds += item.duration
        flops += output_flops(model_config, output, batch=1).total
        flops_uniform += uniform_head_flops(model_config, 1, output.padded_length, bool(output.boundary)).total
    stats = {
        "videos": len(dataset),
        "seconds": seconds,
        "mean_depth": depth_sum / max(positions, 1.0),
        "head_flops": flops,
        "head_flops_uniform": flops_uniform,
    }
    return results, stats


def predict(
    checkpoint: Path,
    annotations: Path,
    features_dir: Path,
    split: str = "test",
    execution: Literal["soft", "hard"] = "hard",
    runtime: Runtime = "torch",
    onnx: Path | None = None,
    engine: Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    load_head: HeadLoader | None = None,
    on_video: Callable[[VideoItem, TZNOutput], None] | None = None,
) -> tuple[dict, dict[str, float]]:
    """`tzn predict`: -> ({"version", "results", "external_data"}, stats). `load_head(runtime, onnx=, engine=)`
    loads exported heads (runtime onnxruntime or tensorrt)."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PredictError("--device cuda was requested but CUDA is not available")
    model, config = load_checkpoint(checkpoint, device)
    if runtime == "torch":
        head: Head = TorchHead(model, config, device=torch.device(device), execution=execution)
    else:
        if runtime == "onnxruntime" and onnx is None:
            raise PredictError("--runtime onnxruntime needs --onnx FILE")
        if runtime == "tensorrt" and engine is None:
            raise PredictError("--runtime tensorrt needs --engine FILE")
        if load_head is None:
            raise PredictError(f"runtime {runtime!r} needs a head loader (engine.heads.load_head)")
        head = load_head(runtime, onnx=onnx, engine=engine)
    spec = config.features
    dataset = FeatureDataset(
        annotations, features_dir, split, feat_stride=spec.feat_stride, num_frames=spec.num_frames,
        default_fps=spec.default_fps,
    )  # fmt: skip
    results, stats = predict_dataset(head, dataset, device, progress, on_video)
    document = {"version": "tzn-predictions-1", "results": results, "external_data": {"used": False}}
    return document, stats


def write_json(path: Path, document: dict) -> None:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document) + "\n")
