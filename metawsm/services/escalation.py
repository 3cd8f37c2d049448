"""SLA escalation: find what waits past its SLA and raise it once per (thread, tier, subject).

Beat runs :func:`raise_due` periodically. Two beats, or a redelivered task, cannot raise the
same escalation twice: each is its own transaction, guarded by a unique constraint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from metawsm.domain.runs import SIGNAL_DRIVEN, RunStatus
from metawsm.domain.sla import ESCALATING_STATES, due_tiers
from metawsm.errors import DatabaseBusy
from metawsm.runtime import Runtime
from metawsm.services.runs import SYSTEM, agent_controls
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.settings import Settings
from metawsm.storage.models import ForumEscalation, ForumThread, ForumThreadView, Run
from metawsm.storage.uow import lock_event_log, unit_of_work


@dataclass(frozen=True)
class Candidate:
    """Something waiting past the threshold of ``tier``."""

    thread_id: str
    tier: str
    subject: str
    reason: str
    since: datetime
    threshold_minutes: int
    run_id: str | None
    agent_name: str | None = None


def _age_s(now: datetime, since: datetime) -> float:
    return (now - since).total_seconds()


def thread_candidates(
    session: Session, settings: Settings, now: datetime, run_id: str | None = None
) -> list[Candidate]:
    """Non-control threads in new/waiting_human past a tier's threshold."""
    query = select(ForumThreadView).where(
        ForumThreadView.state.in_(ESCALATING_STATES), ForumThreadView.is_control.is_(False)
    )
    if run_id is not None:
        query = query.where(ForumThreadView.run_id == run_id)
    out = []
    for view in session.execute(query).scalars():
        age = _age_s(now, view.updated_at)
        for tier in due_tiers(age, view.priority, settings.sla_minutes, settings.sla_human_minutes):
            reason = (
                f"{view.priority} thread '{view.title}' waiting in {view.state} for"
                f" {int(age // 60)} min (tier {tier.name} at {tier.after_minutes} min)"
            )
            out.append(
                Candidate(
                    view.thread_id,
                    tier.name,
                    "",
                    reason,
                    view.updated_at,
                    tier.after_minutes,
                    view.run_id,
                    view.agent_name,
                )
            )
    return out


def guidance_candidates(
    session: Session, settings: Settings, now: datetime, run_id: str | None = None
) -> list[Candidate]:
    """Pending guidance requests of active runs past a tier's threshold."""
    query = select(Run).where(Run.status.in_([s.value for s in SIGNAL_DRIVEN]))
    if run_id is not None:
        query = query.where(Run.run_id == run_id)
    out = []
    for run in session.execute(query).scalars():
        for state in agent_controls(session, run).values():
            if not (
                state.pending and state.asked_at and state.thread_id and state.request_event_id
            ):
                continue
            age = _age_s(now, state.asked_at)
            for tier in due_tiers(age, "normal", settings.sla_minutes, settings.sla_human_minutes):
                reason = (
                    f"agent {state.agent_name} has waited {int(age // 60)} min for guidance:"
                    f" {state.question}"
                )
                out.append(
                    Candidate(
                        state.thread_id,
                        tier.name,
                        state.request_event_id,
                        reason,
                        state.asked_at,
                        tier.after_minutes,
                        run.run_id,
                        state.agent_name,
                    )
                )
    return out


def raised_keys(session: Session) -> set[tuple[str, str, str]]:
    """(thread, tier, subject) of every escalation already raised."""
    rows = session.execute(
        select(ForumEscalation.thread_id, ForumEscalation.tier, ForumEscalation.subject)
    ).all()
    return {(t, tier, s) for t, tier, s in rows}


def pending_candidates(
    session: Session, settings: Settings, now: datetime, run_id: str | None = None
) -> list[Candidate]:
    """Every candidate not raised yet."""
    raised = raised_keys(session)
    found = thread_candidates(session, settings, now, run_id)
    found += guidance_candidates(session, settings, now, run_id)
    return [c for c in found if (c.thread_id, c.tier, c.subject) not in raised]


def _still_due(session: Session, rt: Runtime, c: Candidate, thread: Any, now: datetime) -> bool:
    """Whether ``c`` is still due by the command side's current state."""
    if c.subject:  # a guidance request: still the pending one, of a run still signal-driven
        run = session.get(Run, c.run_id) if c.run_id else None
        if run is None or RunStatus(run.status) not in SIGNAL_DRIVEN:
            return False
        state = agent_controls(session, run).get(c.agent_name or "")
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
    return 1
