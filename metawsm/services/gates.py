"""Close gates: what must hold before a run closes, and the exact command that meets each gate."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from metawsm.domain.gates import Gate as Gate  # where callers have found it
from metawsm.domain.gates import gates_of
from metawsm.domain.runs import RunStatus
from metawsm.errors import Rejected
from metawsm.identity import Identity
from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services import run_reads
from metawsm.services.authorization import run_actor
from metawsm.services.run_reads import RunFacts, RunReads
from metawsm.services.runs import lock_run, transition
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage.models import Run
from metawsm.storage.uow import unit_of_work


def evaluate(session: Session, run: Run) -> list[Gate]:
    """Every gate of ``run``, met or not, in the order they are checked."""
    reads = run_reads.load(session, [run])
    return from_reads(run, reads)


def from_reads(run: RunFacts, reads: RunReads, *, unmet_only: bool = False) -> list[Gate]:
    """Every gate of ``run`` from facts already read (run_reads.load), in check order.

    ``unmet_only``: just the unmet ones (the snapshot's blockers), without building the others.
    """
    brief = reads.briefs.get(run.run_id)
    return gates_of(
        run,
        reads.failed_agents(run.run_id),
        brief.done_criteria if brief else None,
        reads.controls.get(run.run_id, {}),
        unmet_only=unmet_only,
    )


def unmet(engine: Engine, run_id: str) -> tuple[dict[str, Any], list[Gate]]:
    """The run (id, status, mode) and its unmet gates."""
    with unit_of_work(engine, readonly=True) as session:
        run = lock_run(session, run_id)
        gates = [g for g in evaluate(session, run) if not g.met]
        return {"run_id": run.run_id, "status": run.status, "mode": run.mode}, gates


def close_run(rt: Runtime, run_id: str, *, dry_run: bool, actor: Actor | Identity) -> str:
    """Close a completed run whose gates all pass; returns its status after.

    A closed run is a no-op success. ``dry_run`` checks the gates and changes nothing.

    Raises:
        Forbidden: ``actor`` is an identity that may not close runs (agents; another run).
        Rejected: naming every unmet gate.
    """
    actor = run_actor(actor, "close", run_id)
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
