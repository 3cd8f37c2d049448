"""The operator loop: decide per run from the snapshot, record changed decisions, act in auto.

A decision is recorded as an ``operator.decision`` event only when it differs from the last one
recorded for the run, so nothing is repeated while nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from metawsm.domain.operator import Decision, decide
from metawsm.domain.runs import RunStatus
from metawsm.domain.snapshot import RunSnapshot
from metawsm.errors import Rejected
from metawsm.messages.common import Actor
from metawsm.services import gates, snapshot
from metawsm.services.outbox import Publisher, new_claim, publish_claimed
from metawsm.services.runs import writer_for
from metawsm.settings import Settings
from metawsm.storage.models import ForumEvent, Run
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

OPERATOR = Actor(type="operator", name="metawsm-operator")


@dataclass(frozen=True)
class Acted:
    """One decision and what became of it."""

    decision: Decision
    recorded: bool
    executed: bool
    error: str | None = None


def last_fingerprint(engine: Engine, run_id: str) -> str | None:
    """Fingerprint of the last decision recorded for ``run_id``."""
    with unit_of_work(engine, readonly=True) as session:
        row = session.execute(
            select(ForumEvent.payload)
            .where(ForumEvent.run_id == run_id, ForumEvent.event_type == "operator.decision")
            .order_by(ForumEvent.sequence.desc())
            .limit(1)
        ).scalar()
    return str(row["fingerprint"]) if row else None


def operate_once(
    engine: Engine,
    settings: Settings,
    publisher: Publisher,
    *,
    run_id: str | None,
    mode: str,
    dry_run: bool,
    stale_after_s: int,
    now: datetime | None = None,
) -> list[Acted]:
    """One pass over the selected runs (one run, or all active runs and the completed ones)."""
    now = now or utcnow()
    out = []
    for run in _selected(engine, settings, run_id, now):
        decision = decide(run, mode=mode, now=now, stale_after_s=stale_after_s)
        if dry_run or decision.fingerprint == last_fingerprint(engine, run.run_id):
            out.append(Acted(decision, recorded=False, executed=False))
            continue
        out.append(_act(engine, settings, publisher, decision, mode))
    return out


def _selected(
    engine: Engine, settings: Settings, run_id: str | None, now: datetime
) -> list[RunSnapshot]:
    """The run, or every active run plus the completed ones (which close_ready acts on)."""
    runs = snapshot.build(engine, settings, run_id=run_id, now=now).runs
    if run_id is not None:
        return runs
    with unit_of_work(engine, readonly=True) as session:
        done = session.execute(
            select(Run.run_id).where(Run.status == RunStatus.COMPLETED.value).order_by(Run.run_id)
        ).scalars()
        completed = list(done)
    return runs + [
        r for rid in completed for r in snapshot.build(engine, settings, run_id=rid, now=now).runs
    ]


def _act(
    engine: Engine, settings: Settings, publisher: Publisher, decision: Decision, mode: str
) -> Acted:
    executed, error = False, None
    if decision.executes:
        try:
            _, _, claim = gates.close_run(
                engine, settings, decision.run_id, dry_run=False, actor=OPERATOR
            )
            publish_claimed(engine, publisher, claim or "", settings)
            executed = True
        except Rejected as exc:
            error = str(exc)
    claim = new_claim()
    with unit_of_work(engine) as session:
        run = session.get_one(Run, decision.run_id)
        writer = writer_for(session, settings, OPERATOR, utcnow(), claim)
        payload = {
            "intent": decision.intent,
            "reason": decision.reason[:2000],
            "mode": mode,
            "command": decision.command,
            "executed": executed,
            "fingerprint": decision.fingerprint,
        }
        writer.append("operator.decision", payload, run_id=run.run_id, ticket=run.tickets[0])
    publish_claimed(engine, publisher, claim, settings)
    return Acted(decision, recorded=True, executed=executed, error=error)
