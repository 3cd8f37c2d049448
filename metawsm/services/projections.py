"""Projectors: keep the read models (thread views, stats) in step with the event log.

Applying an event re-folds its thread from ``forum_events`` and recounts its ticket's stats, in
one transaction with the ledger row ``(projection, event_id)``. A duplicate is already done; the
result never depends on the order events arrive in.
"""

from __future__ import annotations

import zlib
from typing import Any

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import Session

from metawsm.domain.views import fold_stats, fold_thread
from metawsm.messages.events import Event
from metawsm.services.eventlog import row_to_event
from metawsm.services.outbox import mark_done
from metawsm.storage.models import (
    ForumEvent,
    ForumProjectionEvent,
    ForumThread,
    ForumThreadStat,
    ForumThreadView,
)
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

PROJECTION = "forum_views_v1"
VIEW_COLUMNS = [c.name for c in ForumThreadView.__table__.columns]


def project(engine: Engine, event: Event, message_id: str) -> bool:
    """Apply ``event`` to the read models once. Returns False when it was already applied."""
    now = utcnow()
    with unit_of_work(engine) as session:
        mark_done(session, [message_id], now)
        key = {"projection": PROJECTION, "event_id": event.event_id}
        if session.get(ForumProjectionEvent, key) is not None:
            return False
        session.add(ForumProjectionEvent(applied_at=now, **key))
        if event.thread_id:
            refresh_thread(session, event.thread_id)
        if event.ticket:
            refresh_stats(session, event.ticket)
    return True


def refresh_thread(session: Session, thread_id: str) -> None:
    """Re-fold one thread's view from its events in the log."""
    rows = session.execute(
        select(ForumEvent).where(ForumEvent.thread_id == thread_id).order_by(ForumEvent.thread_seq)
    ).scalars()
    is_control = bool(
        session.execute(select(ForumThread.is_control).where(ForumThread.thread_id == thread_id))
        .scalars()
        .first()
    )
    view = fold_thread([row_to_event(r) for r in rows], is_control=is_control)
    if view is None:
        return
    existing = session.get(ForumThreadView, thread_id)
    if existing is None:
        session.add(ForumThreadView(**view))
        return
    for column, value in view.items():
        setattr(existing, column, value)


def refresh_stats(session: Session, ticket: str) -> None:
    """Recount the ticket's stats from its thread views."""
    if session.get_bind().dialect.name == "postgresql":
        # Two tickets' projectors may run at once; one ticket's recounts must not interleave.
        lock = zlib.crc32(ticket.encode()) & 0x7FFFFFFF
        session.execute(text("SELECT pg_advisory_xact_lock(1, :k)"), {"k": lock})
    session.flush()
    views = session.execute(select(ForumThreadView).where(ForumThreadView.ticket == ticket))
    counts = fold_stats(view_dict(v) for v in views.scalars())
    session.execute(delete(ForumThreadStat).where(ForumThreadStat.ticket == ticket))
    for (tk, run_id, state, priority), n in sorted(counts.items()):
        session.add(
            ForumThreadStat(
                ticket=tk, run_id=run_id, state=state, priority=priority, thread_count=n
            )
        )


def view_dict(view: ForumThreadView) -> dict[str, Any]:
    """A view row as plain data."""
    return {c: getattr(view, c) for c in VIEW_COLUMNS}
