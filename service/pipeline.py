"""One video in, actions out: decode -> backbone features -> TZN head -> segments, with cost per stage.

The same code path serves `POST /localize`, `tzn localize VIDEO` and `tzn extract-features`:
- decoding: service/decode.py (an isolated child process; service/container.py checks the file first);
- features: the backbone of model/backbones.py, clips grouped by its BackboneSpec;
- head: a `model.head.Head` from service/runners.py (torch, onnxruntime or TensorRT);
- segments: `model.postprocess.video_segments`, the step `tzn predict` shares.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.backbones import SPECS, build_backbone, flops_per_unit, group_clips
from model.checkpoint import CheckpointConfig
from model.flops import output_flops, uniform_head_flops
from model.postprocess import video_segments
from model.tzn import TZNOutput
from service.decode import VideoInfo, decode_frames, warm_up_decoder
from service.errors import ConfigurationError
from service.runners import load_head
from service.schemas import Flops, LocalizeResponse, ModelInfo, Segment, Timing, VideoModel
from service.settings import Settings


@dataclass
class VideoFeatures:
    """Backbone output for one video: features (C, K) float32, clip centres (K,) seconds."""

    info: VideoInfo
    features: torch.Tensor
    clip_times: np.ndarray
    decode_ms: float
    features_ms: float
    backbone_flops: int


@dataclass
class Localization:
    info: VideoInfo
    segments: list[dict]
    timing_ms: dict[str, float]
    flops: dict[str, float]
    mean_depth: float | None
    realtime_factor: float

    def response(self, model: ModelInfo, request_id: str) -> LocalizeResponse:
        """The /localize answer (and `tzn localize`'s output)."""
        return LocalizeResponse(
            request_id=request_id,
            video=VideoModel(**self.info.model_dump()),
            segments=[Segment(**segment) for segment in self.segments],
            model=model,
            timing_ms=Timing(**self.timing_ms),
            flops=Flops(**self.flops),
            realtime_factor=self.realtime_factor,
        )


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError("TZN_DEVICE=cuda but no CUDA device is available; use auto or cpu")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


class FeatureExtractor:
    """Decoding and the video backbone: a file -> clip features."""

    def __init__(self, backbone_name: str, weights: Path | None, device: torch.device, settings: Settings):
        if backbone_name not in SPECS:
            raise ConfigurationError(f"unknown backbone {backbone_name!r}; choose one of {', '.join(sorted(SPECS))}")
        self.spec = SPECS[backbone_name]
        self.device = device
        self.settings = settings
        backbone, self.weights = build_backbone(backbone_name, weights)
        self.backbone = backbone.to(device)
        self.flops_per_unit = flops_per_unit(self.backbone)
        self.batch = 64 if self.spec.per_frame else 8
        # One network computation at a time: concurrent requests overlap their decoding (separate processes)
        # but not their backbone/head work, which would only oversubscribe the cores (or the GPU) and slow
        # every request down. Stage times are measured once the lock is held.
        self.compute_lock = threading.Lock()

    @torch.inference_mode()
    def extract(self, path: str | Path, filename: str | None = None) -> VideoFeatures:
        started = time.perf_counter()
        size = (self.spec.size, self.spec.size)
        frames, timestamps, info = decode_frames(
            path,
            sample_fps=self.spec.sample_fps,
            size=size,
            max_duration_s=self.settings.max_duration_s,
            timeout_s=self.settings.request_timeout_s,
            filename=filename,
            tmp_dir=self.settings.temp_dir,
        )
        decode_ms = (time.perf_counter() - started) * 1000
        with self.compute_lock:
            return self._features(frames, timestamps, info, decode_ms)

    def _features(self, frames: np.ndarray, timestamps: np.ndarray, info: VideoInfo, decode_ms: float) -> VideoFeatures:
        decoded = time.perf_counter()
        spec = self.spec
        if self.spec.per_frame:
            pieces = [
                self.backbone.frame_features(torch.from_numpy(frames[i : i + self.batch]).to(self.device))
                for i in range(0, len(frames), self.batch)
            ]
            features = self.backbone.pool_clips(torch.cat(pieces))
            units = len(frames)
            clip_times = spec.clip_times(features.shape[0], start_s=float(timestamps[0]))
        else:
            clips, clip_times = group_clips(frames, timestamps, spec)
            features = torch.cat(
                [
                    self.backbone(torch.from_numpy(np.ascontiguousarray(clips[i : i + self.batch])).to(self.device))
                    for i in range(0, len(clips), self.batch)
                ]
            )
            units = len(clips)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        done = time.perf_counter()
        return VideoFeatures(
            info=info,
            features=features.float().T.contiguous().cpu(),
            clip_times=clip_times,
            decode_ms=decode_ms,
            features_ms=(done - decoded) * 1000,
            backbone_flops=units * self.flops_per_unit,
        )


class Localizer:
    """Everything needed to answer a request, loaded once: backbone, TZN head, labels."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.device = resolve_device(settings.device)
        # The head brings its checkpoint config (from the checkpoint directory, or from the ONNX metadata).
        self.head = load_head(
            settings.runtime,
            checkpoint=settings.checkpoint if settings.runtime == "torch" else None,
            onnx=settings.onnx,
            engine=settings.engine,
            device=self.device,
        )
        self.config: CheckpointConfig = self.head.checkpoint
        self.checkpoint_sha256 = self.head.checkpoint_sha256
        backbone_name = settings.backbone or self.config.features.backbone
        if backbone_name is None:
            raise ConfigurationError(
                "the checkpoint does not name the backbone its features came from; set TZN_BACKBONE to it"
            )
        if self.config.features.backbone and backbone_name != self.config.features.backbone:
            raise ConfigurationError(
                f"the checkpoint was trained on {self.config.features.backbone!r} features, not {backbone_name!r}"
            )
        self.extractor = FeatureExtractor(backbone_name, settings.backbone_weights, self.device, settings)
        spec = self.extractor.spec
        if self.config.model.input_dim != spec.feature_dim:
            raise ConfigurationError(
                f"checkpoint expects {self.config.model.input_dim}-d features, {backbone_name} gives {spec.feature_dim}"
            )
        self.warm_up()

    @property
    def model_name(self) -> str:
        """The checkpoint's own name (metadata "name"), else the name of the file or directory served."""
        settings = self.settings
        source = {
            "torch": settings.checkpoint,
            "onnxruntime": settings.onnx,
            "tensorrt": settings.engine or settings.onnx,
        }
        return str(self.config.metadata.get("name") or Path(source[settings.runtime]).stem)

    def model_info(self) -> ModelInfo:
        """The `model` object of every answer."""
        return ModelInfo(
            name=self.model_name,
            checkpoint_sha256=self.checkpoint_sha256,
            backbone=self.extractor.spec.name,
            backbone_weights=self.extractor.weights,
            runtime=self.settings.runtime,
            device=str(self.device),
        )

    @torch.inference_mode()
    def warm_up(self) -> None:
        warm_up_decoder()
        spec = self.extractor.spec
        frames = torch.zeros(spec.frames_per_clip, spec.size, spec.size, 3, dtype=torch.uint8, device=self.device)
        if spec.per_frame:
            self.extractor.backbone.frame_features(frames)
        else:
            self.extractor.backbone(frames[None])
        length = 64
        self.head(torch.zeros(1, self.config.model.input_dim, length), torch.ones(1, length, dtype=torch.bool))

    @torch.inference_mode()
    def localize(self, path: str | Path, filename: str | None = None, min_score: float | None = None,
                 top_k: int | None = None) -> Localization:  # fmt: skip
        min_score = self.settings.min_score if min_score is None else min_score
        top_k = self.settings.top_k if top_k is None else top_k
        extracted = self.extractor.extract(path, filename)
        features = extracted.features[None]
        mask = torch.ones(1, features.shape[-1], dtype=torch.bool)
        with self.extractor.compute_lock:
            started = time.perf_counter()
            output = self.head(features, mask)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            head_done = time.perf_counter()
        segments = self._segments(output, extracted, min_score, top_k)
        finished = time.perf_counter()

        head = output_flops(self.config.model, output, batch=1).total
        head_uniform = uniform_head_flops(self.config.model, 1, output.padded_length).total
        timing = {
            "decode": extracted.decode_ms,
            "features": extracted.features_ms,
            "head": (head_done - started) * 1000,
            "postprocess": (finished - head_done) * 1000,
        }
        timing["total"] = sum(timing.values())
        valid = mask.shape[1]
        mean_depth = float(output.layer_masks[0, :valid].sum(-1).mean()) if output.tau is not None else None
        return Localization(
            info=extracted.info,
            segments=segments,
            timing_ms=timing,
            flops={
                "backbone": float(extracted.backbone_flops),
                "head": float(head),
                "head_uniform": float(head_uniform),
                "total": float(extracted.backbone_flops + head),
                "head_saved_ratio": 1.0 - head / head_uniform,
                "mean_depth": mean_depth if mean_depth is not None else float(self.config.model.stem_layers),
            },
            mean_depth=mean_depth,
            realtime_factor=extracted.info.duration_s / max(timing["total"] / 1000, 1e-9),
        )

    def _segments(self, output: TZNOutput, extracted: VideoFeatures, min_score: float, top_k: int) -> list[dict]:
        spec = self.extractor.spec
        first_frame_s = float(extracted.clip_times[0] - (spec.frames_per_clip / 2) / spec.sample_fps)
        info = extracted.info
        seconds = video_segments(
            output, self.config.model.boundary_head, self.head.postprocess, spec.sample_fps, spec.clip_stride,
            spec.frames_per_clip, duration=info.duration_s, start_s=first_frame_s,
        )  # fmt: skip
        found = []
        for (start, end), score, label in zip(
            seconds.segments.tolist(), seconds.scores.tolist(), seconds.labels.tolist(), strict=True
        ):
            if score < min_score or len(found) >= top_k:
                continue
            found.append(
                {
                    "label": self.config.labels[label],
                    "label_id": int(label),
                    "score": float(score),
                    "start_s": start,
                    "end_s": end,
                    "start_frame": int(round(start * info.fps)),
                    "end_frame": int(round(end * info.fps)),
                }
            )
        return found
