"""Write ``ops/grafana/metawsm.json``, the Grafana dashboard of metawsm's exporter.

The dashboard is data built here, not hand-edited JSON: panels are laid out on Grafana's 24-column
grid row by row, every query filters on the ``job`` variable and reads from the ``datasource``
variable (no datasource uid is hard-coded, so the JSON imports into any Grafana with a Prometheus
datasource). Run ``python ops/grafana/build_dashboard.py`` after a change and commit both files;
a unit test fails when the JSON is not what this script writes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("metawsm.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
J = '{job=~"$job"}'  # every selector: the deployments the job variable picks
RATE = "[$__rate_interval]"
UP_MAPPING = [
    {"type": "value", "options": {"0": {"text": "down", "color": "red", "index": 0}}},
    {"type": "value", "options": {"1": {"text": "up", "color": "green", "index": 1}}},
]


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    """One PromQL query of a panel."""
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def quantiles(metric: str) -> list[tuple[str, str]]:
    """p50 and p99 of histogram ``metric`` over the rate interval, all label sets merged."""
    return [
        (
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{J}{RATE})))",
            f"p{round(q * 100)}",
        )
        for q in (0.5, 0.99)
    ]


def panel(
    title: str,
    queries: list[tuple[str, str]],
    unit: str,
    *,
    kind: str = "timeseries",
    width: int = 8,
    description: str = "",
    thresholds: Sequence[tuple[float | None, str]] | None = None,
    mappings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A panel (time series or stat) of ``queries`` (expr, legend); laid out by :func:`layout`."""
    steps = [{"color": c, "value": v} for v, c in (thresholds or [(None, "green")])]
    body: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": 8 if kind == "timeseries" else 4},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps},
                "mappings": mappings or [],
            },
            "overrides": [],
        },
        "targets": [target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(queries)],
    }
    if kind == "timeseries":
        body["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}}
        body["fieldConfig"]["defaults"]["custom"] = {"fillOpacity": 10, "lineWidth": 1}
    else:
        body["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "auto",
        }
    return body


def by_type(metric: str, verb: str) -> tuple[str, str]:
    """Per-second rate of a per-command-type counter, one series per type."""
    return f"sum by (command_type) (rate({metric}{J}{RATE}))", f"{verb} {{{{command_type}}}}"


def rows() -> list[tuple[str, list[dict[str, Any]]]]:
    """The dashboard's rows, top to bottom, each with its panels left to right."""
    s_age = [(None, "green"), (60, "orange"), (300, "red")]
    return [
        ("Health", [
            panel("Exporter scraped", [(f"up{J}", "{{instance}}")], "none", kind="stat",
                  width=4, mappings=UP_MAPPING, thresholds=[(None, "red"), (1, "green")],
                  description="Prometheus reached the exporter (up)."),
            panel("Database", [(f"metawsm_database_up{J}", "database")], "none", kind="stat",
                  width=4, mappings=UP_MAPPING, thresholds=[(None, "red"), (1, "green")],
                  description="The exporter reached the database in its last scrape."),
            panel("Broker", [(f"metawsm_broker_up{J}", "broker")], "none", kind="stat",
                  width=4, mappings=UP_MAPPING, thresholds=[(None, "red"), (1, "green")],
                  description="The exporter reached Redis in its last scrape."),
            panel("Workers alive by role",
                  [(f"sum by (role) (metawsm_workers_alive{J})", "{{role}}")], "none",
                  kind="stat", width=8, thresholds=[(None, "red"), (1, "green")],
                  description="Workers with a recent heartbeat, per role: 0 is an outage "
                  "of that role."),
            panel("Beat last tick", [(f"metawsm_beat_last_tick_age_seconds{J}", "age")], "s",
                  kind="stat", width=4, thresholds=[(None, "green"), (30, "orange"), (60, "red")],
                  description="Seconds since beat's last tick (very large when never)."),
        ]),
        ("Commands", [
            panel("Commands accepted / applied / rejected per second",
                  [by_type("metawsm_commands_accepted_total", "accepted"),
                   by_type("metawsm_commands_applied_total", "applied"),
                   by_type("metawsm_commands_rejected_total", "rejected")], "ops", width=12,
                  description="Throughput by command type: applied below accepted for long "
                  "means the commands role is short of workers or stuck."),
            panel("Command lag (accepted → applied)",
                  quantiles("metawsm_command_lag_seconds"), "s",
                  description="p50 and p99. SLO p99 < 100 ms; over a second means backlog."),
            panel("Commands ended dead per second",
                  [by_type("metawsm_commands_dead_total", "dead")], "ops", width=4,
                  description="Commands that ended as dead letters; any is an incident."),
        ]),
        ("Projections", [
            panel("Projection lag (committed → projected)",
                  quantiles("metawsm_projection_lag_seconds"), "s",
                  description="p50 and p99. SLO p99 < 100 ms."),
            panel("Projection backlog",
                  [(f"metawsm_projection_backlog_events{J}", "events not projected")], "short",
                  description="Events committed and not yet projected."),
            panel("Oldest unprojected event",
                  [(f"metawsm_projection_backlog_oldest_age_seconds{J}", "age")], "s",
                  thresholds=s_age,
                  description="Grows while the events role is down or stuck (0 when none)."),
        ]),
        ("Outbox", [
            panel("Outbox pending", [(f"metawsm_outbox_pending{J}", "rows pending")], "short",
                  description="Outbox rows not yet published (Redis down or slow)."),
            panel("Oldest pending outbox row",
                  [(f"metawsm_outbox_oldest_pending_age_seconds{J}", "age")], "s",
                  thresholds=s_age, description="0 when none pending."),
            panel("Publish failures and re-drives per second",
                  [(f"sum(rate(metawsm_outbox_publish_failures_total{J}{RATE}))",
                    "publish failures"),
                   (f"sum(rate(metawsm_outbox_redrives_total{J}{RATE}))",
                    "re-driven by reconciliation")], "ops",
                  description="Failures: publishes that did not reach Redis (the drainer "
                  "retries). Re-drives: rows reconciliation published again."),
        ]),
        ("Dead letters", [
            panel("Dead letters by kind",
                  [(f"sum by (kind) (metawsm_dead_letters{J})", "{{kind}}")], "short",
                  width=12, thresholds=[(None, "green"), (1, "red")],
                  description="Still dead (SLO: 0). metawsm dlq list."),
            panel("Dead-letter redrives per second",
                  [(f"sum(rate(metawsm_dead_letter_redrives_total{J}{RATE}))", "redriven")],
                  "ops", width=12, description="metawsm dlq redrive, by an operator."),
        ]),
        ("Guidance and escalations", [
            panel("Guidance pending", [(f"metawsm_guidance_pending{J}", "pending")], "short",
                  width=6, description="Guidance requests without an answer."),
            panel("Oldest unanswered guidance",
                  [(f"metawsm_guidance_oldest_pending_age_seconds{J}", "age")], "s", width=6,
                  thresholds=[(None, "green"), (1800, "orange"), (3600, "red")],
                  description="Against the SLA: operator tier 30 min, human tier 60 min "
                  "(METAWSM_SLA_MINUTES, METAWSM_SLA_HUMAN_MINUTES)."),
            panel("Guidance answer time",
                  quantiles("metawsm_guidance_answer_seconds"), "s", width=6,
                  description="Request → answer, p50 and p99."),
            panel("Escalations raised by tier",
                  [(f"sum by (tier) (increase(metawsm_escalations_total{J}{RATE}))",
                    "{{tier}}")], "short", width=6,
                  description="SLA escalations raised in each interval."),
        ]),
        ("Runs and workers", [
            panel("Runs by status", [(f"sum by (status) (metawsm_runs{J})", "{{status}}")],
                  "short"),
            panel("Workers alive by role",
                  [(f"sum by (role) (metawsm_workers_alive{J})", "{{role}}")], "short",
                  description="From heartbeats, not inspect ping."),
            panel("Beat last tick age", [(f"metawsm_beat_last_tick_age_seconds{J}", "age")],
                  "s", thresholds=[(None, "green"), (30, "orange"), (60, "red")]),
        ]),
        ("Exporter", [
            panel("Scrape duration", [(f"metawsm_scrape_duration_seconds{J}", "exporter")],
                  "s", width=12, thresholds=[(None, "green"), (0.1, "orange"), (1, "red")],
                  description="The exporter's own time to gather (target < 100 ms at 100k "
                  "events)."),
            panel("Broker and database up",
                  [(f"metawsm_broker_up{J}", "broker"), (f"metawsm_database_up{J}", "database"),
                   (f"up{J}", "exporter")], "none", width=12),
        ]),
        ("Access", [
            panel("Failed authentications by reason",
                  [(f"sum by (reason) (increase(metawsm_auth_failures_total{J}{RATE}))",
                    "{{reason}}")], "short", width=24,
                  description="Bearer tokens refused in each interval (docs/identities.md); "
                  "a burst of unknown tokens is someone guessing."),
        ]),
    ]  # fmt: skip


def layout(groups: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Number the panels and place them: a row header, then its panels wrapping at 24 columns."""
    placed: list[dict[str, Any]] = []
    y = 0
    for title, panels in groups:
        placed.append({
            "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
        })  # fmt: skip
        y += 1
        x, row_h = 0, 0
        for body in panels:
            w, h = body["gridPos"]["w"], body["gridPos"]["h"]
            if x + w > 24:
                x, y, row_h = 0, y + row_h, 0
            body["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
            x, row_h = x + w, max(row_h, h)
            placed.append(body)
        y += row_h
    for number, body in enumerate(placed, start=1):
        body["id"] = number
    return placed


def dashboard() -> dict[str, Any]:
    """The whole dashboard model, ready for Grafana's import."""
    return {
        "uid": "metawsm-overview",
        "title": "metawsm",
        "description": "metawsm's exporter (metawsm metrics serve): throughput, lag, outbox, "
        "dead letters, guidance, runs, liveness. Alerts: ops/prometheus/metawsm-alerts.yml.",
        "tags": ["metawsm"],
        "schemaVersion": 36,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                },
                {
                    "name": "job",
                    "label": "Job",
                    "type": "custom",
                    "query": "metawsm",
                    "current": {"text": "metawsm", "value": "metawsm"},
                    "hide": 0,
                    "options": [{"selected": True, "text": "metawsm", "value": "metawsm"}],
                    "description": "The scrape job of metawsm's exporter (a regex).",
                },
            ]
        },
        "panels": layout(rows()),
    }


def render() -> str:
    """The dashboard as the JSON text committed in ``ops/grafana/metawsm.json``."""
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    sys.stdout.write(f"wrote {OUT}\n")
