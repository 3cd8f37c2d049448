"""Projectors: keep the read models (thread views, stats, search index) in step with the log.

Applying an event is one transaction with the ledger row ``(projection, event_id)`` (a duplicate
is already done) and the outbox row's "done". The thread's view moves by one step when the event
follows the last one it reflects (:func:`metawsm.domain.views.advance`), is left alone when the
event is already in it, and is re-folded from ``forum_events`` otherwise (a gap: events arrived
out of order). Stats move by difference: the thread leaves its old (ticket, run, state, priority)
row and joins its new one. Either way the result equals the fold of the log that ``projections
rebuild`` computes, whatever order events arrive in.

Every statement is built once, here, and executed with SQLAlchemy Core on the unit of work's
connection, so SQLAlchemy's compiled cache serves them (docs/performance.md: "Core SQL instead of
the ORM on the hot path", "Incremental projection").
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)

from metawsm.domain.views import advance, fold_thread, opened_view, stats_key
from metawsm.ops.catalogue import PROJECTION_LAG
from metawsm.ops.counters import observe, record
from metawsm.services import search_index
from metawsm.storage import tables
from metawsm.storage.types import utcnow
from metawsm.storage.uow import connection_unit

if TYPE_CHECKING:  # annotations only: a rebuild imports no message model and no ORM class
    from metawsm.messages.events import Event
    from metawsm.runtime import Runtime
    from metawsm.storage.models import ForumThreadView

PROJECTION = "forum_views_v1"
VIEW_COLUMNS = [c.name for c in tables.forum_thread_views.columns]


_VIEWS = tables.forum_thread_views
_STATS = tables.forum_thread_stats
_LEDGER = tables.forum_projection_events
_EVENTS = tables.forum_events
_THREADS = tables.forum_threads

_TICKET_LOCK = text("SELECT pg_advisory_xact_lock(1, :k)")
_SEEN = select(_LEDGER.c.event_id).where(
    _LEDGER.c.projection == bindparam("b_projection"), _LEDGER.c.event_id == bindparam("b_event")
)
_RECORD = insert(_LEDGER)
_VIEW = select(_VIEWS).where(_VIEWS.c.thread_id == bindparam("b_thread"))
_IS_CONTROL = select(_THREADS.c.is_control).where(_THREADS.c.thread_id == bindparam("b_thread"))
_LOG = (
    select(
        _EVENTS.c.event_id,
        _EVENTS.c.event_type,
        _EVENTS.c.event_version,
        _EVENTS.c.occurred_at,
        _EVENTS.c.sequence,
        _EVENTS.c.thread_id,
        _EVENTS.c.thread_seq,
        _EVENTS.c.run_id,
        _EVENTS.c.ticket,
        _EVENTS.c.agent_name,
        _EVENTS.c.actor_type,
        _EVENTS.c.actor_name,
        _EVENTS.c.correlation_id,
        _EVENTS.c.causation_id,
        _EVENTS.c.payload,
    )
    .where(_EVENTS.c.thread_id == bindparam("b_thread"))
    .order_by(_EVENTS.c.thread_seq)
)
_AFTER = (
    select(*_LOG.selected_columns)
    .where(_EVENTS.c.sequence > bindparam("b_after"))
    .order_by(_EVENTS.c.sequence)
)
# Holds off every projector's ledger insert (and so its view change, which follows it) until the
# holder commits; self-exclusive, so two rebuilds do not interleave either. PostgreSQL only.
_HOLD_LEDGER = text(f"LOCK TABLE {_LEDGER.name} IN SHARE ROW EXCLUSIVE MODE")
_INSERT_VIEW = insert(_VIEWS)
# Executed with the changed columns only: the SET clause is compiled (and cached) per column set.
_UPDATE_VIEW = update(_VIEWS).where(_VIEWS.c.thread_id == bindparam("b_thread"))
_STAT_ROW = (
    (_STATS.c.ticket == bindparam("b_ticket"))
    & (_STATS.c.run_id == bindparam("b_run"))
    & (_STATS.c.state == bindparam("b_state"))
    & (_STATS.c.priority == bindparam("b_priority"))
)
_STAT_UP = update(_STATS).where(_STAT_ROW).values(thread_count=_STATS.c.thread_count + 1)
_STAT_DOWN = (
    update(_STATS)
    .where(_STAT_ROW, _STATS.c.thread_count > 1)
    .values(thread_count=_STATS.c.thread_count - 1)
)
_STAT_INSERT = insert(_STATS)
_STAT_DELETE = delete(_STATS).where(_STAT_ROW)


def consume(rt: Runtime, event: Event, message_id: str, *, count_delivery: bool = False) -> bool:
    """The projector as a subscriber of the message bus (see :func:`project`)."""
    return project(rt.engine, event, message_id, count_delivery=count_delivery)


def project(engine: Engine, event: Event, message_id: str, *, count_delivery: bool = False) -> bool:
    """Apply ``event`` to the read models once. Returns False when it was already applied.

    In the same transaction the outbox row ``message_id`` is marked done and, with
    ``count_delivery``, its delivery counted (one statement: :func:`outbox.mark_done`).
    """
    # The outbox's and the event log's modules are imported where used, not at the top: they
    # load the message models (pydantic, ~40 ms), which a rebuild that imports this never uses.
    from metawsm.services.outbox import mark_done

    now = utcnow()
    with connection_unit(engine) as conn:
        mark_done(conn, [message_id], now, count_delivery=count_delivery)
        if event.thread_id and event.ticket and conn.dialect.name == "postgresql":
            # Two projectors of one ticket must not interleave their stats arithmetic (SQLite:
            # BEGIN IMMEDIATE already serialises writers). Taken before the ledger is read, so
            # a concurrent duplicate waits, then finds the ledger row.
            lock = zlib.crc32(event.ticket.encode()) & 0x7FFFFFFF
            conn.execute(_TICKET_LOCK, {"k": lock})
        key = {"b_projection": PROJECTION, "b_event": event.event_id}
        if conn.execute(_SEEN, key).first() is not None:
            return False
        conn.execute(
            _RECORD, {"projection": PROJECTION, "event_id": event.event_id, "applied_at": now}
        )
        if event.thread_id:
            _project_thread(conn, event, event.thread_id)
        # Counted here, not by rebuild: a rebuild refills the read models without projecting.
        record(conn, observe(PROJECTION_LAG, (now - event.occurred_at).total_seconds()))
    return True


def hold_projectors(conn: Connection) -> None:
    """Keep projectors from recording an event until ``conn``'s transaction ends (PostgreSQL;
    on SQLite a writing transaction already excludes every other writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_HOLD_LEDGER)


def project_logged_after(conn: Connection, after_sequence: int, now: Any) -> int:
    """Project, on ``conn``, every logged event after ``after_sequence`` the ledger lacks, in
    sequence order; the number projected.

    For ``projections rebuild``: it rewrites the read models as of the log it folded, so the
    events committed since then are handed back to the projector here, in its transaction.
    """
    rows = conn.execute(_AFTER, {"b_after": after_sequence}).all()
    if not rows:
        return 0
    from metawsm.services.eventlog import trusted_events

    projected = 0
    for event in trusted_events(rows):
        key = {"b_projection": PROJECTION, "b_event": event.event_id}
        if conn.execute(_SEEN, key).first() is not None:
            continue
        conn.execute(
            _RECORD, {"projection": PROJECTION, "event_id": event.event_id, "applied_at": now}
        )
        if event.thread_id:
            _project_thread(conn, event, event.thread_id)
        projected += 1
    return projected


def _project_thread(conn: Connection, event: Event, thread_id: str) -> None:
    """Bring the thread's view up to ``event``, move its stats by the difference and index the
    posts the view moved over (:mod:`metawsm.services.search_index`)."""
    row = conn.execute(_VIEW, {"b_thread": thread_id}).first()
    old = dict(row._mapping) if row is not None else None
    new = _next_view(conn, event, thread_id, old)
    if new is None:
        return
    if old is None:
        conn.execute(_INSERT_VIEW, new)
    else:
        changed = {c: v for c, v in new.items() if v != old[c]}
        if changed:
            conn.execute(_UPDATE_VIEW, {"b_thread": thread_id, **changed})
    _move_stats(conn, old, new)
    search_index.follow_view(conn, event, old, new)


def _next_view(
    conn: Connection, event: Event, thread_id: str, old: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The view with ``event`` in it, or None when there is nothing to change."""
    seq = event.thread_seq
    if old is not None and seq is not None:
        if old["last_thread_seq"] >= seq:
            return None  # already in the view: an earlier re-fold read it from the log
        if old["last_thread_seq"] == seq - 1:
            new = dict(old)
            advance(new, event)
            return new
    elif old is None and seq == 1 and event.event_type == "forum.thread.opened":
        return opened_view(event, is_control=_is_control(conn, thread_id))
    # A gap (events in between not projected yet, or no view yet): fold the log, which holds
    # every event of the thread up to its newest commit. None: its opening is not logged (yet).
    from metawsm.services.eventlog import trusted_events

    events = trusted_events(conn.execute(_LOG, {"b_thread": thread_id}))
    return fold_thread(events, is_control=_is_control(conn, thread_id))


def _is_control(conn: Connection, thread_id: str) -> bool:
    return bool(conn.execute(_IS_CONTROL, {"b_thread": thread_id}).scalar())


def _move_stats(conn: Connection, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    """The thread leaves its old stats row (deleted at zero) and joins its new one."""
    before = stats_key(old) if old is not None else None
    after = stats_key(new)
    if before == after:
        return
    if before is not None:
        params = _stat_params(before)
        if conn.execute(_STAT_DOWN, params).rowcount == 0:
            conn.execute(_STAT_DELETE, params)  # its last thread left: rebuild has no 0 rows
    if conn.execute(_STAT_UP, _stat_params(after)).rowcount == 0:
        ticket, run_id, state, priority = after
        conn.execute(
            _STAT_INSERT,
            {
                "ticket": ticket,
                "run_id": run_id,
                "state": state,
                "priority": priority,
                "thread_count": 1,
            },
        )


def _stat_params(key: tuple[str, str, str, str]) -> dict[str, str]:
    ticket, run_id, state, priority = key
    return {"b_ticket": ticket, "b_run": run_id, "b_state": state, "b_priority": priority}


def view_dict(view: ForumThreadView) -> dict[str, Any]:
    """A view row as plain data."""
    return {c: getattr(view, c) for c in VIEW_COLUMNS}
