"""Everything known about a set of runs, read with a fixed number of set-based statements.

The snapshot, the close gates and the SLA candidates all start from the same facts about a run:
its agents, brief, control threads and their folded signals, thread views, escalations, dead
letters and last event. :func:`load` reads them for any number of runs at once (one statement per
kind of fact, never one per run; the control state from its read model, one row per agent); the
callers fold the rest in Python. Every statement goes through an index (docs/performance.md,
"Snapshot at scale").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, Row, bindparam, func, select
from sqlalchemy.orm import Session

from metawsm.domain.control import AgentControl
from metawsm.domain.gates import RunFacts as RunFacts  # where callers have found it
from metawsm.services import agent_controls as agent_control_rows
from metawsm.storage.models import (
    ForumDeadLetter,
    ForumEscalation,
    ForumEvent,
    ForumThreadView,
    Run,
    RunAgent,
    RunBrief,
    table,
)

# The operator's own decisions are not activity of a run: counting them would make a stale run
# look busy again (and change its decision) every time the operator notes it.
OPERATOR_DECISION = "operator.decision"
# One expanding parameter for the run ids: building a statement with a thousand literal values,
# ten times per snapshot, costs more than running it.
RUN_IDS: BindParameter[Any] = bindparam("run_ids", expanding=True)
# What the snapshot shows of a thread (``is_unanswered`` as the fold derived it).
V = ForumThreadView
VIEW_COLUMNS = [V.thread_id, V.run_id, V.title, V.state, V.priority, V.assignee_name,
                V.updated_at, V.is_unanswered]  # fmt: skip


@dataclass
class RunReads:
    """The facts about the loaded runs, keyed by run id (absent key: nothing of that kind)."""

    agents: dict[str, list[Row[Any]]] = field(default_factory=dict)
    briefs: dict[str, Row[Any]] = field(default_factory=dict)
    controls: dict[str, dict[str, AgentControl]] = field(default_factory=dict)
    open_views: dict[str, list[Row[Any]]] = field(default_factory=dict)
    state_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    escalations: dict[str, list[Row[Any]]] = field(default_factory=dict)
    dead_letters: dict[str, list[Row[Any]]] = field(default_factory=dict)
    last_events: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)

    def failed_agents(self, run_id: str) -> list[str]:
        """Names of the run's agents reported failed, by name."""
        return [a.agent_name for a in self.agents.get(run_id, []) if a.status == "failed"]


@dataclass(frozen=True)
class RunSet:
    """Which runs a statement reads: the given ids (one expanding parameter), or, when every
    run in ``statuses`` is read, those statuses (a subquery on ``runs``: no thousand ids to
    bind and expand in each of the snapshot's statements)."""

    ids: tuple[str, ...]
    statuses: tuple[str, ...] | None = None

    def where(self, column: Any) -> Any:
        """``column`` is one of the runs."""
        if self.statuses is None:
            return column.in_(RUN_IDS)
        return column.in_(select(Run.run_id).where(Run.status.in_(self.statuses)))

    @property
    def params(self) -> dict[str, list[str]]:
        """The statement's parameters."""
        return {} if self.statuses is not None else {"run_ids": list(self.ids)}


def run_set(runs: Sequence[RunFacts], statuses: Collection[str] | None = None) -> RunSet:
    """The :class:`RunSet` of ``runs``; ``statuses``: they are every run in those statuses."""
    return RunSet(tuple(r.run_id for r in runs), tuple(statuses) if statuses else None)


def load(
    session: Session,
    runs: Sequence[RunFacts],
    *,
    forum: bool = True,
    statuses: Collection[str] | None = None,
) -> RunReads:
    """Read the facts of ``runs`` (the gates' alone when ``forum`` is False) in one session.

    ``statuses``: ``runs`` are every run in these statuses (read through a subquery).
    """
    rs = run_set(runs, statuses)
    reads = RunReads()
    if not rs.ids:
        return reads
    reads.agents = agents_of(session, runs, rs)
    reads.briefs = {
        b.run_id: b
        for b in session.connection().execute(
            _in(_rows(RunBrief, "run_id", "goal", "done_criteria"), RunBrief, rs), rs.params
        )
    }
    reads.controls = agent_controls(session, runs, reads.agents, rs)
    if forum:
        reads.open_views = _open_views(session, rs)
        reads.state_counts = _state_counts(session, rs)
        reads.escalations = _escalations(session, rs)
        reads.dead_letters = _dead_letters(session, rs)
        reads.last_events = last_events(session, rs)
    return reads


def _in(query: Any, model: Any, rs: RunSet) -> Any:
    return query.where(rs.where(model.run_id))


def _rows(model: Any, *names: str) -> Any:
    # Plain rows, not ORM instances: thousands of them per snapshot, read-only, and the
    # session's identity bookkeeping would cost more than the SQL (docs/performance.md).
    # Only the columns used (``names``; all when none): each converted value costs.
    columns = table(model).columns
    return select(*(columns[n] for n in names) if names else columns)


def agents_of(
    session: Session, runs: Sequence[RunFacts], rs: RunSet | None = None
) -> dict[str, list[Row[Any]]]:
    """The agents of each run (rows), by name (one statement)."""
    out: dict[str, list[Row[Any]]] = defaultdict(list)
    rs = rs or run_set(runs)
    query = _in(
        _rows(RunAgent, "run_id", "agent_name", "status", "last_signal_at"), RunAgent, rs
    ).order_by(RunAgent.run_id, RunAgent.agent_name)
    for agent in session.connection().execute(query, rs.params):
        out[agent.run_id].append(agent)
    return dict(out)


def agent_controls(
    session: Session,
    runs: Sequence[RunFacts],
    agents: dict[str, list[Row[Any]]],
    rs: RunSet | None = None,
) -> dict[str, dict[str, AgentControl]]:
    """Every agent's control state per run, from the ``run_agent_controls`` read model (one
    statement: one row per agent, whatever the length of its control thread)."""
    rs = rs or run_set(runs)
    states = agent_control_rows.states_in(session, rs.where, rs.params)
    return {
        run.run_id: agent_control_rows.controls_at(
            [a.agent_name for a in agents.get(run.run_id, [])],
            states.get(run.run_id, {}),
            run.control_epoch,
        )
        for run in runs
    }


def _open_views(session: Session, rs: RunSet) -> dict[str, list[Row[Any]]]:
    out: dict[str, list[Row[Any]]] = defaultdict(list)
    query: Any = (
        select(*VIEW_COLUMNS)
        .where(
            rs.where(ForumThreadView.run_id),
            ForumThreadView.is_control.is_(False),
            ForumThreadView.state != "closed",
        )
        .order_by(ForumThreadView.run_id, ForumThreadView.last_event_sequence)
    )
    for row in session.connection().execute(query, rs.params):
        out[row.run_id].append(row)
    return dict(out)


def _state_counts(session: Session, rs: RunSet) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = defaultdict(dict)
    query = (
        select(ForumThreadView.run_id, ForumThreadView.state, func.count())
        .where(rs.where(ForumThreadView.run_id), ForumThreadView.is_control.is_(False))
        .group_by(ForumThreadView.run_id, ForumThreadView.state)
    )
    for run_id, state, count in session.connection().execute(query, rs.params):
        if run_id is not None:
            out[run_id][state] = int(count)
    return dict(out)


def _escalations(session: Session, rs: RunSet) -> dict[str, list[Row[Any]]]:
    out: dict[str, list[Row[Any]]] = defaultdict(list)
    query = _in(
        _rows(ForumEscalation, "run_id", "thread_id", "tier", "reason", "subject", "raised_at"),
        ForumEscalation,
        rs,
    ).order_by(ForumEscalation.id)
    for e in session.connection().execute(query, rs.params):
        out[e.run_id or ""].append(e)
    return dict(out)


def _dead_letters(session: Session, rs: RunSet) -> dict[str, list[Row[Any]]]:
    out: dict[str, list[Row[Any]]] = defaultdict(list)
    query = (
        _in(_rows(ForumDeadLetter, "run_id", "message_id", "topic", "error"), ForumDeadLetter, rs)
        .where(ForumDeadLetter.status == "dead")
        .order_by(ForumDeadLetter.id)
    )
    for d in session.connection().execute(query, rs.params):
        out[d.run_id or ""].append(d)
    return dict(out)


def last_events(session: Session, rs: RunSet) -> dict[str, tuple[int, datetime | None]]:
    """Sequence and time of each run's last event that is not an operator decision.

    One correlated lookup per run inside one statement: each walks the run's
    (run_id, sequence) index backwards and stops at the first event that counts.
    """
    last = (
        select(ForumEvent.sequence)
        .where(ForumEvent.run_id == Run.run_id, ForumEvent.event_type != OPERATOR_DECISION)
        .order_by(ForumEvent.sequence.desc())
        .limit(1)
        .correlate(Run)
        .scalar_subquery()
    )
    seqs = {
        run_id: int(seq)
        for run_id, seq in session.connection().execute(
            select(Run.run_id, last).where(rs.where(Run.run_id)), rs.params
        )
        if seq
    }
    times: dict[int, datetime] = {}
    if seqs:
        query = select(ForumEvent.sequence, ForumEvent.occurred_at).where(
            ForumEvent.sequence.in_(list(seqs.values()))
        )
        times = {int(s): at for s, at in session.connection().execute(query)}
    return {rid: (seq, times.get(seq)) for rid, seq in seqs.items()}
