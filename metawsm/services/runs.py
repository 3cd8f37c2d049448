"""Runs: creating them, moving their status (always with a recorded cause), and reading them.

Every status change writes ``runs.status``, a ``run_events`` row and a ``run.status.changed``
event (with its outbox rows) in the caller's transaction.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.orm import Session

from metawsm.domain.control import AgentControl, SignalRecord, fold_agent
from metawsm.domain.runs import RunStatus, check_run_transition

__all__ = ["RunStatus"]
from metawsm.errors import CommandIdReused, DatabaseBusy, NotFound, Rejected
from metawsm.identity import Identity
from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services.eventlog import EventWriter
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage import tables
from metawsm.storage.models import (
    ForumControlThread,
    ForumEvent,
    Run,
    RunAgent,
    RunBrief,
    RunEvent,
)
from metawsm.storage.uow import unit_of_work

SYSTEM = Actor(type="system", name="metawsm")
ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: easy to read and type


@dataclass(frozen=True)
class BriefInput:
    """The bootstrap brief: what the agents must do and how done is judged."""

    goal: str
    scope: str
    done_criteria: str
    constraints: str
    merge_intent: str = "default"


def new_run_id(now: datetime) -> str:
    """A unique, easy-to-type run id like ``run-20261128-k3f9x``."""
    suffix = "".join(secrets.choice(ID_ALPHABET) for _ in range(5))
    return f"run-{now:%Y%m%d}-{suffix}"


def create_run(
    rt: Runtime,
    *,
    tickets: list[str],
    agents: list[str],
    mode: str,
    brief: BriefInput | None,
    actor: Actor | Identity,
) -> str:
    """Create a run (created → planning → running) with its agents and brief.

    Returns the run id.

    Raises:
        Forbidden: ``actor`` is an identity that may not create runs (agents, run-bound).
        Rejected: no ticket or agent, a duplicate agent, or a bootstrap run without a brief.
    """
    from metawsm.services.authorization import run_actor

    actor = run_actor(actor, "create", None)
    _check_new_run(tickets, agents, mode, brief)
    with UnitOfWork(rt) as uow:
        return _add_run(uow, tickets, agents, mode, brief, actor)


@dataclass(frozen=True)
class Created:
    """The run an idempotency key names, and whether this request created it."""

    run_id: str
    replayed: bool


def create_run_once(
    rt: Runtime,
    key: str,
    *,
    tickets: list[str],
    agents: list[str],
    mode: str,
    brief: BriefInput | None,
    actor: Actor | Identity,
) -> Created:
    """Create a run unless ``key`` already created one (``POST /runs`` with ``Idempotency-Key``).

    The same key with the same request and caller answers the run it created (``replayed``), so
    a client that retries after a lost answer gets one run, not two. The key and the run are
    written in one transaction; of two requests racing with one key, the one that loses the
    insert retries and answers the winner's run.

    Raises:
        CommandIdReused: ``key`` created a run for another request or another caller.
        Forbidden, Rejected: as :func:`create_run`.
    """
    from metawsm.services.authorization import run_actor

    actor = run_actor(actor, "create", None)
    _check_new_run(tickets, agents, mode, brief)
    request = {
        "tickets": tickets,
        "agents": agents,
        "mode": mode,
        "brief": asdict(brief) if brief is not None else None,
    }
    by = f"{actor.type.value}/{actor.name}"
    for attempt in (1, 2):
        try:
            with UnitOfWork(rt) as uow:
                found = uow.session.execute(_CREATION, {"key": key}).first()
                if found is not None:
                    if (found.request, found.created_by) != (request, by):
                        raise CommandIdReused(
                            f"idempotency key {key!r} already created run {found.run_id}"
                            " for another request or caller"
                        )
                    return Created(found.run_id, replayed=True)
                run_id = _add_run(uow, tickets, agents, mode, brief, actor)
                row: dict[str, Any] = {"idempotency_key": key, "run_id": run_id}
                row |= {"request": request, "created_by": by, "created_at": uow.now}
                uow.session.execute(insert(tables.run_creations), row)
            return Created(run_id, replayed=False)
        except DatabaseBusy:
            # PostgreSQL: the key's insert lost to a concurrent request's (this transaction is
            # rolled back, its run with it); the next attempt reads the winner's run.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


_CREATION = select(
    tables.run_creations.c.run_id,
    tables.run_creations.c.request,
    tables.run_creations.c.created_by,
).where(tables.run_creations.c.idempotency_key == bindparam("key"))


def _add_run(
    uow: UnitOfWork,
    tickets: list[str],
    agents: list[str],
    mode: str,
    brief: BriefInput | None,
    actor: Actor,
) -> str:
    session, now = uow.session, uow.now
    run_id = _unique_run_id(session, now)
    session.add(
        Run(
            run_id=run_id,
            status="created",
            mode=mode,
            tickets=tickets,
            control_epoch=1,
            created_at=now,
            updated_at=now,
        )
    )
    for name in agents:
        session.add(
            RunAgent(
                run_id=run_id, agent_name=name, status="running", created_at=now, updated_at=now
            )
        )
    if brief is not None:
        _add_brief(session, run_id, tickets[0], brief, now)
    writer = uow.events(actor)
    run = session.get_one(Run, run_id)
    for status in (RunStatus.PLANNING, RunStatus.RUNNING):
        transition(session, writer, run, status, f"created ({mode} mode)")
    return run_id


def _check_new_run(
    tickets: list[str], agents: list[str], mode: str, brief: BriefInput | None
) -> None:
    if not tickets:
        raise Rejected("a run needs at least one --ticket")
    if not agents:
        raise Rejected("a run needs at least one --agent")
    if len(set(agents)) != len(agents):
        raise Rejected("agent names in a run must be unique")
    if mode not in ("run", "bootstrap"):
        raise Rejected("mode must be run or bootstrap")
    if mode == "bootstrap":
        if len(tickets) != 1:
            raise Rejected("a bootstrap run has exactly one ticket")
        if brief is None or not brief.done_criteria.strip():
            raise Rejected("a bootstrap run needs a brief with done criteria")


def _unique_run_id(session: Session, now: datetime) -> str:
    for _ in range(20):
        run_id = new_run_id(now)
        if session.get(Run, run_id) is None:
            return run_id
    raise Rejected("could not find a free run id; try again")


def _add_brief(
    session: Session, run_id: str, ticket: str, brief: BriefInput, now: datetime
) -> None:
    qa = [
        {"question": "goal", "answer": brief.goal},
        {"question": "scope", "answer": brief.scope},
        {"question": "done_criteria", "answer": brief.done_criteria},
        {"question": "constraints", "answer": brief.constraints},
        {"question": "merge_intent", "answer": brief.merge_intent},
    ]
    session.add(
        RunBrief(
            run_id=run_id,
            ticket=ticket,
            goal=brief.goal,
            scope=brief.scope,
            done_criteria=brief.done_criteria,
            constraints=brief.constraints,
            merge_intent=brief.merge_intent,
            qa=qa,
            created_at=now,
            updated_at=now,
        )
    )


def transition(
    session: Session,
    writer: EventWriter,
    run: Run,
    target: RunStatus,
    reason: str,
    cause_event_id: str | None = None,
) -> None:
    """Move ``run`` to ``target`` (checked), recording a run event and a log event."""
    current = RunStatus(run.status)
    check_run_transition(run.run_id, current, target)
    if current is target:
        return
    payload: dict[str, Any] = {
        "from_status": current.value,
        "to_status": target.value,
        "reason": reason,
        "cause_event_id": cause_event_id,
    }
    tickets = list(run.tickets or [])
    writer.append(
        "run.status.changed", payload, run_id=run.run_id, ticket=tickets[0] if tickets else None
    )
    session.add(
        RunEvent(
            run_id=run.run_id,
            event_type="transition",
            from_status=current.value,
            to_status=target.value,
            reason=reason,
            cause_event_id=cause_event_id,
            created_at=writer.now,
        )
    )
    run.status, run.reason, run.updated_at = target.value, reason, writer.now


def lock_run(session: Session, run_id: str) -> Run:
    """Load the run for update (row lock on PostgreSQL; SQLite writers are serialised).

    Raises:
        NotFound: no such run.
    """
    query = select(Run).where(Run.run_id == run_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    run = session.execute(query).scalar_one_or_none()
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def agent_controls(session: Session, run: Run) -> dict[str, AgentControl]:
    """Every agent's control state, folded from the run's control-signal events."""
    agents = (
        session.execute(
            select(RunAgent.agent_name)
            .where(RunAgent.run_id == run.run_id)
            .order_by(RunAgent.agent_name)
        )
        .scalars()
        .all()
    )
    mapping = dict(
        session.execute(
            select(ForumControlThread.agent_name, ForumControlThread.thread_id).where(
                ForumControlThread.run_id == run.run_id
            )
        ).all()
    )
    records: dict[str, list[SignalRecord]] = {name: [] for name in agents}
    if mapping:
        rows = session.execute(
            select(ForumEvent).where(
                ForumEvent.thread_id.in_(list(mapping.values())),
                ForumEvent.event_type == "forum.control.signal",
            )
        ).scalars()
        by_thread = {t: a for a, t in mapping.items()}
        for row in rows:
            agent = by_thread.get(row.thread_id or "")
            if agent in records:
                records[agent].append(_record(row))
    states = {name: fold_agent(name, recs, run.control_epoch) for name, recs in records.items()}
    for name, state in states.items():
        state.thread_id = state.thread_id or mapping.get(name)
    return states


def _record(row: ForumEvent) -> SignalRecord:
    signal = row.payload.get("signal", {})
    return SignalRecord(
        event_id=row.event_id,
        thread_id=row.thread_id or "",
        thread_seq=row.thread_seq or 0,
        epoch=int(row.payload.get("epoch", 1)),
        occurred_at=row.occurred_at,
        control_type=str(signal.get("control_type", "")),
        fields={k: v for k, v in signal.items() if isinstance(v, str) or v is None},
    )


def failed_agents(session: Session, run_id: str) -> list[str]:
    """Names of the run's agents reported failed."""
    return list(
        session.execute(
            select(RunAgent.agent_name).where(
                RunAgent.run_id == run_id, RunAgent.status == "failed"
            )
        ).scalars()
    )


def run_rows(engine: Engine, run_id: str | None = None) -> list[dict[str, Any]]:
    """Runs as plain data (one, or all newest first), with agents and brief."""
    with unit_of_work(engine, readonly=True) as session:
        query = select(Run).order_by(Run.created_at.desc(), Run.run_id.desc())
        if run_id is not None:
            query = query.where(Run.run_id == run_id)
        runs = session.execute(query).scalars().all()
        if run_id is not None and not runs:
            raise NotFound(f"run {run_id} not found")
        return [_run_dict(session, run) for run in runs]


def _run_dict(session: Session, run: Run) -> dict[str, Any]:
    agents = session.execute(
        select(RunAgent).where(RunAgent.run_id == run.run_id).order_by(RunAgent.agent_name)
    ).scalars()
    brief = session.get(RunBrief, run.run_id)
    return {
        "run_id": run.run_id,
        "status": run.status,
        "mode": run.mode,
        "tickets": list(run.tickets or []),
        "control_epoch": run.control_epoch,
        "reason": run.reason,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "agents": [
            {
                "agent_name": a.agent_name,
                "status": a.status,
                "last_signal_at": a.last_signal_at.isoformat() if a.last_signal_at else None,
            }
            for a in agents
        ],
        "brief": None
        if brief is None
        else {
            "ticket": brief.ticket,
            "goal": brief.goal,
            "scope": brief.scope,
            "done_criteria": brief.done_criteria,
            "constraints": brief.constraints,
            "merge_intent": brief.merge_intent,
        },
    }


def run_history(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """The run's status transitions, oldest first, each with its cause."""
    with unit_of_work(engine, readonly=True) as session:
        rows = session.execute(
            select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id)
        ).scalars()
        return [
            {
                "from_status": r.from_status,
                "to_status": r.to_status,
                "reason": r.reason,
                "cause_event_id": r.cause_event_id,
                "at": r.created_at.isoformat(),
            }
            for r in rows
        ]
