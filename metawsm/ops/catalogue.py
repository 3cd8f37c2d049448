"""Every metric the exporter exposes: name, kind, help and labels (the contract of issue 13).

Dashboards and alert rules name these; ``docs/metrics.md`` has one table row per entry (a unit
test compares them) saying exactly what each counts. Base units are seconds.
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


# Fixed histogram buckets (upper bounds, seconds; +Inf is implied).
LAG_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ANSWER_BUCKETS_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 86400.0)

COMMANDS_ACCEPTED = "metawsm_commands_accepted_total"
COMMANDS_APPLIED = "metawsm_commands_applied_total"
COMMANDS_REJECTED = "metawsm_commands_rejected_total"
COMMANDS_DEAD = "metawsm_commands_dead_total"
COMMAND_LAG = "metawsm_command_lag_seconds"
PROJECTION_LAG = "metawsm_projection_lag_seconds"
PROJECTION_BACKLOG = "metawsm_projection_backlog_events"
PROJECTION_BACKLOG_AGE = "metawsm_projection_backlog_oldest_age_seconds"
OUTBOX_PENDING = "metawsm_outbox_pending"
OUTBOX_PENDING_AGE = "metawsm_outbox_oldest_pending_age_seconds"
OUTBOX_PUBLISH_FAILURES = "metawsm_outbox_publish_failures_total"
OUTBOX_REDRIVES = "metawsm_outbox_redrives_total"
DEAD_LETTERS = "metawsm_dead_letters"
DEAD_LETTER_REDRIVES = "metawsm_dead_letter_redrives_total"
GUIDANCE_PENDING = "metawsm_guidance_pending"
GUIDANCE_PENDING_AGE = "metawsm_guidance_oldest_pending_age_seconds"
GUIDANCE_ANSWER = "metawsm_guidance_answer_seconds"
ESCALATIONS = "metawsm_escalations_total"
AUTH_FAILURES = "metawsm_auth_failures_total"
RUNS = "metawsm_runs"
WORKERS_ALIVE = "metawsm_workers_alive"
BEAT_TICK_AGE = "metawsm_beat_last_tick_age_seconds"
BROKER_UP = "metawsm_broker_up"
DATABASE_UP = "metawsm_database_up"
SCRAPE_DURATION = "metawsm_scrape_duration_seconds"

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(COMMANDS_ACCEPTED, "counter", "Commands accepted (ledger rows).", ("command_type",)),
    MetricSpec(COMMANDS_APPLIED, "counter", "Commands applied.", ("command_type",)),
    MetricSpec(COMMANDS_REJECTED, "counter", "Commands rejected by a rule.", ("command_type",)),
    MetricSpec(COMMANDS_DEAD, "counter", "Commands that ended dead (ever).", ("command_type",)),
    MetricSpec(COMMAND_LAG, "histogram", "Seconds from a command accepted to applied."),
    MetricSpec(PROJECTION_LAG, "histogram", "Seconds from an event committed to projected."),
    MetricSpec(PROJECTION_BACKLOG, "gauge", "Events not yet projected."),
    MetricSpec(
        PROJECTION_BACKLOG_AGE,
        "gauge",
        "Age in seconds of the oldest unprojected event (0 when none).",
    ),
    MetricSpec(OUTBOX_PENDING, "gauge", "Outbox rows not yet published."),
    MetricSpec(
        OUTBOX_PENDING_AGE,
        "gauge",
        "Age in seconds of the oldest unpublished outbox row (0 when none).",
    ),
    MetricSpec(OUTBOX_PUBLISH_FAILURES, "counter", "Failed publishes of outbox rows."),
    MetricSpec(OUTBOX_REDRIVES, "counter", "Outbox rows re-published by reconciliation."),
    MetricSpec(DEAD_LETTERS, "gauge", "Dead letters still dead.", ("kind",)),
    MetricSpec(DEAD_LETTER_REDRIVES, "counter", "Dead letters redriven."),
    MetricSpec(GUIDANCE_PENDING, "gauge", "Guidance requests without an answer."),
    MetricSpec(
        GUIDANCE_PENDING_AGE,
        "gauge",
        "Age in seconds of the oldest unanswered guidance request (0 when none).",
    ),
    MetricSpec(GUIDANCE_ANSWER, "histogram", "Seconds from a guidance request to its answer."),
    MetricSpec(ESCALATIONS, "counter", "SLA escalations raised.", ("tier",)),
    MetricSpec(
        AUTH_FAILURES, "counter", "Bearer tokens refused (failed authentications).", ("reason",)
    ),
    MetricSpec(RUNS, "gauge", "Runs by status.", ("status",)),
    MetricSpec(
        WORKERS_ALIVE,
        "gauge",
        "Workers with a heartbeat younger than the liveness window, per role.",
        ("role",),
    ),
    MetricSpec(
        BEAT_TICK_AGE, "gauge", "Seconds since beat's last tick (+Inf when it never ticked)."
    ),
    MetricSpec(BROKER_UP, "gauge", "1 when the exporter reached Redis in this scrape."),
    MetricSpec(DATABASE_UP, "gauge", "1 when the exporter reached the database in this scrape."),
    MetricSpec(SCRAPE_DURATION, "gauge", "Seconds the exporter took to read this scrape."),
)

BY_NAME = {spec.name: spec for spec in METRICS}


def exposed_series_names() -> frozenset[str]:
    """Every sample name a scrape can contain: for histograms name_bucket, name_sum, name_count."""
    names: set[str] = set()
    for spec in METRICS:
        if spec.kind == "histogram":
            names.update(f"{spec.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(spec.name)
    return frozenset(names)


def buckets_of(name: str) -> tuple[float, ...]:
    """The fixed bucket upper bounds of histogram ``name`` (without +Inf)."""
    return ANSWER_BUCKETS_S if name == GUIDANCE_ANSWER else LAG_BUCKETS_S
