"""Prometheus metrics of the service (docs/design.md, "Metrics"), on a registry of their own.

Every metric lives on a dedicated `CollectorRegistry`, not prometheus-client's global one, so a test
(or a process) can build several apps side by side. Names follow the Prometheus naming guide: base
units, `_total` counters, `_seconds` histograms, labels with a small fixed set of values (unknown
stages or components are rejected, so a typo cannot grow the series count).

What the series mean:
- `tzn_requests_total{route,status}`: finished requests that send a video, by route (`localize` for POST
  /localize, `submit_job` for POST /jobs) and HTTP status code ("200", "202", "503", ...).
- `tzn_request_duration_seconds{route}`: wall time of such a request, any status.
- `tzn_stage_duration_seconds{stage}`: upload, queue, decode, features, head, postprocess (same split as
  `timing_ms`; the stages add up to the request's wall time).
- `tzn_flops_total{component}`: FLOPs (2 x MACs) actually spent by `backbone` and `head`, and
  `head_uniform`: what the uniform-depth head (Uniform-6, every stem layer at every position) would have
  cost on the same inputs. It is counted, not spent; it exists so the ATR saving can be computed over any
  window as `1 - rate(head) / rate(head_uniform)`.
- `tzn_video_seconds_total`: seconds of video localized.
- `tzn_realtime_factor`: per request, video seconds / processing seconds (> 1 is faster than real time).
- `tzn_atr_mean_depth`: per request, the mean number of stem layers run per position (1..6). A
  histogram rather than a gauge: a gauge would only keep the last request's value, which depends on which
  video came last and on which replica Prometheus scraped; the histogram gives the mean over any window
  (`rate(_sum) / rate(_count)`) and the spread across videos, and sums correctly over replicas.
- `tzn_inflight_requests`: requests being received or processed now; with intake processes
  (TZN_INTAKE_WORKERS), the uploads they are receiving too (read from their shared upload slots at each scrape).
- `tzn_waiting_requests`: requests waiting for a compute slot (TZN_MAX_QUEUE at most).
- `tzn_decoded_videos_total{decoder}`: videos localized, by the decoder that decoded them (decord, torchcodec,
  torchcodec-nvdec): where a GPU host's videos go to the CPU.
- `tzn_model_ready`: 1 once the model is loaded and warmed up (what `/health/ready` reports), else 0.
- `tzn_build_info{version,runtime,device}`: constant 1, carries the labels.
- `tzn_gpu_memory_{allocated,reserved,total}_bytes{device}`: read from torch on each scrape. The families
  are always declared (so dashboards and checks see the names); they carry samples only when torch has
  initialized CUDA in this process.
- `process_*`, `python_*`: prometheus-client's standard process and platform collectors.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine.localizer import STAGES, Localization
from engine.video.choice import DECODER_NAMES

FLOP_COMPONENTS = ("backbone", "head", "head_uniform")
# Statuses each route can answer, created at zero so that ratios over them exist from the start.
KNOWN_STATUSES = {
    "localize": ("200", "400", "401", "408", "413", "415", "422", "500", "503", "504"),
    "submit_job": ("202", "400", "401", "408", "413", "415", "422", "500", "503", "507"),
}

# Whole requests: 0.1 s (a short clip on a GPU) to minutes (a long video on a CPU).
REQUEST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0)
# Stages span milliseconds (the head: ~5 ms on a GPU) to tens of seconds (decoding a long video).
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Video seconds per processing second: ~0.5 on a small CPU, 20-50 on an H100 (docs/design.md, "Measured anchors").
REALTIME_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 200.0)
# Stem depth runs from D_min = 1 to L_max = 6 layers.
DEPTH_BUCKETS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0)


def package_version() -> str:
    """The installed version of the project, or "unknown" when it runs from a source tree."""
    try:
        return version("temporal-zoom")
    except PackageNotFoundError:
        return "unknown"


class GpuMemoryCollector(Collector):
    """Reads torch's CUDA allocator on each scrape: allocated, reserved and total bytes per device.

    It never imports torch nor initializes CUDA itself (a scrape must stay cheap and must not grab a GPU
    context): without an initialized CUDA in this process it yields the families with no samples.
    """

    def collect(self) -> Iterable[Metric]:
        allocated = GaugeMetricFamily(
            "tzn_gpu_memory_allocated_bytes", "GPU memory held by live tensors.", labels=["device"]
        )
        reserved = GaugeMetricFamily(
            "tzn_gpu_memory_reserved_bytes",
            "GPU memory reserved by torch's caching allocator.",
            labels=["device"],
        )
        total = GaugeMetricFamily("tzn_gpu_memory_total_bytes", "Total memory of the GPU.", labels=["device"])
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            for index in range(torch.cuda.device_count()):
                device = f"cuda:{index}"
                allocated.add_metric([device], torch.cuda.memory_allocated(index))
                reserved.add_metric([device], torch.cuda.memory_reserved(index))
                total.add_metric([device], torch.cuda.get_device_properties(index).total_memory)
        return [allocated, reserved, total]


class ServiceMetrics:
    """The service's metrics on a registry of their own; one instance per app."""

    def __init__(self, runtime: str = "torch", device: str = "cpu", version: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self._request_metrics(self.registry)
        self._video_metrics(self.registry)
        registry = self.registry
        self.inflight = Gauge("tzn_inflight_requests", "Requests being received or processed now.", registry=registry)
        self._inflight, self._inflight_lock = 0, threading.Lock()
        self.inflight_elsewhere: Callable[[], int] = lambda: 0  # uploads other processes receive for this one
        self.inflight.set_function(lambda: self._inflight + self.inflight_elsewhere())
        self.waiting = Gauge("tzn_waiting_requests", "Requests waiting for a compute slot.", registry=registry)
        self.model_ready = Gauge(
            "tzn_model_ready", "1 once the model is loaded and warmed up, else 0.", registry=registry
        )
        self.build_info = Info("tzn_build", "Version, runtime and device of this service.", registry=registry)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(GpuMemoryCollector())
        self.set_build_info(runtime=runtime, device=device, version=version)

    def _request_metrics(self, registry: CollectorRegistry) -> None:
        """Requests by route and status, their wall time and the time of each stage; known labels at zero."""
        self.requests = Counter(
            "tzn_requests_total",
            "Finished requests that send a video, by route (localize, submit_job) and HTTP status code.",
            ["route", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "tzn_request_duration_seconds",
            "Wall time of a request that sends a video, any status.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.stage_duration = Histogram(
            "tzn_stage_duration_seconds",
            "Wall time of one stage of a /localize request.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        for route, statuses in KNOWN_STATUSES.items():
            self.request_duration.labels(route=route)
            for status in statuses:
                self.requests.labels(route=route, status=status)
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)

    def _video_metrics(self, registry: CollectorRegistry) -> None:
        """What the localized videos cost: FLOPs, seconds, speed, ATR depth, decoders; known labels at zero."""
        self.flops = Counter(
            "tzn_flops_total",
            "FLOPs (2 x MACs) by component; head_uniform is what the uniform-depth head would have cost, "
            "so the ATR saving is 1 - head/head_uniform.",
            ["component"],
            registry=registry,
        )
        self.video_seconds = Counter("tzn_video_seconds_total", "Seconds of video localized.", registry=registry)
        self.realtime_factor = Histogram(
            "tzn_realtime_factor",
            "Video seconds per processing second, per request.",
            buckets=REALTIME_BUCKETS,
            registry=registry,
        )
        self.atr_mean_depth = Histogram(
            "tzn_atr_mean_depth",
            "Mean number of stem layers run per position, per request.",
            buckets=DEPTH_BUCKETS,
            registry=registry,
        )
        self.decoded = Counter(
            "tzn_decoded_videos_total",
            "Videos localized, by the decoder that decoded them.",
            ["decoder"],
            registry=registry,
        )
        for decoder in DECODER_NAMES:
            self.decoded.labels(decoder=decoder)
        for component in FLOP_COMPONENTS:
            self.flops.labels(component=component)

    def set_build_info(self, runtime: str, device: str, version: str | None = None) -> None:
        """Labels of `tzn_build_info`; call again if the runtime or device is only known after loading."""
        self.build_info.info({"version": version or package_version(), "runtime": runtime, "device": device})

    def set_ready(self, ready: bool) -> None:
        self.model_ready.set(1 if ready else 0)

    def observe_request(self, route: str, status: int | str, duration_s: float) -> None:
        """One finished request of `route` (one of `KNOWN_STATUSES`): its HTTP status code and wall time in s."""
        if route not in KNOWN_STATUSES:
            raise ValueError(f"unknown route {route!r}: expected one of {', '.join(KNOWN_STATUSES)}")
        self.requests.labels(route=route, status=str(int(status))).inc()
        self.request_duration.labels(route=route).observe(duration_s)

    def observe_localization(self, result: Localization) -> None:
        """One localized video: its stage times, FLOPs, duration, speed, ATR depth and decoder."""
        for stage in STAGES:
            self.observe_stage(stage, result.timing_ms[stage] / 1000)
        for component in FLOP_COMPONENTS:
            self.add_flops(component, result.flops[component])
        self.observe_video(result.info.duration_s, result.timing_ms["total"] / 1000, result.mean_depth)
        self.decoded.labels(decoder=result.decoder).inc()

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Wall time of one stage (one of `STAGES`) in seconds."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
        self.stage_duration.labels(stage=stage).observe(seconds)

    def add_flops(self, component: str, flops: float) -> None:
        """FLOPs of one component (one of `FLOP_COMPONENTS`) for one request; must be >= 0."""
        if component not in FLOP_COMPONENTS:
            raise ValueError(f"unknown FLOPs component {component!r}: expected one of {', '.join(FLOP_COMPONENTS)}")
        self.flops.labels(component=component).inc(flops)

    def observe_video(self, video_seconds: float, processing_seconds: float, mean_depth: float | None) -> None:
        """One localized video: its duration, the time it took, and the ATR mean depth (None if not ATR)."""
        self.video_seconds.inc(video_seconds)
        if processing_seconds > 0:
            self.realtime_factor.observe(video_seconds / processing_seconds)
        if mean_depth is not None:
            self.atr_mean_depth.observe(mean_depth)

    @contextmanager
    def track_inflight(self) -> Iterator[None]:
        """Counts the request in `tzn_inflight_requests` for the duration of the block, errors included."""
        with self._inflight_lock:
            self._inflight += 1
        try:
            yield
        finally:
            with self._inflight_lock:
                self._inflight -= 1

    def render(self) -> tuple[bytes, str]:
        """The exposition text for `GET /metrics` and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
