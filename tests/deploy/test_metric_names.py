"""The PromQL metric-name checker on small expressions and expositions."""

import json

from tools.metric_names import (
    exported_metric_names,
    main,
    metric_names_in_promql,
    unexported_metric_names,
)

EXPOSITION = """\
# HELP tzn_requests_total Requests.
# TYPE tzn_requests_total counter
tzn_requests_total{status="200"} 3.0
# HELP tzn_request_duration_seconds Latency.
# TYPE tzn_request_duration_seconds histogram
tzn_request_duration_seconds_bucket{le="1.0"} 1.0
tzn_request_duration_seconds_bucket{le="+Inf"} 3.0
tzn_request_duration_seconds_count 3.0
tzn_request_duration_seconds_sum 4.5
# HELP tzn_gpu_memory_allocated_bytes GPU memory.
# TYPE tzn_gpu_memory_allocated_bytes gauge
# HELP tzn_flops_total FLOPs.
# TYPE tzn_flops_total counter
"""


def test_function_names_label_names_durations_and_strings_are_not_metric_names():
    expression = (
        'histogram_quantile(0.95, sum by (le, stage) (rate(tzn_stage_duration_seconds_bucket{stage=~"head|x"}[5m] '
        "offset 1h)))"
    )
    assert metric_names_in_promql(expression) == {"tzn_stage_duration_seconds_bucket"}


def test_binary_operators_keywords_and_grafana_variables_are_handled():
    expression = (
        'sum(rate(tzn_requests_total{status=~"5.."}[$__rate_interval])) by (status) / ignoring(status) '
        "group_left sum(rate(tzn_requests_total[${__range}])) > bool 1e-3 and on(instance) tzn_model_ready"
    )
    assert metric_names_in_promql(expression) == {"tzn_requests_total", "tzn_model_ready"}


def test_name_matcher_selects_a_metric():
    assert metric_names_in_promql('{__name__="tzn_inflight_requests", job="tzn"}') == {"tzn_inflight_requests"}


def test_series_names_follow_from_the_type_of_families_without_samples():
    names = exported_metric_names(EXPOSITION)
    assert {"tzn_gpu_memory_allocated_bytes", "tzn_flops_total", "tzn_requests_total"} <= names
    assert {"tzn_request_duration_seconds_bucket", "tzn_request_duration_seconds_sum"} <= names
    assert "tzn_request_duration_seconds" not in names
    assert "tzn_requests" not in names


def test_histogram_suffixes_are_exported_but_the_bare_histogram_name_is_not():
    expressions = [
        "rate(tzn_request_duration_seconds_sum[5m]) / rate(tzn_request_duration_seconds_count[5m])",
        "rate(tzn_request_duration_seconds[5m])",
    ]
    assert unexported_metric_names(expressions, EXPOSITION) == {"tzn_request_duration_seconds"}


def test_prometheus_own_series_are_not_expected_from_the_service():
    assert unexported_metric_names(['up{job="tzn"} == 0', "ALERTS"], EXPOSITION) == set()


def test_a_misspelled_metric_is_reported():
    assert unexported_metric_names(["sum(rate(tzn_request_total[5m]))"], EXPOSITION) == {"tzn_request_total"}


def test_command_line_check_fails_on_a_dashboard_naming_an_unexported_metric(tmp_path, capsys):
    metrics = tmp_path / "metrics.txt"
    metrics.write_text(EXPOSITION)
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"panels": [{"targets": [{"expr": "sum(rate(tzn_requests_total[5m]))"}]}]}))
    bad.write_text(json.dumps({"panels": [{"targets": [{"expr": "tzn_realtime_factor_bucket"}]}]}))
    assert main(["--metrics", str(metrics), str(good)]) == 0
    assert main(["--metrics", str(metrics), str(good), str(bad)]) == 1
    assert "tzn_realtime_factor_bucket" in capsys.readouterr().err
