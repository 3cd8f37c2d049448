"""Forum command handlers: plain functions that re-check the rules against current state.

Each runs inside the caller's unit of work and returns the id of the thread it acted on. A
broken rule raises :class:`Rejected` (final). Commands of a thread reach their handler in
acceptance order (services/delivery.py), so a thread that does not exist when its command is
handled was not opened by any command accepted before it: that is a rejection too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.orm import Session

from metawsm.domain.forum import check_transition, ensure_open
from metawsm.errors import NotFound, Rejected
from metawsm.ids import new_id
from metawsm.messages import commands as c
from metawsm.messages.common import Actor, ThreadState
from metawsm.ops.counters import Increment
from metawsm.services.eventlog import EventWriter
from metawsm.services.threads import ThreadRecord, ThreadStore
from metawsm.storage import tables

_INSERT_POST = insert(tables.forum_posts)
_INSERT_ASSIGNMENT = insert(tables.forum_assignments)
_INSERT_TRANSITION = insert(tables.forum_state_transitions)


@dataclass
class HandlerContext:
    """What a handler may touch: the session, the event writer, the threads and the clock.

    Forum rows go through ``conn`` (prebuilt Core statements) and ``threads``; the session is
    there for the few ORM reads of the control-signal handler (runs, agents).
    """

    session: Session
    writer: EventWriter
    now: datetime
    threads: ThreadStore
    # Metric increments (metawsm.ops.counters) committed with the handler's work.
    increments: list[Increment] = field(default_factory=list)

    @property
    def conn(self) -> Connection:
        """The transaction's connection."""
        return self.session.connection()

    @property
    def actor(self) -> Actor:
        """The actor of the command being handled."""
        return self.writer.actor


def open_thread(ctx: HandlerContext, command: c.OpenThread) -> str:
    """Open a thread with its first post; an existing thread id is a rejection."""
    p = command.payload
    if ctx.threads.get(p.thread_id) is not None:
        raise Rejected(f"forum thread {p.thread_id} already exists")
    thread = insert_thread(ctx, p.thread_id, p.ticket, p.run_id, p.agent_name, p.title, p.priority)
    event_id = new_id("fevt")
    payload = {
        "title": p.title,
        "body": p.body,
        "priority": p.priority.value,
        "post_id": post_id_for(event_id),
    }
    ctx.writer.append("forum.thread.opened", payload, thread=thread, event_id=event_id)
    insert_post(ctx, thread, event_id, p.body, "opening")
    return thread.thread_id


def insert_thread(
    ctx: HandlerContext,
    thread_id: str,
    ticket: str,
    run_id: str | None,
    agent_name: str | None,
    title: str,
    priority: str,
    *,
    is_control: bool = False,
    opened_by: Actor | None = None,
) -> ThreadRecord:
    """Insert a new thread row in state ``new`` (opened by the command's actor unless given)."""
    who = opened_by or ctx.actor
    return ctx.threads.insert(
        ThreadRecord(
            thread_id=thread_id,
            ticket=ticket,
            run_id=run_id,
            agent_name=agent_name,
            title=title,
            state=ThreadState.NEW.value,
            priority=str(priority),
            assignee_type=None,
            assignee_name=None,
            opened_by_type=who.type.value,
            opened_by_name=who.name,
            is_control=is_control,
            last_thread_seq=0,
            opened_at=ctx.now,
            updated_at=ctx.now,
        )
    )


def add_post(ctx: HandlerContext, command: c.AddPost) -> str:
    """Add a post to an open thread."""
    thread = load_open_thread(ctx, command.payload.thread_id)
    post_event(ctx, thread, command.payload.body, answer=False)
    return thread.thread_id


def answer_forum_thread(ctx: HandlerContext, thread: ThreadRecord, body: str) -> str:
    """Add an answering post to a forum thread and move it to ``answered``.

    The ``answer_thread`` command's handler is :func:`metawsm.services.control.answer_thread`,
    which sends answers on control threads to the agent as guidance instead.
    """
    post_event(ctx, thread, body, answer=True)
    _move(ctx, thread, ThreadState.ANSWERED)
    return thread.thread_id


def assign_thread(ctx: HandlerContext, command: c.AssignThread) -> str:
    """Replace the thread's assignee and record the change in the assignment history."""
    p = command.payload
    thread = load_open_thread(ctx, p.thread_id)
    _refuse_control(thread)
    payload = {
        "from_assignee_type": thread.assignee_type,
        "from_assignee_name": thread.assignee_name,
        "to_assignee_type": p.assignee_type.value,
        "to_assignee_name": p.assignee_name,
        "note": p.note,
    }
    event = ctx.writer.append("forum.assigned", payload, thread=thread)
    ctx.conn.execute(
        _INSERT_ASSIGNMENT,
        {
            "thread_id": thread.thread_id,
            "event_id": event.event_id,
            "from_assignee_type": thread.assignee_type,
            "from_assignee_name": thread.assignee_name,
            "to_assignee_type": p.assignee_type.value,
            "to_assignee_name": p.assignee_name,
            "note": p.note,
            "changed_by_type": ctx.actor.type.value,
            "changed_by_name": ctx.actor.name,
            "changed_at": ctx.now,
        },
    )
    thread.assignee_type, thread.assignee_name = p.assignee_type.value, p.assignee_name
    return thread.thread_id


def change_state(ctx: HandlerContext, command: c.ChangeState) -> str:
    """Move the thread along the transition table (to ``closed`` means close)."""
    thread = load_thread(ctx, command.payload.thread_id)
    _refuse_control(thread)
    target = command.payload.to_state
    check_transition(thread.thread_id, ThreadState(thread.state), target)
    if target is ThreadState.CLOSED:
        _close(ctx, thread, None)
    else:
        _move(ctx, thread, target)
    return thread.thread_id


def set_priority(ctx: HandlerContext, command: c.SetPriority) -> str:
    """Change the priority of an open thread (the same priority changes nothing)."""
    thread = load_open_thread(ctx, command.payload.thread_id)
    _refuse_control(thread)
    target = command.payload.priority.value
    if thread.priority != target:
        payload = {"from_priority": thread.priority, "to_priority": target}
        ctx.writer.append("forum.priority.changed", payload, thread=thread)
        thread.priority = target
    return thread.thread_id


def close_thread(ctx: HandlerContext, command: c.CloseThread) -> str:
    """Close the thread; closing a closed thread is an idempotent no-op."""
    thread = load_thread(ctx, command.payload.thread_id)
    _refuse_control(thread)
    if thread.state != ThreadState.CLOSED.value:
        _close(ctx, thread, command.payload.reason)
    return thread.thread_id


def _refuse_control(thread: ThreadRecord) -> None:
    if thread.is_control:
        run_id, agent = thread.run_id, thread.agent_name
        raise Rejected(
            f"thread {thread.thread_id} is a control thread (agent {agent} in run {run_id}); its"
            " state, assignee and priority are managed by metawsm, and it takes control signals"
            f" only: metawsm forum signal --run-id {run_id} --agent-name {agent} --type ..."
        )


def post_event(
    ctx: HandlerContext,
    thread: ThreadRecord,
    body: str,
    *,
    answer: bool,
) -> None:
    """Append a ``forum.post.added`` event and its post row."""
    event_id = new_id("fevt")
    payload = {"post_id": post_id_for(event_id), "body": body, "answer": answer}
    ctx.writer.append("forum.post.added", payload, thread=thread, event_id=event_id)
    insert_post(ctx, thread, event_id, body, "answer" if answer else "reply")


def insert_post(
    ctx: HandlerContext,
    thread: ThreadRecord,
    event_id: str,
    body: str,
    kind: str,
    author: Actor | None = None,
) -> None:
    """Insert the post row written by ``event_id`` (by the command's actor unless given)."""
    who = author or ctx.actor
    ctx.conn.execute(
        _INSERT_POST,
        {
            "post_id": post_id_for(event_id),
            "thread_id": thread.thread_id,
            "event_id": event_id,
            "author_type": who.type.value,
            "author_name": who.name,
            "body": body,
            "kind": kind,
            "created_at": ctx.now,
        },
    )


def post_id_for(event_id: str) -> str:
    """The post created by an event has an id derived from it: one post per event."""
    return f"{event_id}.post"


def _move(ctx: HandlerContext, thread: ThreadRecord, target: ThreadState) -> None:
    if thread.state == target.value:
        return
    _transition_row(ctx, thread, target, "forum.state.changed")
    thread.state = target.value


def _close(ctx: HandlerContext, thread: ThreadRecord, reason: str | None) -> None:
    _transition_row(ctx, thread, ThreadState.CLOSED, "forum.thread.closed", reason)
    thread.state = ThreadState.CLOSED.value
    thread.closed_at = ctx.now


def _transition_row(
    ctx: HandlerContext,
    thread: ThreadRecord,
    target: ThreadState,
    event_type: str,
    reason: str | None = None,
) -> None:
    payload: dict[str, Any] = {"from_state": thread.state}
    if event_type == "forum.thread.closed":
        payload["reason"] = reason
    else:
        payload["to_state"] = target.value
    event = ctx.writer.append(event_type, payload, thread=thread)
    ctx.conn.execute(
        _INSERT_TRANSITION,
        {
            "thread_id": thread.thread_id,
            "event_id": event.event_id,
            "from_state": thread.state,
            "to_state": target.value,
            "changed_by_type": ctx.actor.type.value,
            "changed_by_name": ctx.actor.name,
            "changed_at": ctx.now,
        },
    )


def load_thread(ctx: HandlerContext, thread_id: str) -> ThreadRecord:
    """The thread row.

    Raises:
        NotFound: no command accepted before this one opened it.
    """
    thread = ctx.threads.get(thread_id)
    if thread is None:
        raise NotFound(
            f"forum thread {thread_id} not found (no command accepted before this one opened it)"
        )
    return thread


def load_open_thread(ctx: HandlerContext, thread_id: str) -> ThreadRecord:
    """The thread row; rejects a closed thread."""
    thread = load_thread(ctx, thread_id)
    ensure_open(thread_id, ThreadState(thread.state))
    return thread
