"""Close gates: what must hold before a run closes, and the exact command that meets each gate."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from metawsm.domain.control import AgentControl
from metawsm.domain.runs import RunStatus
from metawsm.errors import Rejected
from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services import run_reads
from metawsm.services.run_reads import RunFacts, RunReads
from metawsm.services.runs import lock_run, transition
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage.models import Run
from metawsm.storage.uow import unit_of_work


@dataclass(frozen=True)
class Gate:
    """One close gate: whether it is met, why not, and the command that would meet it."""

    name: str
    met: bool
    reason: str
    fix: str | None = None
    agent_name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return self.__dict__.copy()


@lru_cache(maxsize=8192)
def _q(value: str) -> str:
    # Run ids and agent names repeat across gates and snapshots: quote each once.
    return shlex.quote(value)


def _signal(run_id: str, agent: str, kind: str, *extra: str, actor: str = "agent") -> str:
    # Only the variable parts need quoting: the snapshot renders thousands of these.
    values = " ".join(_q(e) for e in extra)
    return (
        f"metawsm forum signal --run-id {_q(run_id)} --agent-name {_q(agent)} --type {_q(kind)}"
        f"{' ' if values else ''}{values} --actor-type {_q(actor)}"
    )


def evaluate(session: Session, run: Run) -> list[Gate]:
    """Every gate of ``run``, met or not, in the order they are checked."""
    reads = run_reads.load(session, [run], forum=False)
    return from_reads(run, reads)


def from_reads(run: RunFacts, reads: RunReads, *, unmet_only: bool = False) -> list[Gate]:
    """Every gate of ``run`` from facts already read (run_reads.load), in check order.

    ``unmet_only``: just the unmet ones (the snapshot's blockers), without building the others.
    """
    gates = _failed_agent_gates(run, reads.failed_agents(run.run_id))
    status = _status_gate(run)
    if not (unmet_only and status.met):
        gates.append(status)
    brief = reads.briefs.get(run.run_id)
    criteria = (brief.done_criteria.strip() if brief else "") or None
    if run.mode == "bootstrap" and not (unmet_only and criteria is not None):
        gates.append(
            Gate(
                "brief",
                criteria is not None,
                "a bootstrap run needs a brief with done criteria"
                if criteria is None
                else "brief has done criteria",
            )
        )
    for name, state in reads.controls.get(run.run_id, {}).items():
        gates.extend(_agent_gates(run, name, state, criteria, unmet_only))
    return gates


def _status_gate(run: RunFacts) -> Gate:
    status = RunStatus(run.status)
    if status in (RunStatus.COMPLETED, RunStatus.CLOSED):
        return Gate("status", True, f"run is {status}")
    fix = None
    if status in (RunStatus.STOPPED, RunStatus.PAUSED, RunStatus.FAILED):
        fix = f"metawsm run resume --run-id {shlex.quote(run.run_id)}"
    return Gate("status", False, f"run is {status}, not completed", fix)


def _failed_agent_gates(run: RunFacts, failed: list[str]) -> list[Gate]:
    # A run failed by an agent goes straight back to failed on resume while that agent is still
    # reported failed, so name the command that clears it (before the status gate's resume).
    if run.status != RunStatus.FAILED.value:
        return []
    rid = shlex.quote(run.run_id)
    return [
        Gate(
            "agent",
            False,
            f"agent {name} is reported failed",
            f"metawsm run agent-status --run-id {rid} --agent-name {shlex.quote(name)}"
            " --status running",
            name,
        )
        for name in failed
    ]


def _agent_gates(
    run: RunFacts, name: str, state: AgentControl, criteria: str | None, unmet_only: bool = False
) -> list[Gate]:
    rid = run.run_id
    gates = []
    if not (unmet_only and not state.pending):
        gates.append(
            Gate(
                "guidance",
                not state.pending,
                f"agent {name} has pending guidance: {state.question}"
                if state.pending
                else f"agent {name} has no pending guidance",
                _signal(rid, name, "guidance_answer", "--answer", "<answer>", actor="operator")
                if state.pending
                else None,
                name,
            )
        )
    if not (unmet_only and state.completed):
        gates.append(
            Gate(
                "completion",
                state.completed,
                f"agent {name} signalled completion"
                if state.completed
                else f"agent {name} has not signalled completion in epoch {run.control_epoch}",
                None
                if state.completed
                else _signal(rid, name, "completion", "--summary", "<summary>"),
                name,
            )
        )
    status_ok = state.validation_status == "passed"
    criteria_ok = run.mode != "bootstrap" or (
        criteria is not None and state.validation_done_criteria == criteria
    )
    if unmet_only and status_ok and criteria_ok:
        return gates
    want = criteria or "<done criteria>"
    gates.append(
        Gate(
            "validation",
            status_ok and criteria_ok,
            _validation_reason(name, state, status_ok, criteria_ok, run.control_epoch),
            None
            if status_ok and criteria_ok
            else _signal(rid, name, "validation", "--status", "passed", "--done-criteria", want),
            name,
        )
    )
    return gates


def _validation_reason(
    name: str, state: AgentControl, status_ok: bool, criteria_ok: bool, epoch: int
) -> str:
    if state.validation_status is None:
        return f"agent {name} has no validation signal in epoch {epoch}"
    if not status_ok:
        return f"agent {name} validation status is {state.validation_status!r}, not 'passed'"
    if not criteria_ok:
        return f"agent {name} validation done_criteria does not match the brief"
    return f"agent {name} validation passed"


def unmet(engine: Engine, run_id: str) -> tuple[dict[str, Any], list[Gate]]:
    """The run (id, status, mode) and its unmet gates."""
    with unit_of_work(engine, readonly=True) as session:
        run = lock_run(session, run_id)
        gates = [g for g in evaluate(session, run) if not g.met]
        return {"run_id": run.run_id, "status": run.status, "mode": run.mode}, gates


def close_run(rt: Runtime, run_id: str, *, dry_run: bool, actor: Actor) -> str:
    """Close a completed run whose gates all pass; returns its status after.

    A closed run is a no-op success. ``dry_run`` checks the gates and changes nothing.

    Raises:
        Rejected: naming every unmet gate.
    """
    with UnitOfWork(rt) as uow:
        session = uow.session
        run = lock_run(session, run_id)
        if run.status == RunStatus.CLOSED.value:
            return run.status
        failing = [g for g in evaluate(session, run) if not g.met]
        if failing:
            reasons = "; ".join(g.reason for g in failing)
            raise Rejected(f"run {run_id} cannot close: {reasons}")
        if dry_run:
            return run.status
        writer = uow.events(actor)
        transition(session, writer, run, RunStatus.CLOSING, "close gates passed")
        transition(session, writer, run, RunStatus.CLOSED, "closed")
        return run.status
