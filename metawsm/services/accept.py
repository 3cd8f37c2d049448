"""Accepting a command: the ledger row and its outbox row, written against the driver.

This is the one accept: :func:`metawsm.services.submit.submit` runs it in a SQLAlchemy unit of
work (on the connection's driver connection), the command line in a driver transaction of its
own (``cli/options.py``), which imports no SQLAlchemy (docs/performance.md, "Command-line
start-up"). Both publish the staged message after commit. Also here: reading a command's
outcome and whether its events are projected, which the waits poll (``services/waiting.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from metawsm.errors import CommandIdReused
from metawsm.identity import Identity
from metawsm.messages.plain import PlainCommand
from metawsm.ops.catalogue import COMMANDS_ACCEPTED
from metawsm.ops.increments import count, record_on_reader
from metawsm.services.outbox_rows import OutboxMessage, add_outbox_row
from metawsm.storage.dbapi import Reader, json_value, utc

if TYPE_CHECKING:  # the message models are loaded by whoever built the command
    from metawsm.messages.commands import AnyCommand

    # A command to accept: a model, or one checked without pydantic (messages/plain.py).
    Acceptable = AnyCommand | PlainCommand

FINAL_STATUSES = ("applied", "rejected", "dead")
# The projector's name in the projection ledger (services/projections.py PROJECTION).
PROJECTION = "forum_views_v1"
# What makes a known command id the same command: its type, payload and actor.
_IDENTITY = ("command_type", "actor_type", "actor_name", "payload")

_COLUMNS = "command_id, command_type, status, reason, thread_id, delivery_attempts"
SELECT_OUTCOME = f"SELECT {_COLUMNS} FROM forum_commands WHERE command_id = :cid"
_SELECT_KNOWN = (
    f"SELECT {_COLUMNS}, payload, accepted_at FROM forum_commands WHERE command_id = :cid"
)
_INSERT_COMMAND = (
    "INSERT INTO forum_commands (command_id, command_type, payload, status, reason, thread_id,"
    " delivery_attempts, accepted_at, updated_at, finished_at, token_id) VALUES (:command_id,"
    " :command_type, :payload, :status, :reason, :thread_id, :delivery_attempts, :accepted_at,"
    " :updated_at, :finished_at, :token_id)"
)
UNPROJECTED = (
    "SELECT e.event_id FROM forum_events e WHERE e.command_id = :cid AND NOT EXISTS"
    " (SELECT 1 FROM forum_projection_events l"
    " WHERE l.projection = :projection AND l.event_id = e.event_id) LIMIT 1"
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

    def unpublished(self, error: str) -> Outcome:
        """This outcome, saying the publish failed with ``error`` (the drainer will send it)."""
        return Outcome(**{**self.__dict__, "published": False, "publish_error": error})


@dataclass(frozen=True)
class Accepted:
    """What accepting did: the outcome, the message to publish after commit (None when the
    command id was known: nothing was written) and the command as accepted (its actor is the
    acting identity's)."""

    outcome: Outcome
    message: OutboxMessage | None
    command: Acceptable


def outcome_of(row: Any) -> Outcome:
    """Outcome of a ledger row (a mapping, an ORM object or a row with the same columns)."""
    get = row.__getitem__ if isinstance(row, dict) else row.__getattribute__
    return Outcome(
        command_id=get("command_id"),
        command_type=get("command_type"),
        status=get("status"),
        reason=get("reason"),
        thread_id=get("thread_id"),
        delivery_attempts=int(get("delivery_attempts")),
    )


def target_thread(command: Acceptable) -> str | None:
    """The thread a command will act on (a control signal's is its control thread)."""
    from metawsm.domain.forum import control_thread_id

    if isinstance(command, PlainCommand):
        payload = command.payload
        if command.command_type == "control_signal":
            return control_thread_id(payload["run_id"], payload["agent_name"])
        thread_id: str | None = payload.get("thread_id")
        return thread_id
    from metawsm.messages.commands import ControlSignal, command_thread_id

    if isinstance(command, ControlSignal):
        return control_thread_id(command.payload.run_id, command.payload.agent_name)
    return command_thread_id(command)


def wire_form(command: Acceptable) -> dict[str, Any]:
    """The command as JSON data, as it is stored and sent."""
    if isinstance(command, PlainCommand):
        return command.wire
    return command.model_dump(mode="json")


def ledger_row(command: Acceptable, now: datetime) -> dict[str, Any]:
    """A new ``forum_commands`` row for ``command``, status accepted (column values)."""
    return {
        "command_id": command.command_id,
        "command_type": command.command_type,
        "payload": wire_form(command),
        "status": "accepted",
        "reason": None,
        "thread_id": target_thread(command),
        "delivery_attempts": 0,
        "accepted_at": now,
        "updated_at": now,
        "finished_at": None,
    }


def accept(
    db: Reader,
    command: Acceptable,
    topic: str,
    now: datetime,
    *,
    identity: Identity | None = None,
) -> Accepted:
    """Write the ledger row (accepted) and the outbox row of ``command`` in ``db``'s
    transaction, as ``identity``: the command's actor is set from it (whatever the request
    said) and the rules the identity alone decides are checked first
    (:mod:`metawsm.services.authorization`). A known command id is a no-op (its outcome as it
    stands).

    ``identity`` None is for metawsm's own in-process callers that build the command themselves
    (drills, tests): the command's actor stands and no role rule is checked. Every entrypoint
    acting for someone (the CLI, the API) passes the identity.

    Raises:
        Forbidden: the identity may not ask for this command; nothing is written.
        CommandIdReused: the id is known for a different command; nothing is written.
    """
    if identity is not None:
        from metawsm.services.authorization import acting_as, authorize_command
        from metawsm.services.scope import check_scope

        command = acting_as(command, identity)
        authorize_command(identity, command)
        check_scope(db, identity, command)
    known = db.rows(_SELECT_KNOWN, {"cid": command.command_id})
    if known:
        _check_same_command(db, known[0], command)
        return Accepted(outcome_of(known[0]), None, command)
    row = ledger_row(command, now)
    db.execute(
        _INSERT_COMMAND,
        {
            **row,
            "payload": db.json(row["payload"]),
            "accepted_at": db.time(now),
            "updated_at": db.time(now),
            "token_id": identity.token_id if identity else None,
        },
    )
    message = add_outbox_row(
        db,
        message_id=command.command_id,
        kind="command",
        topic=topic,
        key=row["thread_id"],
        payload=row["payload"],
        now=now,
    )
    # Counted in the transaction that accepts it (the CLI's driver transaction or submit's unit
    # of work): metawsm_commands_accepted_total is true whoever accepted.
    record_on_reader(db, [count(COMMANDS_ACCEPTED, command_type=command.command_type)])
    outcome = Outcome(
        command.command_id, command.command_type, "accepted", None, row["thread_id"], 0
    )
    return Accepted(outcome, message, command)


def _check_same_command(db: Reader, known: dict[str, Any], command: Acceptable) -> None:
    """A known id is idempotent only for the same command.

    Raises:
        CommandIdReused: naming the earlier command and what differs.
    """
    wire = wire_form(command)
    payload = json_value(known["payload"], db.dialect)
    differs = [name for name in _IDENTITY if payload.get(name) != wire.get(name)]
    if differs:
        thread = f" on thread {known['thread_id']}" if known["thread_id"] else ""
        accepted_at = utc(known["accepted_at"])
        assert accepted_at is not None
        raise CommandIdReused(
            f"command id {command.command_id} was already used for a {known['command_type']}"
            f" command{thread}, accepted at {accepted_at.isoformat()} and now"
            f" {known['status']}; this {command.command_type} command differs in"
            f" {', '.join(differs)}: use a new --command-id (the same id is for retrying the"
            " same command)"
        )


def read_outcome(db: Reader, command_id: str) -> Outcome | None:
    """The current outcome of a command, or None if it was never accepted."""
    rows = db.rows(SELECT_OUTCOME, {"cid": command_id})
    return outcome_of(rows[0]) if rows else None


def is_projected(db: Reader, command_id: str) -> bool:
    """True when every event the command wrote is in the read models."""
    return not db.rows(UNPROJECTED, {"cid": command_id, "projection": PROJECTION})


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
    from metawsm.messages.commands import parse_command

    data = _command_data(
        command_type, payload, actor_type, actor_name, command_id, correlation_id, causation_id
    )
    return parse_command({**data, "issued_at": data["issued_at"].isoformat()})


def make_plain_command(
    command_type: str,
    payload: dict[str, object],
    *,
    actor_type: str,
    actor_name: str,
    command_id: str | None = None,
    causation_id: str | None = None,
) -> Acceptable:
    """:func:`make_command`'s command, checked without pydantic when messages/plain.py can
    vouch for it (what a command line sends: no pydantic imported), else by the models.

    Raises:
        pydantic.ValidationError: naming each field and the rule it broke.
    """
    from metawsm.messages import plain

    data = _command_data(
        command_type, payload, actor_type, actor_name, command_id, None, causation_id
    )
    try:
        return plain.command(data)
    except plain.Unchecked:
        from metawsm.messages.commands import parse_command

        return parse_command({**data, "issued_at": data["issued_at"].isoformat()})


def _command_data(
    command_type: str,
    payload: dict[str, object],
    actor_type: str,
    actor_name: str,
    command_id: str | None,
    correlation_id: str | None,
    causation_id: str | None,
) -> dict[str, Any]:
    from metawsm.ids import new_id

    return {
        "command_id": command_id or new_id("cmd"),
        "command_type": command_type,
        "schema_version": 1,
        "issued_at": datetime.now(UTC),
        "actor_type": actor_type,
        "actor_name": actor_name,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "payload": payload,
    }
