"""Folding the whole event log in one streamed pass, for ``projections rebuild``.

``forum_events`` is read in sequence order with SQLAlchemy Core in chunks (never the whole log in
memory) and each thread's view is moved by :func:`metawsm.domain.views.advance`, the projector's
own step, so only one view dict per thread is held. The log is trusted: every row was validated
when it was appended, so rows become light :class:`LoggedEvent` objects, not pydantic models.

A thread whose events do not arrive as the fold expects (its opening first, then ``thread_seq``
never going back) is set aside and folded at the end by :func:`fold_thread` from its own events,
exactly as the projector re-folds a thread after a gap; with the log written in commit order this
does not happen, but the result must not depend on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    String,
    bindparam,
    case,
    func,
    literal_column,
    null,
    select,
    type_coerce,
)

from metawsm.domain.views import (
    PAYLOAD_READ,
    advance_underived,
    derive,
    fold_thread,
    opened_view,
)
from metawsm.services.bulk import driver_chunks
from metawsm.storage import tables
from metawsm.storage.engine import READONLY
from metawsm.storage.types import as_utc
from metawsm.storage.uow import translate_db_errors

CHUNK_ROWS = 5_000
OPENED = "forum.thread.opened"

# (events folded so far, sequence of the newest event when the fold started)
Progress = Callable[[int, int], None]

_EVENTS = tables.forum_events
_THREADS = tables.forum_threads
# The timestamp and the payload come as the driver gives them (SQLite: text) and are converted
# here: the payload only when the fold reads it, the timestamp without SQLAlchemy's per-row
# processors. Same values as the ORM's, at a third of the cost. The payload of an event whose
# type the fold does not read it for (posts, signals) is not read at all: NULL.
_LOG = select(
    _EVENTS.c.sequence,
    _EVENTS.c.event_type,
    type_coerce(_EVENTS.c.occurred_at, String),
    _EVENTS.c.thread_id,
    _EVENTS.c.thread_seq,
    _EVENTS.c.run_id,
    _EVENTS.c.ticket,
    _EVENTS.c.agent_name,
    _EVENTS.c.actor_type,
    _EVENTS.c.actor_name,
    case(
        # literals (our own constants): the driver-level reader binds no expanding IN
        (
            _EVENTS.c.event_type.in_([literal_column(f"'{kind}'") for kind in PAYLOAD_READ]),
            type_coerce(_EVENTS.c.payload, String),
        ),
        else_=null(),
    ),
).order_by(_EVENTS.c.sequence)
# The payload text is the compact JSON the log's writer made: decoded without json.loads' checks
# for surrounding whitespace (half the time; a rebuild decodes one per state-changing event).
_JSON = json.JSONDecoder()


def decoded_payload(value: str | dict[str, Any]) -> dict[str, Any]:
    """A payload as the driver reads it (SQLite: the JSON text; PostgreSQL: decoded already)."""
    if not isinstance(value, str):
        return value
    try:
        decoded: dict[str, Any] = _JSON.raw_decode(value)[0]
    except json.JSONDecodeError:
        decoded = json.loads(value)  # leading whitespace, or not JSON: the full decoder decides
    return decoded


_LAST_SEQUENCE = select(func.max(_EVENTS.c.sequence))
_CONTROL_THREADS = select(_THREADS.c.thread_id).where(_THREADS.c.is_control)


class LoggedEvent:
    """An event as the fold reads it from a trusted log row (the fields the fold uses)."""

    __slots__ = (
        "_payload",
        "actor_name",
        "actor_type",
        "agent_name",
        "event_type",
        "occurred_at",
        "run_id",
        "sequence",
        "thread_id",
        "thread_seq",
        "ticket",
    )

    sequence: int
    event_type: str
    occurred_at: datetime
    thread_id: str | None
    thread_seq: int | None
    run_id: str | None
    ticket: str | None
    agent_name: str | None
    actor_type: str
    actor_name: str
    _payload: str | dict[str, Any] | None  # None: not read (views.PAYLOAD_READ)

    def __init__(self, row: Any) -> None:
        (
            self.sequence,
            self.event_type,
            occurred_at,
            self.thread_id,
            self.thread_seq,
            self.run_id,
            self.ticket,
            self.agent_name,
            self.actor_type,
            self.actor_name,
            self._payload,
        ) = row
        self.occurred_at = as_utc(occurred_at)

    @property
    def payload(self) -> dict[str, Any]:
        """The event's payload, decoded on first use."""
        if self._payload is None:  # a fold that reads it must name the type in PAYLOAD_READ
            raise LookupError(f"payload of {self.event_type} not read (views.PAYLOAD_READ)")
        if isinstance(self._payload, str):
            self._payload = decoded_payload(self._payload)
        return self._payload


@dataclass
class FoldedLog:
    """The log folded: one view per thread, how many events, the newest sequence folded."""

    views: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: int = 0
    last_sequence: int = 0


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A read-only connection in one transaction (SQLite: deferred, one consistent snapshot)."""
    bind = engine.execution_options(**{READONLY: True})
    with translate_db_errors(engine), bind.connect() as conn, conn.begin():
        yield conn


def fold_log(conn: Connection, progress: Progress | None = None) -> FoldedLog:
    """Fold every event of the log into thread views, streaming it in sequence order."""
    controls = set(conn.execute(_CONTROL_THREADS).scalars())
    target = int(conn.execute(_LAST_SEQUENCE).scalar() or 0)
    folded = FoldedLog()
    views = folded.views
    irregular: set[str] = set()
    # The columns need no conversion (integers and text): the driver's rows as they come.
    for rows in driver_chunks(conn, _LOG, chunk_rows=CHUNK_ROWS):
        for row in rows:
            thread_id = row[3]
            if thread_id is None or thread_id in irregular:
                continue
            event = LoggedEvent(row)
            view = views.get(thread_id)
            if view is None:
                if event.event_type != OPENED:
                    irregular.add(thread_id)
                    continue
                views[thread_id] = opened_view(event, is_control=thread_id in controls)
            elif (event.thread_seq or 0) < view["last_thread_seq"]:
                irregular.add(thread_id)  # out of thread order: fold it from its own events
                del views[thread_id]
            else:
                advance_underived(view, event)
        folded.events += len(rows)
        folded.last_sequence = rows[-1][0]
        if progress is not None:
            progress(folded.events, target)
    for view in views.values():
        derive(view)
    _fold_set_aside(conn, folded, irregular, controls)
    return folded


def _fold_set_aside(
    conn: Connection, folded: FoldedLog, thread_ids: set[str], controls: set[str]
) -> None:
    """Fold each set-aside thread from its events up to the newest sequence folded."""
    if not thread_ids:
        return
    # Read as the projector reads a thread (wire events): a log written in commit order has no
    # thread set aside, so a rebuild does not load the message models for it.
    from metawsm.services.eventlog import EVENT_FIELDS, trusted_events

    thread_log = (
        select(*(_EVENTS.c[name] for name in (*EVENT_FIELDS, "actor_type", "actor_name")))
        .where(_EVENTS.c.thread_id == bindparam("b_thread"))
        .where(_EVENTS.c.sequence <= bindparam("b_last"))
        .order_by(_EVENTS.c.thread_seq)
    )
    for thread_id in sorted(thread_ids):
        rows = conn.execute(thread_log, {"b_thread": thread_id, "b_last": folded.last_sequence})
        view = fold_thread(trusted_events(rows), is_control=thread_id in controls)
        if view is not None:
            folded.views[thread_id] = view
