"""When a watch or operator loop must rebuild its snapshot: the runs' data changed, or the clock
reached a decision (an SLA tier, a stale run), or the safety refresh is due. Nothing else.

The "anything new?" check is one cheap statement (:func:`mark`): the newest event sequence, the
newest run and agent update, and the dead letters. A new event counts only when it belongs to a
run and is not an operator decision (found by a primary-key range over the new events alone), so
forum traffic without runs, and the operator's own notes, cost no rebuild.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, select

from metawsm.services.run_reads import OPERATOR_DECISION
from metawsm.storage.models import ForumDeadLetter, ForumEvent, Run, RunAgent
from metawsm.storage.uow import unit_of_work

# Projections land just after their event: one more rebuild this long after a change catches them.
SETTLE_S = 1.0
# At most this share of one core goes to rebuilding for changes (see Refresher).
CPU_SHARE = 0.05


@dataclass(frozen=True)
class Mark:
    """Where the runs' data stood at one check."""

    sequence: int
    runs_at: datetime | None
    agents_at: datetime | None
    dead: tuple[int, int]  # (dead letters still dead, highest dead-letter id)


def mark(engine: Engine) -> Mark:
    """The current mark (one statement; every part an index lookup or a small table)."""
    query = select(
        select(func.max(ForumEvent.sequence)).scalar_subquery(),
        select(func.max(Run.updated_at)).scalar_subquery(),
        select(func.max(RunAgent.updated_at)).scalar_subquery(),
        select(func.count()).where(ForumDeadLetter.status == "dead").scalar_subquery(),
        select(func.max(ForumDeadLetter.id)).scalar_subquery(),
    )
    with unit_of_work(engine, readonly=True) as session:
        seq, runs_at, agents_at, dead, dead_id = session.execute(query).one()
    return Mark(int(seq or 0), runs_at, agents_at, (int(dead or 0), int(dead_id or 0)))


def runs_changed(engine: Engine, before: Mark, after: Mark) -> bool:
    """Whether anything a run's snapshot shows changed between two marks."""
    if (before.runs_at, before.agents_at, before.dead) != (
        after.runs_at,
        after.agents_at,
        after.dead,
    ):
        return True
    if after.sequence <= before.sequence:
        return False
    query = (
        select(ForumEvent.sequence)
        .where(
            ForumEvent.sequence > before.sequence,
            ForumEvent.sequence <= after.sequence,
            ForumEvent.run_id.is_not(None),
            ForumEvent.event_type != OPERATOR_DECISION,
        )
        .limit(1)
    )
    with unit_of_work(engine, readonly=True) as session:
        return session.execute(query).first() is not None


class Refresher:
    """Tells a loop when to rebuild: on a change, once more ``SETTLE_S`` after it, when the
    next clock-driven decision falls due, and at least every ``refresh_s``.

    Rebuilds for changes are spaced so that they take at most ``CPU_SHARE`` of the loop's time
    (a 200 ms rebuild waits 3.8 s before the next one while runs keep changing; a 2 ms one
    reacts within a poll): a busy stack cannot make a loop spin.
    """

    def __init__(self, engine: Engine, refresh_s: float) -> None:
        self.engine = engine
        self.refresh_s = refresh_s
        self._mark = mark(engine)
        self._next = time.monotonic() + refresh_s
        self._quiet_until = 0.0
        self._pending = False
        self._settle_at: float | None = None
        self._settling = False  # the pending rebuild is the settle one (no further settle)

    def rebuilt(self, due_at: datetime | None, now: datetime, took_s: float = 0.0) -> None:
        """The loop rebuilt at ``now`` in ``took_s``; ``due_at`` is its next clock decision."""
        started = time.monotonic()
        self._quiet_until = started + took_s * (1 / CPU_SHARE - 1)
        self._next = min(self._next, started + self.refresh_s)
        if due_at is not None:
            wait_s = max(0.0, (due_at - now).total_seconds())
            self._next = min(self._next, started + wait_s)

    def due(self) -> bool:
        """Whether the loop should rebuild now (one cheap check when nothing changed)."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.refresh_s
            self._pending = False
            return True
        if self._settle_at is not None and now >= self._settle_at:
            # Once more for the projections of that change.
            self._pending, self._settle_at, self._settling = True, None, True
        if not self._pending:
            latest = mark(self.engine)
            if latest != self._mark:
                self._pending = runs_changed(self.engine, self._mark, latest)
                self._mark = latest
        if self._pending and now >= self._quiet_until:
            if not self._settling:
                self._settle_at = now + SETTLE_S
            self._pending = self._settling = False
            return True
        return False
