"""Guidance requests without an answer, kept by the control-signal handler for the exporter.

The run lifecycle folds an agent's control signals to know whether guidance is pending
(metawsm.domain.control); folding every active run at each scrape costs ~85 ms CPU with 1,000
active runs (docs/metrics.md). So the handler that applies a request writes one row per control
thread (a newer request replaces it, as in the fold: the last question is the pending one), and
the handler that applies the answer deletes it, in the same transaction, which also times the
answer. Signals of one control thread are applied in acceptance order (services/delivery.py),
so the row follows the fold.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, func, insert, select

from metawsm.domain.runs import SIGNAL_DRIVEN
from metawsm.storage import tables
from metawsm.storage.types import as_utc

PENDING = tables.ops_guidance_pending
RUNS = tables.runs
EVENTS = tables.forum_events
_DELETE = delete(PENDING).where(PENDING.c.thread_id == bindparam("b_thread"))
_INSERT = insert(PENDING)
_ASKER = (
    select(EVENTS.c.actor_type, EVENTS.c.actor_name)
    .select_from(PENDING.join(EVENTS, EVENTS.c.event_id == PENDING.c.request_event_id))
    .where(PENDING.c.thread_id == bindparam("b_thread"))
)
_ASKED = select(PENDING.c.asked_at).where(PENDING.c.thread_id == bindparam("b_thread"))
# Only runs whose signals still drive them (running, awaiting guidance): a stopped or closed
# run's question waits for nobody.
_OPEN = (
    select(func.count(), func.min(PENDING.c.asked_at))
    .select_from(PENDING.join(RUNS, RUNS.c.run_id == PENDING.c.run_id))
    .where(RUNS.c.status.in_(sorted(s.value for s in SIGNAL_DRIVEN)))
)


def requested(
    conn: Connection, thread_id: str, run_id: str, agent_name: str, event_id: str, at: datetime
) -> None:
    """Record the request ``event_id`` as the pending one of its control thread."""
    conn.execute(_DELETE, {"b_thread": thread_id})
    conn.execute(
        _INSERT,
        {
            "thread_id": thread_id,
            "run_id": run_id,
            "agent_name": agent_name,
            "request_event_id": event_id,
            "asked_at": at,
        },
    )


def asked_by(conn: Connection, thread_id: str) -> tuple[str, str] | None:
    """(actor type, actor name) of the thread's pending request, or None when none is pending."""
    row = conn.execute(_ASKER, {"b_thread": thread_id}).first()
    return None if row is None else (str(row[0]), str(row[1]))


def answered(conn: Connection, thread_id: str) -> datetime | None:
    """Clear the thread's pending request; when it had one, when it was asked."""
    asked = conn.execute(_ASKED, {"b_thread": thread_id}).scalar()
    if asked is None:
        return None
    conn.execute(_DELETE, {"b_thread": thread_id})
    return as_utc(asked)


def open_requests(conn: Connection) -> tuple[int, datetime | None]:
    """(how many requests of signal-driven runs wait, when the oldest was asked)."""
    count, oldest = conn.execute(_OPEN).one()
    return int(count or 0), (as_utc(oldest) if oldest is not None else None)
