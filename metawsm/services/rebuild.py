"""Rebuilding the read models from ``forum_events`` and comparing them with the live ones.

The rebuild folds the whole log with the same functions the projector uses
(:mod:`metawsm.services.logfold`: streamed in sequence order, one view per thread in memory),
then either reports the differences (``check``) or replaces, in one transaction, every live table
that differs (one found identical is left alone: rewriting it would write the same rows).
Each read model is reset and refilled by one entry of :data:`REFILLS` and compared by one entry
of :data:`CHECKS`; a new read model adds its pair there. Rows are compared and written in chunks
(``executemany``), the projection ledger is refilled by one ``INSERT ... SELECT``: nothing holds
the whole log or every live row at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
)

from metawsm.domain.views import fold_stats
from metawsm.services import agent_controls, projections, search_index
from metawsm.services.bulk import (
    driver_chunks,
    indexes_dropped,
    insert_rows,
    page_cache,
    stored_form,
    typed_form,
)
from metawsm.services.logfold import FoldedLog, Progress, fold_log, read_connection
from metawsm.services.projections import PROJECTION, VIEW_COLUMNS
from metawsm.storage import tables
from metawsm.storage.types import UTCDateTime, utcnow
from metawsm.storage.uow import connection_unit

CHUNK_ROWS = 5_000
StatsKey = tuple[str, str, str, str]

_VIEWS = tables.forum_thread_views
_STATS = tables.forum_thread_stats
_LEDGER = tables.forum_projection_events
_EVENTS = tables.forum_events
_LIVE_VIEWS = select(*(_VIEWS.c[c] for c in VIEW_COLUMNS))
_THREAD_ID = VIEW_COLUMNS.index("thread_id")
_LEDGER_ROWS = delete(_LEDGER).where(_LEDGER.c.projection == PROJECTION)
# Two statements, not one: SQLite reads a lone min() or max() of an index's first column at once.
_MIN_MAX = (func.min, func.max)
_AFTER_FOLD = select(_EVENTS.c.sequence).where(_EVENTS.c.sequence > bindparam("b_last")).limit(1)


@dataclass
class RebuildReport:
    """What a rebuild found: counts, differences, how long it took."""

    events: int = 0
    threads: int = 0
    stats_rows: int = 0
    differences: list[str] = field(default_factory=list)
    applied: bool = False
    rewritten: list[str] = field(default_factory=list)  # read models replaced, in order
    caught_up: int = 0  # events committed during the rebuild, projected after its refill
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return self.__dict__.copy()


@dataclass
class Expected:
    """The read models as the log implies them: views by thread, stats, what was folded."""

    log: FoldedLog
    stats: dict[StatsKey, int]
    controls: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """Thread views by thread id."""
        return self.log.views


# Reset one read model and refill it from ``Expected``, on the rebuild's write connection.
Refill = Callable[[Connection, Expected, datetime], None]
# Compare one read model with ``Expected``; the differences, each one line.
Check = Callable[[Connection, Expected], list[str]]


def expected_models(
    engine: Engine, progress: Progress | None = None
) -> tuple[dict[str, dict[str, Any]], dict[StatsKey, int], int]:
    """Fold every event into fresh views and stats; also the number of events folded."""
    expected = _expected(engine, progress)
    return expected.views, expected.stats, expected.log.events


def rebuild(engine: Engine, *, check: bool, progress: Progress | None = None) -> RebuildReport:
    """Rebuild every read model from the log; with ``check`` only report differences.

    ``progress`` is called after each chunk of events folded (events so far, newest sequence).
    """
    started = time.monotonic()
    expected = _expected(engine, progress)
    report = RebuildReport(
        events=expected.log.events, threads=len(expected.views), stats_rows=len(expected.stats)
    )
    with read_connection(engine) as conn, page_cache(conn):
        found = {compare: compare(conn, expected) for compare in CHECKS}
    report.differences = [line for lines in found.values() for line in lines]
    if not check:
        now = utcnow()
        last = expected.log.last_sequence
        with connection_unit(engine) as conn, page_cache(conn):
            projections.hold_projectors(conn)
            agent_controls.hold_writers(conn)
            # Events committed since the fold may already be in the live models: then no model
            # is left as it is (it could hold them while the others go back to the fold).
            moved_on = conn.execute(_AFTER_FOLD, {"b_last": last}).first() is not None
            if moved_on:
                # The control rows are written by the signal handler, not by the projector:
                # refold them here, where no signal can commit, so none committed since the
                # fold is lost (the projector catch-up below does not touch them).
                expected.controls = agent_controls.expected_rows(conn)
            for refill in REFILLS:
                if not moved_on and _unchanged(refill, found, report.rewritten, conn, expected):
                    continue  # identical to the fold: rewriting would write the same rows
                refill(conn, expected, now)
                report.rewritten.append(_name(refill))
            # ... and those events go back to the projector, or they would be lost to the ledger.
            report.caught_up = projections.project_logged_after(conn, last, now)
        report.applied = True
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _expected(engine: Engine, progress: Progress | None) -> Expected:
    with read_connection(engine) as conn:
        log = fold_log(conn, progress)
        controls = agent_controls.expected_rows(conn)
    return Expected(log=log, stats=fold_stats(log.views.values()), controls=controls)


def diff_thread_views(conn: Connection, expected: Expected) -> list[str]:
    """Differences between the live thread views (read in chunks) and the folded ones.

    Each live row, as the driver reads it, is first compared with the folded view in the form
    it would be stored (one tuple comparison, the common case); only a row that differs there
    is read as typed values and compared column by column.
    """
    found: dict[str, list[str]] = {}
    seen: set[str] = set()
    views = expected.views
    stored = stored_form(conn, _VIEWS, VIEW_COLUMNS)
    typed = typed_form(conn, _VIEWS, VIEW_COLUMNS)
    for rows in driver_chunks(conn, _LIVE_VIEWS, chunk_rows=CHUNK_ROWS):
        for row in rows:
            thread_id = row[_THREAD_ID]
            seen.add(thread_id)
            want = views.get(thread_id)
            if want is None:
                found[thread_id] = [f"thread view {thread_id}: unexpected"]
                continue
            if row == stored(want):
                continue
            have = typed(row)
            if have == want:
                continue  # stored otherwise, the same values
            lines = [_column_diff(thread_id, c, have.get(c), want[c]) for c in sorted(want)]
            if any(lines):
                found[thread_id] = [line for line in lines if line]
    for thread_id in views.keys() - seen:
        found[thread_id] = [f"thread view {thread_id}: missing"]
    return [line for thread_id in sorted(found) for line in found[thread_id]]


def _column_diff(thread_id: str, column: str, live_value: Any, rebuilt: Any) -> str:
    if rebuilt == live_value:
        return ""
    return f"thread view {thread_id}.{column}: {live_value=!r} {rebuilt=!r}"


def diff_stats(conn: Connection, expected: Expected) -> list[str]:
    """Differences between the live stats rows and the folded ones."""
    live = {
        (r.ticket, r.run_id, r.state, r.priority): r.thread_count
        for r in conn.execute(select(_STATS))
    }
    stats = expected.stats
    return [
        f"stats {key}: live={live.get(key)} rebuilt={stats.get(key)}"
        for key in sorted(set(stats) | set(live))
        if stats.get(key) != live.get(key)
    ]


def refill_thread_views(conn: Connection, expected: Expected, now: datetime) -> None:
    """Replace every thread view: inserted in chunks in key order, the indexes built after."""
    views = expected.views
    with indexes_dropped(conn, _VIEWS):
        conn.execute(delete(_VIEWS))
        rows = (views[thread_id] for thread_id in sorted(views))
        insert_rows(conn, _VIEWS, VIEW_COLUMNS, rows, CHUNK_ROWS)


def refill_stats(conn: Connection, expected: Expected, now: datetime) -> None:
    """Replace every stats row."""
    conn.execute(delete(_STATS))
    rows = (
        {"ticket": t, "run_id": r, "state": s, "priority": p, "thread_count": n}
        for (t, r, s, p), n in expected.stats.items()
    )
    for chunk in _chunks(rows):
        conn.execute(insert(_STATS), chunk)


def refill_ledger(conn: Connection, expected: Expected, now: datetime) -> None:
    """Mark every folded event applied for the projector, in the database (INSERT ... SELECT).

    On SQLite every logged event is inserted in ``event_id`` order (read from the unique index
    on ``event_id``, appended to the ledger's key instead of scattered through it: a sixth of
    the time), then those logged after the fold, if any, are taken out again: the catch-up
    projects them. Elsewhere the events up to the fold's newest are selected at once (sorting
    them only slowed PostgreSQL down).
    """
    _clear_ledger(conn)
    last = expected.log.last_sequence
    applied = select(
        literal(PROJECTION).label("projection"),
        _EVENTS.c.event_id,
        literal(now, UTCDateTime()).label("applied_at"),
    )
    columns = ["projection", "event_id", "applied_at"]
    if conn.dialect.name != "sqlite":
        folded = applied.where(_EVENTS.c.sequence <= last)
        conn.execute(insert(_LEDGER).from_select(columns, folded))
        return
    conn.execute(insert(_LEDGER).from_select(columns, applied.order_by(_EVENTS.c.event_id)))
    after_fold = select(_EVENTS.c.event_id).where(_EVENTS.c.sequence > last)
    conn.execute(_LEDGER_ROWS.where(_LEDGER.c.event_id.in_(after_fold)))


def ledger_is_the_fold(conn: Connection, expected: Expected) -> bool:
    """True when the projector's ledger holds exactly the folded events (nothing logged since).

    As many rows as events up to the fold's newest, and none of those events without its row:
    the same set (a row per event). Counted in the database, a third of the refill's time.
    """
    last = expected.log.last_sequence
    sql = text(
        "SELECT (SELECT count(*) FROM forum_projection_events WHERE projection = :p)"
        " = (SELECT count(*) FROM forum_events WHERE sequence <= :last)"
        " AND NOT EXISTS (SELECT 1 FROM forum_events e WHERE e.sequence <= :last AND NOT EXISTS"
        " (SELECT 1 FROM forum_projection_events l WHERE l.projection = :p"
        " AND l.event_id = e.event_id))"
    )
    return bool(conn.execute(sql, {"p": PROJECTION, "last": last}).scalar())


def _clear_ledger(conn: Connection) -> None:
    """Delete the projector's ledger rows; all of them at once when no other projection has any
    (SQLite then empties the table without deleting row by row)."""
    projections_ = [conn.execute(select(f(_LEDGER.c.projection))).scalar() for f in _MIN_MAX]
    if set(projections_) <= {PROJECTION, None}:
        conn.execute(delete(_LEDGER))
    else:
        conn.execute(_LEDGER_ROWS)


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(islice(rows, CHUNK_ROWS)):
        yield chunk


def refill_agent_controls(conn: Connection, expected: Expected, now: datetime) -> None:
    """Replace every agent's control state with the fold of its control thread's signals."""
    agent_controls.refill(conn, expected.controls)


def diff_agent_controls(conn: Connection, expected: Expected) -> list[str]:
    """Differences between the live control states and the fold of the control threads."""
    return agent_controls.differences(conn, expected.controls)


def refill_search_index(conn: Connection, expected: Expected, now: datetime) -> None:
    """Rewrite the search index from the thread views just written (same transaction)."""
    search_index.rebuild(conn)


def diff_search_index(conn: Connection, expected: Expected) -> list[str]:
    """Differences between the search index and the posts the live views cover."""
    return search_index.differences(conn)


# The read models a rebuild resets and refills (in this order, one transaction), and compares.
REFILLS: tuple[Refill, ...] = (
    refill_thread_views,
    refill_stats,
    refill_ledger,
    refill_search_index,
    refill_agent_controls,
)
CHECKS: tuple[Check, ...] = (diff_thread_views, diff_stats, diff_search_index, diff_agent_controls)
# A refill with a check here is skipped when that check found no difference and none of the
# refills it reads from was rewritten (the search index is built from the rewritten views). The
# projection ledger, which --check does not compare, is asked at the refill (HOLDS_THE_FOLD).
CHECK_OF: dict[Refill, Check] = {
    refill_thread_views: diff_thread_views,
    refill_stats: diff_stats,
    refill_search_index: diff_search_index,
    refill_agent_controls: diff_agent_controls,
}
READS_FROM: dict[Refill, tuple[Refill, ...]] = {refill_search_index: (refill_thread_views,)}
HOLDS_THE_FOLD: dict[Refill, Callable[[Connection, Expected], bool]] = {
    refill_ledger: ledger_is_the_fold,
}


def _unchanged(
    refill: Refill,
    found: dict[Check, list[str]],
    rewritten: list[str],
    conn: Connection,
    expected: Expected,
) -> bool:
    holds = HOLDS_THE_FOLD.get(refill)
    if holds is not None:
        return holds(conn, expected)
    compare = CHECK_OF.get(refill)
    if compare is None or found[compare]:
        return False
    return not any(_name(source) in rewritten for source in READS_FROM.get(refill, ()))


def _name(refill: Refill) -> str:
    return refill.__name__.removeprefix("refill_")
