"""The text exposition (Prometheus format 0.0.4) of one :class:`~metawsm.ops.readings.Readings`.

Written here rather than with prometheus_client: every value is read from the database at
scrape time, so the client's registry, its process-global state and its multiprocess files would
hold nothing; a custom collector would be this same code behind its API. The format is a few
lines per family (``# HELP``, ``# TYPE``, samples) and is checked by the unit tests, which parse
it back with prometheus_client's own parser.

Series with labels are exposed with a zero for every known label value (each command type, run
status, worker role, escalation tier), so dashboards and alerts see a 0, not an absent series.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from metawsm.domain.runs import RunStatus
from metawsm.messages.commands import COMMAND_TYPES
from metawsm.ops import catalogue as m
from metawsm.ops.counters import BUCKET, SUM, bound_text, label_text
from metawsm.ops.heartbeats import WORKER_ROLES
from metawsm.ops.readings import Readings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RUN_STATUSES = tuple(status.value for status in RunStatus)
TIERS = ("operator", "human")
# Why a bearer token was refused (metawsm.services.tokens.authenticate).
AUTH_FAILURE_REASONS = ("missing", "malformed", "unknown", "expired", "revoked")
DEAD_LETTER_KINDS = ("command", "event.projector", "quarantine")
Sample = tuple[str, str, float]  # (sample name, label text, value)


def render(readings: Readings) -> str:
    """The whole exposition for ``readings`` (only the probes when the database is not read)."""
    values: dict[str, list[Sample]] = {
        m.BROKER_UP: [(m.BROKER_UP, "", 1.0 if readings.broker.up else 0.0)],
        m.DATABASE_UP: [(m.DATABASE_UP, "", 1.0 if readings.at_head else 0.0)],
        m.SCRAPE_DURATION: [(m.SCRAPE_DURATION, "", readings.duration_s)],
    }
    if readings.at_head:
        values.update(_database_samples(readings))
    lines: list[str] = []
    for spec in m.METRICS:
        samples = values.get(spec.name)
        if samples is None:
            continue
        lines.append(f"# HELP {spec.name} {spec.help}")
        lines.append(f"# TYPE {spec.name} {spec.kind}")
        lines.extend(
            f"{name}{{{labels}}} {_number(v)}" if labels else f"{name} {_number(v)}"
            for name, labels, v in samples
        )
    return "\n".join(lines) + "\n"


def _database_samples(r: Readings) -> dict[str, list[Sample]]:
    c = r.counters
    out: dict[str, list[Sample]] = {}
    for name in (m.COMMANDS_ACCEPTED, m.COMMANDS_APPLIED, m.COMMANDS_REJECTED, m.COMMANDS_DEAD):
        out[name] = _labelled(c, name, "command_type", COMMAND_TYPES)
    out[m.ESCALATIONS] = _labelled(c, m.ESCALATIONS, "tier", TIERS)
    out[m.AUTH_FAILURES] = _labelled(c, m.AUTH_FAILURES, "reason", AUTH_FAILURE_REASONS)
    for name in (m.OUTBOX_PUBLISH_FAILURES, m.OUTBOX_REDRIVES, m.DEAD_LETTER_REDRIVES):
        out[name] = [(name, "", c.get((name, ""), 0.0))]
    for name in (m.COMMAND_LAG, m.PROJECTION_LAG, m.GUIDANCE_ANSWER):
        out[name] = list(_histogram(c, name))
    gauges = {
        m.PROJECTION_BACKLOG: r.projection_backlog,
        m.PROJECTION_BACKLOG_AGE: r.projection_oldest_age_s,
        m.OUTBOX_PENDING: r.outbox_pending,
        m.OUTBOX_PENDING_AGE: r.outbox_oldest_age_s,
        m.GUIDANCE_PENDING: r.guidance_pending,
        m.GUIDANCE_PENDING_AGE: r.guidance_oldest_age_s,
        m.BEAT_TICK_AGE: r.beat_age_s,
    }
    for name, value in gauges.items():
        out[name] = [(name, "", float(value))]
    out[m.DEAD_LETTERS] = _gauge(m.DEAD_LETTERS, "kind", DEAD_LETTER_KINDS, r.dead_letters)
    out[m.RUNS] = _gauge(m.RUNS, "status", RUN_STATUSES, r.runs)
    out[m.WORKERS_ALIVE] = _gauge(m.WORKERS_ALIVE, "role", WORKER_ROLES, r.workers_alive)
    return out


def _labelled(
    counters: dict[tuple[str, str], float], name: str, label: str, known: Iterable[str]
) -> list[Sample]:
    """A counter's series: every known label value (0 when never counted) and any other seen."""
    texts = {label_text(**{label: value}) for value in known}
    texts.update(labels for n, labels in counters if n == name)
    return [(name, t, counters.get((name, t), 0.0)) for t in sorted(texts)]


def _gauge(name: str, label: str, known: Iterable[str], values: dict[str, int]) -> list[Sample]:
    keys = sorted(set(known) | set(values))
    return [(name, label_text(**{label: k}), float(values.get(k, 0))) for k in keys]


def _histogram(counters: dict[tuple[str, str], float], name: str) -> Iterator[Sample]:
    """Cumulative buckets (kept per bucket, metawsm.ops.counters), then _sum and _count."""
    total = 0.0
    for bound in (*m.buckets_of(name), math.inf):
        le = bound_text(bound)
        total += counters.get((name + BUCKET, f'le="{le}"'), 0.0)
        yield (f"{name}_bucket", f'le="{le}"', total)
    yield (f"{name}_sum", "", counters.get((name + SUM, ""), 0.0))
    yield (f"{name}_count", "", total)


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
