"""Control signals on the pipeline, and the run lifecycle they drive.

The ``control_signal`` handler posts the signal on the one control thread of (run, agent),
opening that thread first — through the same handler transaction, so its open event is an
ordinary event, and advances the agent's row of the ``run_agent_controls`` read model
(:mod:`~metawsm.services.agent_controls`). The ``run_lifecycle`` consumer folds each agent's
control state from the few signals that decide it and moves the run; every transition records
the event that caused it.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from metawsm.domain.control import target_status
from metawsm.domain.forum import control_thread_id
from metawsm.domain.runs import RunStatus
from metawsm.errors import Forbidden, NotFound, Rejected
from metawsm.ids import new_id
from metawsm.messages import commands as c
from metawsm.messages.control import Completion, GuidanceAnswer, GuidanceRequest, Validation
from metawsm.messages.events import Event
from metawsm.ops import guidance_pending
from metawsm.ops.catalogue import GUIDANCE_ANSWER
from metawsm.ops.counters import observe
from metawsm.runtime import Runtime
from metawsm.services import agent_controls
from metawsm.services.control_fold import latest_controls
from metawsm.services.handlers import (
    HandlerContext,
    answer_forum_thread,
    insert_post,
    insert_thread,
    load_open_thread,
    post_id_for,
)
from metawsm.services.outbox import mark_done
from metawsm.services.runs import SYSTEM, failed_agents, lock_run, transition
from metawsm.services.threads import ThreadRecord
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage.models import (
    ForumControlThread,
    ForumProjectionEvent,
    Run,
    RunAgent,
)

LIFECYCLE = "run_lifecycle_v1"
ControlModel = GuidanceRequest | GuidanceAnswer | Completion | Validation


def control_signal(ctx: HandlerContext, command: c.ControlSignal) -> str:
    """Post a control signal on the run agent's control thread (opening it if needed)."""
    p = command.payload
    run = _signal_run(ctx.session, p.run_id, p.agent_name)
    ticket = p.ticket or run.tickets[0]
    if ticket not in run.tickets:
        raise Rejected(f"ticket {ticket} is not a ticket of run {run.run_id}")
    thread = ensure_control_thread(ctx, run, p.agent_name, ticket)
    return _post_signal(ctx, run, thread, p.signal)


def answer_thread(ctx: HandlerContext, command: c.AnswerThread) -> str:
    """Answer a thread. A control thread takes control signals only: there the answer is the
    ``guidance_answer`` to its agent's pending request (the run resumes, a waiting agent gets
    it), and without a pending request it is rejected, naming the command to use."""
    thread = load_open_thread(ctx, command.payload.thread_id)
    if not thread.is_control:
        return answer_forum_thread(ctx, thread, command.payload.body)
    run_id, agent = thread.run_id or "", thread.agent_name or ""
    run = _signal_run(ctx.session, run_id, agent)
    state = agent_controls.controls_of_run(ctx.session, run).get(agent)
    if state is None or not state.pending:
        raise Rejected(
            f"thread {thread.thread_id} is the control thread of agent {agent} in run {run_id}"
            " and no guidance request is pending; it takes control signals only: metawsm forum"
            f" signal --run-id {run_id} --agent-name {agent} --type <signal type> ..."
        )
    answer = GuidanceAnswer(run_id=run_id, agent_name=agent, answer=command.payload.body)
    return _post_signal(ctx, run, thread, answer)


def _track_guidance(
    ctx: HandlerContext, thread: ThreadRecord, signal: ControlModel, event_id: str
) -> None:
    """Keep the pending request of the thread for the exporter, and time its answer
    (metawsm.ops.guidance_pending)."""
    if isinstance(signal, GuidanceRequest):
        guidance_pending.requested(
            ctx.conn, thread.thread_id, signal.run_id, signal.agent_name, event_id, ctx.now
        )
    elif isinstance(signal, GuidanceAnswer):
        asked_at = guidance_pending.answered(ctx.conn, thread.thread_id)
        if asked_at is not None:
            waited_s = (ctx.now - asked_at).total_seconds()
            ctx.increments.extend(observe(GUIDANCE_ANSWER, waited_s))


def _post_signal(ctx: HandlerContext, run: Run, thread: ThreadRecord, signal: ControlModel) -> str:
    if thread.state == "closed":
        raise Rejected(f"control thread {thread.thread_id} is closed")
    if isinstance(signal, GuidanceAnswer):
        _refuse_own_request(ctx, thread)
    event_id = new_id("fevt")
    wire = signal.model_dump(mode="json", exclude_none=True)
    payload = {"post_id": post_id_for(event_id), "epoch": run.control_epoch, "signal": wire}
    event = ctx.writer.append("forum.control.signal", payload, thread=thread, event_id=event_id)
    record = agent_controls.signal_record(
        event_id, thread.thread_id, event.thread_seq or 0, event.occurred_at, payload
    )
    agent_controls.record_signal(ctx.session, run.run_id, signal.agent_name, record)
    _track_guidance(ctx, thread, signal, event_id)
    insert_post(ctx, thread, event_id, signal.model_dump_json(exclude_none=True), "control")
    ctx.session.execute(
        update(RunAgent)
        .where(RunAgent.run_id == run.run_id, RunAgent.agent_name == signal.agent_name)
        .values(last_signal_at=ctx.now, updated_at=ctx.now)
    )
    return thread.thread_id


def _refuse_own_request(ctx: HandlerContext, thread: ThreadRecord) -> None:
    """Nobody answers their own guidance request (the handler knows who asked).

    Raises:
        Forbidden: ``no_answer_to_own_request``.
    """
    asker = guidance_pending.asked_by(ctx.conn, thread.thread_id)
    if asker == (ctx.actor.type.value, ctx.actor.name):
        raise Forbidden(
            f"{asker[0]}/{asker[1]} asked the pending guidance request on {thread.thread_id}"
            " and may not answer it: someone else answers",
            rule="no_answer_to_own_request",
        )


def _signal_run(session: Session, run_id: str, agent_name: str) -> Run:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    if session.get(RunAgent, {"run_id": run_id, "agent_name": agent_name}) is None:
        raise Rejected(f"agent {agent_name} is not in run {run_id}")
    if run.status == RunStatus.CLOSED.value:
        raise Rejected(f"run {run_id} is closed")
    return run


def ensure_control_thread(
    ctx: HandlerContext, run: Run, agent_name: str, ticket: str
) -> ThreadRecord:
    """The control thread of (run, agent): exactly one, enforced by the mapping's primary key."""
    mapping = ctx.session.get(ForumControlThread, {"run_id": run.run_id, "agent_name": agent_name})
    if mapping is not None:
        existing = ctx.threads.get(mapping.thread_id)
        if existing is None:
            raise NotFound(f"control thread {mapping.thread_id} of {agent_name} is missing")
        return existing
    thread_id = control_thread_id(run.run_id, agent_name)
    ctx.session.add(
        ForumControlThread(
            run_id=run.run_id,
            agent_name=agent_name,
            thread_id=thread_id,
            ticket=ticket,
            created_at=ctx.now,
        )
    )
    agent_controls.open_thread(ctx.session, run.run_id, agent_name, thread_id)
    thread = insert_thread(
        ctx,
        thread_id,
        ticket,
        run.run_id,
        agent_name,
        f"Control thread for {agent_name} in {run.run_id}",
        "normal",
        is_control=True,
        opened_by=SYSTEM,
    )
    event_id = new_id("fevt")
    body = "System-managed control thread for run lifecycle signals."
    payload = {
        "title": thread.title,
        "body": body,
        "priority": "normal",
        "post_id": post_id_for(event_id),
    }
    ctx.writer.append(
        "forum.thread.opened", payload, thread=thread, actor=SYSTEM, event_id=event_id
    )
    insert_post(ctx, thread, event_id, body, "opening", author=SYSTEM)
    return thread


def advance_run(uow: UnitOfWork, run_id: str, cause: str | None) -> str:
    """Move the run as its agents' control state implies; returns its status after.

    The state comes from each agent's deciding signals in the log
    (:mod:`~metawsm.services.control_fold`), not from every signal of the run: the consumer
    decides from the log alone, so one that lags or sees events out of order ends where one that
    kept up does (the ``run_agent_controls`` row says the same when it is written with the log).
    """
    session = uow.session
    run = lock_run(session, run_id)
    states = latest_controls(session, run)
    failed = failed_agents(session, run_id)
    path = target_status(RunStatus(run.status), states, bool(failed))
    writer = uow.events(SYSTEM, causation_id=cause)
    for target in path:
        transition(session, writer, run, target, _reason(target, failed), cause)
    return run.status


def _reason(target: RunStatus, failed: list[str]) -> str:
    return {
        RunStatus.AWAITING_GUIDANCE: "guidance requested",
        RunStatus.RUNNING: "guidance resolved",
        RunStatus.COMPLETED: "every agent signalled completion and a passed validation",
        RunStatus.FAILED: f"agent reported failed: {', '.join(failed)}",
    }.get(target, "control state changed")


def consume_lifecycle(
    rt: Runtime, event: Event, message_id: str, *, count_delivery: bool = False
) -> bool:
    """Lifecycle consumer of control-signal events: idempotent by (consumer, event_id)."""
    with UnitOfWork(rt) as uow:
        session = uow.session
        mark_done(session, [message_id], uow.now, count_delivery=count_delivery)
        if not event.run_id:
            return False
        key = {"projection": LIFECYCLE, "event_id": event.event_id}
        if session.get(ForumProjectionEvent, key) is not None:
            return False
        session.add(ForumProjectionEvent(applied_at=uow.now, **key))
        if session.get(Run, event.run_id) is not None:
            advance_run(uow, event.run_id, event.event_id)
    return True
