"""Dead letters: messages that failed for good, kept for a human to inspect, redrive or purge.

Redis has no dead-letter queue, so this table is ours. A redrive republishes the message with
its ORIGINAL id, so idempotency still holds: nothing is applied twice. Elements of a queue that
no task could take are kept here too, as kind ``quarantine`` (:mod:`metawsm.services.quarantine`);
they cannot be redriven, only purged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update

from metawsm.errors import NotFound, Rejected
from metawsm.identity import Identity
from metawsm.ops.catalogue import COMMANDS_DEAD, DEAD_LETTER_REDRIVES
from metawsm.ops.counters import count, record
from metawsm.runtime import Runtime
from metawsm.services.authorization import require_dead_letter_manager
from metawsm.services.outbox import enqueue
from metawsm.services.outbox_rows import OutboxMessage
from metawsm.services.quarantine import QUARANTINE_KIND
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage.models import ForumCommand, ForumDeadLetter, ForumOutbox
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work


@dataclass(frozen=True)
class Failure:
    """What failed: the message, where it came from, and why."""

    message_id: str
    kind: str
    task_name: str
    topic: str
    payload: dict[str, Any]
    error: str
    traceback: str | None
    attempts: int
    run_id: str | None = None


def dead_letter(engine: Engine, failure: Failure) -> None:
    """Record the failure (or update the existing row), mark its command dead, stop re-drives."""
    now = utcnow()
    with unit_of_work(engine) as session:
        row = session.execute(
            select(ForumDeadLetter).where(ForumDeadLetter.message_id == failure.message_id)
        ).scalar_one_or_none()
        if row is None:
            first = session.execute(
                select(ForumOutbox.first_failed_at).where(
                    ForumOutbox.message_id == failure.message_id
                )
            ).scalar()
            row = ForumDeadLetter(
                message_id=failure.message_id,
                kind=failure.kind,
                first_failed_at=first or now,
                payload=failure.payload,
            )
            session.add(row)
        row.task_name, row.topic = failure.task_name, failure.topic
        row.error, row.traceback = failure.error[:10_000], failure.traceback
        row.attempts, row.status, row.run_id = failure.attempts, "dead", failure.run_id
        row.last_failed_at = now
        command_type = None
        if failure.kind == "command":
            command_type = _mark_command_dead(session, failure.message_id, failure.error, now)
        # A row whose effect landed stays done (a late copy failing is not the message failing).
        session.execute(
            update(ForumOutbox)
            .where(ForumOutbox.message_id == failure.message_id, ForumOutbox.status != "done")
            .values(status="dead", updated_at=now, lease_owner=None, lease_until=None)
        )
        if command_type is not None:
            session.flush()
            record(session.connection(), [count(COMMANDS_DEAD, command_type=command_type)])


def _mark_command_dead(session: Any, command_id: str, error: str, now: datetime) -> str | None:
    """Mark an accepted command dead; returns its type when it moved (None: it did not)."""
    command = session.get(ForumCommand, command_id)
    if command is not None and command.status == "accepted":
        command.status, command.reason = "dead", f"dead-lettered: {error[:1000]}"
        command.updated_at = command.finished_at = now
        return str(command.command_type)
    return None


def list_dead_letters(engine: Engine, *, include_all: bool = False) -> list[dict[str, Any]]:
    """Dead letters, newest first (only those still dead unless ``include_all``)."""
    with unit_of_work(engine, readonly=True) as session:
        query = select(ForumDeadLetter).order_by(ForumDeadLetter.last_failed_at.desc())
        if not include_all:
            query = query.where(ForumDeadLetter.status == "dead")
        return [as_dict(row) for row in session.execute(query).scalars()]


def show_dead_letter(engine: Engine, message_id: str) -> dict[str, Any]:
    """One dead letter with its payload and traceback.

    Raises:
        NotFound: no dead letter has that message id.
    """
    with unit_of_work(engine, readonly=True) as session:
        row = _get(session, message_id)
        return as_dict(row, full=True)


def redrive(rt: Runtime, message_id: str, *, identity: Identity | None = None) -> dict[str, Any]:
    """Republish a dead message with its original id; its command becomes accepted again.
    Only operators redrive (``identity`` None: metawsm's own in-process caller).

    Raises:
        Forbidden: ``identity`` is not an operator; nothing changes.
        NotFound: no dead letter has that message id.
        Rejected: the dead letter was purged, or is a quarantined element (no task takes it).
    """
    require_dead_letter_manager(identity)
    with UnitOfWork(rt) as uow:
        session, now = uow.session, uow.now
        row = _get(session, message_id)
        if row.kind == QUARANTINE_KIND:
            raise Rejected(
                f"dead letter {message_id} is a quarantined element of {row.topic}, not a message"
                f" any task takes ({row.error[:200]}); it cannot be redriven: inspect it with"
                " `metawsm dlq show`, then purge it"
            )
        if row.status == "purged":
            raise Rejected(f"dead letter {message_id} was purged; it cannot be redriven")
        row.status, row.redriven_at = "redriven", now
        uow.count(count(DEAD_LETTER_REDRIVES))
        if row.kind == "command":
            _reopen_command(session, message_id, now)
        uow.stage(_requeue(uow, row))
    published = uow.report.sent == 1
    return {"message_id": message_id, "published": published, "errors": uow.report.errors}


def _reopen_command(session: Any, command_id: str, now: datetime) -> None:
    command = session.get(ForumCommand, command_id)
    if command is not None and command.status == "dead":
        command.status, command.reason, command.finished_at = "accepted", None, None
        command.delivery_attempts, command.updated_at = 0, now


def _requeue(uow: UnitOfWork, row: ForumDeadLetter) -> OutboxMessage:
    """Put the message's outbox row back to ``sent`` (or write one), to publish after commit.

    A message that went to the broker before goes out marked as a redelivery: its consumer
    counts the delivery before working on it.
    """
    outbox = uow.session.execute(
        select(ForumOutbox).where(ForumOutbox.message_id == row.message_id)
    ).scalar_one_or_none()
    if outbox is None:
        return enqueue(
            uow.conn,
            message_id=row.message_id,
            kind=row.kind,
            topic=row.topic,
            key=None,
            payload=row.payload,
            now=uow.now,
        )
    redelivery = outbox.publish_count > 0
    outbox.status, outbox.sent_at, outbox.publish_count = "sent", uow.now, outbox.publish_count + 1
    outbox.lease_owner = outbox.lease_until = None
    outbox.deliveries, outbox.updated_at = 0, uow.now
    return OutboxMessage(outbox.message_id, outbox.topic, outbox.payload, redelivery)


def purge(
    engine: Engine, message_id: str | None = None, *, identity: Identity | None = None
) -> int:
    """Mark one dead letter (or all still dead) purged; returns how many. Only operators purge
    (``identity`` None: metawsm's own in-process caller).

    Raises:
        Forbidden: ``identity`` is not an operator; nothing changes.
    """
    require_dead_letter_manager(identity)
    with unit_of_work(engine) as session:
        query = update(ForumDeadLetter).where(ForumDeadLetter.status == "dead")
        if message_id is not None:
            _get(session, message_id)
            query = query.where(ForumDeadLetter.message_id == message_id)
        result = session.execute(query.values(status="purged"))
        return int(getattr(result, "rowcount", 0) or 0)


def _get(session: Any, message_id: str) -> ForumDeadLetter:
    row = session.execute(
        select(ForumDeadLetter).where(ForumDeadLetter.message_id == message_id)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no dead letter with message id {message_id}")
    return row  # type: ignore[no-any-return]


def as_dict(row: ForumDeadLetter, *, full: bool = False) -> dict[str, Any]:
    """Plain data for a dead letter (payload and traceback only when ``full``)."""
    data: dict[str, Any] = {
        "message_id": row.message_id,
        "kind": row.kind,
        "task_name": row.task_name,
        "topic": row.topic,
        "error": row.error,
        "attempts": row.attempts,
        "status": row.status,
        "run_id": row.run_id,
        "first_failed_at": row.first_failed_at.isoformat(),
        "last_failed_at": row.last_failed_at.isoformat(),
        "redriven_at": row.redriven_at.isoformat() if row.redriven_at else None,
    }
    if full:
        data["payload"] = row.payload
        data["traceback"] = row.traceback
    return data
