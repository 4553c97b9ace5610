"""Prometheus metrics of the jobs, on the service's registry (Prometheus naming guide, as service/metrics.py).

- `tzn_jobs{status}`: jobs in the store now, by status (queued, running, succeeded, failed, cancelled);
  read from the store on each scrape, so it is right after a restart too.
- `tzn_job_queue_length`: jobs waiting for a worker (= tzn_jobs{status="queued"}, for alerts and autoscaling).
- `tzn_jobs_finished_total{status}`: jobs this process finished, by final status.
- `tzn_job_duration_seconds{status}`: wall time of a finished job, from its start by a worker to its end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.jobs.store import FINISHED, JobStatus

# A job runs from seconds (a short clip on a GPU) to hours (a long video on a CPU).
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0)


class JobCountCollector(Collector):
    """`tzn_jobs{status}` and `tzn_job_queue_length` from `counts()` (None while the store is not open)."""

    def __init__(self, counts: Callable[[], dict[JobStatus, int] | None]):
        self.counts = counts

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("tzn_jobs", "Jobs in the store, by status.", labels=["status"])
        queue = GaugeMetricFamily("tzn_job_queue_length", "Jobs queued, waiting for a worker.")
        counts = self.counts()
        if counts is not None:
            for status in JobStatus:
                jobs.add_metric([str(status)], counts[status])
            queue.add_metric([], counts[JobStatus.queued])
        return [jobs, queue]


class JobMetrics:
    def __init__(self, registry: CollectorRegistry, counts: Callable[[], dict[JobStatus, int] | None]):
        registry.register(JobCountCollector(counts))
        self.finished = Counter(
            "tzn_jobs_finished_total", "Jobs finished by this process, by final status.", ["status"], registry=registry
        )
        self.duration = Histogram(
            "tzn_job_duration_seconds",
            "Wall time of a finished job, from its start by a worker to its end.",
            ["status"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        for status in FINISHED:
            self.finished.labels(status=str(status))
            self.duration.labels(status=str(status))

    def observe(self, status: JobStatus, seconds: float | None) -> None:
        """A finished job; `seconds` is None for a job cancelled before any worker started it."""
        self.finished.labels(status=str(status)).inc()
        if seconds is not None:
            self.duration.labels(status=str(status)).observe(seconds)
