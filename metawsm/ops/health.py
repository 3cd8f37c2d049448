"""The health checks of ``metawsm health`` and ``GET /readyz``, judged from one set of readings.

Each check has a stable name (the contract of issue 13), says what it saw (``detail``: latency,
backlog, ages) and, when it fails, the command that helps (``hint``). Thresholds are settings:
``METAWSM_HEALTH_OUTBOX_MAX_AGE_S``, ``METAWSM_HEALTH_PROJECTION_MAX_LAG_S``,
``METAWSM_HEALTH_DEAD_LETTERS_MAX``, ``METAWSM_HEALTH_BROKER_TIMEOUT_S``, and the liveness window
(3 times ``METAWSM_HEARTBEAT_INTERVAL_S``) for workers and beat.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from metawsm.ops.heartbeats import WORKER_ROLES
from metawsm.ops.readings import Readings
from metawsm.settings import Settings
from metawsm.storage.schema_head import HEAD

CHECK_NAMES = (
    "database",
    "schema",
    "broker",
    *(f"workers:{role}" for role in WORKER_ROLES),
    "beat",
    "outbox",
    "projection",
    "dead_letters",
)


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``ok``, what it saw, and (when failing) the command that helps."""

    name: str
    ok: bool
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class Health:
    """Every check, healthy only when all pass."""

    checks: tuple[Check, ...]

    @property
    def healthy(self) -> bool:
        """All checks pass."""
        return all(check.ok for check in self.checks)

    def failing(self) -> list[Check]:
        """The checks that fail, in check order."""
        return [check for check in self.checks if not check.ok]

    def as_dict(self) -> dict[str, Any]:
        """``{"healthy": bool, "checks": [{"name", "ok", "detail", "hint"}]}`` (the contract)."""
        return {"healthy": self.healthy, "checks": [asdict(check) for check in self.checks]}


def judge(r: Readings, settings: Settings) -> Health:
    """Every check of the contract, in :data:`CHECK_NAMES` order, from ``r``."""
    checks = [_database(r), _schema(r), _broker(r)]
    if not r.at_head:
        skipped = "not checked: the database is unreachable or not at head"
        checks.extend(
            Check(name, False, skipped, "metawsm db upgrade" if r.database_up else None)
            for name in CHECK_NAMES[3:]
        )
        return Health(tuple(checks))
    liveness = settings.liveness_s
    checks.extend(_workers(r, role, liveness) for role in WORKER_ROLES)
    checks.extend([_beat(r, liveness), _outbox(r, settings), _projection(r, settings)])
    checks.append(_dead_letters(r, settings))
    return Health(tuple(checks))


def _database(r: Readings) -> Check:
    if r.database_up:
        return Check("database", True, "reachable")
    return Check(
        "database", False, str(r.database_error), "check METAWSM_DATABASE_URL and the server"
    )


def _schema(r: Readings) -> Check:
    if not r.database_up:
        return Check("schema", False, "not checked: the database is unreachable")
    if r.at_head:
        return Check("schema", True, f"at head {HEAD}")
    found = ", ".join(r.schema_revisions) or "no metawsm schema"
    return Check("schema", False, f"at {found}, head is {HEAD}", "metawsm db upgrade")


def _broker(r: Readings) -> Check:
    probe = r.broker
    if probe.up:
        return Check("broker", True, f"PING answered in {probe.latency_ms:.1f} ms")
    return Check(
        "broker",
        False,
        f"no PING answer after {probe.latency_ms:.0f} ms: {probe.error}",
        "start Redis (metawsm up starts a private one), or check METAWSM_BROKER_URL",
    )


def _workers(r: Readings, role: str, liveness_s: float) -> Check:
    alive = r.workers_alive.get(role, 0)
    name = f"workers:{role}"
    detail = f"{alive} worker(s) with a heartbeat in the last {liveness_s:g} s"
    if alive:
        return Check(name, True, detail)
    return Check(name, False, detail, f"metawsm worker --role {role}")


def _beat(r: Readings, liveness_s: float) -> Check:
    if math.isinf(r.beat_age_s):
        return Check("beat", False, "beat never ticked", "metawsm beat")
    detail = f"last tick {r.beat_age_s:.1f} s ago (liveness {liveness_s:g} s)"
    if r.beat_age_s <= liveness_s:
        return Check("beat", True, detail)
    return Check("beat", False, detail, "metawsm beat")


def _outbox(r: Readings, settings: Settings) -> Check:
    limit = settings.health_outbox_max_age_s
    detail = (
        f"{r.outbox_pending} row(s) not published, oldest {r.outbox_oldest_age_s:.1f} s"
        f" (limit {limit:g} s)"
    )
    if r.outbox_oldest_age_s <= limit:
        return Check("outbox", True, detail)
    return Check(
        "outbox",
        False,
        detail,
        "is Redis up (metawsm health: broker) and beat running (metawsm beat)? the drainer"
        " publishes them",
    )


def _projection(r: Readings, settings: Settings) -> Check:
    limit = settings.health_projection_max_lag_s
    detail = (
        f"{r.projection_backlog} event(s) not projected, oldest {r.projection_oldest_age_s:.1f} s"
        f" (limit {limit:g} s)"
    )
    if r.projection_oldest_age_s <= limit:
        return Check("projection", True, detail)
    return Check("projection", False, detail, "metawsm worker --role events")


def _dead_letters(r: Readings, settings: Settings) -> Check:
    total = sum(r.dead_letters.values())
    limit = settings.health_dead_letters_max
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(r.dead_letters.items())) or "none"
    detail = f"{total} still dead ({kinds}; limit {limit})"
    if total <= limit:
        return Check("dead_letters", True, detail)
    return Check("dead_letters", False, detail, "metawsm dlq list")
