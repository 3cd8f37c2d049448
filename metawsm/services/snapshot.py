"""Building the typed snapshot of one run, a ticket's runs, or all active runs.

Reads the database alone (no Redis). ``status`` renders it; watch and operator decide from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Row, select
from sqlalchemy.orm import Session

from metawsm.domain.control import AgentControl
from metawsm.domain.runs import ACTIVE, SIGNAL_DRIVEN, RunStatus
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
from metawsm.errors import NotFound
from metawsm.services import escalation, gates, run_reads
from metawsm.services.run_reads import RunReads
from metawsm.settings import Settings
from metawsm.storage.models import Run, table
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work


def build(
    engine: Engine,
    settings: Settings,
    *,
    run_id: str | None = None,
    ticket: str | None = None,
    now: datetime | None = None,
    with_completed: bool = False,
) -> Snapshot:
    """Snapshot of ``run_id``, of every run on ``ticket``, or of every active run.

    ``with_completed`` (no selector): the completed runs too, after the active ones, by id (the
    runs the operator decides on). A fixed number of statements whatever the number of runs
    (run_reads), read in one transaction that sees one state of the database (REPEATABLE READ
    on PostgreSQL; SQLite's read transaction already does).

    Raises:
        NotFound: the run (or any run on the ticket) does not exist.
    """
    now = now or utcnow()
    statuses = None
    if run_id is None and ticket is None:  # every run in these statuses: read by subquery
        statuses = [s.value for s in ACTIVE] + (
            [RunStatus.COMPLETED.value] if with_completed else []
        )
    with unit_of_work(_consistent(engine), readonly=True) as session:
        runs = _select_runs(session, run_id, ticket, with_completed)
        built = snapshots_of(session, settings, runs, now, statuses=statuses)
        return Snapshot.trusted(generated_at=now, runs=built)


def _consistent(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


# The runs as plain rows of the columns the snapshot shows: a thousand ORM instances (identity
# map, attribute instrumentation) cost more than their SQL.
_RUNS = table(Run)
_RUN_ROWS = select(*(_RUNS.c[n] for n in ("run_id", "status", "mode", "tickets", "control_epoch",
                                         "updated_at")))  # fmt: skip
_NEWEST_FIRST = (_RUNS.c.created_at.desc(), _RUNS.c.run_id.desc())


def _select_runs(
    session: Session, run_id: str | None, ticket: str | None, with_completed: bool = False
) -> list[Row[Any]]:
    conn = session.connection()
    if run_id is not None:
        runs = list(conn.execute(_RUN_ROWS.where(_RUNS.c.run_id == run_id)))
        if not runs:
            raise NotFound(f"run {run_id} not found")
        return runs
    query = _RUN_ROWS.order_by(*_NEWEST_FIRST)
    if ticket is not None:
        runs = [r for r in conn.execute(query) if ticket.lower() in (t.lower() for t in r.tickets)]
        if not runs:
            raise NotFound(f"no run on ticket {ticket}")
        return runs
    active = list(conn.execute(query.where(_RUNS.c.status.in_([s.value for s in ACTIVE]))))
    if not with_completed:
        return active
    done = conn.execute(
        _RUN_ROWS.where(_RUNS.c.status == RunStatus.COMPLETED.value).order_by(_RUNS.c.run_id)
    )
    return [*active, *done]


def snapshots_of(
    session: Session,
    settings: Settings,
    runs: Sequence[Row[Any]],
    now: datetime,
    *,
    statuses: list[str] | None = None,
) -> list[RunSnapshot]:
    """The snapshots of ``runs`` (inside the caller's read-only session), in their order.

    ``statuses``: ``runs`` are every run in these statuses (each statement selects them by a
    subquery instead of binding every id).
    """
    reads = run_reads.load(session, runs, statuses=statuses)
    driven = {r.run_id for r in runs if RunStatus(r.status) in SIGNAL_DRIVEN}
    rs = run_reads.run_set(runs, statuses)
    candidates = escalation.thread_candidates(session, settings, now, rs)
    candidates += escalation.guidance_candidates(
        session, settings, now, {rid: c for rid, c in reads.controls.items() if rid in driven}
    )
    by_run: dict[str, list[EscalationItem]] = {}
    for c in candidates:
        by_run.setdefault(c.run_id or "", []).append(_candidate_item(c, now))
    return [_run_snapshot(r, reads, by_run.get(r.run_id, []), now) for r in runs]


def _run_snapshot(
    run: Row[Any], reads: RunReads, candidates: list[EscalationItem], now: datetime
) -> RunSnapshot:
    controls = reads.controls.get(run.run_id, {})
    open_views = reads.open_views.get(run.run_id, [])
    last_seq, last_at = reads.last_events.get(run.run_id, (0, None))
    return RunSnapshot.trusted(
        run_id=run.run_id,
        status=run.status,
        mode=run.mode,
        tickets=list(run.tickets),
        control_epoch=run.control_epoch,
        updated_at=run.updated_at,
        brief=_brief(reads.briefs.get(run.run_id)),
        agents=_agents(reads.agents.get(run.run_id, []), controls),
        pending_guidance=_pending(controls, now),
        open_threads=[_thread_item(v, now) for v in open_views],
        escalation_candidates=candidates,
        escalations=_raised(reads.escalations.get(run.run_id, []), now),
        queue_counts=reads.state_counts.get(run.run_id, {}),
        unanswered_count=sum(1 for v in open_views if v.is_unanswered),
        blockers=_blockers(run, reads),
        last_event_sequence=last_seq,
        last_event_at=last_at,
        generated_at=now,
    )


def _age(now: datetime, since: datetime) -> int:
    return max(0, int((now - since).total_seconds()))


def _brief(brief: Row[Any] | None) -> BriefSummary | None:
    return (
        None
        if brief is None
        else BriefSummary.trusted(goal=brief.goal, done_criteria=brief.done_criteria)
    )


def _agents(rows: list[Row[Any]], controls: dict[str, AgentControl]) -> list[AgentSnapshot]:
    out = []
    for a in rows:
        c = controls.get(a.agent_name) or AgentControl(agent_name=a.agent_name)
        out.append(
            AgentSnapshot.trusted(
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
        PendingGuidance.trusted(
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


def _thread_item(v: Row[Any], now: datetime) -> ThreadItem:
    return ThreadItem.trusted(
        thread_id=v.thread_id,
        title=v.title,
        state=v.state,
        priority=v.priority,
        assignee_name=v.assignee_name or None,
        updated_at=v.updated_at,
        age_s=_age(now, v.updated_at),
        is_unanswered=bool(v.is_unanswered),
    )


def _candidate_item(c: escalation.Candidate, now: datetime) -> EscalationItem:
    return EscalationItem.trusted(
        thread_id=c.thread_id,
        tier=c.tier,
        reason=c.reason,
        subject=c.subject,
        since=c.since,
        age_s=_age(now, c.since),
        raised=False,
        agent_name=c.agent_name,
    )


def _raised(rows: list[Row[Any]], now: datetime) -> list[EscalationItem]:
    return [
        EscalationItem.trusted(
            thread_id=e.thread_id,
            tier=e.tier,
            reason=e.reason,
            subject=e.subject,
            since=e.raised_at,
            age_s=_age(now, e.raised_at),
            raised=True,
            agent_name=None,
        )
        for e in rows
    ]


def _blockers(run: Row[Any], reads: RunReads) -> list[Blocker]:
    out = [
        Blocker.trusted(kind="gate", reason=g.reason, fix=g.fix, message_id=None)
        for g in gates.from_reads(run, reads, unmet_only=True)
    ]
    out += [
        Blocker.trusted(
            kind="dead_letter",
            reason=f"dead letter on {d.topic}: {d.error[:200]}",
            fix=f"metawsm dlq redrive {d.message_id}",
            message_id=d.message_id,
        )
        for d in reads.dead_letters.get(run.run_id, [])
    ]
    return out
