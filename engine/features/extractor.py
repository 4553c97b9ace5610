"""Clip features of decoded frames, on the CPU or a GPU: the same code, whatever decoded the frames.

    extractor = FeatureExtractor(SPECS["resnet18-2d"], weights=None, device=torch.device("cpu"))
    extracted = extractor.features(chunks)           # chunks: FrameChunk from any decoder, in time order

Frames go through the one clip windower (engine/features/windows.py): for a 2D backbone the backbone runs once
per frame and a clip's feature is the mean of its frames' features; for a 3D backbone each clip goes into the
backbone. The backbone runs in batches shared by concurrent requests (engine/batching.py): one network
computation at a time, so concurrent requests overlap their decoding but do not oversubscribe the cores or
the GPU. On CUDA the backbone runs channels-last in bfloat16 autocast. The CPU and CUDA extractors differ
only in where frames are moved to and where the backbone runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engine.batching import BatchRunner
from engine.features.windows import ClipWindower
from engine.video.decode import FrameChunk
from model.backbones import BackboneSpec, build_backbone, flops_per_unit

Progress = Callable[[float], None]  # share of the sampled frames handled so far, 0..1


@dataclass
class ExtractedFeatures:
    """features (C, K) float32 on the extractor's device; clip_times (K,) s, clip centres in the video;
    decode_ms: time spent waiting for frames; features_ms: backbone time of the batches that held this video's
    frames; backbone_flops: what its frames cost the backbone."""

    features: Tensor
    clip_times: np.ndarray
    decode_ms: float
    features_ms: float
    backbone_flops: int


@dataclass
class FrameFeatures:
    """Per-frame backbone features: rows (N, C) on the extractor's device, the frames' times (N,) s, and what
    they cost (decode wait and backbone ms, FLOPs)."""

    rows: Tensor
    times: np.ndarray
    decode_ms: float
    features_ms: float
    backbone_flops: int


class WaitedChunks:
    """Iterates `chunks`, adding up in `seconds` the time spent waiting for them: a request's decode stage."""

    def __init__(self, chunks: Iterable[FrameChunk]):
        self.chunks, self.seconds = chunks, 0.0

    def __iter__(self):
        waiting = time.perf_counter()
        for chunk in self.chunks:
            self.seconds += time.perf_counter() - waiting
            yield chunk
            waiting = time.perf_counter()
        self.seconds += time.perf_counter() - waiting


class FeatureExtractor:
    """A backbone on `device` and its shared batches. `batch`: frames (2D) or clips (3D) per batch, 0 for the
    device's default; `batch_wait_ms`: how long a batch waits for other requests' frames (CUDA). `network_of`:
    another extractor of the same backbone whose network (and weights) this one runs, on frames of its own
    size (`spec.size`), in batches of its own (a batch holds frames of one size)."""

    def __init__(
        self,
        spec: BackboneSpec,
        weights: str | Path | None,
        device: torch.device,
        batch: int = 0,
        batch_wait_ms: float = 1.0,
        network_of: FeatureExtractor | None = None,
    ):
        self.spec, self.device = spec, device
        if network_of is not None and network_of.spec.name != spec.name:
            raise ValueError(f"a {spec.name} extractor cannot run {network_of.spec.name}'s network")
        backbone, self.weights = (network_of.backbone, network_of.weights) if network_of is not None else \
            build_backbone(spec.name, weights)  # fmt: skip
        self.flops_per_unit = flops_per_unit(backbone, spec.size)  # at the frames' size (features.frame_size)
        on_gpu = device.type == "cuda"
        layout = torch.channels_last if spec.per_frame else torch.channels_last_3d
        self.backbone = backbone.to(device, memory_format=layout) if on_gpu else backbone.to(device)
        default_batch = (512 if spec.per_frame else 64) if on_gpu else (64 if spec.per_frame else 8)
        self.batches = BatchRunner(self._compute, batch or default_batch, batch_wait_ms / 1000 if on_gpu else 0.0)

    @torch.inference_mode()
    def _compute(self, units: Tensor) -> Tensor:
        """(N, H, W, 3) frames or (N, F, H, W, 3) clips, uint8 -> (N, C) float32."""
        network = self.backbone.frame_features if self.spec.per_frame else self.backbone
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return network(units).float()
        return network(units).float()

    def run(self, units: Tensor) -> tuple[Tensor, float]:
        """Backbone rows of `units` on this device, and the ms the batches holding them ran."""
        rows, timing = self.batches.run(units.to(self.device, non_blocking=True))
        return rows, timing.compute_ms

    @torch.inference_mode()
    def features(
        self, chunks: Iterable[FrameChunk], progress: Progress = lambda share: None, first_time_s: float | None = None
    ) -> ExtractedFeatures:
        """Features of one video from its frame chunks (frames fitted to the backbone's size, in time order).
        Memory does not grow with the video's length beyond its clip features."""
        spec = self.spec
        windower = ClipWindower(spec.frames_per_clip, spec.clip_stride)
        pieces, units, first_time, compute_ms = [], 0, first_time_s, 0.0
        waited = WaitedChunks(chunks)
        for chunk in waited:
            first_time = float(chunk.times[0]) if first_time is None else first_time
            piece, chunk_units, chunk_ms = self._chunk_features(chunk.frames, windower)
            pieces.append(piece)
            units += chunk_units
            compute_ms += chunk_ms
            progress((chunk.first + len(chunk.times)) / chunk.total)
        if (rest := windower.finish()) is not None:  # a video shorter than one clip: one padded clip
            piece, chunk_units, chunk_ms = self._padded_clip(rest)
            pieces.append(piece)
            units += chunk_units
            compute_ms += chunk_ms
        features = torch.cat(pieces)
        return ExtractedFeatures(
            features=features.T.contiguous(),
            clip_times=spec.clip_times(features.shape[0], start_s=first_time or 0.0),
            decode_ms=waited.seconds * 1000,
            features_ms=compute_ms,
            backbone_flops=units * self.flops_per_unit,
        )

    @torch.inference_mode()
    def frame_features(self, chunks: Iterable[FrameChunk], progress: Progress = lambda share: None) -> FrameFeatures:
        """One feature per sampled frame (a 2D backbone only): what the temporal zoom (engine/zoom.py) pools
        into clips at any rate, and refines boundaries on."""
        if not self.spec.per_frame:
            raise ValueError(f"per-frame features need a 2D backbone; {self.spec.name} computes whole clips")
        rows, times, compute_ms = [], [], 0.0
        waited = WaitedChunks(chunks)
        for chunk in waited:
            piece, ms = self.run(chunk.frames)
            rows.append(piece)
            times.append(chunk.times)
            compute_ms += ms
            progress((chunk.first + len(chunk.times)) / chunk.total)
        count = sum(len(piece) for piece in rows)
        return FrameFeatures(
            rows=torch.cat(rows) if rows else torch.empty(0, self.spec.feature_dim, device=self.device),
            times=np.concatenate(times) if times else np.empty(0), decode_ms=waited.seconds * 1000,
            features_ms=compute_ms, backbone_flops=count * self.flops_per_unit,
        )  # fmt: skip

    def _chunk_features(self, frames: Tensor, windower: ClipWindower) -> tuple[Tensor, int, float]:
        """Features (K, C) of the clips a chunk completes, the backbone units it ran, their ms."""
        if self.spec.per_frame:
            rows, ms = self.run(frames)
            return windower.push(rows).mean(1), len(frames), ms
        clips = windower.push(frames)
        if len(clips) == 0:
            return torch.empty(0, self.spec.feature_dim, device=self.device), 0, 0.0
        rows, ms = self.run(clips)
        return rows, len(clips), ms

    def _padded_clip(self, rest: Tensor) -> tuple[Tensor, int, float]:
        """`rest` (1, F, ...): per-frame features (2D, the backbone already ran on them) or frames (3D)."""
        if self.spec.per_frame:
            return rest.mean(1), 0, 0.0
        rows, ms = self.run(rest)
        return rows, 1, ms

    def warm_up(self) -> None:
        """One batch through the backbone: lazy initialisation (cuDNN, the CPU's kernels) before the first request."""
        spec = self.spec
        frames = torch.zeros(spec.frames_per_clip, spec.size, spec.size, 3, dtype=torch.uint8)
        self.run(frames if spec.per_frame else frames[None])
