"""Appending events: one ``forum_events`` row plus one outbox row per subscriber.

Used only inside a unit of work (:mod:`metawsm.services.unit_of_work`), so the event, the state
it describes and its outbox rows commit together or not at all; the unit of work publishes the
outbox rows after commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, func, insert, select

from metawsm.ids import new_id
from metawsm.messages.common import Actor, ActorType
from metawsm.messages.events import EVENT_PAYLOADS, Event
from metawsm.services.outbox import enqueue
from metawsm.services.outbox_rows import OutboxMessage
from metawsm.storage import tables
from metawsm.storage.uow import lock_event_log

if TYPE_CHECKING:  # a writer is given its topics; reading events needs none
    from metawsm.topics import Topics

EVENTS = tables.forum_events
_INSERT_EVENT = insert(EVENTS)
_MAX_SEQUENCE = select(func.max(EVENTS.c.sequence))


class ThreadLike(Protocol):
    """What appending an event needs of its thread (an ORM row or a ThreadRecord)."""

    thread_id: str
    ticket: str
    run_id: str | None
    agent_name: str | None
    last_thread_seq: int
    updated_at: datetime


@dataclass
class EventWriter:
    """Appends events within one transaction; remembers what it wrote.

    Each event's outbox rows (one per subscriber) are added to ``staged``, the unit of work's
    list of messages to publish after commit.
    """

    conn: Connection
    topics: Topics
    staged: list[OutboxMessage]
    now: datetime
    actor: Actor
    command_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    written: list[Event] = field(default_factory=list)
    _sequence: int | None = None

    def append(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        thread: ThreadLike | None = None,
        run_id: str | None = None,
        ticket: str | None = None,
        agent_name: str | None = None,
        actor: Actor | None = None,
        event_id: str | None = None,
        touch_thread: bool = True,
    ) -> Event:
        """Append one event (validated against its payload model) and its outbox rows."""
        EVENT_PAYLOADS[event_type].model_validate(payload)
        sequence = self._next_sequence()
        thread_seq = None
        if thread is not None:
            thread.last_thread_seq += 1
            if touch_thread:  # escalations do not reset a thread's SLA clock
                thread.updated_at = self.now
            thread_seq = thread.last_thread_seq
            run_id, ticket, agent_name = thread.run_id, thread.ticket, thread.agent_name
        who = actor or self.actor
        event = Event(
            event_id=event_id or new_id("fevt"),
            event_type=event_type,
            occurred_at=self.now,
            sequence=sequence,
            thread_id=thread.thread_id if thread is not None else None,
            thread_seq=thread_seq,
            run_id=run_id,
            ticket=ticket,
            agent_name=agent_name,
            actor=who,
            correlation_id=self.correlation_id or self.command_id,
            causation_id=self.causation_id or self.command_id,
            payload=payload,
        )
        self.conn.execute(_INSERT_EVENT, _row(event, self.command_id, self.now))
        self._enqueue(event)
        self.written.append(event)
        return event

    def _next_sequence(self) -> int:
        if self._sequence is None:
            # Once per transaction: the lock (SQLite's write lock, PostgreSQL's advisory lock)
            # is held until commit, so no other writer appends in between.
            lock_event_log(self.conn)
            current = self.conn.execute(_MAX_SEQUENCE).scalar()
            self._sequence = int(current or 0)
        self._sequence += 1
        return self._sequence

    def _enqueue(self, event: Event) -> None:
        wire = event.model_dump(mode="json")
        for route in self.topics.event_routes(event.event_type):
            message = enqueue(
                self.conn,
                message_id=f"{event.event_id}:{route.subscriber}",
                kind=f"event.{route.subscriber}",
                topic=route.topic,
                key=event.thread_id,
                payload=wire,
                now=self.now,
            )
            self.staged.append(message)


def _row(event: Event, command_id: str | None, now: datetime) -> dict[str, Any]:
    assert event.sequence is not None
    return {
        "sequence": event.sequence,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "occurred_at": event.occurred_at,
        "recorded_at": now,
        "thread_id": event.thread_id,
        "thread_seq": event.thread_seq,
        "run_id": event.run_id,
        "ticket": event.ticket,
        "agent_name": event.agent_name,
        "actor_type": event.actor.type.value,
        "actor_name": event.actor.name,
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "command_id": command_id,
        "payload": event.payload,
    }


# The stored columns that are Event fields of the same name (the actor is two columns).
EVENT_FIELDS = (
    "event_id",
    "event_type",
    "event_version",
    "occurred_at",
    "sequence",
    "thread_id",
    "thread_seq",
    "run_id",
    "ticket",
    "agent_name",
    "correlation_id",
    "causation_id",
    "payload",
)


def row_to_event(row: Any) -> Event:
    """Rebuild the wire :class:`Event` from its stored row (ORM object or Core row), validated."""
    fields = {name: getattr(row, name) for name in EVENT_FIELDS}
    return Event(actor=Actor(type=row.actor_type, name=row.actor_name), **fields)


def trusted_events(rows: Iterable[Any]) -> list[Event]:
    """Events from their stored rows without validating them again.

    Each row was validated when it was appended (the payload stored is the normalised one), so
    re-folding a thread can skip pydantic; a thread's few actors are built once each.
    """
    actors: dict[tuple[str, str], Actor] = {}
    events = []
    for row in rows:
        who = (row.actor_type, row.actor_name)
        actor = actors.get(who)
        if actor is None:
            actor = actors[who] = Actor.model_construct(type=ActorType(who[0]), name=who[1])
        fields = {name: getattr(row, name) for name in EVENT_FIELDS}
        events.append(Event.model_construct(actor=actor, **fields))
    return events
