"""What the close gates and the SLA pass know about a set of runs, through SQLAlchemy, with a
fixed number of set-based statements.

Their agents, briefs and control states: :func:`load` reads them for any number of runs at once
(one statement per kind of fact, never one per run; the control state from its read model, one
row per agent). The snapshot reads the same facts and more on the driver
(services/snapshot_reads.py) and applies the same gate rules (domain/gates.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, Row, bindparam, select
from sqlalchemy.orm import Session

from metawsm.domain.control import AgentControl
from metawsm.domain.gates import RunFacts as RunFacts  # where callers have found it
from metawsm.services import agent_controls as agent_control_rows
from metawsm.services.snapshot_reads import OPERATOR_DECISION as _OPERATOR_DECISION
from metawsm.storage.models import (
    Run,
    RunAgent,
    RunBrief,
    table,
)

# Where callers have found it (the snapshot's reads define it).
OPERATOR_DECISION = _OPERATOR_DECISION
# One expanding parameter for the run ids: building a statement with a thousand literal values,
# ten times per snapshot, costs more than running it.
RUN_IDS: BindParameter[Any] = bindparam("run_ids", expanding=True)


@dataclass
class RunReads:
    """The facts about the loaded runs, keyed by run id (absent key: nothing of that kind)."""

    agents: dict[str, list[Row[Any]]] = field(default_factory=dict)
    briefs: dict[str, Row[Any]] = field(default_factory=dict)
    controls: dict[str, dict[str, AgentControl]] = field(default_factory=dict)

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
    statuses: Collection[str] | None = None,
) -> RunReads:
    """Read the facts of ``runs`` the gates use, in one session.

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
