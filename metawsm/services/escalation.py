"""SLA escalation: find what waits past its SLA and raise it once per (thread, tier, subject).

Beat runs :func:`raise_due` periodically. Two beats, or a redelivered task, cannot raise the
same escalation twice: each is its own transaction, guarded by a unique constraint.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, not_, or_, select
from sqlalchemy.orm import Session

from metawsm.domain import sla
from metawsm.domain.control import AgentControl
from metawsm.domain.runs import SIGNAL_DRIVEN, RunStatus
from metawsm.domain.sla import ESCALATING_STATES, URGENT, due_tiers
from metawsm.domain.sla import Candidate as Candidate  # where callers have found it
from metawsm.errors import DatabaseBusy
from metawsm.ops.catalogue import ESCALATIONS
from metawsm.ops.counters import count
from metawsm.runtime import Runtime
from metawsm.services import agent_controls, run_reads
from metawsm.services.runs import SYSTEM
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.settings import Settings
from metawsm.storage.models import ForumEscalation, ForumThread, ForumThreadView, Run
from metawsm.storage.uow import lock_event_log, unit_of_work

V = ForumThreadView
# What a thread candidate says (plain columns: the SLA pass reads every waiting thread).
CANDIDATE_COLUMNS = (V.thread_id, V.run_id, V.agent_name, V.title, V.state, V.priority,
                     V.updated_at)  # fmt: skip


def _age_s(now: datetime, since: datetime) -> float:
    return (now - since).total_seconds()


def thread_candidates(
    session: Session,
    settings: Settings,
    now: datetime,
    run_ids: Collection[str] | run_reads.RunSet | None = None,
) -> list[Candidate]:
    """Non-control threads in new/waiting_human past a tier's threshold, not raised yet.

    One statement: the views in an escalating state old enough for their first tier (or high
    and urgent, due at once), each with whether its operator and human escalations exist (two
    lookups in the escalations' unique index). Threads with both tiers raised are left out in
    SQL, so the cost follows what still waits, not every thread ever escalated.
    """
    raised_op, raised_human = _raised_flag("operator"), _raised_flag("human")
    query = (
        select(*CANDIDATE_COLUMNS, raised_op.label("op"), raised_human.label("human"))
        .where(
            ForumThreadView.state.in_(ESCALATING_STATES),
            ForumThreadView.is_control.is_(False),
            or_(
                ForumThreadView.priority.in_(URGENT),
                ForumThreadView.updated_at <= now - timedelta(minutes=settings.sla_minutes),
            ),
            not_(and_(raised_op, raised_human)),
        )
        .order_by(ForumThreadView.last_event_sequence)
    )
    params: dict[str, Any] = {}
    if isinstance(run_ids, run_reads.RunSet):
        query, params = query.where(run_ids.where(ForumThreadView.run_id)), run_ids.params
    elif run_ids is not None:
        query = query.where(ForumThreadView.run_id.in_(list(run_ids)))
    out = []
    for row in session.execute(query, params):
        raised = {tier for tier, flag in (("operator", row.op), ("human", row.human)) if flag}
        out += sla.thread_due(now, row, settings.sla_minutes, settings.sla_human_minutes, raised)
    return out


def _raised_flag(tier: str) -> Any:
    return (
        select(ForumEscalation.id)
        .where(
            ForumEscalation.thread_id == ForumThreadView.thread_id,
            ForumEscalation.tier == tier,
            ForumEscalation.subject == "",
        )
        .correlate(ForumThreadView)
        .exists()
    )


def guidance_due(
    settings: Settings, now: datetime, run_id: str, controls: Mapping[str, AgentControl]
) -> list[Candidate]:
    """Pending guidance requests of one run's agents past a tier's threshold (raised or not)."""
    return sla.guidance_due(now, run_id, controls, settings.sla_minutes, settings.sla_human_minutes)


def guidance_candidates(
    session: Session,
    settings: Settings,
    now: datetime,
    controls: Mapping[str, Mapping[str, AgentControl]],
) -> list[Candidate]:
    """Pending guidance requests of the runs in ``controls`` past a tier, not raised yet.

    ``controls``: each signal-driven run's folded agent controls (run_reads.agent_controls).
    """
    found = [
        c for rid, agents in controls.items() for c in guidance_due(settings, now, rid, agents)
    ]
    raised = raised_keys(session, {c.thread_id for c in found})
    return [c for c in found if (c.thread_id, c.tier, c.subject) not in raised]


def raised_keys(session: Session, thread_ids: Collection[str]) -> set[tuple[str, str, str]]:
    """(thread, tier, subject) of the escalations already raised on ``thread_ids``."""
    if not thread_ids:
        return set()
    rows = session.execute(
        select(ForumEscalation.thread_id, ForumEscalation.tier, ForumEscalation.subject).where(
            ForumEscalation.thread_id.in_(list(thread_ids))
        )
    )
    return {(t, tier, s) for t, tier, s in rows}


def signal_driven_controls(
    session: Session, run_ids: Collection[str] | None = None
) -> dict[str, dict[str, AgentControl]]:
    """The folded agent controls of every signal-driven run (of ``run_ids`` if given)."""
    query = select(Run).where(Run.status.in_([s.value for s in SIGNAL_DRIVEN]))
    if run_ids is not None:
        query = query.where(Run.run_id.in_(list(run_ids)))
    runs = list(session.execute(query.order_by(Run.run_id)).scalars())
    if not runs:
        return {}
    return run_reads.agent_controls(session, runs, run_reads.agents_of(session, runs))


def pending_candidates(
    session: Session, settings: Settings, now: datetime, run_ids: Collection[str] | None = None
) -> list[Candidate]:
    """Every candidate not raised yet (of ``run_ids`` if given): a fixed number of statements."""
    found = thread_candidates(session, settings, now, run_ids)
    return found + guidance_candidates(
        session, settings, now, signal_driven_controls(session, run_ids)
    )


def _still_due(session: Session, rt: Runtime, c: Candidate, thread: Any, now: datetime) -> bool:
    """Whether ``c`` is still due by the command side's current state."""
    if c.subject:  # a guidance request: still the pending one, of a run still signal-driven
        run = session.get(Run, c.run_id) if c.run_id else None
        if run is None or RunStatus(run.status) not in SIGNAL_DRIVEN:
            return False
        state = agent_controls.controls_of_run(session, run).get(c.agent_name or "")
        return state is not None and state.pending and state.request_event_id == c.subject
    if thread.is_control or thread.state not in ESCALATING_STATES:
        return False
    settings = rt.settings
    age = _age_s(now, thread.updated_at)
    tiers = due_tiers(age, thread.priority, settings.sla_minutes, settings.sla_human_minutes)
    return c.tier in {tier.name for tier in tiers}


def raise_due(rt: Runtime, now: datetime | None = None) -> int:
    """Raise every due escalation once; returns how many this call raised."""
    now = now or rt.clock()
    with unit_of_work(rt.engine, readonly=True) as session:
        todo = pending_candidates(session, rt.settings, now)
    raised = 0
    for candidate in todo:
        try:
            raised += _raise_one(rt, candidate, now)
        except DatabaseBusy:
            continue  # another beat raised it first (unique constraint) or the DB is busy
    return raised


def _raise_one(rt: Runtime, c: Candidate, now: datetime) -> int:
    """Raise ``c`` unless it was raised already or is no longer due on the command side.

    Candidates are picked from the read models, which may lag: the decision is taken again on
    the authoritative state, in the transaction that records the escalation, after taking the
    event-log lock that command handlers take first (so no handler commits in between).
    """
    with UnitOfWork(rt) as uow:
        session = uow.session
        lock_event_log(uow.conn)
        exists = session.execute(
            select(ForumEscalation.id).where(
                ForumEscalation.thread_id == c.thread_id,
                ForumEscalation.tier == c.tier,
                ForumEscalation.subject == c.subject,
            )
        ).first()
        thread = session.get(ForumThread, c.thread_id)
        if exists is not None or thread is None or not _still_due(session, rt, c, thread, now):
            return 0
        writer = uow.events(SYSTEM)
        writer.now = now
        payload = {
            "tier": c.tier,
            "reason": c.reason[:2000],
            "threshold_minutes": c.threshold_minutes,
            "waiting_since": c.since.isoformat(),
        }
        event = writer.append(
            "forum.sla.escalation_requested", payload, thread=thread, touch_thread=False
        )
        session.add(
            ForumEscalation(
                thread_id=c.thread_id,
                tier=c.tier,
                subject=c.subject,
                run_id=c.run_id,
                event_id=event.event_id,
                reason=c.reason[:2000],
                raised_at=now,
            )
        )
        session.flush()  # the unique constraint speaks now, inside this transaction
        uow.count(count(ESCALATIONS, tier=c.tier))
    return 1
