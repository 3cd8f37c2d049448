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
from metawsm.runtime import Runtime
from metawsm.services import gates, snapshot
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.settings import Settings
from metawsm.storage.models import ForumEvent, Run
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
    rt: Runtime,
    *,
    run_id: str | None,
    mode: str,
    dry_run: bool,
    stale_after_s: int,
    now: datetime | None = None,
) -> list[Acted]:
    """One pass over the selected runs (one run, or all active runs and the completed ones)."""
    now = now or rt.clock()
    out = []
    for run in _selected(rt.engine, rt.settings, run_id, now):
        decision = decide(run, mode=mode, now=now, stale_after_s=stale_after_s)
        if dry_run or decision.fingerprint == last_fingerprint(rt.engine, run.run_id):
            out.append(Acted(decision, recorded=False, executed=False))
            continue
        out.append(_act(rt, decision, mode))
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


def _act(rt: Runtime, decision: Decision, mode: str) -> Acted:
    executed, error = False, None
    if decision.executes:
        try:
            gates.close_run(rt, decision.run_id, dry_run=False, actor=OPERATOR)
            executed = True
        except Rejected as exc:
            error = str(exc)
    with UnitOfWork(rt) as uow:
        run = uow.session.get_one(Run, decision.run_id)
        payload = {
            "intent": decision.intent,
            "reason": decision.reason[:2000],
            "mode": mode,
            "command": decision.command,
            "executed": executed,
            "fingerprint": decision.fingerprint,
        }
        writer = uow.events(OPERATOR)
        writer.append("operator.decision", payload, run_id=run.run_id, ticket=run.tickets[0])
    return Acted(decision, recorded=True, executed=executed, error=error)
