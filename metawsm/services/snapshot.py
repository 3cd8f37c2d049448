"""Building the typed snapshot of one run, a ticket's runs, or all active runs.

Reads the database alone (no Redis). ``status`` renders it; watch and operator decide from it.
One builder, :func:`read`, on a driver-level :class:`~metawsm.storage.dbapi.Reader`: the command
line runs it straight on the driver (no SQLAlchemy imported), in-process callers through
:func:`build`, on a connection of their engine. A fixed number of statements whatever the number
of runs (services/snapshot_reads.py), and typed parts made straight from the rows
(docs/performance.md, "Snapshot at scale").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from metawsm.domain import sla
from metawsm.domain.control import AgentControl, ControlState, controls_at
from metawsm.domain.gates import gates_of
from metawsm.domain.runs import ACTIVE, SIGNAL_DRIVEN, RunStatus
from metawsm.domain.sla import ESCALATING_STATES, URGENT
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
from metawsm.services import snapshot_reads as reads
from metawsm.services.snapshot_reads import RunRow, Scope, ViewRow
from metawsm.settings import Settings
from metawsm.storage.dbapi import Reader, placeholders

if TYPE_CHECKING:  # the command line builds on the driver and never imports SQLAlchemy
    from sqlalchemy import Engine

_SECOND = timedelta(seconds=1)
ACTIVE_STATUSES = tuple(sorted(s.value for s in ACTIVE))
DRIVEN_STATUSES = frozenset(s.value for s in SIGNAL_DRIVEN)


def build(
    engine: Engine,
    settings: Settings,
    *,
    run_id: str | None = None,
    ticket: str | None = None,
    now: datetime | None = None,
    with_completed: bool = False,
) -> Snapshot:
    """:func:`read` on a connection of ``engine``, in one read-only transaction that sees one
    state of the database (REPEATABLE READ on PostgreSQL; SQLite's read transaction already
    does).

    Raises:
        NotFound: the run (or any run on the ticket) does not exist.
    """
    from metawsm.storage.dbapi import on_connection
    from metawsm.storage.types import utcnow
    from metawsm.storage.uow import unit_of_work

    now = now or utcnow()
    with unit_of_work(_consistent(engine), readonly=True) as session:
        db = on_connection(session.connection())
        return read(db, settings, run_id=run_id, ticket=ticket, now=now,
                    with_completed=with_completed)  # fmt: skip


def _consistent(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


def read(
    db: Reader,
    settings: Settings,
    *,
    now: datetime,
    run_id: str | None = None,
    ticket: str | None = None,
    with_completed: bool = False,
) -> Snapshot:
    """Snapshot of ``run_id``, of every run on ``ticket``, or of every active run, inside the
    caller's read transaction on ``db`` (which should see one state: see :func:`build`).

    ``with_completed`` (no selector): the completed runs too, after the active ones, by id (the
    runs the operator decides on).

    Raises:
        NotFound: the run (or any run on the ticket) does not exist.
    """
    runs, scope = _select(db, run_id, ticket, with_completed)
    return Snapshot(now, snapshots_of(db, settings, runs, scope, now))


def _select(
    db: Reader, run_id: str | None, ticket: str | None, with_completed: bool
) -> tuple[list[RunRow], Scope]:
    if run_id is not None:
        runs = reads.runs(db, "run_id = :run_id", {"run_id": run_id})
        if not runs:
            raise NotFound(f"run {run_id} not found")
        return runs, Scope((run_id,))
    if ticket is not None:
        wanted = ticket.lower()
        runs = [r for r in reads.runs(db) if wanted in (t.lower() for t in r.tickets)]
        if not runs:
            raise NotFound(f"no run on ticket {ticket}")
        return runs, Scope(tuple(r.run_id for r in runs))
    marks, params = placeholders("s_", ACTIVE_STATUSES)
    runs = reads.runs(db, f"status IN ({marks})", params)
    statuses = ACTIVE_STATUSES
    if with_completed:
        runs += reads.runs_by_id(db, "status = :done", {"done": RunStatus.COMPLETED.value})
        statuses += (RunStatus.COMPLETED.value,)
    # Every run in these statuses: each statement reads them by a subquery, no ids bound.
    return runs, Scope(tuple(r.run_id for r in runs), statuses)


@dataclass
class _Facts:
    """Everything read about the runs, keyed by run id (absent: nothing of that kind)."""

    agents: dict[str, list[tuple[str, str, datetime | None]]]
    controls: dict[str, dict[str, AgentControl]]
    briefs: dict[str, tuple[str, str]]
    views: dict[str, list[tuple[Any, ...]]]
    counts: dict[str, dict[str, int]]
    raised: dict[str, list[reads.Raised]]
    dead: dict[str, list[reads.DeadLetter]]
    last: dict[str, tuple[int, datetime | None]]
    candidates: dict[str, list[EscalationItem]] = field(default_factory=dict)


def snapshots_of(
    db: Reader, settings: Settings, runs: Sequence[RunRow], scope: Scope, now: datetime
) -> list[RunSnapshot]:
    """The snapshots of ``runs`` (the runs of ``scope``), in their order."""
    if not runs:
        return []
    agents = reads.agents(db, scope)
    states = reads.control_states(db, scope)
    facts = _Facts(
        agents=agents,
        controls={r.run_id: _controls(r, agents, states) for r in runs},
        briefs=reads.briefs(db, scope),
        views=reads.open_views(db, scope),
        counts=reads.state_counts(db, scope),
        raised=reads.escalations(db, scope),
        dead=reads.dead_letters(db, scope),
        last=reads.last_events(db, scope),
    )
    facts.candidates = _candidates(settings, runs, facts, now)
    return [_run_snapshot(r, facts, now) for r in runs]


def _controls(
    run: RunRow,
    agents: Mapping[str, list[tuple[str, str, datetime | None]]],
    states: Mapping[str, Mapping[str, ControlState]],
) -> dict[str, AgentControl]:
    names = [a[0] for a in agents.get(run.run_id, ())]
    return controls_at(names, states.get(run.run_id, {}), run.control_epoch)


def _candidates(
    settings: Settings,
    runs: Sequence[RunRow],
    facts: _Facts,
    now: datetime,
) -> dict[str, list[EscalationItem]]:
    """What is past its SLA and not raised yet, per run: waiting threads, then guidance.

    From what was read already: a run's open views, and its raised escalations (each is
    raised with the run of what it escalates, services/escalation.py, so a run's escalations
    are those of its threads and guidance requests).
    """
    out: dict[str, list[EscalationItem]] = {}
    for run in runs:
        rid = run.run_id
        found = _waiting(settings, rid, facts, now)
        if run.status in DRIVEN_STATUSES:
            raised = {(e.thread_id, e.tier, e.subject) for e in facts.raised.get(rid, ())}
            asked = sla.guidance_due(now, rid, facts.controls[rid], settings.sla_minutes,
                                     settings.sla_human_minutes)  # fmt: skip
            found += [c for c in asked if (c.thread_id, c.tier, c.subject) not in raised]
        if found:
            out[rid] = [_candidate(c, now) for c in found]
    return out


def _waiting(settings: Settings, rid: str, facts: _Facts, now: datetime) -> list[sla.Candidate]:
    """The run's waiting threads past a tier they have not been escalated to."""
    sla_m, human_m = settings.sla_minutes, settings.sla_human_minutes
    cutoff = now - timedelta(minutes=sla_m)  # no tier is due sooner (but high and urgent)
    tiers: dict[str, set[str]] = {}  # the tiers each thread was escalated to
    for e in facts.raised.get(rid, ()):
        if not e.subject:
            tiers.setdefault(e.thread_id, set()).add(e.tier)
    found: list[sla.Candidate] = []
    for tid, title, state, prio, _, at, _, agent in facts.views.get(rid, ()):
        if state in ESCALATING_STATES and (at <= cutoff or prio in URGENT):
            view = ViewRow(tid, rid, agent, title, state, prio, at)
            found += sla.thread_due(now, view, sla_m, human_m, tiers.get(tid, ()))
    return found


def _candidate(c: sla.Candidate, now: datetime) -> EscalationItem:
    return EscalationItem(c.thread_id, c.tier, c.reason, c.subject, c.since, _age(now, c.since),
                          False, c.agent_name)  # fmt: skip


def _age(now: datetime, since: datetime) -> int:
    # Whole seconds, never negative (floor equals truncation for the non-negative ages kept).
    return max(0, (now - since) // _SECOND)


def _run_snapshot(run: RunRow, facts: _Facts, now: datetime) -> RunSnapshot:
    rid = run.run_id
    controls = facts.controls[rid]
    threads = [
        ThreadItem(tid, title, state, prio, assignee, at, _age(now, at), unanswered)
        for tid, title, state, prio, assignee, at, unanswered, _ in facts.views.get(rid, ())
    ]
    brief = facts.briefs.get(rid)
    last_seq, last_at = facts.last.get(rid, (0, None))
    return RunSnapshot(
        rid,
        run.status,
        run.mode,
        list(run.tickets),
        run.control_epoch,
        run.updated_at,
        None if brief is None else BriefSummary(*brief),
        _agents(facts.agents.get(rid, ()), controls),
        _pending(controls, now),
        threads,
        facts.candidates.get(rid, []),
        _raised(facts.raised.get(rid, ()), now),
        facts.counts.get(rid, {}),
        sum(1 for t in threads if t.is_unanswered),
        _blockers(run, facts, controls),
        last_seq,
        last_at,
        now,
    )  # in field order (positional: a thousand per snapshot)


def _raised(rows: Sequence[reads.Raised], now: datetime) -> list[EscalationItem]:
    return [
        EscalationItem(
            e.thread_id,
            e.tier,
            e.reason,
            e.subject,
            e.raised_at,
            _age(now, e.raised_at),
            True,
            None,
        )
        for e in rows
    ]


def _agents(
    rows: Sequence[tuple[str, str, datetime | None]], controls: Mapping[str, AgentControl]
) -> list[AgentSnapshot]:
    out = []
    for name, status, last_signal_at in rows:
        c = controls[name]
        out.append(AgentSnapshot(name, status, last_signal_at, c.pending, c.completed,
                                 c.validation_status, c.thread_id))  # fmt: skip
    return out


def _pending(controls: Mapping[str, AgentControl], now: datetime) -> list[PendingGuidance]:
    return [
        PendingGuidance(
            c.thread_id or "",
            c.agent_name,
            c.question or "",
            c.context,
            c.asked_at,
            _age(now, c.asked_at),
            c.request_event_id or "",
        )
        for c in controls.values()
        if c.pending and c.asked_at is not None
    ]


def _blockers(run: RunRow, facts: _Facts, controls: Mapping[str, AgentControl]) -> list[Blocker]:
    rid = run.run_id
    failed = [name for name, status, _ in facts.agents.get(rid, ()) if status == "failed"]
    brief = facts.briefs.get(rid)
    gates = gates_of(run, failed, brief[1] if brief else None, controls, unmet_only=True)
    out = [Blocker("gate", g.reason, g.fix, None) for g in gates]
    out += [
        Blocker(
            "dead_letter",
            f"dead letter on {d.topic}: {d.error[:200]}",
            f"metawsm dlq redrive {d.message_id}",
            d.message_id,
        )
        for d in facts.dead.get(rid, ())
    ]
    return out
