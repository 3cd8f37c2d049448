"""Operator actions on runs: stop, resume, iterate, report an agent's status.

Each runs in one transaction and records every status change with its reason.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from metawsm.domain.runs import RunStatus
from metawsm.errors import NotFound, Rejected
from metawsm.messages.common import Actor
from metawsm.services.control import advance_run
from metawsm.services.outbox import new_claim
from metawsm.services.runs import lock_run, transition, writer_for
from metawsm.settings import Settings
from metawsm.storage.models import ForumControlThread, RunAgent
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

STOPPABLE = {
    RunStatus.PLANNING,
    RunStatus.RUNNING,
    RunStatus.AWAITING_GUIDANCE,
    RunStatus.PAUSED,
    RunStatus.FAILED,
}


def stop_run(engine: Engine, settings: Settings, run_id: str, actor: Actor) -> tuple[str, str]:
    """Stop a run (→ stopping → stopped); stopping a stopped run changes nothing."""
    claim = new_claim()
    with unit_of_work(engine) as session:
        run = lock_run(session, run_id)
        status = RunStatus(run.status)
        if status is RunStatus.STOPPED:
            return run.status, claim
        if status not in STOPPABLE and status is not RunStatus.STOPPING:
            raise Rejected(f"run {run_id} is {status}; it cannot be stopped")
        writer = writer_for(session, settings, actor, utcnow(), claim)
        for target in (RunStatus.STOPPING, RunStatus.STOPPED):
            transition(session, writer, run, target, f"stopped by {actor.type}/{actor.name}")
        return run.status, claim


def resume_run(engine: Engine, settings: Settings, run_id: str, actor: Actor) -> tuple[str, str]:
    """Resume a stopped, paused or failed run; then follow its agents' control state."""
    claim = new_claim()
    with unit_of_work(engine) as session:
        run = lock_run(session, run_id)
        if RunStatus(run.status) in (RunStatus.RUNNING, RunStatus.AWAITING_GUIDANCE):
            return run.status, claim  # already going: nothing to resume
        writer = writer_for(session, settings, actor, utcnow(), claim)
        transition(session, writer, run, RunStatus.RUNNING, f"resumed by {actor.type}/{actor.name}")
        status = advance_run(session, settings, run_id, None, claim)
        return status, claim


def iterate_run(
    engine: Engine, settings: Settings, run_id: str, feedback: str, actor: Actor
) -> tuple[str, int, list[str], str]:
    """Start a new control epoch: earlier completions and validations no longer count.

    Returns (status, epoch, control thread ids to post the feedback on, claim).
    """
    if not feedback.strip():
        raise Rejected("--feedback is required (blank after trimming)")
    claim = new_claim()
    with unit_of_work(engine) as session:
        run = lock_run(session, run_id)
        if RunStatus(run.status) in (RunStatus.CLOSED, RunStatus.CLOSING):
            raise Rejected(f"run {run_id} is {run.status}; it cannot iterate")
        run.control_epoch += 1
        writer = writer_for(session, settings, actor, utcnow(), claim)
        if run.status == RunStatus.COMPLETED.value:
            transition(
                session,
                writer,
                run,
                RunStatus.RUNNING,
                f"iterate (epoch {run.control_epoch}): {feedback.strip()[:500]}",
            )
        threads = (
            session.execute(
                select(ForumControlThread.thread_id).where(ForumControlThread.run_id == run_id)
            )
            .scalars()
            .all()
        )
        return run.status, run.control_epoch, list(threads), claim


def set_agent_status(
    engine: Engine, settings: Settings, run_id: str, agent_name: str, status: str, actor: Actor
) -> tuple[str, str]:
    """Report an agent's status (e.g. failed); the run follows (a failed agent fails the run)."""
    claim = new_claim()
    with unit_of_work(engine) as session:
        lock_run(session, run_id)
        agent = session.get(RunAgent, {"run_id": run_id, "agent_name": agent_name})
        if agent is None:
            raise NotFound(f"agent {agent_name} is not in run {run_id}")
        agent.status, agent.updated_at = status, utcnow()
        session.flush()
        return advance_run(session, settings, run_id, None, claim), claim
