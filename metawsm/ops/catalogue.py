"""The catalogue of metrics the exporter exposes: names, kinds, help and labels.

PROVISIONAL copy written against the shared metrics contract so that the dashboard and alert
tests run; the exporter's branch owns this module and its version replaces this one at merge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricSpec:
    """One metric the exporter exposes."""

    name: str  # full name as exposed for gauges/counters (counters end in _total)
    kind: Literal["counter", "gauge", "histogram"]
    help: str
    labels: tuple[str, ...] = ()


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "metawsm_commands_accepted_total",
        "counter",
        "Commands accepted (ledger rows).",
        ("command_type",),
    ),
    MetricSpec("metawsm_commands_applied_total", "counter", "Commands applied.", ("command_type",)),
    MetricSpec(
        "metawsm_commands_rejected_total",
        "counter",
        "Commands rejected by a rule.",
        ("command_type",),
    ),
    MetricSpec(
        "metawsm_commands_dead_total",
        "counter",
        "Commands that ended dead (ever).",
        ("command_type",),
    ),
    MetricSpec("metawsm_command_lag_seconds", "histogram", "Command accepted to applied."),
    MetricSpec("metawsm_projection_lag_seconds", "histogram", "Event committed to projected."),
    MetricSpec("metawsm_projection_backlog_events", "gauge", "Events not yet projected."),
    MetricSpec(
        "metawsm_projection_backlog_oldest_age_seconds",
        "gauge",
        "Age of the oldest unprojected event (0 when none).",
    ),
    MetricSpec("metawsm_outbox_pending", "gauge", "Outbox rows not yet published."),
    MetricSpec(
        "metawsm_outbox_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest pending outbox row (0 when none).",
    ),
    MetricSpec("metawsm_outbox_publish_failures_total", "counter", "Failed publishes."),
    MetricSpec("metawsm_outbox_redrives_total", "counter", "Rows re-published by reconciliation."),
    MetricSpec("metawsm_dead_letters", "gauge", "Dead letters still dead.", ("kind",)),
    MetricSpec("metawsm_dead_letter_redrives_total", "counter", "Dead letters redriven."),
    MetricSpec("metawsm_guidance_pending", "gauge", "Guidance requests without an answer."),
    MetricSpec(
        "metawsm_guidance_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest unanswered guidance request (0 when none).",
    ),
    MetricSpec("metawsm_guidance_answer_seconds", "histogram", "Guidance request to answer."),
    MetricSpec("metawsm_escalations_total", "counter", "SLA escalations raised.", ("tier",)),
    MetricSpec("metawsm_runs", "gauge", "Runs by status.", ("status",)),
    MetricSpec(
        "metawsm_workers_alive",
        "gauge",
        "Workers with a heartbeat younger than the liveness window, per role.",
        ("role",),
    ),
    MetricSpec(
        "metawsm_beat_last_tick_age_seconds",
        "gauge",
        "Seconds since beat's last tick (+Inf when never).",
    ),
    MetricSpec("metawsm_broker_up", "gauge", "1 when the exporter reached Redis in this scrape."),
    MetricSpec(
        "metawsm_database_up", "gauge", "1 when the exporter reached the database in this scrape."
    ),
    MetricSpec("metawsm_scrape_duration_seconds", "gauge", "The exporter's last scrape duration."),
)


def exposed_series_names() -> frozenset[str]:
    """Every sample name a scrape can contain: for histograms name_bucket, name_sum, name_count."""
    names: set[str] = set()
    for spec in METRICS:
        if spec.kind == "histogram":
            names.update(f"{spec.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(spec.name)
    return frozenset(names)
