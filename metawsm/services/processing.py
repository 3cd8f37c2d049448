"""What a worker does with one message: count the delivery, handle it once, record the outcome.

Celery tasks are thin adapters over these functions. The order of steps is the point:
1. validate the message (invalid: dead-letter at once);
2. count the delivery in the database, before any work (a worker killed mid-task cannot loop
   forever: past the limit the message is dead-lettered);
3. run the handler in one unit of work that also marks the command applied;
4. publish what the unit of work put in the outbox.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, select

from metawsm.errors import InvalidMessage, Rejected
from metawsm.messages.commands import AnyCommand, parse_command
from metawsm.messages.common import Actor
from metawsm.messages.events import Event, parse_event
from metawsm.routing import Topics
from metawsm.services import handlers, projections
from metawsm.services.deadletters import Failure, dead_letter
from metawsm.services.eventlog import EventWriter
from metawsm.services.outbox import Publisher, mark_done, new_claim, publish_claimed
from metawsm.services.submit import ledger_row
from metawsm.settings import Settings
from metawsm.storage.models import ForumCommand, ForumOutbox
from metawsm.storage.types import utcnow
from metawsm.storage.uow import lock_event_log, unit_of_work


@dataclass(frozen=True)
class Runtime:
    """What processing needs, built once per worker process by the composition root."""

    engine: Engine
    settings: Settings
    topics: Topics
    publisher: Publisher


def validate_command(raw: Any) -> AnyCommand:
    """Parse a wire command, or raise :class:`InvalidMessage` with the validation errors."""
    try:
        return parse_command(raw)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid command: {_errors(exc)}") from exc


def validate_event(raw: Any) -> Event:
    """Parse a wire event, or raise :class:`InvalidMessage` with the validation errors."""
    try:
        return parse_event(raw)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid event: {_errors(exc)}") from exc


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def count_command_delivery(rt: Runtime, command: AnyCommand) -> tuple[str, int]:
    """Count one delivery of ``command``; returns (ledger status, attempts so far)."""
    now = utcnow()
    with unit_of_work(rt.engine) as session:
        row = session.get(ForumCommand, command.command_id)
        if row is None:
            # Delivered without a ledger row (sent by hand, or the ledger was reset): the message
            # itself is the record of acceptance.
            row = ledger_row(command, now)
            session.add(row)
        if row.status == "accepted":
            row.delivery_attempts += 1
            row.updated_at = now
        elif row.status in ("applied", "rejected"):
            # A duplicate of a finished command (e.g. redriven twice): its effect is there, so its
            # outbox row is done; left 'sent', reconciliation would re-publish it forever.
            mark_done(session, [command.command_id], now)
        return row.status, row.delivery_attempts


def apply_command(rt: Runtime, command: AnyCommand) -> str:
    """Handle the command once; returns its final status (applied, rejected, or as it was)."""
    claim = new_claim()
    try:
        status = _apply(rt, command, claim)
    except Rejected as exc:
        return reject(rt, command.command_id, str(exc))
    publish_claimed(rt.engine, rt.publisher, claim, rt.settings)
    return status


def _apply(rt: Runtime, command: AnyCommand, claim: str) -> str:
    now = utcnow()
    with unit_of_work(rt.engine) as session:
        # Serialise handlers on PostgreSQL before reading any state, so invariants are checked
        # against the latest commit and event sequences follow commit order (SQLite: no-op).
        lock_event_log(session)
        row = session.get(ForumCommand, command.command_id)
        if row is None or row.status != "accepted":
            mark_done(session, [command.command_id], now)
            return row.status if row is not None else "unknown"
        writer = EventWriter(
            session=session,
            settings=rt.settings,
            topics=rt.topics,
            claim=claim,
            now=now,
            actor=Actor(type=command.actor_type, name=command.actor_name),
            command_id=command.command_id,
            correlation_id=command.correlation_id,
            causation_id=command.causation_id,
        )
        ctx = handlers.HandlerContext(session=session, writer=writer, now=now)
        row.thread_id = handlers.HANDLERS[command.command_type](ctx, command)
        row.status, row.updated_at, row.finished_at = "applied", now, now
        mark_done(session, [command.command_id], now)
    return "applied"


def reject(rt: Runtime, command_id: str, reason: str) -> str:
    """Mark the command rejected with ``reason`` (final; never retried)."""
    now = utcnow()
    with unit_of_work(rt.engine) as session:
        row = session.get(ForumCommand, command_id)
        if row is not None and row.status == "accepted":
            row.status, row.reason = "rejected", reason[:2000]
            row.updated_at = row.finished_at = now
        mark_done(session, [command_id], now)
        return row.status if row is not None else "rejected"


def count_event_delivery(rt: Runtime, message_id: str) -> int:
    """Count one delivery of an event message to its subscriber; returns deliveries so far."""
    with unit_of_work(rt.engine) as session:
        row = session.execute(
            select(ForumOutbox).where(ForumOutbox.message_id == message_id)
        ).scalar_one_or_none()
        if row is None:
            return 1
        row.deliveries += 1
        return row.deliveries


Consumer = Callable[[Runtime, Event, str], bool]


def _project(rt: Runtime, event: Event, message_id: str) -> bool:
    return projections.project(rt.engine, event, message_id)


CONSUMERS: dict[str, Consumer] = {"projector": _project}


def register_consumer(subscriber: str, consumer: Consumer) -> None:
    """Add the consumer of an integration subscriber (see metawsm.routing.INTEGRATIONS)."""
    CONSUMERS[subscriber] = consumer


def consume_event(rt: Runtime, subscriber: str, event: Event, message_id: str) -> bool:
    """Apply ``event`` for ``subscriber`` once; False when it was already applied."""
    return CONSUMERS[subscriber](rt, event, message_id)


def dead_letter_message(
    rt: Runtime,
    *,
    message_id: str,
    kind: str,
    task_name: str,
    payload: Any,
    error: BaseException | str,
    attempts: int,
) -> None:
    """Dead-letter a message with the error (and the current traceback, if any)."""
    run_id = None
    if isinstance(payload, dict):
        inner = payload.get("payload")
        run_id = payload.get("run_id") or (inner.get("run_id") if isinstance(inner, dict) else None)
    tb = traceback.format_exc() if isinstance(error, BaseException) else None
    dead_letter(
        rt.engine,
        Failure(
            message_id=message_id,
            kind=kind,
            task_name=task_name,
            topic=task_name,
            payload=payload if isinstance(payload, dict) else {"raw": repr(payload)[:10_000]},
            error=str(error),
            traceback=tb if tb and tb.strip() != "NoneType: None" else None,
            attempts=attempts,
            run_id=str(run_id) if run_id else None,
        ),
    )
