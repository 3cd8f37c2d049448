"""Defects a drill can be told to plant before it counts (``--inject-defect``, hidden): proof
that the drill fails when a command is lost or applied twice, through the real tally."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Engine, delete, func, insert, select

from metawsm.services.projections import PROJECTION
from metawsm.storage import tables
from metawsm.storage.types import utcnow
from metawsm.storage.uow import connection_unit

DEFECTS = ("lost", "duplicated")


def plant(engine: Engine, defect: str, command_ids: Sequence[str]) -> str:
    """Make one of ``command_ids`` (an applied one) lost (its ledger row deleted) or applied
    twice (one of its events written again, and projected); what was done."""
    commands, events = tables.forum_commands, tables.forum_events
    with connection_unit(engine) as conn:
        victim = conn.execute(
            select(events)
            .where(events.c.command_id.in_(list(command_ids)[:500]))
            .order_by(events.c.sequence)
            .limit(1)
        ).first()
        if victim is None:
            return "no applied command to plant a defect on"
        if defect == "lost":
            conn.execute(delete(commands).where(commands.c.command_id == victim.command_id))
            return f"deleted the ledger row of command {victim.command_id}"
        copy = dict(victim._mapping)
        copy["event_id"] = f"fevt-defect-{uuid.uuid4().hex[:12]}"
        copy["sequence"] = int(conn.execute(select(func.max(events.c.sequence))).scalar() or 0) + 1
        copy["thread_seq"] = None
        conn.execute(insert(events), copy)
        conn.execute(
            insert(tables.forum_projection_events),
            {"projection": PROJECTION, "event_id": copy["event_id"], "applied_at": utcnow()},
        )
        return f"wrote event {victim.event_type} of command {victim.command_id} a second time"
