"""The Prometheus alert rules (ops/prometheus/): every expression names a metric the exporter
exposes, every alert is documented, and promtool accepts the rules and the example config and
runs the rule unit tests (each alert fires on its incident, stays quiet otherwise)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from metawsm.ops import catalogue
from metawsm.transport.queues import ROLES
from tests.fixtures.prometheus import promtool
from tests.fixtures.promql import metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "ops" / "prometheus"
RULES = PROMETHEUS_DIR / "metawsm-alerts.yml"
RULE_TESTS = PROMETHEUS_DIR / "metawsm-alerts.test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS_DOC = ROOT / "ops" / "alerts.md"
PROMETHEUS_SERIES = frozenset({"up"})
# Sections of ops/runbook.md (written with the incident drills) an alert may point to.
RUNBOOK_SECTIONS = {"redis-outage", "redis-stall", "worker-kill", "redis-flush", "replay"}
REQUIRED_ALERTS = {
    "MetawsmPublishFailuresRising",
    "MetawsmCommandLagHigh",
    "MetawsmProjectionLagHigh",
    "MetawsmOutboxStale",
    "MetawsmDeadLettersGrowing",
    "MetawsmNoConsumer",
    "MetawsmBeatSilent",
    "MetawsmGuidanceUnanswered",
    "MetawsmBrokerDown",
    "MetawsmDatabaseDown",
    "MetawsmExporterDown",
}
SEVERITIES = {"info", "warning", "critical"}


def _rules(text: str | None = None) -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text() if text is None else text)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def unknown_metrics(rules: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Per rule, the metric names its expression uses that no scrape exposes."""
    known = catalogue.exposed_series_names() | PROMETHEUS_SERIES
    unknown = {}
    for rule in rules:
        where = rule.get("alert") or rule["record"]
        names = metric_names(rule["expr"])
        assert names, f"{where} selects no metric: {rule['expr']}"
        if names - known:
            unknown[f"{where} {rule.get('labels', {})}"] = names - known
    return unknown


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of ``markdown``."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_every_rule_expression_names_a_metric_the_exporter_exposes() -> None:
    assert unknown_metrics(_rules()) == {}


def test_a_rule_naming_an_unknown_metric_is_caught() -> None:
    text = RULES.read_text().replace("metawsm_beat_last_tick_age_seconds", "metawsm_beat_age", 1)
    assert list(unknown_metrics(_rules(text)).values()) == [{"metawsm_beat_age"}]


def test_the_alerts_the_issue_asks_for_exist_with_a_rule_per_worker_role() -> None:
    rules = _rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    roles = {r["labels"]["role"] for r in rules if r["alert"] == "MetawsmNoConsumer"}
    assert roles == set(ROLES) - {"all"}


def test_every_alert_waits_has_a_severity_and_points_to_its_documentation() -> None:
    doc_anchors = _anchors(ALERTS_DOC.read_text())
    for rule in _rules():
        name, annotations = rule["alert"], rule["annotations"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert annotations["summary"] and annotations["description"], name
        page, _, anchor = annotations["runbook_url"].partition("#")
        if page == "ops/runbook.md":
            assert anchor in RUNBOOK_SECTIONS, name
        else:
            assert (page, anchor in doc_anchors) == ("ops/alerts.md", True), name
        page, _, anchor = annotations["alert_doc"].partition("#")
        assert (page, anchor) == ("ops/alerts.md", name.lower()), name
        assert anchor in doc_anchors, f"ops/alerts.md has no section {name}"


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in result.stdout


def test_promtool_accepts_the_example_config_and_it_loads_the_rules() -> None:
    result = promtool("check", "config", CONFIG.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    config = yaml.safe_load(CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "metawsm"
    assert job["static_configs"] == [{"targets": ["127.0.0.1:9808"]}]


def test_the_alerts_fire_on_their_incidents_and_stay_quiet_otherwise() -> None:
    result = promtool("test", "rules", RULE_TESTS.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    tested = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tested
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in tested
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    every_alert = {rule["alert"] for rule in _rules()}
    assert fired == every_alert
    assert quiet == every_alert
