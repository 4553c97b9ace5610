"""Checks that the PromQL of the dashboard and alert rules only names metrics the service exports.

A dashboard query on a misspelled or removed metric returns no data rather than an error, so it goes
unnoticed; this check catches it, against the exposition text of a freshly built `ServiceMetrics` in the
tests, or against a live service:

    python -m tools.metric_names --metrics http://localhost:8000/metrics \
        deploy/grafana/dashboards/tzn.json deploy/prometheus/alerts.yml
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

# Series that Prometheus itself makes for each target or rule, never exported by a service.
PROMETHEUS_SYNTHETIC = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

# Words that look like identifiers in PromQL but are not metric names.
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless"}
    | {"offset", "atan2", "inf", "nan", "start", "end"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]")
_NAME_MATCHER = re.compile(r'__name__\s*=\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
_LABEL_SET = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()")
_SERIES_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def metric_names_in_promql(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables such as `$__rate_interval` allowed).

    Label matchers, label lists (`by (le)`), range selectors, strings, numbers, durations, function and
    aggregation names and keywords are removed first; what is left as an identifier is a metric name.
    """
    without_variables = _GRAFANA_VARIABLE.sub("1", expression)
    names = set(_NAME_MATCHER.findall(without_variables))
    text = _STRING.sub('""', without_variables)
    text = _LABEL_SET.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names.update(name for name in _IDENTIFIER.findall(text) if name not in _KEYWORDS)
    return names


def exported_metric_names(exposition_text: str) -> set[str]:
    """Every series name a Prometheus exposition declares or carries.

    A family declared without samples (a labelled counter nobody incremented yet, the GPU gauges on a CPU
    host) still counts: its series names follow from its type (`_bucket`, `_sum`, `_count` for a
    histogram, `_total` for a counter). Bare histogram and counter family names are not series.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition_text):
        if family.samples:
            names.update(sample.name for sample in family.samples)
        else:
            names.update(family.name + suffix for suffix in _SERIES_SUFFIXES.get(family.type, ("",)))
    return names


def unexported_metric_names(promql_expressions: Iterable[str], exposition_text: str) -> set[str]:
    """Metric names used by the expressions that the exposition does not export (Prometheus' own excluded)."""
    used = set().union(*(metric_names_in_promql(expression) for expression in promql_expressions))
    return used - exported_metric_names(exposition_text) - PROMETHEUS_SYNTHETIC


def dashboard_expressions(dashboard: dict) -> Iterator[str]:
    """The PromQL of every target of a Grafana dashboard, rows and nested panels included."""
    panels = list(dashboard.get("panels", []))
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield target["expr"]


def rule_expressions(rules: dict) -> Iterator[str]:
    """The PromQL of every alerting and recording rule of a Prometheus rule file."""
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            yield rule["expr"]


def expressions_in_file(path: Path) -> list[str]:
    """Expressions of a Grafana dashboard (.json) or a Prometheus rule file (.yml/.yaml)."""
    if path.suffix == ".json":
        return list(dashboard_expressions(json.loads(path.read_text())))
    return list(rule_expressions(yaml.safe_load(path.read_text())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", required=True, help="URL of a /metrics endpoint, or a file of its text")
    parser.add_argument("files", nargs="+", type=Path, help="Grafana dashboards (.json), rule files (.yml)")
    args = parser.parse_args(argv)
    if args.metrics.startswith(("http://", "https://")):
        with urllib.request.urlopen(args.metrics, timeout=10) as response:
            exposition_text = response.read().decode()
    else:
        exposition_text = Path(args.metrics).read_text()
    expressions = [expression for path in args.files for expression in expressions_in_file(path)]
    missing = unexported_metric_names(expressions, exposition_text)
    for name in sorted(missing):
        print(f"not exported by {args.metrics}: {name}", file=sys.stderr)
    print(f"{len(expressions)} expressions checked, {len(missing)} unexported metric names")
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
