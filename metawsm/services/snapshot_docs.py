"""Stored snapshot documents: each run's parts that do not depend on the clock, kept between
snapshots in ``run_snapshot_docs`` (migration 0010).

A 1,000-run snapshot spent most of its time reading each run's agents, threads, escalations and
dead letters and making its blockers from them (docs/performance.md, "Snapshot at scale"), while
few runs change between two snapshots. A snapshot now reads the stored document of each run and
makes again only those of the runs whose facts changed since: triggers on the seven tables they
are made from (its agents and their control state, its brief, its threads' views, its
escalations, its dead letters, and its events but the operator's decisions) count every change
in ``runs.facts_version``, and a document is used only while its run is still at the version
it was made at (and for the run's status, mode and epoch it was made for:
services/snapshot_parts.py ``doc_fits``). So a document is never out of date, whoever wrote the
change (a handler, the projector, the SLA pass, a dead letter, a rebuild). A snapshot of runs
that did not change reads two statements: the runs and their documents.

The documents a snapshot made are stored by its caller after the read, in a short transaction of
their own (:func:`keep`): a read-only reader, a busy database or a failed write only means they
are made again next time. Dropping every document loses nothing.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from metawsm.storage.dbapi import Reader, begin_immediate

# How long a snapshot waits for SQLite's write lock to store its documents before it gives up
# (they are made again by the next snapshot): a reader must not queue behind the workers.
KEEP_WAIT_MS = 25
# PostgreSQL: how long it waits for another snapshot storing the same run's document.
KEEP_LOCK_TIMEOUT = "100ms"

# A newer version replaces an older; the same version replaces itself (a document of another
# format, remade by newer code).
UPSERT = (
    "INSERT INTO run_snapshot_docs (run_id, facts_version, doc)"
    " VALUES (:run_id, :facts_version, :doc)"
    " ON CONFLICT (run_id) DO UPDATE SET facts_version = excluded.facts_version,"
    " doc = excluded.doc WHERE excluded.facts_version >= run_snapshot_docs.facts_version"
)


class Fresh(NamedTuple):
    """A document a snapshot made, to store: the run, the version it was read at, its JSON."""

    run_id: str
    facts_version: int
    doc: bytes


def encode(doc: list[Any]) -> bytes:
    """A document (services/snapshot_parts.py ``doc_of``) as stored: JSON, times in ISO 8601
    with their UTC offset."""
    return orjson.dumps(doc)


decode = orjson.loads  # a stored document as JSON data (times as their text)


def keep(raw: Any, dialect: str, fresh: Sequence[Fresh]) -> bool:
    """Store ``fresh`` on the driver connection ``raw`` in a transaction of its own (any
    transaction open on it is rolled back first: the snapshot's read is over). True when
    stored; False when the database was busy or refused (a read-only user): nothing stored,
    nothing raised, the next snapshot makes them again."""
    if not fresh:
        return True
    rows = [{"run_id": f.run_id, "facts_version": f.facts_version, "doc": f.doc} for f in fresh]
    raw.rollback()
    try:
        if dialect == "sqlite":
            if not begin_immediate(raw, KEEP_WAIT_MS):
                return False
        else:
            raw.execute(f"SET LOCAL lock_timeout = '{KEEP_LOCK_TIMEOUT}'")
        cursor = raw.cursor()
        try:
            cursor.executemany(Reader(raw, dialect).native(UPSERT), rows)
        finally:
            cursor.close()
        raw.commit()
        return True
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("sqlite3", "psycopg"):
            raise
        raw.rollback()
        return False
