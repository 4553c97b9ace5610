"""A real Prometheus (Debian's package) on 127.0.0.1 scrapes a real server; the metrics make sense."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tools.launch import free_port, running_server
from tools.metric_names import expressions_in_file, unexported_metric_names

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs Debian's prometheus package (apt install prometheus)"
)


def query(prometheus: str, expression: str) -> list[dict]:
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5)
    response.raise_for_status()
    return response.json()["data"]["result"]


def wait_for(prometheus: str, expression: str, timeout_s: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = query(prometheus, expression)
            if result:
                return result
        except httpx.HTTPError:  # not listening yet, or 503 while its storage starts
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus never returned a result for {expression!r}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def scraped_server(small_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("prometheus")
    with running_server({"TZN_CHECKPOINT": str(small_checkpoint), "TZN_DEVICE": "cpu"}, root / "server.log") as url:
        port = free_port()
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            f"scrape_configs:\n  - job_name: tzn\n    static_configs:\n      - targets: ['{url[len('http://') :]}']\n"
        )
        with open(root / "prometheus.log", "wb") as log:
            process = subprocess.Popen(
                ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            prometheus = f"http://127.0.0.1:{port}"
            wait_for(prometheus, "up == 1")
            yield url, prometheus
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_prometheus_scrapes_the_service_metrics_after_a_request(scraped_server, media: Path):
    url, prometheus = scraped_server
    with open(media / "clip.mp4", "rb") as file:
        assert httpx.post(f"{url}/localize", files={"video": ("clip.mp4", file)}, timeout=120).status_code == 200
    with open(media / "still.png", "rb") as file:
        assert httpx.post(f"{url}/localize", files={"video": ("still.png", file)}, timeout=60).status_code == 415

    assert wait_for(prometheus, 'tzn_requests_total{status="200"} >= 1')
    assert wait_for(prometheus, 'tzn_requests_total{status="415"} >= 1')
    assert wait_for(prometheus, "tzn_model_ready == 1")
    video_seconds = float(wait_for(prometheus, "tzn_video_seconds_total > 0")[0]["value"][1])
    assert video_seconds == pytest.approx(3.0, abs=0.1)
    for stage in ("upload", "queue", "decode", "features", "head", "postprocess"):
        assert wait_for(prometheus, f'tzn_stage_duration_seconds_count{{stage="{stage}"}} >= 1')
    backbone = float(wait_for(prometheus, 'tzn_flops_total{component="backbone"} > 0')[0]["value"][1])
    head = float(wait_for(prometheus, 'tzn_flops_total{component="head"} > 0')[0]["value"][1])
    assert backbone > head  # the backbone dominates the FLOPs of a request
    depth = wait_for(prometheus, "tzn_atr_mean_depth_sum / tzn_atr_mean_depth_count")
    assert 1.0 <= float(depth[0]["value"][1]) <= 6.0
    assert wait_for(prometheus, "tzn_realtime_factor_count >= 1")
    assert float(wait_for(prometheus, "tzn_inflight_requests >= 0")[0]["value"][1]) == 0.0


def test_dashboard_and_alerts_query_only_metrics_the_running_service_exports(scraped_server):
    url, _ = scraped_server
    repo = Path(__file__).resolve().parents[2]
    expressions = expressions_in_file(repo / "deploy/grafana/dashboards/tzn.json")
    expressions += expressions_in_file(repo / "deploy/prometheus/alerts.yml")
    assert len(expressions) > 10
    assert unexported_metric_names(expressions, httpx.get(f"{url}/metrics").text) == set()
