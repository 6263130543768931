"""deploy/prometheus and deploy/grafana: the rules pass promtool and their unit tests, and every
query of the alerts and of the dashboard names a metric MARS exposes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "mars.json"
TOKEN = "metrics-token-for-the-tests-0123"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(
    # CI always has it (.ci/run installs Debian's prometheus): there, its absence fails.
    PROMTOOL is None and os.environ.get("CI") != "true",
    reason="promtool is not installed (apt-get install prometheus)",
)

#: Series Prometheus makes itself, which rules may name.
PROMETHEUS_OWN = frozenset({"up"})
#: PromQL words that are neither functions (always followed by "(") nor metrics.
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "CI must have promtool: .ci/run installs Debian's prometheus package"
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # ranges
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group()
        rest = expr[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue  # a function or an aggregation
        if match.start() > 0 and (
            expr[match.start() - 1].isdigit() or expr[match.start() - 1] == "."
        ):
            continue  # a number's exponent or unit, e.g. 1e3
        names.add(word)
    return names


@pytest.fixture
def app_config():
    return {"METRICS_TOKEN": TOKEN}


@pytest.fixture
def exposed(app, client, project_body) -> set[str]:
    """Every series name MARS exposes, from a real scrape after some traffic. The test
    process has every module loaded, the worker's and the relay's metrics too."""
    client.get("/api/v1/meta")
    client.post("/api/v1/projects", json=project_body())
    client.get("/api/v1/no-such-thing")
    response = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    names = set()
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
    }
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def rules() -> list[dict]:
    document = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_metric_names_finds_every_series_and_nothing_else():
    expr = (
        'histogram_quantile(0.99, sum by (le, operation) (rate(mars_x_bucket{status="5xx",'
        'le!="+Inf"}[$__rate_interval]))) / on (instance) group_left sum without (job) '
        "(mars_y_total offset 5m) > 1e3 and up == 0 or absent(mars_z)"
    )
    assert metric_names(expr) == {"mars_x_bucket", "mars_y_total", "up", "mars_z"}


@needs_promtool
def test_the_alerting_rules_pass_promtool_check():
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_the_alerting_rules_pass_their_unit_tests():
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_the_scrape_config_example_is_valid():
    # --syntax-only: the token file it names exists on the Prometheus host, not here.
    result = promtool("check", "config", "--syntax-only", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scrape_targets_are_where_the_shipped_units_listen():
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: {t for c in job["static_configs"] for t in c["targets"]}
        for job in config["scrape_configs"]
    }
    units = ROOT / "deploy" / "systemd"
    for job, unit in (("mars-relay", "mars-relay.service"), ("mars-worker", "mars-worker.service")):
        port = re.search(r"--metrics-port (\d+)", (units / unit).read_text())
        assert port, unit
        assert targets[job] == {f"127.0.0.1:{port[1]}"}, job
    upstreams = re.findall(
        r"server 127\.0\.0\.1:(\d+)", (ROOT / "deploy" / "nginx" / "mars.conf").read_text()
    )
    assert targets["mars-web"] == {f"127.0.0.1:{port}" for port in upstreams}


def test_every_alert_is_unit_tested():
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    tested = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in rules()} == tested


def test_every_alert_names_metrics_mars_exposes(exposed):
    for rule in rules():
        unknown = metric_names(rule["expr"]) - exposed - PROMETHEUS_OWN
        assert not unknown, f"alert {rule['alert']} names unknown metrics {unknown}"


def test_the_dashboard_is_grafana_json_with_prometheus_queries():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"]
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert panels
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["type"] == "prometheus"
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])


def test_every_dashboard_query_names_metrics_mars_exposes(exposed):
    for title, expr in dashboard_queries():
        names = metric_names(expr)
        assert names, f"panel {title!r}: no metric in {expr!r}"
        assert not names - exposed, f"panel {title!r} names unknown metrics {names - exposed}"


def test_every_mars_metric_has_a_panel(exposed):
    shown = {name for _, expr in dashboard_queries() for name in metric_names(expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in shown}
    missing = {
        name
        for name in exposed
        if name.startswith("mars_")
        and name not in shown
        and re.sub(r"_(total|bucket|sum|count)$", "", name) not in families
    }
    assert not missing, f"metrics without a panel: {sorted(missing)}"


def test_a_misspelt_metric_in_a_query_is_caught(exposed):
    for _, expr in dashboard_queries():
        name = sorted(metric_names(expr))[0]
        typo = expr.replace(name, name.replace("_", "", 1), 1)
        assert metric_names(typo) - exposed, typo
