"""Outbox rows: what a writer adds in its transaction, and publishing them after commit.

Written against the driver (:class:`metawsm.storage.dbapi.Reader`), so the one way a row is
added serves every writer: the units of work on SQLAlchemy (through their connection's driver
connection) and the command line's accept, which imports no SQLAlchemy
(docs/performance.md, "Command-line start-up"). The relay, drainer and reconciliation are in
:mod:`metawsm.services.outbox`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metawsm.errors import MetawsmError

if TYPE_CHECKING:  # for typing only: runtime.py and dbapi.py load SQLAlchemy types / drivers
    from metawsm.runtime import Publisher
    from metawsm.storage.dbapi import Reader

INSERT_OUTBOX = (
    "INSERT INTO forum_outbox (message_id, kind, topic, message_key, payload, status, attempts,"
    " publish_count, deliveries, next_attempt_at, sent_at, lease_until, lease_owner,"
    " created_at, updated_at) VALUES (:message_id, :kind, :topic, :message_key, :payload,"
    " :status, :attempts, :publish_count, :deliveries, :next_attempt_at, :sent_at,"
    " :lease_until, :lease_owner, :created_at, :updated_at)"
)
NOT_ATTEMPTED = "not attempted: broker failed earlier in the batch"


@dataclass(frozen=True)
class OutboxMessage:
    """A message staged in the outbox by a writer, to publish right after its commit.

    ``redelivery``: it was handed to the broker before (a redriven dead letter).
    """

    message_id: str
    topic: str
    payload: dict[str, Any]
    redelivery: bool = False


@dataclass
class RelayReport:
    """What one relay pass did."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def add_outbox_row(
    db: Reader,
    *,
    message_id: str,
    kind: str,
    topic: str,
    key: str | None,
    payload: dict[str, Any],
    now: datetime,
) -> OutboxMessage:
    """Add an outbox row, staged ``sent``, in the caller's transaction.

    The unit of work that owns the transaction publishes the returned message right after
    commit (:func:`publish_messages`); nothing else publishes it.
    """
    at = db.time(now)
    db.execute(
        INSERT_OUTBOX,
        {
            "message_id": message_id,
            "kind": kind,
            "topic": topic,
            "message_key": key,
            "payload": db.json(payload),
            "status": "sent",
            "attempts": 0,
            "publish_count": 1,
            "deliveries": 0,
            "next_attempt_at": at,
            "sent_at": at,
            "lease_until": None,
            "lease_owner": None,
            "created_at": at,
            "updated_at": at,
        },
    )
    return OutboxMessage(message_id, topic, payload)


def publish_messages(
    publisher: Publisher, messages: Sequence[OutboxMessage]
) -> tuple[RelayReport, dict[str, str]]:
    """Publish staged messages in write order: the report and ``{message id: error}`` of those
    not published (after a broker failure the rest are not attempted: they would fail alike).
    The caller puts the failed rows back to ``pending`` for the drainer."""
    report = RelayReport(claimed=len(messages))
    failed: dict[str, str] = {}
    for index, message in enumerate(messages):
        try:
            publisher.publish(
                message.topic, message.message_id, message.payload, message.redelivery
            )
            report.sent += 1
        except MetawsmError as exc:
            failed[message.message_id] = str(exc)
            for later in messages[index + 1 :]:
                failed[later.message_id] = NOT_ATTEMPTED
            break
    report.failed = len(failed)
    report.errors = sorted(set(failed.values()))
    return report, failed
