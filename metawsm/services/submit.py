"""Accepting commands durably, publishing them, and waiting for their outcome.

The database is the record of what was accepted: a command is written to ``forum_commands`` with
its outbox row in one unit of work, which publishes it right after commit. If Redis is down the
command stays accepted and the drainer publishes it when Redis is back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, exists, insert, select

from metawsm.domain.forum import control_thread_id
from metawsm.errors import CommandIdReused, WaitTimeout
from metawsm.messages.commands import AnyCommand, ControlSignal, command_thread_id
from metawsm.ops.catalogue import COMMANDS_ACCEPTED
from metawsm.ops.counters import count
from metawsm.runtime import Runtime
from metawsm.services.outbox import enqueue
from metawsm.services.projections import PROJECTION
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage.models import ForumCommand, ForumEvent, ForumProjectionEvent, table
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

FINAL_STATUSES = ("applied", "rejected", "dead")

COMMANDS = table(ForumCommand)
EVENTS = table(ForumEvent)
LEDGER = table(ForumProjectionEvent)
_INSERT_COMMAND = insert(COMMANDS)
_SELECT_COMMAND = select(
    COMMANDS.c.command_id,
    COMMANDS.c.command_type,
    COMMANDS.c.status,
    COMMANDS.c.reason,
    COMMANDS.c.thread_id,
    COMMANDS.c.delivery_attempts,
).where(COMMANDS.c.command_id == bindparam("cid"))


# A known command with what makes it the same command: its type, payload and actor.
_SELECT_KNOWN = _SELECT_COMMAND.add_columns(COMMANDS.c.payload, COMMANDS.c.accepted_at)
_IDENTITY = ("command_type", "actor_type", "actor_name", "payload")


def _check_same_command(known: Any, command: AnyCommand) -> None:
    """A known id is idempotent only for the same command.

    Raises:
        CommandIdReused: naming the earlier command and what differs.
    """
    wire = command.model_dump(mode="json")
    differs = [name for name in _IDENTITY if known.payload.get(name) != wire.get(name)]
    if differs:
        thread = f" on thread {known.thread_id}" if known.thread_id else ""
        raise CommandIdReused(
            f"command id {command.command_id} was already used for a {known.command_type}"
            f" command{thread}, accepted at {known.accepted_at.isoformat()} and now"
            f" {known.status}; this {command.command_type} command differs in"
            f" {', '.join(differs)}: use a new --command-id (the same id is for retrying the"
            " same command)"
        )


@dataclass(frozen=True)
class Outcome:
    """Where a command stands: accepted (in flight), applied, rejected or dead."""

    command_id: str
    command_type: str
    status: str
    reason: str | None
    thread_id: str | None
    delivery_attempts: int
    published: bool = True
    publish_error: str | None = None

    @property
    def final(self) -> bool:
        """True once the command will not change any more (unless redriven)."""
        return self.status in FINAL_STATUSES

    def as_dict(self) -> dict[str, object]:
        """Plain data for JSON output."""
        return {
            "command_id": self.command_id,
            "command_type": self.command_type,
            "status": self.status,
            "reason": self.reason,
            "thread_id": self.thread_id,
            "delivery_attempts": self.delivery_attempts,
            "published": self.published,
            "publish_error": self.publish_error,
        }


def target_thread(command: AnyCommand) -> str | None:
    """The thread a command will act on (a control signal's is its control thread)."""
    if isinstance(command, ControlSignal):
        return control_thread_id(command.payload.run_id, command.payload.agent_name)
    return command_thread_id(command)


def ledger_row(command: AnyCommand, now: datetime) -> dict[str, Any]:
    """A new ``forum_commands`` row for ``command``, status accepted (column values)."""
    return {
        "command_id": command.command_id,
        "command_type": command.command_type,
        "payload": command.model_dump(mode="json"),
        "status": "accepted",
        "reason": None,
        "thread_id": target_thread(command),
        "delivery_attempts": 0,
        "accepted_at": now,
        "updated_at": now,
        "finished_at": None,
    }


def submit(rt: Runtime, command: AnyCommand) -> Outcome:
    """Accept the command durably and publish it right after commit; a known command id is a
    no-op (its outcome as it stands). A broker failure leaves the command to the drainer and
    says so in the outcome (``published`` false, ``publish_error``).

    Raises:
        CommandIdReused: the id is known for a different command; nothing is written.
    """
    with UnitOfWork(rt, orm=False) as uow:
        existing = uow.conn.execute(_SELECT_KNOWN, {"cid": command.command_id}).first()
        if existing is not None:
            _check_same_command(existing, command)
            return outcome_of(existing)
        row = ledger_row(command, uow.now)
        uow.conn.execute(_INSERT_COMMAND, row)
        message = enqueue(
            uow.conn,
            message_id=command.command_id,
            kind="command",
            topic=rt.topics.command(command.command_type),
            key=row["thread_id"],
            payload=row["payload"],
            now=uow.now,
        )
        uow.stage(message)
        uow.count(count(COMMANDS_ACCEPTED, command_type=command.command_type))
    outcome = Outcome(
        command.command_id, command.command_type, "accepted", None, row["thread_id"], 0
    )
    if uow.report.failed:
        return _with_publish_error(outcome, "; ".join(uow.report.errors))
    return outcome


def _with_publish_error(outcome: Outcome, error: str) -> Outcome:
    return Outcome(**{**outcome.__dict__, "published": False, "publish_error": error})


def read_outcome(engine: Engine, command_id: str) -> Outcome | None:
    """The current outcome of a command, or None if it was never accepted."""
    with unit_of_work(engine, readonly=True) as session:
        row = session.connection().execute(_SELECT_COMMAND, {"cid": command_id}).first()
        return outcome_of(row) if row is not None else None


def wait_for_outcome(engine: Engine, command_id: str, timeout_s: float) -> Outcome:
    """Wait until the command is applied, rejected or dead.

    Raises:
        WaitTimeout: the command is still in flight after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.002
    while True:
        outcome = read_outcome(engine, command_id)
        if outcome is not None and outcome.final:
            return outcome
        if time.monotonic() >= deadline:
            state = outcome.status if outcome else "unknown"
            raise WaitTimeout(
                f"command {command_id} still {state} after {timeout_s:g} s;"
                " it stays accepted and will be applied when workers and Redis are available"
            )
        time.sleep(pause)  # polling a condition with a deadline, not synchronising on time
        pause = min(pause * 1.5, 0.1)


_UNPROJECTED = (
    select(EVENTS.c.event_id)
    .where(
        EVENTS.c.command_id == bindparam("cid"),
        ~exists().where(
            LEDGER.c.projection == PROJECTION,
            LEDGER.c.event_id == EVENTS.c.event_id,
        ),
    )
    .limit(1)
)


def wait_for_projection(engine: Engine, command_id: str, timeout_s: float) -> None:
    """Wait until the read models show every event the (applied) command wrote.

    Raises:
        WaitTimeout: an event of the command is still not projected after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.002
    while True:
        with unit_of_work(engine, readonly=True) as session:
            pending = session.connection().execute(_UNPROJECTED, {"cid": command_id}).first()
        if pending is None:
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"command {command_id} is applied but its events are not in the read models"
                f" after {timeout_s:g} s; they will show once an events worker projects them"
            )
        time.sleep(pause)  # polling a condition with a deadline, not synchronising on time
        pause = min(pause * 1.5, 0.1)


def outcome_of(row: Any) -> Outcome:
    """Outcome of a ledger row (an ORM object or a row with the same columns)."""
    return Outcome(
        command_id=row.command_id,
        command_type=row.command_type,
        status=row.status,
        reason=row.reason,
        thread_id=row.thread_id,
        delivery_attempts=row.delivery_attempts,
    )


def make_command(
    command_type: str,
    payload: dict[str, object],
    *,
    actor_type: str,
    actor_name: str,
    command_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> AnyCommand:
    """Build and validate a command (a fresh command id unless one is given).

    Raises:
        pydantic.ValidationError: naming each field and the rule it broke.
    """
    from metawsm.ids import new_id
    from metawsm.messages.commands import parse_command

    return parse_command(
        {
            "command_id": command_id or new_id("cmd"),
            "command_type": command_type,
            "schema_version": 1,
            "issued_at": utcnow().isoformat(),
            "actor_type": actor_type,
            "actor_name": actor_name,
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "payload": payload,
        }
    )
