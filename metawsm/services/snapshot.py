"""Building the typed snapshot of one run, a ticket's runs, or all active runs.

Reads the database alone (no Redis). ``status`` renders it; watch and operator decide from it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from metawsm.domain.control import AgentControl
from metawsm.domain.runs import ACTIVE
from metawsm.domain.snapshot import (
    AgentSnapshot,
    Blocker,
    BriefSummary,
    EscalationItem,
    PendingGuidance,
    RunSnapshot,
    Snapshot,
    ThreadItem,
)
from metawsm.domain.views import is_unanswered
from metawsm.errors import NotFound
from metawsm.services import escalation, gates
from metawsm.services.projections import view_dict
from metawsm.services.runs import agent_controls
from metawsm.settings import Settings
from metawsm.storage.models import (
    ForumDeadLetter,
    ForumEscalation,
    ForumEvent,
    ForumThreadView,
    Run,
    RunAgent,
    RunBrief,
)
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work


def build(
    engine: Engine,
    settings: Settings,
    *,
    run_id: str | None = None,
    ticket: str | None = None,
    now: datetime | None = None,
) -> Snapshot:
    """Snapshot of ``run_id``, of every run on ``ticket``, or of every active run.

    Raises:
        NotFound: the run (or any run on the ticket) does not exist.
    """
    now = now or utcnow()
    with unit_of_work(engine, readonly=True) as session:
        runs = _select_runs(session, run_id, ticket)
        return Snapshot(
            generated_at=now, runs=[run_snapshot(session, settings, r, now) for r in runs]
        )


def _select_runs(session: Session, run_id: str | None, ticket: str | None) -> list[Run]:
    query = select(Run).order_by(Run.created_at.desc(), Run.run_id.desc())
    if run_id is not None:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return [run]
    runs = list(session.execute(query).scalars())
    if ticket is not None:
        runs = [r for r in runs if ticket.lower() in (t.lower() for t in r.tickets)]
        if not runs:
            raise NotFound(f"no run on ticket {ticket}")
        return runs
    return [r for r in runs if r.status in {s.value for s in ACTIVE}]


def run_snapshot(session: Session, settings: Settings, run: Run, now: datetime) -> RunSnapshot:
    """The snapshot of one run (inside the caller's read-only session)."""
    controls = agent_controls(session, run)
    views = [
        view_dict(v)
        for v in session.execute(
            select(ForumThreadView).where(
                ForumThreadView.run_id == run.run_id, ForumThreadView.is_control.is_(False)
            )
        ).scalars()
    ]
    open_views = [v for v in views if v["state"] != "closed"]
    last_seq, last_at = _last_event(session, run.run_id)
    counts: dict[str, int] = {}
    for v in views:
        counts[v["state"]] = counts.get(v["state"], 0) + 1
    return RunSnapshot(
        run_id=run.run_id,
        status=run.status,
        mode=run.mode,
        tickets=list(run.tickets),
        control_epoch=run.control_epoch,
        updated_at=run.updated_at,
        brief=_brief(session, run.run_id),
        agents=_agents(session, run.run_id, controls),
        pending_guidance=_pending(controls, now),
        open_threads=[_thread_item(v, now) for v in open_views],
        escalation_candidates=_candidates(session, settings, run.run_id, now),
        escalations=_raised(session, run.run_id, now),
        queue_counts=counts,
        unanswered_count=sum(1 for v in open_views if is_unanswered(v)),
        blockers=_blockers(session, run),
        last_event_sequence=last_seq,
        last_event_at=last_at,
        generated_at=now,
    )


def _age(now: datetime, since: datetime) -> int:
    return max(0, int((now - since).total_seconds()))


def _brief(session: Session, run_id: str) -> BriefSummary | None:
    brief = session.get(RunBrief, run_id)
    return (
        None if brief is None else BriefSummary(goal=brief.goal, done_criteria=brief.done_criteria)
    )


def _agents(
    session: Session, run_id: str, controls: dict[str, AgentControl]
) -> list[AgentSnapshot]:
    rows = session.execute(
        select(RunAgent).where(RunAgent.run_id == run_id).order_by(RunAgent.agent_name)
    ).scalars()
    out = []
    for a in rows:
        c = controls.get(a.agent_name) or AgentControl(agent_name=a.agent_name)
        out.append(
            AgentSnapshot(
                agent_name=a.agent_name,
                status=a.status,
                last_signal_at=a.last_signal_at,
                pending_guidance=c.pending,
                completed=c.completed,
                validation_status=c.validation_status,
                control_thread_id=c.thread_id,
            )
        )
    return out


def _pending(controls: dict[str, AgentControl], now: datetime) -> list[PendingGuidance]:
    return [
        PendingGuidance(
            thread_id=c.thread_id or "",
            agent_name=c.agent_name,
            question=c.question or "",
            context=c.context,
            asked_at=c.asked_at,
            age_s=_age(now, c.asked_at),
            request_event_id=c.request_event_id or "",
        )
        for c in controls.values()
        if c.pending and c.asked_at is not None
    ]


def _thread_item(v: dict[str, object], now: datetime) -> ThreadItem:
    updated = v["updated_at"]
    assert isinstance(updated, datetime)
    return ThreadItem(
        thread_id=str(v["thread_id"]),
        title=str(v["title"]),
        state=str(v["state"]),
        priority=str(v["priority"]),
        assignee_name=str(v["assignee_name"]) if v["assignee_name"] else None,
        updated_at=updated,
        age_s=_age(now, updated),
        is_unanswered=is_unanswered(dict(v)),
    )


def _candidates(
    session: Session, settings: Settings, run_id: str, now: datetime
) -> list[EscalationItem]:
    return [
        EscalationItem(
            thread_id=c.thread_id,
            tier=c.tier,
            reason=c.reason,
            subject=c.subject,
            since=c.since,
            age_s=_age(now, c.since),
            raised=False,
            agent_name=c.agent_name,
        )
        for c in escalation.pending_candidates(session, settings, now, run_id)
    ]


def _raised(session: Session, run_id: str, now: datetime) -> list[EscalationItem]:
    rows = session.execute(
        select(ForumEscalation).where(ForumEscalation.run_id == run_id).order_by(ForumEscalation.id)
    ).scalars()
    return [
        EscalationItem(
            thread_id=e.thread_id,
            tier=e.tier,
            reason=e.reason,
            subject=e.subject,
            since=e.raised_at,
            age_s=_age(now, e.raised_at),
            raised=True,
        )
        for e in rows
    ]


def _blockers(session: Session, run: Run) -> list[Blocker]:
    out = [
        Blocker(kind="gate", reason=g.reason, fix=g.fix)
        for g in gates.evaluate(session, run)
        if not g.met
    ]
    dead = session.execute(
        select(ForumDeadLetter).where(
            ForumDeadLetter.run_id == run.run_id, ForumDeadLetter.status == "dead"
        )
    ).scalars()
    out += [
        Blocker(
            kind="dead_letter",
            reason=f"dead letter on {d.topic}: {d.error[:200]}",
            fix=f"metawsm dlq redrive {d.message_id}",
            message_id=d.message_id,
        )
        for d in dead
    ]
    return out


def _last_event(session: Session, run_id: str) -> tuple[int, datetime | None]:
    # The operator's own decisions are not activity of the run: counting them would make a
    # stale run look busy again (and change its decision) every time the operator notes it.
    seq = session.execute(
        select(func.max(ForumEvent.sequence)).where(
            ForumEvent.run_id == run_id, ForumEvent.event_type != "operator.decision"
        )
    ).scalar()
    if not seq:
        return 0, None
    at = session.execute(select(ForumEvent.occurred_at).where(ForumEvent.sequence == seq)).scalar()
    return int(seq), at
