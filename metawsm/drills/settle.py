"""What is still in flight, read from the database; waiting until nothing is.

Settled means: every command final (applied, rejected or dead), every event in the projection
ledger, and no outbox row waiting (each is done or dead).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from metawsm.services.projections import PROJECTION
from metawsm.storage.models import ForumCommand, ForumEvent, ForumOutbox, ForumProjectionEvent
from metawsm.storage.uow import unit_of_work

POLL_S = 0.25


@dataclass(frozen=True)
class Backlog:
    """Work not done yet: commands not final, events not projected, outbox rows waiting."""

    commands: int
    events: int
    outbox: int

    @property
    def empty(self) -> bool:
        """True when nothing is in flight."""
        return self.commands == 0 and self.events == 0 and self.outbox == 0


def backlog(
    engine: Engine, accepted_by: datetime | None = None, sequence_by: int | None = None
) -> Backlog:
    """The backlog now; with ``accepted_by``/``sequence_by`` only the commands accepted and the
    events committed by then (what was in flight when a fault ended)."""
    ledger = select(ForumProjectionEvent.event_id).where(
        ForumProjectionEvent.projection == PROJECTION,
        ForumProjectionEvent.event_id == ForumEvent.event_id,
    )
    commands = select(func.count()).where(ForumCommand.status == "accepted")
    events = select(func.count()).select_from(ForumEvent).where(~ledger.exists())
    if accepted_by is not None:
        commands = commands.where(ForumCommand.accepted_at <= accepted_by)
    if sequence_by is not None:
        events = events.where(ForumEvent.sequence <= sequence_by)
    outbox = select(func.count()).where(ForumOutbox.status.notin_(("done", "dead")))
    with unit_of_work(engine, readonly=True) as s:
        return Backlog(
            commands=int(s.execute(commands).scalar() or 0),
            events=int(s.execute(events).scalar() or 0),
            outbox=int(s.execute(outbox).scalar() or 0) if accepted_by is None else 0,
        )


def last_sequence(engine: Engine) -> int:
    """The newest event's sequence (0 when the log is empty)."""
    with unit_of_work(engine, readonly=True) as s:
        return int(s.execute(select(func.max(ForumEvent.sequence))).scalar() or 0)


def wait_settled(engine: Engine, timeout_s: float) -> Backlog:
    """Poll until the backlog is empty or ``timeout_s`` passes; the last backlog seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = backlog(engine)
        if seen.empty or time.monotonic() >= deadline:
            return seen
        time.sleep(POLL_S)  # polling a condition with a deadline
