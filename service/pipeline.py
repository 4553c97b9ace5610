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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.backbones import SPECS, build_backbone, flops_per_unit, group_clips
from model.checkpoint import CheckpointConfig, label_id
from model.flops import output_flops, uniform_head_flops
from model.postprocess import video_segments
from model.tzn import TZNOutput
from service.chunks import CHUNK_FRAMES, FEATURES_SHARE, ClipCarry, Progress, decode_chunks
from service.decode import VideoInfo, decode_frames, warm_up_decoder
from service.errors import ConfigurationError
from service.gpu_features import CudaFeatureExtractor
from service.preflight import backbone_for, resolve_device
from service.runners import load_head
from service.schemas import STAGES, Flops, LocalizeResponse, ModelInfo, Segment, Timing, VideoModel
from service.settings import DEMO_CHECKPOINT, Settings
from service.torchcodec_video import warm_up as warm_up_nvdec
from service.trace import PositionTrace, boundary_trace, depth_trace


@dataclass(frozen=True)
class WorkLimits:
    """How long a video may be and how long its decoding may take: /localize's (TZN_MAX_DURATION_S,
    TZN_REQUEST_TIMEOUT_S) or a job's (TZN_JOBS_MAX_DURATION_S, TZN_JOBS_TIMEOUT_S)."""

    max_duration_s: float
    timeout_s: float


@dataclass
class VideoFeatures:
    """Backbone output for one video: features (C, K) float32, clip centres (K,) seconds."""

    info: VideoInfo
    features: torch.Tensor
    clip_times: np.ndarray
    decode_ms: float
    features_ms: float
    backbone_flops: int
    waited_ms: float = 0.0  # for the compute lock, after decoding


@dataclass
class Localization:
    info: VideoInfo
    segments: list[dict]
    timing_ms: dict[str, float]
    flops: dict[str, float]
    mean_depth: float | None
    realtime_factor: float
    positions: PositionTrace | None = None

    def response(self, model: ModelInfo, request_id: str, include: frozenset[str] = frozenset()) -> LocalizeResponse:
        """The /localize answer (and `tzn localize`'s output); `include` adds the per-position traces
        ("depth", "boundary") a timeline needs."""
        positions = self.positions
        return LocalizeResponse(
            request_id=request_id,
            video=VideoModel(**self.info.model_dump()),
            segments=[Segment(**segment) for segment in self.segments],
            model=model,
            timing_ms=Timing(**self.timing_ms),
            flops=Flops(**self.flops),
            realtime_factor=self.realtime_factor,
            depth=depth_trace(positions) if "depth" in include and positions is not None else None,
            boundary=boundary_trace(positions) if "boundary" in include and positions is not None else None,
        )


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
        self.chunk_frames = CHUNK_FRAMES
        # One network computation at a time: concurrent requests overlap their decoding (separate processes)
        # but not their backbone/head work, which would only oversubscribe the cores (or the GPU) and slow
        # every request down. Stage times are measured once the lock is held.
        self.compute_lock = threading.Lock()

    @torch.inference_mode()
    def extract(
        self,
        path: str | Path,
        filename: str | None = None,
        limits: WorkLimits | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> VideoFeatures:
        """Features of the video at `path`, decoded and extracted chunk by chunk (service.chunks): memory does
        not grow with the video's length beyond its clip features. `limits` default to /localize's."""
        limits = limits or WorkLimits(self.settings.max_duration_s, self.settings.request_timeout_s)
        report = progress or (lambda stage, fraction: None)
        spec = self.spec
        carry = ClipCarry(spec.frames_per_clip, spec.clip_stride)
        found: dict[str, VideoInfo] = {}
        pieces, first_time, frames_seen = [], 0.0, 0
        decode_s = features_s = 0.0
        report("decoding", 0.0)
        waiting = time.perf_counter()
        for chunk in decode_chunks(
            path,
            sample_fps=spec.sample_fps,
            size=(spec.size, spec.size),
            chunk_frames=self.chunk_frames,
            max_duration_s=limits.max_duration_s,
            timeout_s=limits.timeout_s,
            filename=filename,
            tmp_dir=self.settings.temp_dir,
            cancelled=cancelled,
            on_info=lambda info: found.setdefault("info", info),
        ):
            decode_s += time.perf_counter() - waiting
            if chunk.first == 0:
                first_time = float(chunk.timestamps[0])
            report("features", FEATURES_SHARE * chunk.first / chunk.total)
            with self.compute_lock:
                started = time.perf_counter()
                pieces.append(self._chunk_features(chunk.frames, carry))
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                features_s += time.perf_counter() - started
            frames_seen += len(chunk.frames)
            report("decoding", FEATURES_SHARE * frames_seen / chunk.total)
            waiting = time.perf_counter()
        decode_s += time.perf_counter() - waiting
        if (rest := carry.finish()) is not None:  # shorter than one clip: padded as the whole-video path does
            pieces.append(self._short_video_features(rest))
        features = torch.cat(pieces)
        units = frames_seen if spec.per_frame else features.shape[0]
        return VideoFeatures(
            info=found["info"],
            features=features.float().T.contiguous().cpu(),
            clip_times=spec.clip_times(features.shape[0], start_s=first_time),
            decode_ms=decode_s * 1000,
            features_ms=features_s * 1000,
            backbone_flops=units * self.flops_per_unit,
        )

    def _chunk_features(self, frames: np.ndarray, carry: ClipCarry) -> torch.Tensor:
        """(N, H, W, 3) frames of one chunk -> (K, C) features of the clips it completes (K may be 0)."""
        if self.spec.per_frame:
            frame_features = self._batched(self.backbone.frame_features, frames)
            window, clips = carry.push(frame_features)
            return self.backbone.pool_clips(window) if clips else frame_features[:0]
        window, clips = carry.push(frames)
        if not clips:
            return torch.empty(0, self.spec.feature_dim, device=self.device)
        grouped, _ = group_clips(window, np.zeros(len(window)), self.spec)
        return self._batched(self.backbone, grouped)

    def _short_video_features(self, rest) -> torch.Tensor:
        if self.spec.per_frame:
            return self.backbone.pool_clips(rest)
        grouped, _ = group_clips(rest, np.zeros(len(rest)), self.spec)
        return self._batched(self.backbone, grouped)

    def _batched(self, network: Callable[[torch.Tensor], torch.Tensor], items: np.ndarray) -> torch.Tensor:
        return torch.cat(
            [
                network(torch.from_numpy(np.ascontiguousarray(items[i : i + self.batch])).to(self.device))
                for i in range(0, len(items), self.batch)
            ]
        )

    @torch.inference_mode()
    def whole_video_features(self, path: str | Path, filename: str | None = None) -> VideoFeatures:
        """The reference for `extract`: every sampled frame decoded into memory at once, then the backbone.
        Memory grows with the video's length; kept to check the chunked path against."""
        started = time.perf_counter()
        frames, timestamps, info = decode_frames(
            path,
            sample_fps=self.spec.sample_fps,
            size=(self.spec.size, self.spec.size),
            max_duration_s=self.settings.max_duration_s,
            timeout_s=self.settings.request_timeout_s,
            filename=filename,
            tmp_dir=self.settings.temp_dir,
        )
        decoded = time.perf_counter()
        with self.compute_lock:
            locked = time.perf_counter()
            extracted = self._features(frames, timestamps, info)
        extracted.decode_ms = (decoded - started) * 1000
        extracted.waited_ms = (locked - decoded) * 1000
        return extracted

    def _features(self, frames: np.ndarray, timestamps: np.ndarray, info: VideoInfo) -> VideoFeatures:
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
            decode_ms=0.0,
            features_ms=(done - decoded) * 1000,
            backbone_flops=units * self.flops_per_unit,
        )


class GpuFeatureExtractor:
    """The CUDA path (service/gpu_features.py: NVDEC, shared bf16 batches) behind FeatureExtractor's interface.

    Decoding runs in the server process (the frames stay on the GPU): unlike the CPU path, a decoder crash is
    not isolated and there is no decode time limit; TZN_GPU_DECODE=false returns to the isolated decord path.
    """

    def __init__(self, backbone_name: str, weights: Path | None, device: torch.device, settings: Settings):
        if backbone_name not in SPECS:
            raise ConfigurationError(f"unknown backbone {backbone_name!r}; choose one of {', '.join(sorted(SPECS))}")
        self.cuda = CudaFeatureExtractor(backbone_name, weights, device)
        self.spec, self.weights, self.backbone = self.cuda.spec, self.cuda.weights, self.cuda.backbone
        self.device, self.settings = self.cuda.device, settings
        self.compute_lock = threading.Lock()  # the head: one at a time (the backbone batches across requests)

    def extract(
        self,
        path: str | Path,
        filename: str | None = None,
        limits: WorkLimits | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> VideoFeatures:
        """As FeatureExtractor.extract; progress is reported at the start and the end only, and a cancelled job
        stops after the extraction."""
        limits = limits or WorkLimits(self.settings.max_duration_s, self.settings.request_timeout_s)
        report = progress or (lambda stage, fraction: None)
        report("decoding", 0.0)
        info, features, clip_times, timing, flops = self.cuda.extract(path, filename, limits.max_duration_s)
        report("features", FEATURES_SHARE)
        return VideoFeatures(info, features, clip_times, timing["decode"], timing["features"], flops)


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
            cuda_graphs=settings.cuda_graphs,
        )
        self.config: CheckpointConfig = self.head.checkpoint
        self.checkpoint_sha256 = self.head.checkpoint_sha256
        spec = backbone_for(self.config, settings)
        on_gpu = self.device.type == "cuda" and settings.gpu_decode
        extractor = GpuFeatureExtractor if on_gpu else FeatureExtractor
        self.extractor = extractor(spec.name, settings.backbone_weights, self.device, settings)
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
        """Runs every stage once (decoder process, backbone, head, postprocessing), so that the first request
        is not slower than the others and a setting that breaks a stage fails here, before readiness."""
        warm_up_decoder()
        if isinstance(self.extractor, GpuFeatureExtractor):  # the CUDA context and a cached NVDEC decoder
            warm_up_nvdec(str(self.extractor.device), DEMO_CHECKPOINT.parent / "sample.mp4")
        spec = self.extractor.spec
        frames = torch.zeros(spec.frames_per_clip, spec.size, spec.size, 3, dtype=torch.uint8, device=self.device)
        if spec.per_frame:
            self.extractor.backbone.frame_features(frames)
        else:
            self.extractor.backbone(frames[None])
        length = 64  # the head as a default request runs it: without boundary fields (CUDA graphs: that graph)
        features, mask = torch.zeros(1, self.config.model.input_dim, length), torch.ones(1, length, dtype=torch.bool)
        output = self.head(features, mask, fields=False)
        video_segments(
            output, self.config.model.boundary_head, self.head.postprocess, spec.sample_fps, spec.clip_stride,
            spec.frames_per_clip, duration=length * spec.clip_stride / spec.sample_fps,
        )  # fmt: skip

    @torch.inference_mode()
    def localize(
        self,
        path: str | Path,
        filename: str | None = None,
        min_score: float | None = None,
        top_k: int | None = None,
        upload_ms: float = 0.0,
        received_at: float | None = None,
        limits: WorkLimits | None = None,
        progress: Progress | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        fields: bool = False,
    ) -> Localization:
        """Localizes the actions of the video at `path`. `upload_ms`: how long receiving it took; `received_at`:
        `time.perf_counter()` when it was received (default: now). Stage times add up to `total`, the wall
        time from the request's arrival: upload, queue (waiting for a worker and the compute lock), decode,
        features, head, postprocess. `progress(stage, fraction)` follows decoding, features and head;
        `cancelled()` is polled while decoding (JobCancelledError). `fields`: the caller wants the boundary
        fields (include=boundary, a plot); otherwise the boundary head runs only when the decoding uses it
        (postprocess.snap)."""
        started = time.perf_counter()
        received_at = started if received_at is None else received_at
        min_score = self.settings.min_score if min_score is None else min_score
        top_k = self.settings.top_k if top_k is None else top_k
        report = progress or (lambda stage, fraction: None)
        extracted = self.extractor.extract(path, filename, limits, report, cancelled)
        report("head", FEATURES_SHARE)
        features = extracted.features[None]
        mask = torch.ones(1, features.shape[-1], dtype=torch.bool)
        with self.extractor.compute_lock:
            head_started = time.perf_counter()
            output = self.head(features, mask, fields=fields)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            head_done = time.perf_counter()
        segments = self._segments(output, extracted, min_score, top_k)
        finished = time.perf_counter()

        timing = {
            "upload": upload_ms,
            "queue": 0.0,
            "decode": extracted.decode_ms,
            "features": extracted.features_ms,
            "head": (head_done - head_started) * 1000,
            "postprocess": (finished - head_done) * 1000,
        }
        timing["total"] = upload_ms + (finished - received_at) * 1000
        # Everything that is not a stage is waiting: for a worker thread, for the compute lock (twice).
        timing["queue"] = max(timing["total"] - sum(timing[k] for k in STAGES if k != "queue"), 0.0)
        head = output_flops(self.config.model, output, batch=1).total
        # the uniform model that computes the same outputs: with the boundary head only if this run had it
        head_uniform = uniform_head_flops(self.config.model, 1, output.padded_length, bool(output.boundary)).total
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
            positions=self._positions(output, extracted, valid),
        )

    def _positions(self, output: TZNOutput, extracted: VideoFeatures, valid: int) -> PositionTrace:
        bdr = self.config.model.boundary_head == "bdr" and output.boundary
        return PositionTrace(
            times_s=np.asarray(extracted.clip_times[:valid], dtype=np.float64),
            depth=output.layer_masks[0, :valid].float().sum(-1).cpu().numpy().astype(np.float64),
            max_depth=self.config.model.stem_layers,
            boundary=output.boundary[0][0, :valid].float().cpu().numpy().astype(np.float64) if bdr else None,
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
                    "label_id": label_id(self.config, label),
                    "score": float(score),
                    "start_s": start,
                    "end_s": end,
                    "start_frame": info.frame_at(start),
                    "end_frame": info.frame_at(end),
                }
            )
        return found
