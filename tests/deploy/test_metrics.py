"""ServiceMetrics against a real registry, read back through prometheus-client's exposition parser."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import DEPTH_BUCKETS, FLOP_COMPONENTS, STAGES, ServiceMetrics


def scrape(metrics: ServiceMetrics) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one render."""
    body, _ = metrics.render()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_render_returns_prometheus_text_with_its_content_type():
    body, content_type = ServiceMetrics().render()
    assert content_type.startswith("text/plain")
    assert b"# TYPE tzn_requests_total counter" in body


def test_requests_are_counted_by_route_and_status_and_timed():
    metrics = ServiceMetrics()
    metrics.observe_request("localize", 200, 1.5)
    metrics.observe_request("localize", "200", 3.0)
    metrics.observe_request("localize", 503, 0.01)
    metrics.observe_request("submit_job", 202, 0.2)
    samples = scrape(metrics)
    assert samples[("tzn_requests_total", (("route", "localize"), ("status", "200")))] == 2
    assert samples[("tzn_requests_total", (("route", "localize"), ("status", "503")))] == 1
    assert samples[("tzn_requests_total", (("route", "submit_job"), ("status", "202")))] == 1
    assert samples[("tzn_request_duration_seconds_count", (("route", "localize"),))] == 3
    assert samples[("tzn_request_duration_seconds_sum", (("route", "localize"),))] == pytest.approx(4.51)
    assert samples[("tzn_request_duration_seconds_bucket", (("le", "2.0"), ("route", "localize")))] == 2
    with pytest.raises(ValueError, match="unknown route"):
        metrics.observe_request("jobs", 200, 1.0)


def test_known_statuses_stages_and_components_exist_at_zero_before_any_request():
    samples = scrape(ServiceMetrics())
    assert samples[("tzn_requests_total", (("route", "localize"), ("status", "500")))] == 0
    assert samples[("tzn_requests_total", (("route", "submit_job"), ("status", "507")))] == 0
    for stage in STAGES:
        assert samples[("tzn_stage_duration_seconds_count", (("stage", stage),))] == 0
    for component in FLOP_COMPONENTS:
        assert samples[("tzn_flops_total", (("component", component),))] == 0


def test_request_buckets_cover_a_tenth_of_a_second_to_a_minute():
    samples = scrape(ServiceMetrics())
    bounds = {float(dict(labels)["le"]) for name, labels in samples if name == "tzn_request_duration_seconds_bucket"}
    assert min(bounds) <= 0.1
    assert 60.0 in bounds


def test_stage_durations_are_labelled_by_stage():
    metrics = ServiceMetrics()
    metrics.observe_stage("decode", 1.4)
    metrics.observe_stage("head", 0.005)
    samples = scrape(metrics)
    assert samples[("tzn_stage_duration_seconds_sum", (("stage", "decode"),))] == pytest.approx(1.4)
    assert samples[("tzn_stage_duration_seconds_bucket", (("le", "0.005"), ("stage", "head")))] == 1


def test_unknown_stage_or_component_is_rejected():
    metrics = ServiceMetrics()
    with pytest.raises(ValueError, match="unknown stage 'encode'"):
        metrics.observe_stage("encode", 1.0)
    with pytest.raises(ValueError, match="unknown FLOPs component 'neck'"):
        metrics.add_flops("neck", 1.0)


def test_flops_accumulate_per_component_and_give_the_atr_saving():
    metrics = ServiceMetrics()
    metrics.add_flops("backbone", 81e9)
    metrics.add_flops("head", 151e9)
    metrics.add_flops("head_uniform", 198e9)
    samples = scrape(metrics)
    head = samples[("tzn_flops_total", (("component", "head"),))]
    head_uniform = samples[("tzn_flops_total", (("component", "head_uniform"),))]
    assert samples[("tzn_flops_total", (("component", "backbone"),))] == 81e9
    assert 1 - head / head_uniform == pytest.approx(47 / 198)


def test_observe_video_counts_seconds_realtime_factor_and_depth():
    metrics = ServiceMetrics()
    metrics.observe_video(video_seconds=60.0, processing_seconds=3.0, mean_depth=4.5)
    samples = scrape(metrics)
    assert samples[("tzn_video_seconds_total", ())] == 60.0
    assert samples[("tzn_realtime_factor_sum", ())] == pytest.approx(20.0)
    assert samples[("tzn_realtime_factor_bucket", (("le", "10.0"),))] == 0
    assert samples[("tzn_realtime_factor_bucket", (("le", "20.0"),))] == 1
    assert samples[("tzn_atr_mean_depth_sum", ())] == 4.5
    assert samples[("tzn_atr_mean_depth_bucket", (("le", "4.5"),))] == 1


def test_depth_buckets_span_one_to_six_layers():
    assert DEPTH_BUCKETS[0] == 1.0
    assert DEPTH_BUCKETS[-1] == 6.0


def test_video_without_atr_depth_or_processing_time_skips_those_histograms():
    metrics = ServiceMetrics()
    metrics.observe_video(video_seconds=10.0, processing_seconds=0.0, mean_depth=None)
    samples = scrape(metrics)
    assert samples[("tzn_video_seconds_total", ())] == 10.0
    assert samples[("tzn_realtime_factor_count", ())] == 0
    assert samples[("tzn_atr_mean_depth_count", ())] == 0


def test_inflight_gauge_goes_back_down_when_the_request_fails():
    metrics = ServiceMetrics()
    with metrics.track_inflight(), metrics.track_inflight():
        assert scrape(metrics)[("tzn_inflight_requests", ())] == 2
    with pytest.raises(RuntimeError), metrics.track_inflight():
        raise RuntimeError("decoder crashed")
    assert scrape(metrics)[("tzn_inflight_requests", ())] == 0


def test_model_ready_gauge_follows_set_ready():
    metrics = ServiceMetrics()
    assert scrape(metrics)[("tzn_model_ready", ())] == 0
    metrics.set_ready(True)
    assert scrape(metrics)[("tzn_model_ready", ())] == 1
    metrics.set_ready(False)
    assert scrape(metrics)[("tzn_model_ready", ())] == 0


def test_build_info_carries_version_runtime_and_device():
    metrics = ServiceMetrics(runtime="onnxruntime", device="cuda:0", version="1.2.3")
    labels = (("device", "cuda:0"), ("runtime", "onnxruntime"), ("version", "1.2.3"))
    assert scrape(metrics)[("tzn_build_info", labels)] == 1
    metrics.set_build_info(runtime="tensorrt", device="cuda:0", version="1.2.3")
    samples = scrape(metrics)
    assert ("tzn_build_info", labels) not in samples
    assert samples[("tzn_build_info", (("device", "cuda:0"), ("runtime", "tensorrt"), ("version", "1.2.3")))] == 1


def test_gpu_memory_families_are_declared_even_without_cuda():
    body, _ = ServiceMetrics().render()
    for name in ("allocated", "reserved", "total"):
        assert f"# TYPE tzn_gpu_memory_{name}_bytes gauge".encode() in body


def test_two_apps_have_independent_registries():
    first, second = ServiceMetrics(), ServiceMetrics()
    first.observe_request("localize", 200, 1.0)
    assert scrape(first)[("tzn_requests_total", (("route", "localize"), ("status", "200")))] == 1
    assert scrape(second)[("tzn_requests_total", (("route", "localize"), ("status", "200")))] == 0


@pytest.mark.cuda
def test_gpu_memory_is_reported_per_device_once_cuda_is_in_use():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    tensor = torch.ones(1024, 1024, device="cuda")
    samples = scrape(ServiceMetrics())
    assert samples[("tzn_gpu_memory_allocated_bytes", (("device", "cuda:0"),))] >= tensor.numel() * 4
    assert samples[("tzn_gpu_memory_total_bytes", (("device", "cuda:0"),))] > 0
