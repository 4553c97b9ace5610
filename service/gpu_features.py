"""Clip features on a CUDA host: NVDEC decoding into GPU memory, resize on the GPU, a bf16 channels-last
backbone in batches shared across concurrent requests, and decoding of chunk k+1 overlapped with the
backbone on chunk k.

Chunking here is by sampled frames (`chunk_frames`); clip models keep the last frames_per_clip - clip_stride
frames of a chunk for the next one, so the clips are those of `model.backbones.group_clips` on the whole video.
The frames never leave the GPU; only the (C, K) features are copied back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from torch import Tensor

from model.backbones import SPECS, build_backbone, flops_per_unit
from service.batching import BatchRunner
from service.errors import VideoTooLongError
from service.torchcodec_video import iter_segments, open_decoder, sample_times, stream_of


class ClipAssembler:
    """Sampled frames arriving in chunks -> the clips of group_clips over all of them (clip models)."""

    def __init__(self, frames_per_clip: int, clip_stride: int):
        self.frames_per_clip, self.clip_stride = frames_per_clip, clip_stride
        self.tail: Tensor | None = None
        self.clips_out = 0

    def push(self, frames: Tensor) -> Tensor:
        """(n, H, W, 3) -> (k, frames_per_clip, H, W, 3): the clips completed by these frames."""
        buffer = frames if self.tail is None else torch.cat([self.tail, frames])
        usable = (
            (len(buffer) - self.frames_per_clip) // self.clip_stride + 1 if len(buffer) >= self.frames_per_clip else 0
        )
        self.tail = buffer[usable * self.clip_stride :]
        self.clips_out += usable
        if usable == 0:
            return buffer.new_empty((0, self.frames_per_clip, *buffer.shape[1:]))
        clips = buffer.unfold(0, self.frames_per_clip, self.clip_stride)[:usable]  # (k, H, W, 3, F)
        return clips.permute(0, 4, 1, 2, 3)

    def finish(self) -> Tensor | None:
        """The single padded clip of a video shorter than one clip (group_clips' rule), else None."""
        if self.clips_out or self.tail is None or len(self.tail) == 0:
            return None
        pad = self.tail[-1:].expand(self.frames_per_clip - len(self.tail), *self.tail.shape[1:])
        self.clips_out = 1
        return torch.cat([self.tail, pad])[None]


class CudaFeatureExtractor:
    """A file -> clip features (C, K) on a CUDA device; `extract` is safe to call from many threads."""

    def __init__(
        self,
        backbone_name: str,
        weights: Path | None = None,
        device: torch.device | str = "cuda",
        *,
        max_batch: int | None = None,
        max_wait_ms: float = 4.0,
        chunk_frames: int = 256,
        segment_s: float = 5.0,
        max_segments: int = 6,
    ):
        self.spec = SPECS[backbone_name]
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:  # pin the index: decode threads set it
            self.device = torch.device("cuda", torch.cuda.current_device())
        backbone, self.weights = build_backbone(backbone_name, weights)
        self.flops_per_unit = flops_per_unit(backbone)
        layout = torch.channels_last if self.spec.per_frame else torch.channels_last_3d
        self.backbone = backbone.to(self.device, memory_format=layout)
        self.chunk_frames = chunk_frames
        self.segment_s, self.max_segments = segment_s, max_segments
        self.batch = BatchRunner(self._compute, max_batch or (512 if self.spec.per_frame else 64), max_wait_ms / 1000)

    @torch.inference_mode()
    def _compute(self, units: Tensor) -> Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if self.spec.per_frame:
                return self.backbone.frame_features(units).float()
            return self.backbone(units).float()

    @torch.inference_mode()
    def extract(self, path: str | os.PathLike, filename: str | None = None, max_duration_s: float | None = None):
        """-> (info, features (C, K) float32 on the CPU, clip times (K,) s, timing_ms {decode, features, ...},
        backbone FLOPs)."""
        started = time.perf_counter()
        name = filename or os.path.basename(path)
        decoder = open_decoder(path, str(self.device), name)
        stream = stream_of(decoder, name)
        if max_duration_s is not None and stream.info.duration_s > max_duration_s:
            raise VideoTooLongError(stream.info.duration_s, max_duration_s, name)
        times = sample_times(stream.begin_s, stream.end_s, self.spec.sample_fps)
        # one NVDEC stream decodes ~1000 720p frames/s: a long video is cut into segments (about
        # segment_s seconds each, at most max_segments) decoded at once on several NVDEC engines
        segments = min(self.max_segments, max(1, round(stream.info.duration_s / self.segment_s)))
        size = (self.spec.size, self.spec.size)
        chunks = iter_segments(
            path, times, size, device=str(self.device), segments=segments, chunk=self.chunk_frames,
            decoder=decoder, filename=name,
        )  # fmt: skip

        spec = self.spec
        assembler = None if spec.per_frame else ClipAssembler(spec.frames_per_clip, spec.clip_stride)
        pieces, first_pts, units, wait_ms, compute_ms, decoded_at = [], None, 0, 0.0, 0.0, started
        for frames, pts in chunks:
            decoded_at = time.perf_counter()
            first_pts = pts[0] if first_pts is None else first_pts
            batch_units = frames if spec.per_frame else assembler.push(frames)
            if len(batch_units):
                rows, timing = self.batch.run(batch_units)
                pieces.append(rows)
                units += len(batch_units)
                wait_ms += timing.wait_ms
                compute_ms += timing.compute_ms
        if assembler is not None and (last := assembler.finish()) is not None:
            rows, timing = self.batch.run(last)
            pieces.append(rows)
            units += len(last)
        features = torch.cat(pieces)
        if spec.per_frame:
            features = self.backbone.pool_clips(features)
        features = features.T.contiguous().cpu()
        done = time.perf_counter()
        clip_count = features.shape[1]
        clip_times = (
            first_pts
            + (torch.arange(clip_count).double().numpy() * spec.clip_stride + spec.frames_per_clip / 2)
            / spec.sample_fps
        )
        timing_ms = {
            # the stages overlap: decode = until the last chunk was decoded, features = the rest
            "decode": (decoded_at - started) * 1000,
            "features": (done - decoded_at) * 1000,
            "backbone_compute": compute_ms,
            "batch_wait": wait_ms,
        }
        return stream.info, features, clip_times, timing_ms, units * self.flops_per_unit
