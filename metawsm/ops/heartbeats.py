"""Heartbeats: each worker process records, per role it consumes, that it is alive; beat records
its last tick. A :class:`Heartbeat` thread writes every ``METAWSM_HEARTBEAT_INTERVAL_S``.

Liveness is read from the age of the newest beat (:func:`alive_by_role`), never from a
clean-shutdown row: a SIGKILLed worker stops writing and ages out within the liveness window
(3 intervals). A clean shutdown also deletes its rows, so a stopped worker is gone at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, delete, func, select, text

from metawsm.storage import tables
from metawsm.storage.types import UTCDateTime, as_utc, utcnow
from metawsm.storage.uow import connection_unit

WORKER_ROLES = ("commands", "events", "integration", "housekeeping")
BEAT_ROLE = "beat"
# Rows of processes gone this long are deleted by the next heartbeat of anyone.
FORGET_AFTER = timedelta(days=1)

HEARTBEATS = tables.ops_heartbeats
_UPSERT = text(
    "INSERT INTO ops_heartbeats (process, role, started_at, beat_at)"
    " VALUES (:process, :role, :started_at, :beat_at)"
    " ON CONFLICT (process, role) DO UPDATE SET beat_at = excluded.beat_at"
).bindparams(
    bindparam("started_at", type_=UTCDateTime()), bindparam("beat_at", type_=UTCDateTime())
)
_FORGET = delete(HEARTBEATS).where(HEARTBEATS.c.beat_at < bindparam("before"))
_REMOVE = delete(HEARTBEATS).where(HEARTBEATS.c.process == bindparam("process"))
_ALIVE = (
    select(HEARTBEATS.c.role, func.count())
    .where(HEARTBEATS.c.beat_at >= bindparam("since"))
    .group_by(HEARTBEATS.c.role)
)
_LAST = select(func.max(HEARTBEATS.c.beat_at)).where(HEARTBEATS.c.role == bindparam("role"))

log = logging.getLogger("metawsm.heartbeat")


def process_name(node: str | None = None) -> str:
    """This process's heartbeat key: ``<node or host>:<pid>``."""
    return f"{node or socket.gethostname()}:{os.getpid()}"


def beat(conn: Connection, process: str, roles: Iterable[str], started_at: datetime) -> None:
    """Record that ``process`` is alive in each of ``roles`` now (one statement)."""
    now = utcnow()
    rows = [
        {"process": process, "role": role, "started_at": started_at, "beat_at": now}
        for role in sorted(set(roles))
    ]
    if rows:
        conn.execute(_UPSERT, rows)


def forget_gone(conn: Connection) -> None:
    """Delete the rows of processes silent for a day (restarts leave one row each)."""
    conn.execute(_FORGET, {"before": utcnow() - FORGET_AFTER})


def remove(conn: Connection, process: str) -> None:
    """Delete ``process``'s rows (a clean shutdown: it is gone at once, not after the window)."""
    conn.execute(_REMOVE, {"process": process})


def alive_by_role(conn: Connection, liveness_s: float, now: datetime) -> dict[str, int]:
    """Processes per role whose last heartbeat is younger than ``liveness_s`` (every role: 0+)."""
    since = now - timedelta(seconds=liveness_s)
    counts = {role: 0 for role in (*WORKER_ROLES, BEAT_ROLE)}
    for role, n in conn.execute(_ALIVE, {"since": since}):
        counts[str(role)] = int(n)
    return counts


def last_beat(conn: Connection, role: str) -> datetime | None:
    """When any process of ``role`` last beat (None: never)."""
    value = conn.execute(_LAST, {"role": role}).scalar()
    return as_utc(value) if value is not None else None


class Heartbeat:
    """A daemon thread that beats for ``process`` in ``roles`` every ``interval_s`` until
    :meth:`stop`, which deletes its rows. A failed write (database busy or down) is logged once
    and retried on the next beat: a heartbeat never stops its process."""

    def __init__(
        self,
        engine: Engine,
        process: str,
        roles: Iterable[str],
        interval_s: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine, self.process, self.roles = engine, process, tuple(sorted(set(roles)))
        self.interval_s = interval_s
        self.started_at = clock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metawsm-heartbeat", daemon=True)
        self._failing = False

    def start(self) -> None:
        """Beat once now (so readiness is immediate), then every interval in the thread."""
        self.beat_once(forget=True)
        self._thread.start()

    def beat_once(self, *, forget: bool = False) -> None:
        """Write one heartbeat; never raises."""
        try:
            with connection_unit(self.engine) as conn:
                beat(conn, self.process, self.roles, self.started_at)
                if forget:
                    forget_gone(conn)
            if self._failing:
                log.warning("heartbeat of %s recorded again", self.process)
            self._failing = False
        except Exception as exc:  # the database is busy or down: try again next interval
            if not self._failing:
                log.warning("heartbeat of %s not recorded: %s", self.process, exc)
            self._failing = True

    def stop(self) -> None:
        """Stop beating and delete this process's rows (best effort)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.interval_s + 5)
        try:
            with connection_unit(self.engine) as conn:
                remove(conn, self.process)
        except Exception as exc:
            log.warning("heartbeat rows of %s not removed: %s", self.process, exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat_once()
