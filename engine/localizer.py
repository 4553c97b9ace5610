"""One video in, actions out: decode -> backbone features -> TZN head -> segments, with what each stage cost.

    localizer = Localizer(EngineSettings(checkpoint="runs/demo"))
    found = localizer.localize(VideoSource.from_path("clip.mp4"), WorkLimits(max_duration_s=600, timeout_s=300))
    found.segments, found.timing_ms, found.flops, found.decoder

The one path `POST /localize`, `POST /jobs`, `tzn localize`, `tzn extract-features` and `tzn batch` run:
- frames: engine/video (the container precheck here and the stream's info in an isolated child, then decord
  or torchcodec in that child, or NVDEC in this process on a GPU host; engine/video/choice.py picks);
- features: engine/features (one clip windower; the backbone on the CPU or the GPU);
- head: a `model.head.Head` (torch, CUDA graphs, onnxruntime, TensorRT: engine/heads.py), one at a time;
- segments: `model.postprocess.video_segments`, the step `tzn predict` shares.
Features stay on the device into the head; postprocessing crosses to the host once; the per-position traces
(ATR depth, BDR fields) are copied only when a caller asks for them (`Localization.positions`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from engine.errors import JobCancelledError, VideoTimeoutError
from engine.features.extractor import ExtractedFeatures, FeatureExtractor, FrameFeatures
from engine.heads import load_head, timed_call
from engine.preflight import backbone_for, resolve_device
from engine.settings import EngineSettings, WorkLimits
from engine.trace import PositionTrace
from engine.video.child import warm_up_children
from engine.video.choice import NVDEC, cpu_decoder
from engine.video.decode import DecodeRequest, Decoding, FrameChunk
from engine.video.info import VideoInfo
from engine.video.nvdec import NvdecFallbackError, NvdecPool
from engine.video.sampling import Spans, sample_ticks
from engine.video.source import VideoSource
from engine.zoom import FrameSource, FrameSpool, ZoomedPass, run_zoom, spool_every, spooled_ticks, zoom_summary
from model.backbones import SPECS, smaller_frames
from model.checkpoint import CheckpointConfig, label_id
from model.flops import output_flops, uniform_head_flops
from model.postprocess import video_segments
from model.tzn import TZNOutput

log = logging.getLogger("tzn.engine")

STAGES = ("upload", "queue", "decode", "features", "head", "postprocess")  # of timing_ms, in request order
FEATURES_SHARE = 0.95  # share of a job's progress taken by decoding + features (the head is fast)

Progress = Callable[[str, float], None]  # (stage, fraction of the whole request)


@dataclass
class Localization:
    """One video's answer: what was found (segments best first, as dicts of the /localize answer), which
    decoder ran, the time per stage (ms; `STAGES` add up to `total`), the FLOPs, the ATR mean depth."""

    info: VideoInfo
    decoder: str
    segments: list[dict]
    timing_ms: dict[str, float]
    flops: dict[str, float]
    mean_depth: float | None
    realtime_factor: float
    trace: Callable[[], PositionTrace] = field(repr=False, default=lambda: None)
    zoom: dict | None = None  # a zoom checkpoint's passes: rates, windows, frames and ms (engine/zoom.py)

    def positions(self) -> PositionTrace:
        """ATR depth and BDR fields per feature position, copied from the device now."""
        return self.trace()


@dataclass(frozen=True)
class Sampling:
    """Which frames a decode gives (`Localizer.frames`): those at `fps` ticks (None: the served rate), inside
    `spans` (None: everywhere), `chunk_frames` at a time (None: the setting's), `size` px square (None: the
    checkpoint's features' size); every `coarse_every`-th also at `coarse_size` px square, or only those where the
    frames at `size` would take more than `one_pass_bytes` (DecodeRequest)."""

    fps: float | None = None
    spans: Spans | None = None
    chunk_frames: int | None = None
    size: int | None = None
    coarse_size: int | None = None
    coarse_every: int = 1
    one_pass_bytes: int | None = None


class Localizer:
    """Everything needed to answer a request, loaded once: decoders, backbone, TZN head, labels."""

    def __init__(self, settings: EngineSettings, warm_up_video: str | Path | None = None):
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.head = load_head(
            settings.runtime, checkpoint=settings.checkpoint if settings.runtime == "torch" else None,
            onnx=settings.onnx, engine=settings.engine, device=self.device, cuda_graphs=settings.cuda_graphs,
        )  # fmt: skip
        self.config: CheckpointConfig = self.head.checkpoint
        self.checkpoint_sha256 = self.head.checkpoint_sha256
        self.spec = backbone_for(self.config, settings)
        zoomed = settings.checkpoint if settings.runtime == "torch" else None
        self.zoom = ZoomedPass.load(zoomed, self.spec, self.device)
        if self.zoom is not None and self.config.features.default_fps:
            # the coarse pass samples at its detector's rate, also where the checkpoint names no backbone
            # (TZN_BACKBONE chose it; backbone_for then keeps the backbone's rate for dense checkpoints)
            self.spec = replace(self.spec, sample_fps=self.config.features.default_fps)
        native_fps = SPECS[self.spec.name].sample_fps
        if self.spec.sample_fps != native_fps:
            log.info("sampling at %g fps, the rate the checkpoint's features were computed at (%s's own: %g fps)",
                     self.spec.sample_fps, self.spec.name, native_fps)  # fmt: skip
        self.extractor = FeatureExtractor(
            self.spec, settings.backbone_weights, self.device, settings.backbone_batch, settings.backbone_batch_wait_ms
        )
        on_gpu = self.device.type == "cuda"
        self.nvdec = NvdecPool(self.device, settings.nvdec_engines, settings.nvdec_longest_part_s, settings.nvdec_parts_ahead) \
            if on_gpu and settings.gpu_decode and settings.decoder != "decord" else None  # fmt: skip
        self.cpu_decoder = cpu_decoder(settings.decoder, on_gpu)
        self.head_lock = threading.Lock()  # one head at a time (the backbone batches across requests)
        # the zoom's windows are read at the backbone's own size (its refiners and fine detector were trained so),
        # whatever size the coarse detector's frames have (features.frame_size)
        self.window_extractor = self.extractor
        if self.zoom is not None and smaller_frames(self.spec.name, self.spec.size):
            self.window_extractor = FeatureExtractor(
                self.spec.resized(None), settings.backbone_weights, self.device,
                settings.backbone_batch, settings.backbone_batch_wait_ms, network_of=self.extractor,
            )  # fmt: skip
        self.warm_up(warm_up_video)

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

    @property
    def default_decoder(self) -> str:
        """The decoder a typical (8-bit 4:2:0 H.264) video gets."""
        return NVDEC if self.nvdec is not None else self.cpu_decoder

    def model_info(self, decoder: str | None = None) -> dict[str, str]:
        """The `model` object of every answer; `decoder`: the one that ran (default: `default_decoder`)."""
        return {
            "name": self.model_name, "checkpoint_sha256": self.checkpoint_sha256, "backbone": self.spec.name,
            "backbone_weights": self.extractor.weights, "runtime": self.settings.runtime,
            "device": str(self.device), "decoder": decoder or self.default_decoder,
        }  # fmt: skip

    @torch.inference_mode()
    def warm_up(self, video: str | Path | None = None) -> None:
        """Runs every stage once (decoder children, NVDEC on `video`, backbone, head, postprocessing), so that the
        first request is not slower than the others and a setting that breaks a stage fails here."""
        warm_up_children()
        if self.nvdec is not None and video is not None:
            source = VideoSource.from_path(video)
            request = DecodeRequest(fps=self.spec.sample_fps, size=(self.spec.size,) * 2, timeout_s=60)
            with Decoding(source, request, None) as decoding:
                for _ in self.nvdec.decode(source, decoding.info, request):
                    pass
        self.extractor.warm_up()
        if self.window_extractor is not self.extractor:  # a zoom whose windows' frames are larger than the coarse
            self.window_extractor.warm_up()
        length = 64  # the head as a default request runs it: without boundary fields (CUDA graphs: that graph)
        features = torch.zeros(1, self.config.model.input_dim, length, device=self.device)
        output = self.head(features, torch.ones(1, length, dtype=torch.bool, device=self.device), fields=False)
        spec = self.spec
        video_segments(
            output, self.config.model.boundary_head, self.head.postprocess, spec.sample_fps, spec.clip_stride,
            spec.frames_per_clip, duration=length * spec.clip_stride / spec.sample_fps,
        )  # fmt: skip

    @contextmanager
    def frames(
        self, source: VideoSource, limits: WorkLimits, cancelled: Callable[[], bool] = lambda: False,
        use_nvdec: bool = True, fps: float | None = None, spans: Spans | None = None, chunk_frames: int | None = None,
        size: int | None = None, coarse_size: int | None = None, coarse_every: int = 1,
        one_pass_bytes: int | None = None,
    ) -> Iterator[tuple[VideoInfo, str, Iterator[FrameChunk]]]:  # fmt: skip
        """(the source's info, the decoder that decodes it, its sampled frames fitted to the backbone's size):
        the container precheck, the stream's info from the isolated child, then NVDEC or a CPU decoder. `fps`:
        the sampling rate (default: the served rate, `self.spec.sample_fps`); `spans`: only the frames inside them
        (the zoom's windows); `chunk_frames`: frames per chunk (default: the setting's); `size`: their side
        (default: the features'); `coarse_size`, `coarse_every`: every n-th also at that side, in
        FrameChunk.coarse, `one_pass_bytes`: or only those, for a video whose frames at `size` would not fit in
        that many bytes (DecodeRequest)."""
        started = time.monotonic()
        request = self._request(
            limits, Sampling(fps, spans, chunk_frames, size, coarse_size, coarse_every, one_pass_bytes)
        )
        nvdec = self.nvdec if use_nvdec else None
        with Decoding(source, request, self.cpu_decoder, nvdec=nvdec is not None, tmp_dir=self.settings.temp_dir,
                      cancelled=cancelled) as decoding:  # fmt: skip
            if decoding.decoder is not None:
                yield decoding.info, decoding.decoder, decoding.chunks()
                return
            left = DecodeRequest(**{**request.__dict__, "timeout_s": limits.timeout_s - (time.monotonic() - started)})
            chunks = nvdec.decode(source, decoding.info, left, cancelled)
            try:
                yield decoding.info, NVDEC, chunks
            finally:  # the parts stop decoding now, not when the generator is collected
                chunks.close()

    def _request(self, limits: WorkLimits, sampling: Sampling) -> DecodeRequest:
        """What `sampling` asks of a decoder within `limits` (its defaults filled in: `frames`)."""
        return DecodeRequest(
            fps=sampling.fps or self.spec.sample_fps, size=(sampling.size or self.spec.size,) * 2,
            chunk_frames=sampling.chunk_frames or self.settings.chunk_frames,
            max_duration_s=limits.max_duration_s, timeout_s=limits.timeout_s, spans=sampling.spans,
            coarse_size=sampling.coarse_size and (sampling.coarse_size,) * 2, coarse_every=sampling.coarse_every,
            one_pass_bytes=sampling.one_pass_bytes,
        )  # fmt: skip

    def extract(
        self, source: VideoSource, limits: WorkLimits, progress: Progress = lambda stage, share: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> tuple[VideoInfo, str, ExtractedFeatures]:  # fmt: skip
        """Clip features of `source` (on the extractor's device), with its info and the decoder that ran. A stream
        that NVDEC should decode but torchcodec decodes on the CPU all the same is decoded again by the CPU
        decoder, which the answer then names: frames from a silent fallback are never served."""

        def report(share: float) -> None:
            progress("features", FEATURES_SHARE * share)

        progress("decoding", 0.0)
        return self._decoded(source, limits, cancelled, lambda _, chunks: self.extractor.features(chunks, report))

    def _decoded(
        self, source, limits, cancelled, consume, sampling: Sampling = Sampling()
    ) -> tuple[VideoInfo, str, object]:
        """`consume(info, chunks)` of the source's frames as `sampling` picks them, NVDEC first where it decodes the
        stream, then the CPU decoder if NVDEC fell back (within one time limit for both attempts). The result's
        `decode_ms` includes the precheck and the child's start and probe."""
        started = time.monotonic()
        try:
            return self._attempt(source, limits, cancelled, consume, True, sampling)
        except NvdecFallbackError as error:
            log.warning("%s; decoding it with %s instead", error, self.cpu_decoder)
        left = limits.timeout_s - (time.monotonic() - started)
        if left <= 0:
            raise VideoTimeoutError(f"decoding '{source.name}' took longer than {limits.timeout_s:g} s and was stopped")
        retry = WorkLimits(max_duration_s=limits.max_duration_s, timeout_s=left)
        return self._attempt(source, retry, cancelled, consume, False, sampling)

    def _attempt(
        self, source, limits, cancelled, consume, use_nvdec: bool, sampling: Sampling
    ) -> tuple[VideoInfo, str, object]:
        opened = time.perf_counter()
        with self.frames(source, limits, cancelled, use_nvdec, **asdict(sampling)) as (info, decoder, chunks):
            setup_ms = (time.perf_counter() - opened) * 1000
            result = consume(info, chunks)
        result.decode_ms += setup_ms
        return info, decoder, result

    @torch.inference_mode()
    def localize(
        self,
        source: VideoSource,
        limits: WorkLimits,
        *,
        min_score: float = 0.0,
        top_k: int = 100,
        fields: bool = False,
        upload_ms: float = 0.0,
        received_at: float | None = None,
        progress: Progress = lambda stage, share: None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Localization:
        """The actions in `source`, best first: at most `top_k`, scored at least `min_score`. `fields`: the caller
        wants the boundary fields (include=boundary, a plot); otherwise the boundary head runs only when the
        decoding uses it (postprocess.snap). `upload_ms`: how long receiving the video took; `received_at`:
        `time.perf_counter()` when it was received (default: now). `progress(stage, fraction)` follows decoding,
        features and head; `cancelled()` is polled throughout (JobCancelledError). A zoom checkpoint runs the
        zoom's two passes instead (engine/zoom.py; `fields` are then the coarse pass's)."""
        started = time.perf_counter() if received_at is None else received_at
        if self.zoom is not None:
            return self._localize_zoomed(
                source, limits, min_score, top_k, fields, upload_ms, started, progress, cancelled
            )
        info, decoder, extracted = self.extract(source, limits, progress, cancelled)
        _stop_if(cancelled, source)
        progress("head", FEATURES_SHARE)
        output, head_ms = self._run_head(extracted.features, fields)
        _stop_if(cancelled, source)
        head_done = time.perf_counter()
        first_frame_s = float(extracted.clip_times[0] - (self.spec.frames_per_clip / 2) / self.spec.sample_fps)
        found = self._seconds(output, first_frame_s, info.duration_s, self.spec.sample_fps)
        segments = self._answer_segments(found.segments, found.scores, found.labels, info, min_score, top_k)
        finished = time.perf_counter()
        timing = stage_times(upload_ms, started, finished, {
            "decode": extracted.decode_ms, "features": extracted.features_ms, "head": head_ms,
            "postprocess": (finished - head_done) * 1000,
        })  # fmt: skip
        flops, mean_depth = self._flops(output, extracted)
        return Localization(
            info=info, decoder=decoder, segments=segments, timing_ms=timing, flops=flops, mean_depth=mean_depth,
            realtime_factor=info.duration_s / max(timing["total"] / 1000, 1e-9),
            trace=lambda: self._positions(output, extracted),
        )  # fmt: skip

    def _localize_zoomed(
        self, source, limits, min_score, top_k, fields, upload_ms, started, progress, cancelled
    ) -> Localization:
        """`localize` with a zoom checkpoint: the coarse pass, the windows, the zoom pass, the refinement. Where the
        zoom rate is a multiple of the coarse rate, one decode at the zoom rate serves both passes (FrameSpool)."""
        seen = {}
        same_frames = self.window_extractor is self.extractor  # else the coarse frames are smaller: none reused
        every = spool_every(self.spec.sample_fps, self.zoom.settings.zoom_fps)
        spool = FrameSpool(every, int(self.settings.zoom_spool_mb * 2**20), self.settings.temp_dir) if every else None

        frames = self._zoom_frames(source, limits, spool, seen, progress, cancelled)

        def detect(features: torch.Tensor, first_s: float, fps: float):
            _stop_if(cancelled, source)
            seen["coarse"] = ExtractedFeatures(features, self.spec.clip_times(features.shape[-1], first_s), 0, 0, 0)
            seen["output"], found, head_ms = self.detect(features, first_s, seen["info"].duration_s, fps, fields)
            return found.segments.cpu().numpy(), found.scores.cpu().numpy(), found.labels.cpu().numpy(), head_ms

        clip = (self.spec.frames_per_clip, self.spec.clip_stride)
        try:
            run = run_zoom(self.zoom, self.spec.sample_fps, frames, detect, clip, lambda: seen["info"].duration_s,
                           reuse_coarse=same_frames)  # fmt: skip
        finally:
            if spool is not None:
                spool.close()
        info, output, coarse = seen["info"], seen["output"], seen["coarse"]
        refined = time.perf_counter()
        segments = self._answer_segments(run.segments, run.scores, run.labels, info, min_score, top_k)
        finished = time.perf_counter()
        passes = (run.coarse, run.zoomed)
        timing = stage_times(upload_ms, started, finished, {
            "decode": sum(p.decode_ms for p in passes), "features": sum(p.features_ms for p in passes),
            "head": run.head_ms + run.refine_ms, "postprocess": (finished - refined) * 1000,
        })  # fmt: skip
        coarse.backbone_flops = run.coarse.backbone_flops + run.zoomed.backbone_flops
        flops, mean_depth = self._flops(output, coarse)
        if run.fine is not None:  # the zoom rate's detector ran too ("detector" refiner): its head counts
            fine = self.zoom.fine.head.checkpoint.model
            extra = output_flops(fine, run.fine, batch=1).total
            flops["head"] += extra
            flops["total"] += extra
            flops["head_uniform"] += uniform_head_flops(fine, 1, run.fine.padded_length, bool(run.fine.boundary)).total
            flops["head_saved_ratio"] = 1.0 - flops["head"] / flops["head_uniform"]
        # at the backbone's own rate and size: the dense default's frames
        dense = len(sample_ticks(float(run.coarse.times[0]), info.duration_s, SPECS[self.spec.name].sample_fps))
        flops["backbone_dense"] = float(dense * self.window_extractor.flops_per_unit)
        flops["backbone_saved_ratio"] = 1.0 - flops["backbone"] / max(flops["backbone_dense"], 1.0)
        summary = zoom_summary(self.zoom, run, self.spec.sample_fps, decodes=seen["decodes"])
        return Localization(
            info=info, decoder=seen["decoder"], segments=segments, timing_ms=timing, flops=flops,
            mean_depth=mean_depth, realtime_factor=info.duration_s / max(timing["total"] / 1000, 1e-9),
            trace=lambda: self._positions(output, coarse), zoom=summary,
        )  # fmt: skip

    def _zoom_frames(self, source, limits, spool, seen, progress, cancelled) -> FrameSource:
        """The zoom's FrameSource for one request: (fps, spans) -> per-frame features, decoded within the request's
        one time limit; `seen` gets the video's info, the decoder that ran and how many decodes ran."""
        deadline = time.monotonic() + limits.timeout_s
        seen["decodes"] = 0

        def frames(fps: float, spans: Spans | None) -> FrameFeatures:
            left = deadline - time.monotonic()
            if left <= 0:
                raise VideoTimeoutError(f"'{source.name}' took longer than {limits.timeout_s:g} s and was stopped")
            offset = 0.0 if spans is None else 0.5  # the coarse pass takes the first half of the progress bar

            def report(share: float) -> None:
                progress("features", FEATURES_SHARE * (offset + share / 2))

            if spans is not None and spool is not None and spool.kept:
                return self._spooled(spool, spans, seen["info"].duration_s, report, lambda: _stop_if(cancelled, source))
            progress("decoding", FEATURES_SHARE * offset)
            rest = WorkLimits(max_duration_s=limits.max_duration_s, timeout_s=left)
            one_decode = spans is None and spool is not None
            extractor = self.extractor if spans is None else self.window_extractor
            sampling = Sampling(fps, spans, size=extractor.spec.size)
            if one_decode:
                # One decode: the coarse pass decodes at the zoom rate, in chunks of as many frames as it keeps from
                # a full chunk, so that its backbone runs while the rest decodes (CPU, 30 s of 720p with zoom-lite:
                # 2.55 s with 256-frame chunks, 2.36 s with 64; NVDEC's one decode has not run on a GPU). The
                # spool keeps the frames at the windows' size; smaller coarse frames come beside them. A video whose
                # frames would not fit in the spool is decoded at the coarse rate and size only (one_pass_bytes).
                smaller = self.extractor is not self.window_extractor
                sampling = Sampling(
                    fps=self.zoom.settings.zoom_fps, chunk_frames=max(1, self.settings.chunk_frames // spool.every),
                    size=self.window_extractor.spec.size, coarse_size=self.extractor.spec.size if smaller else None,
                    coarse_every=spool.every, one_pass_bytes=spool.budget,
                )  # fmt: skip

            def consume(info: VideoInfo, chunks: Iterator[FrameChunk]) -> FrameFeatures:
                if one_decode:  # the decoder chose as this request does, from the same duration
                    both = self._request(rest, sampling).for_duration(info.duration_s).coarse_every > 1
                    chunks = spool.thin(chunks) if both else spool.passed(chunks)
                return extractor.frame_features(chunks, report)

            seen["info"], seen["decoder"], found = self._decoded(source, rest, cancelled, consume, sampling)
            seen["decodes"] += 1
            if one_decode and len(found.times):
                # every n-th zoom tick is a coarse tick, but the zoom grid may hold one more n-th tick at the very
                # end (a video's length just above a whole number of coarse steps, within the ticks' end margin):
                # the coarse grid rules
                coarse = len(sample_ticks(float(found.times[0]), seen["info"].duration_s, fps))
                found = replace(found, rows=found.rows[:coarse], times=found.times[:coarse])
            return found

        return frames

    def _spooled(self, spool: FrameSpool, spans: Spans, end_s: float, report, stop_if_cancelled) -> FrameFeatures:
        """The zoom pass from the frames the coarse pass's decode kept: read back, not decoded again, and through the
        backbone a chunk at a time (progress, cancellation). Its decode_ms is the read."""
        stop_if_cancelled()
        started = time.perf_counter()
        frames, times = spool.read(spooled_ticks(float(spool.times[0][0]), end_s, self.zoom.settings.zoom_fps, spans))
        read_ms = (time.perf_counter() - started) * 1000
        size = self.settings.chunk_frames

        def chunks() -> Iterator[FrameChunk]:
            for first in range(0, len(times), size):
                stop_if_cancelled()
                yield FrameChunk(frames[first : first + size], times[first : first + size], first, len(times))

        found = self.window_extractor.frame_features(chunks(), report)
        found.decode_ms += read_ms
        return found

    def _run_head(self, features: torch.Tensor, fields: bool) -> tuple[TZNOutput, float]:
        with self.head_lock:
            return timed_call(self.head, features, fields)

    def _flops(self, output: TZNOutput, extracted: ExtractedFeatures) -> tuple[dict[str, float], float | None]:
        """The answer's `flops` and the ATR mean depth (None for a uniform model)."""
        model = self.config.model
        head = output_flops(model, output, batch=1).total
        # the uniform model that computes the same outputs: with the boundary head only if this run had it
        head_uniform = uniform_head_flops(model, 1, output.padded_length, bool(output.boundary)).total
        valid = extracted.features.shape[-1]
        mean_depth = float(output.layer_masks[0, :valid].sum(-1).mean()) if output.tau is not None else None
        flops = {
            "backbone": float(extracted.backbone_flops), "head": float(head), "head_uniform": float(head_uniform),
            "total": float(extracted.backbone_flops + head), "head_saved_ratio": 1.0 - head / head_uniform,
            "mean_depth": mean_depth if mean_depth is not None else float(model.stem_layers),
        }  # fmt: skip
        return flops, mean_depth

    def _positions(self, output: TZNOutput, extracted: ExtractedFeatures) -> PositionTrace:
        valid = extracted.features.shape[-1]
        bdr = self.config.model.boundary_head == "bdr" and output.boundary
        return PositionTrace(
            times_s=np.asarray(extracted.clip_times[:valid], dtype=np.float64),
            depth=output.layer_masks[0, :valid].float().sum(-1).cpu().numpy().astype(np.float64),
            max_depth=self.config.model.stem_layers,
            boundary=output.boundary[0][0, :valid].float().cpu().numpy().astype(np.float64) if bdr else None,
        )

    def detect(self, features: torch.Tensor, first_frame_s: float, duration_s: float, fps: float, fields=False):
        """(head output, its detections in seconds best first, head ms) of clip features (C, K) sampled at `fps`
        from `first_frame_s`: the step every request runs after its features (the zoom benchmark runs it too)."""
        output, head_ms = self._run_head(features, fields)
        return output, self._seconds(output, first_frame_s, duration_s, fps), head_ms

    def _seconds(self, output: TZNOutput, first_frame_s: float, duration_s: float, fps: float):
        """The head's detections in seconds (best first), features sampled at `fps` from `first_frame_s`."""
        spec = self.spec
        return video_segments(
            output, self.config.model.boundary_head, self.head.postprocess, fps, spec.clip_stride,
            spec.frames_per_clip, duration=duration_s, start_s=first_frame_s,
        )  # fmt: skip

    def _answer_segments(self, segments, scores, labels, info: VideoInfo, min_score: float, top_k: int) -> list[dict]:
        found = []
        for (start, end), score, label in zip(
            np.asarray(segments).tolist(), np.asarray(scores).tolist(), np.asarray(labels).tolist(), strict=True
        ):
            if score < min_score or len(found) >= top_k:
                continue
            found.append({
                "label": self.config.labels[label], "label_id": label_id(self.config, label), "score": float(score),
                "start_s": start, "end_s": end, "start_frame": info.frame_at(start), "end_frame": info.frame_at(end),
            })  # fmt: skip
        return found


def stage_times(upload_ms: float, received_at: float, finished: float, stages: dict[str, float]) -> dict[str, float]:
    """The answer's `timing_ms`: `stages` plus upload, and queue = everything that was not a stage (waiting for a
    worker, a compute slot, the backbone's batches, the head); total = upload + wall time since `received_at`."""
    timing = {"upload": upload_ms, "queue": 0.0, **stages}
    timing["total"] = upload_ms + (finished - received_at) * 1000
    timing["queue"] = max(timing["total"] - sum(timing[k] for k in STAGES if k != "queue"), 0.0)
    return {key: timing[key] for key in (*STAGES, "total")}


def _stop_if(cancelled: Callable[[], bool], source: VideoSource) -> None:
    if cancelled():
        raise JobCancelledError(f"work on '{source.name}' was cancelled")
