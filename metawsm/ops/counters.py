"""Counters and histograms kept in the database, bumped in the transaction of the work counted.

Why here and not in each process's memory: one exporter answers for every worker, and a worker
that restarts (or is SIGKILLed) loses nothing, because a count commits or rolls back with the
work it counts. Why not triggers: one extra statement per transaction, executed by the writer
that already holds the transaction, costs less than the triggers measured before (docs/metrics.md,
"Cost on the write path"), and says in the code what it counts.

A writer collects :class:`Increment` values and calls :func:`record` once, last, in its
transaction: one ``INSERT .. ON CONFLICT DO UPDATE`` executed for every row (SQLite and
PostgreSQL both speak it), in a fixed order so two transactions never lock counter rows in
opposite orders. On PostgreSQL each process writes its own ``shard`` of a series (pid modulo
:data:`SHARDS`), so concurrent projectors rarely wait on one row; the exporter sums the shards.

A histogram is kept as one row per bucket (observations that fell in it, not cumulative) plus
a ``:sum`` row; its count is the sum of its buckets. The exporter cumulates at scrape time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from metawsm.ops.catalogue import buckets_of
from metawsm.ops.increments import (
    BUCKET,
    SHARDS,
    SUM,
    UPSERT_BY_STYLE,
    Increment,
    count,
    escape,
    label_text,
    merged_rows,
    shard_of,
)

__all__ = [
    "BUCKET",
    "SHARDS",
    "SUM",
    "SUMS",
    "Increment",
    "bound_text",
    "count",
    "escape",
    "label_text",
    "observe",
    "record",
]

SUMS = text("SELECT name, labels, SUM(value) FROM ops_counters GROUP BY name, labels")


def bound_text(bound: float) -> str:
    """A bucket bound as exposed: ``0.25``, ``1.0``, ``+Inf``."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def observe(histogram: str, seconds: float) -> list[Increment]:
    """The increments recording one observation of ``seconds`` (negative clock skew: 0)."""
    seconds = max(0.0, seconds)
    bound = next((b for b in buckets_of(histogram) if seconds <= b), math.inf)
    return [
        Increment(histogram + BUCKET, f'le="{bound_text(bound)}"', 1.0),
        Increment(histogram + SUM, "", seconds),
    ]


def record(conn: Connection, increments: Iterable[Increment]) -> None:
    """Add ``increments`` to their series in ``conn``'s transaction (call it last in it)."""
    rows = merged_rows(increments, shard_of(conn.dialect.name))
    if not rows:
        return
    # Straight to the driver, on the transaction's own DBAPI connection: SQLAlchemy's statement
    # machinery cost more than the upsert itself (docs/metrics.md, "Cost on the write path").
    statement = UPSERT_BY_STYLE[conn.dialect.paramstyle]
    driver_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.cursor()
    try:
        cursor.executemany(statement, rows)
    except driver_error as exc:
        # Wrapped as SQLAlchemy wraps driver errors, so the unit of work translates it
        # (DatabaseBusy, DatabaseUnreachable) like any other statement's.
        raise DBAPIError.instance(statement, rows, exc, driver_error) from exc
    finally:
        cursor.close()
