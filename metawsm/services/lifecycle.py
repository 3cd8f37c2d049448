"""Operator actions on runs: stop, resume, iterate, report an agent's status.

Each runs in one transaction and records every status change with its reason.
"""

from __future__ import annotations

from sqlalchemy import select

from metawsm.domain.runs import RunStatus
from metawsm.errors import NotFound, Rejected
from metawsm.identity import Identity
from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services.authorization import agent_status_actor, run_actor
from metawsm.services.control import advance_run
from metawsm.services.runs import lock_run, transition
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage.models import ForumControlThread, RunAgent

STOPPABLE = {
    RunStatus.PLANNING,
    RunStatus.RUNNING,
    RunStatus.AWAITING_GUIDANCE,
    RunStatus.PAUSED,
    RunStatus.FAILED,
}


def stop_run(rt: Runtime, run_id: str, actor: Actor | Identity) -> str:
    """Stop a run (→ stopping → stopped); stopping a stopped run changes nothing.

    Raises:
        Forbidden: ``actor`` is an identity that may not stop this run (nothing changes).
    """
    actor = run_actor(actor, "stop", run_id)
    with UnitOfWork(rt) as uow:
        run = lock_run(uow.session, run_id)
        status = RunStatus(run.status)
        if status is RunStatus.STOPPED:
            return run.status
        if status not in STOPPABLE and status is not RunStatus.STOPPING:
            raise Rejected(f"run {run_id} is {status}; it cannot be stopped")
        writer = uow.events(actor)
        for target in (RunStatus.STOPPING, RunStatus.STOPPED):
            transition(uow.session, writer, run, target, f"stopped by {actor.type}/{actor.name}")
        return run.status


def resume_run(rt: Runtime, run_id: str, actor: Actor | Identity) -> str:
    """Resume a stopped, paused or failed run; then follow its agents' control state.

    Raises:
        Forbidden: ``actor`` is an identity that may not resume this run (nothing changes).
    """
    actor = run_actor(actor, "resume", run_id)
    with UnitOfWork(rt) as uow:
        run = lock_run(uow.session, run_id)
        if RunStatus(run.status) in (RunStatus.RUNNING, RunStatus.AWAITING_GUIDANCE):
            return run.status  # already going: nothing to resume
        writer = uow.events(actor)
        reason = f"resumed by {actor.type}/{actor.name}"
        transition(uow.session, writer, run, RunStatus.RUNNING, reason)
        return advance_run(uow, run_id, None)


def iterate_run(
    rt: Runtime, run_id: str, feedback: str, actor: Actor | Identity
) -> tuple[str, int, list[str]]:
    """Start a new control epoch: earlier completions and validations no longer count.

    Returns (status, epoch, control thread ids to post the feedback on).

    Raises:
        Forbidden: ``actor`` is an identity that may not iterate this run (nothing changes).
    """
    actor = run_actor(actor, "iterate", run_id)
    if not feedback.strip():
        raise Rejected("--feedback is required (blank after trimming)")
    with UnitOfWork(rt) as uow:
        session = uow.session
        run = lock_run(session, run_id)
        if RunStatus(run.status) in (RunStatus.CLOSED, RunStatus.CLOSING):
            raise Rejected(f"run {run_id} is {run.status}; it cannot iterate")
        run.control_epoch += 1
        writer = uow.events(actor)
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
        return run.status, run.control_epoch, list(threads)


def set_agent_status(
    rt: Runtime, run_id: str, agent_name: str, status: str, actor: Actor | Identity
) -> str:
    """Report an agent's status (e.g. failed); the run follows (a failed agent fails the run).

    ``actor`` is who reported it (the status change itself is recorded as metawsm's).

    Raises:
        Forbidden: ``actor`` is an agent identity reporting for another agent or run.
    """
    agent_status_actor(actor, run_id, agent_name)
    with UnitOfWork(rt) as uow:
        session = uow.session
        lock_run(session, run_id)
        agent = session.get(RunAgent, {"run_id": run_id, "agent_name": agent_name})
        if agent is None:
            raise NotFound(f"agent {agent_name} is not in run {run_id}")
        agent.status, agent.updated_at = status, uow.now
        session.flush()
        return advance_run(uow, run_id, None)
