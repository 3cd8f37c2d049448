"""What a worker does with one message: count the delivery, handle it once, record the outcome.

Celery tasks are thin adapters over these functions. The order of steps is the point:
1. validate the message (invalid: dead-letter at once);
2. count the delivery in the database. A message the broker says was delivered before (Redis
   restores every unacked message with ``redelivered`` set), or a Celery retry, is counted in its
   own transaction BEFORE any work, so a worker killed mid-task cannot loop forever: past the
   limit the message is dead-lettered. A first delivery is counted by the handling transaction
   itself (one transaction instead of two); if it dies with its worker, the redelivery is
   counted first, so at most one attempt goes uncounted;
3. run the handler in one unit of work that also marks the command applied;
4. publish what the unit of work staged in the outbox.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, bindparam, insert, select, update

from metawsm.errors import InvalidMessage, Rejected
from metawsm.messages.commands import AnyCommand, parse_command
from metawsm.messages.common import Actor
from metawsm.messages.events import Event, parse_event
from metawsm.services import handlers, projections
from metawsm.services.deadletters import Failure, dead_letter
from metawsm.services.eventlog import EventWriter
from metawsm.services.outbox import Publisher, mark_done, publish_staged
from metawsm.services.submit import ledger_row
from metawsm.services.threads import ThreadStore
from metawsm.settings import Settings
from metawsm.storage.models import ForumCommand, ForumOutbox, table
from metawsm.storage.types import utcnow
from metawsm.storage.uow import connection_unit, lock_event_log, unit_of_work
from metawsm.topics import Topics

COMMANDS = table(ForumCommand)
OUTBOX = table(ForumOutbox)
_INSERT_COMMAND = insert(COMMANDS)
_COMMAND_STATE = select(COMMANDS.c.status, COMMANDS.c.delivery_attempts).where(
    COMMANDS.c.command_id == bindparam("cid")
)
_COUNT_COMMAND = (
    update(COMMANDS)
    .where(COMMANDS.c.command_id == bindparam("cid"), COMMANDS.c.status == "accepted")
    .values(
        delivery_attempts=COMMANDS.c.delivery_attempts + 1,
        updated_at=bindparam("now"),
    )
)
_FINISH_COMMAND = (
    update(COMMANDS)
    .where(COMMANDS.c.command_id == bindparam("cid"))
    .values(
        status=bindparam("status"),
        thread_id=bindparam("tid"),
        reason=bindparam("reason"),
        delivery_attempts=COMMANDS.c.delivery_attempts + bindparam("inc"),
        updated_at=bindparam("now"),
        finished_at=bindparam("now"),
    )
)
_COUNT_EVENT = (
    update(OUTBOX)
    .where(OUTBOX.c.message_id == bindparam("mid"))
    .values(deliveries=OUTBOX.c.deliveries + 1)
)
_EVENT_DELIVERIES = select(OUTBOX.c.deliveries).where(OUTBOX.c.message_id == bindparam("mid"))


# apply_command's answer when a first delivery finds the ledger already at the delivery limit
# (earlier copies died with their workers): the caller must count it first and dead-letter it.
PAST_LIMIT = "past_limit"


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
    """Count one delivery of ``command`` on its own; returns (ledger status, attempts so far)."""
    now = utcnow()
    with connection_unit(rt.engine) as conn:
        status, attempts = _ledger_state(conn, command, now)
        if status == "accepted":
            conn.execute(_COUNT_COMMAND, {"cid": command.command_id, "now": now})
            attempts += 1
        elif status in ("applied", "rejected"):
            # A duplicate of a finished command (e.g. redriven twice): its effect is there, so its
            # outbox row is done; left 'sent', reconciliation would re-publish it forever.
            mark_done(conn, [command.command_id], now)
        return status, attempts


def _ledger_state(conn: Connection, command: AnyCommand, now: Any) -> tuple[str, int]:
    row = conn.execute(_COMMAND_STATE, {"cid": command.command_id}).first()
    if row is None:
        # Delivered without a ledger row (sent by hand, or the ledger was reset): the message
        # itself is the record of acceptance.
        conn.execute(_INSERT_COMMAND, ledger_row(command, now))
        return "accepted", 0
    return str(row.status), int(row.delivery_attempts)


def apply_command(rt: Runtime, command: AnyCommand, *, count_delivery: bool = False) -> str:
    """Handle the command once; returns its final status (applied, rejected, or as it was).

    With ``count_delivery`` the handling transaction also counts this delivery (the fast path
    for a first delivery; see the module docstring); it returns :data:`PAST_LIMIT`, changing
    nothing, when the ledger shows the delivery limit already reached.
    """
    try:
        status, writer = _apply(rt, command, count_delivery)
    except Rejected as exc:
        return reject(rt, command.command_id, str(exc), count_delivery=count_delivery)
    if writer is not None:
        publish_staged(rt.engine, rt.publisher, writer.messages, rt.settings)
    return status


def _apply(
    rt: Runtime, command: AnyCommand, count_delivery: bool
) -> tuple[str, EventWriter | None]:
    now = utcnow()
    with unit_of_work(rt.engine) as session:
        # Serialise handlers on PostgreSQL before reading any state, so invariants are checked
        # against the latest commit and event sequences follow commit order (SQLite: no-op).
        lock_event_log(session)
        conn = session.connection()
        status, attempts = _ledger_state(conn, command, now)
        if status != "accepted":
            mark_done(conn, [command.command_id], now)
            return status, None
        if count_delivery and attempts >= rt.settings.retry_max_attempts:
            return PAST_LIMIT, None
        writer = EventWriter(
            session=session,
            settings=rt.settings,
            topics=rt.topics,
            claim=None,
            now=now,
            actor=Actor(type=command.actor_type, name=command.actor_name),
            command_id=command.command_id,
            correlation_id=command.correlation_id,
            causation_id=command.causation_id,
        )
        ctx = handlers.HandlerContext(
            session=session, writer=writer, now=now, threads=ThreadStore(conn)
        )
        thread_id = handlers.HANDLERS[command.command_type](ctx, command)
        ctx.threads.save()
        _finish(conn, command.command_id, "applied", thread_id, None, count_delivery, now)
        mark_done(conn, [command.command_id], now)
    return "applied", writer


def _finish(
    conn: Connection,
    command_id: str,
    status: str,
    thread_id: str | None,
    reason: str | None,
    count_delivery: bool,
    now: Any,
) -> None:
    params = {
        "cid": command_id,
        "status": status,
        "tid": thread_id,
        "reason": reason,
        "inc": 1 if count_delivery else 0,
        "now": now,
    }
    conn.execute(_FINISH_COMMAND, params)


def reject(rt: Runtime, command_id: str, reason: str, *, count_delivery: bool = False) -> str:
    """Mark the command rejected with ``reason`` (final; never retried)."""
    now = utcnow()
    with connection_unit(rt.engine) as conn:
        row = conn.execute(
            select(COMMANDS.c.status, COMMANDS.c.thread_id).where(
                COMMANDS.c.command_id == command_id
            )
        ).first()
        status = str(row.status) if row is not None else "rejected"
        if row is not None and status == "accepted":
            _finish(conn, command_id, "rejected", row.thread_id, reason[:2000], count_delivery, now)
            status = "rejected"
        mark_done(conn, [command_id], now)
        return status


def count_event_delivery(rt: Runtime, message_id: str) -> int:
    """Count one delivery of an event message to its subscriber; returns deliveries so far."""
    with connection_unit(rt.engine) as conn:
        conn.execute(_COUNT_EVENT, {"mid": message_id})
        deliveries = conn.execute(_EVENT_DELIVERIES, {"mid": message_id}).scalar()
        return int(deliveries) if deliveries is not None else 1


class Consumer(Protocol):
    """Applies one event for a subscriber, once; False when it was already applied.

    ``count_delivery``: also count this delivery in the consumer's own transaction (only asked
    of consumers registered with ``counts_delivery=True``).
    """

    def __call__(
        self, rt: Runtime, event: Event, message_id: str, *, count_delivery: bool = False
    ) -> bool:
        """Apply ``event``."""


def _project(rt: Runtime, event: Event, message_id: str, *, count_delivery: bool = False) -> bool:
    return projections.project(rt.engine, event, message_id, count_delivery=count_delivery)


CONSUMERS: dict[str, Consumer] = {"projector": _project}
# Consumers whose transaction counts a first delivery itself; the others (with side effects
# outside the database, like notifications) are always counted in a transaction of their own
# before they run.
COUNTING_CONSUMERS: set[str] = {"projector"}


def register_consumer(
    subscriber: str, consumer: Consumer, *, counts_delivery: bool = False
) -> None:
    """Add the consumer of an integration subscriber (see metawsm.topics.INTEGRATIONS)."""
    CONSUMERS[subscriber] = consumer
    if counts_delivery:
        COUNTING_CONSUMERS.add(subscriber)
    else:
        COUNTING_CONSUMERS.discard(subscriber)


def consume_event(
    rt: Runtime, subscriber: str, event: Event, message_id: str, *, count_delivery: bool = False
) -> bool:
    """Apply ``event`` for ``subscriber`` once; False when it was already applied."""
    return CONSUMERS[subscriber](rt, event, message_id, count_delivery=count_delivery)


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
