"""What one scrape reads: every gauge from the database at that moment, the counters summed
over their shards, the broker probed once. The exporter renders a :class:`Readings`; ``metawsm
health`` and ``/readyz`` judge one.

Each read goes through an index or a small table, so a scrape costs the same at any size
(docs/metrics.md, "Scrape cost"): the counters table holds a few hundred rows, the outbox and
dead-letter reads touch only rows not yet done or still dead, runs are counted from their
status index, guidance from one row per pending request (metawsm.ops.guidance_pending).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, func, select

from metawsm.errors import MetawsmError
from metawsm.ops import guidance_pending, heartbeats
from metawsm.ops.counters import SUMS
from metawsm.settings import Settings
from metawsm.storage import tables
from metawsm.storage.schema_head import HEAD, database_revisions
from metawsm.storage.types import as_utc, utcnow
from metawsm.storage.uow import unit_of_work
from metawsm.transport.broker_probe import BrokerProbe, probe_broker

OUTBOX = tables.forum_outbox
DEAD = tables.forum_dead_letters
RUNS = tables.runs
# Outbox rows of the projector (one per event) not done yet: events not yet projected.
_BACKLOG = select(func.count(), func.min(OUTBOX.c.created_at)).where(
    OUTBOX.c.status.in_(("pending", "processing", "sent")), OUTBOX.c.kind == "event.projector"
)
# Rows not handed to the broker yet (a failed publish, waiting for the drainer).
_UNPUBLISHED = select(func.count(), func.min(OUTBOX.c.created_at)).where(
    OUTBOX.c.status.in_(("pending", "processing"))
)
_DEAD_BY_KIND = (
    select(DEAD.c.kind, func.count()).where(DEAD.c.status == "dead").group_by(DEAD.c.kind)
)
_RUNS_BY_STATUS = select(RUNS.c.status, func.count()).group_by(RUNS.c.status)


@dataclass
class Readings:
    """One scrape's facts. Ages are seconds (0 when nothing waits); ``beat_age_s`` is +Inf when
    beat never ticked. Without the database (``database_error``) or at another schema revision
    (``schema_revisions`` not ``(HEAD,)``) only the probes are filled."""

    broker: BrokerProbe
    database_error: str | None = None
    schema_revisions: tuple[str, ...] = ()
    counters: dict[tuple[str, str], float] = field(default_factory=dict)
    projection_backlog: int = 0
    projection_oldest_age_s: float = 0.0
    outbox_pending: int = 0
    outbox_oldest_age_s: float = 0.0
    dead_letters: dict[str, int] = field(default_factory=dict)
    guidance_pending: int = 0
    guidance_oldest_age_s: float = 0.0
    runs: dict[str, int] = field(default_factory=dict)
    workers_alive: dict[str, int] = field(default_factory=dict)
    beat_age_s: float = float("inf")
    duration_s: float = 0.0

    @property
    def database_up(self) -> bool:
        """The database answered."""
        return self.database_error is None

    @property
    def at_head(self) -> bool:
        """The database answered and its schema is at this code's head revision."""
        return self.database_up and self.schema_revisions == (HEAD,)


def read(
    engine: Engine | None,
    settings: Settings,
    *,
    probe: Callable[[], BrokerProbe] | None = None,
    database_error: str | None = None,
) -> Readings:
    """Take one set of readings (never raises for a database or broker that is down).

    ``engine`` None: the database is not read, and ``database_error`` says why (a SQLite file
    that does not exist: reading it would create it).
    """
    started = time.perf_counter()
    broker = (
        probe or (lambda: probe_broker(settings.broker_url, settings.health_broker_timeout_s))
    )()
    readings = Readings(broker=broker)
    if engine is None:
        readings.database_error = database_error or "no database"
        readings.duration_s = time.perf_counter() - started
        return readings
    try:
        readings.schema_revisions = database_revisions(engine)
        if readings.at_head:
            _read_database(engine, settings, readings)
    except MetawsmError as exc:
        readings.database_error = str(exc)
    readings.duration_s = time.perf_counter() - started
    return readings


def _read_database(engine: Engine, settings: Settings, readings: Readings) -> None:
    now = utcnow()
    with unit_of_work(engine, readonly=True) as session:
        conn = session.connection()
        readings.counters = {(str(n), str(lb)): float(v) for n, lb, v in conn.execute(SUMS)}
        readings.projection_backlog, readings.projection_oldest_age_s = _count_age(
            conn, _BACKLOG, now
        )
        readings.outbox_pending, readings.outbox_oldest_age_s = _count_age(conn, _UNPUBLISHED, now)
        readings.dead_letters = {str(k): int(n) for k, n in conn.execute(_DEAD_BY_KIND)}
        readings.runs = {str(s): int(n) for s, n in conn.execute(_RUNS_BY_STATUS)}
        readings.workers_alive = heartbeats.alive_by_role(conn, settings.liveness_s, now)
        last = heartbeats.last_beat(conn, heartbeats.BEAT_ROLE)
        readings.beat_age_s = _age_s(now, last) if last is not None else float("inf")
        readings.guidance_pending, asked = guidance_pending.open_requests(conn)
        readings.guidance_oldest_age_s = _age_s(now, asked) if asked is not None else 0.0


def _count_age(conn: Connection, query: object, now: datetime) -> tuple[int, float]:
    count, oldest = conn.execute(query).one()  # type: ignore[call-overload]
    return int(count or 0), (_age_s(now, as_utc(oldest)) if oldest is not None else 0.0)


def _age_s(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())
