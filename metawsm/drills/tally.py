"""Counting a drill from the database: what was submitted, applied, rejected, dead, lost and
applied twice.

:func:`read_facts` reads the command ledger and the event log; :func:`tally` (pure) counts:

* **lost**: a submitted command the ledger does not hold, or that is still not final once the
  drill has waited for it to settle; plus every event the projection ledger lacks (an effect
  that never reached the read models);
* **duplicated**: a command whose events hold the same event type twice (its handler's effect
  written twice: no handler writes two events of one type for one command).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import Engine, select

from metawsm.services.projections import PROJECTION
from metawsm.storage.models import ForumCommand, ForumEvent, ForumProjectionEvent
from metawsm.storage.uow import unit_of_work

IDS_PER_QUERY = 500
SHOWN_IDS = 10


@dataclass(frozen=True)
class Facts:
    """What the database holds for the drill's commands."""

    statuses: dict[str, str]  # command id -> status, for the ids asked about that exist
    event_types: dict[str, list[str]]  # command id -> the types of its events
    unprojected_events: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Tally:
    """The drill's counts; ``lost_ids``/``duplicated_ids`` name the first few."""

    submitted: int
    applied: int
    rejected: int
    dead: int
    lost_commands: int
    lost_events: int
    duplicated: int
    lost_ids: list[str]
    duplicated_ids: list[str]

    @property
    def lost(self) -> int:
        """Commands lost plus events never projected."""
        return self.lost_commands + self.lost_events

    @property
    def ok(self) -> bool:
        """True when nothing was lost and nothing applied twice."""
        return self.lost == 0 and self.duplicated == 0


def read_facts(engine: Engine, command_ids: Iterable[str]) -> Facts:
    """The ledger statuses and event types of ``command_ids``, and the unprojected events."""
    ids = list(dict.fromkeys(command_ids))
    statuses: dict[str, str] = {}
    types: dict[str, list[str]] = {}
    projected = select(ForumProjectionEvent.event_id).where(
        ForumProjectionEvent.projection == PROJECTION,
        ForumProjectionEvent.event_id == ForumEvent.event_id,
    )
    with unit_of_work(engine, readonly=True) as s:
        for chunk in _chunks(ids):
            rows = s.execute(
                select(ForumCommand.command_id, ForumCommand.status).where(
                    ForumCommand.command_id.in_(chunk)
                )
            )
            statuses.update({cid: status for cid, status in rows})
            events = s.execute(
                select(ForumEvent.command_id, ForumEvent.event_type)
                .where(ForumEvent.command_id.in_(chunk))
                .order_by(ForumEvent.sequence)
            )
            for cid, event_type in events:
                types.setdefault(str(cid), []).append(event_type)
        unprojected = list(
            s.execute(select(ForumEvent.event_id).where(~projected.exists())).scalars()
        )
    return Facts(statuses=statuses, event_types=types, unprojected_events=unprojected)


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    it = iter(ids)
    while chunk := list(islice(it, IDS_PER_QUERY)):
        yield chunk


def tally(accepted: Sequence[str], uncertain: Sequence[str], facts: Facts) -> Tally:
    """Count the drill from ``facts``: ``accepted`` were acknowledged by submit; ``uncertain``
    raised in submit, so they count only when the ledger holds them."""
    submitted = list(dict.fromkeys([*accepted, *(c for c in uncertain if c in facts.statuses)]))
    status = Counter(facts.statuses.get(cid, "missing") for cid in submitted)
    lost_ids = [
        cid for cid in submitted if facts.statuses.get(cid, "missing") in ("missing", "accepted")
    ]
    duplicated_ids = [
        cid
        for cid in submitted
        if any(n > 1 for n in Counter(facts.event_types.get(cid, [])).values())
    ]
    return Tally(
        submitted=len(submitted),
        applied=status["applied"],
        rejected=status["rejected"],
        dead=status["dead"],
        lost_commands=len(lost_ids),
        lost_events=len(facts.unprojected_events),
        duplicated=len(duplicated_ids),
        lost_ids=[*lost_ids, *facts.unprojected_events][:SHOWN_IDS],
        duplicated_ids=duplicated_ids[:SHOWN_IDS],
    )
