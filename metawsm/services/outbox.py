"""The transactional outbox and its relay.

Rows are written in the same transaction as the state they announce, by the unit of work
(:mod:`metawsm.services.unit_of_work`), which stages them as ``sent`` and publishes them from
memory right after commit: no read-back and no second transaction when the publish succeeds
(docs/performance.md). A publish that fails puts the rows back to ``pending`` with backoff; a
writer that dies between commit and publish leaves ``sent`` rows that reconciliation re-drives,
as it does for anything Redis lost. The drainer is the safety net: it claims due rows under a
lease, publishes them and records the outcome.

Statuses: ``pending`` (due at ``next_attempt_at``) → ``processing`` (claimed by a drainer under a
lease) → ``sent`` (on the broker) → ``done`` (its consumer committed its effect). Reconciliation
turns a ``sent`` row that is still not ``done`` after a while back into ``pending``: whatever
Redis lost is published again, and idempotent consumers absorb the duplicates.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, update
from sqlalchemy.orm import Session

from metawsm.errors import MetawsmError
from metawsm.ids import new_id
from metawsm.ops.catalogue import OUTBOX_PUBLISH_FAILURES, OUTBOX_REDRIVES
from metawsm.ops.counters import count, record
from metawsm.runtime import Publisher
from metawsm.services.outbox_rows import (
    NOT_ATTEMPTED,
    OutboxMessage,
    RelayReport,
    add_outbox_row,
    publish_messages,
)
from metawsm.settings import Settings
from metawsm.storage import tables
from metawsm.storage.dbapi import on_connection
from metawsm.storage.models import ForumOutbox
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

OUTBOX = tables.forum_outbox
# Prebuilt statements: executed on a Connection they hit SQLAlchemy's compiled cache (~20 µs
# each, against ~200 µs for the same work through the ORM).
_MARK_DONE = (
    update(OUTBOX)
    .where(OUTBOX.c.message_id == bindparam("mid"))
    .values(
        status="done",
        lease_owner=None,
        lease_until=None,
        updated_at=bindparam("now"),
        deliveries=OUTBOX.c.deliveries + bindparam("inc"),
    )
)

Db = Session | Connection


def enqueue(
    db: Db,
    *,
    message_id: str,
    kind: str,
    topic: str,
    key: str | None,
    payload: dict[str, Any],
    now: datetime,
) -> OutboxMessage:
    """Add an outbox row, staged ``sent``, in the caller's transaction (a session or a Core
    connection): :func:`metawsm.services.outbox_rows.add_outbox_row` on its driver connection.

    The unit of work that owns the transaction publishes the returned message right after
    commit (:func:`publish_staged`); nothing else publishes it.
    """
    return add_outbox_row(
        on_connection(_connection(db)),
        message_id=message_id,
        kind=kind,
        topic=topic,
        key=key,
        payload=payload,
        now=now,
    )


def _connection(db: Db) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def new_claim() -> str:
    """A fresh claim token (one per drainer pass)."""
    return new_id("claim")


def mark_done(
    db: Db, message_ids: Iterable[str], now: datetime, *, count_delivery: bool = False
) -> None:
    """Record, inside a consumer's transaction, that these messages had their effect.

    With ``count_delivery`` the same statement also counts this delivery (the consumer's fast
    path, when the broker says the message was not delivered before).
    """
    conn = _connection(db)
    inc = 1 if count_delivery else 0
    for message_id in message_ids:
        conn.execute(_MARK_DONE, {"mid": message_id, "now": now, "inc": inc})


def publish_staged(
    engine: Engine, publisher: Publisher, messages: Sequence[OutboxMessage], settings: Settings
) -> RelayReport:
    """Publish messages staged by :func:`enqueue` (in write order) after their commit.

    Nothing is written when every publish succeeds; rows whose publish failed go back to
    ``pending`` with backoff, for the drainer.
    """
    report, failed = publish_messages(publisher, messages)
    if failed:
        record_failed(engine, failed, settings)
    return report


def record_failed(engine: Engine, failed: dict[str, str], settings: Settings) -> None:
    """Put rows staged ``sent`` whose publish failed back to ``pending``, for the drainer."""
    _record(engine, None, [], failed, settings)


def _publish_claimed(
    engine: Engine, publisher: Publisher, claim: str, settings: Settings
) -> RelayReport:
    """Publish every row held under ``claim``, then record which were sent and which failed."""
    with unit_of_work(engine, readonly=True) as session:
        rows = session.execute(
            select(
                ForumOutbox.message_id,
                ForumOutbox.topic,
                ForumOutbox.payload,
                ForumOutbox.publish_count,
            )
            .where(ForumOutbox.lease_owner == claim, ForumOutbox.status == "processing")
            .order_by(ForumOutbox.id)  # in write order: an open goes out before its posts
        ).all()
    report = RelayReport(claimed=len(rows))
    sent: list[str] = []
    failed: dict[str, str] = {}
    for message_id, topic, payload, publish_count in rows:
        try:
            # Handed over before: the consumer may have died in it without a trace in the
            # ledger (a SIGKILL mid-task rolls its count back), so it counts this one first.
            publisher.publish(topic, message_id, payload, redelivery=publish_count > 0)
            sent.append(message_id)
        except MetawsmError as exc:
            failed[message_id] = str(exc)
            # The broker is down: the rest would fail the same way; leave them to the drainer.
            break
    for message_id, *_ in rows:
        if message_id not in sent and message_id not in failed:
            failed[message_id] = NOT_ATTEMPTED
    _record(engine, claim, sent, failed, settings)
    report.sent, report.failed = len(sent), len(failed)
    report.errors = sorted(set(failed.values()))
    return report


def _record(
    engine: Engine,
    claim: str | None,
    sent: Sequence[str],
    failed: dict[str, str],
    settings: Settings,
) -> None:
    # claim None: rows staged ``sent`` by a writer whose publish failed.
    held = (
        (ForumOutbox.status == "sent")
        if claim is None
        else ((ForumOutbox.status == "processing") & (ForumOutbox.lease_owner == claim))
    )
    now = utcnow()
    with unit_of_work(engine) as session:
        if sent:
            # Only rows still under our claim: a consumer may already have marked one done.
            session.execute(
                update(ForumOutbox)
                .where(
                    ForumOutbox.message_id.in_(list(sent)),
                    ForumOutbox.status == "processing",
                    ForumOutbox.lease_owner == claim,
                )
                .values(
                    status="sent",
                    sent_at=now,
                    updated_at=now,
                    lease_owner=None,
                    lease_until=None,
                    last_error=None,
                    publish_count=ForumOutbox.publish_count + 1,
                )
                .execution_options(synchronize_session=False)
            )
        failures = 0
        for message_id, error in failed.items():
            row = session.execute(
                select(ForumOutbox).where(ForumOutbox.message_id == message_id, held)
            ).scalar_one_or_none()
            if row is None:
                continue
            failures += 1
            if claim is None:
                row.publish_count -= 1  # staged as handed over; it was not
                row.sent_at = None
            row.attempts += 1
            row.status = "pending"
            row.next_attempt_at = now + timedelta(seconds=backoff_s(row.attempts, settings))
            row.lease_owner = row.lease_until = None
            row.last_error = error[:2000]
            row.updated_at = now
        if failures:
            session.flush()
            record(session.connection(), [count(OUTBOX_PUBLISH_FAILURES, failures)])


def backoff_s(attempt: int, settings: Settings) -> float:
    """Exponential backoff with full jitter, capped: seconds before attempt ``attempt + 1``."""
    ceiling = min(settings.retry_backoff_cap_s, settings.retry_backoff_base_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def claim_due(engine: Engine, settings: Settings, claim: str, now: datetime) -> int:
    """Claim up to ``outbox_batch`` due rows: pending and due, or processing with lease expired.

    PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` so parallel drainers never take the same
    row; SQLite serialises the claim with ``BEGIN IMMEDIATE``.
    """
    due = ((ForumOutbox.status == "pending") & (ForumOutbox.next_attempt_at <= now)) | (
        (ForumOutbox.status == "processing") & (ForumOutbox.lease_until < now)
    )
    with unit_of_work(engine) as session:
        query = select(ForumOutbox.id).where(due).order_by(ForumOutbox.id)
        query = query.limit(settings.outbox_batch)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(session.execute(query).scalars())
        if ids:
            session.execute(
                update(ForumOutbox)
                .where(ForumOutbox.id.in_(ids))
                .values(
                    status="processing",
                    lease_owner=claim,
                    lease_until=now + timedelta(seconds=settings.outbox_lease_s),
                    updated_at=now,
                )
            )
    return len(ids)


def drain(engine: Engine, publisher: Publisher, settings: Settings) -> RelayReport:
    """One drainer pass: claim due rows, publish them, record the outcome."""
    claim = new_claim()
    total = RelayReport()
    while claim_due(engine, settings, claim, utcnow()):
        report = _publish_claimed(engine, publisher, claim, settings)
        total.claimed += report.claimed
        total.sent += report.sent
        total.failed += report.failed
        total.errors.extend(report.errors)
        if report.failed:
            break
        claim = new_claim()
    return total


def reconcile(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Re-drive rows published long ago whose consumer never recorded its effect.

    Returns the number of rows made due again. Covers messages Redis lost (flush, restart without
    persistence, a worker killed between BRPOP and ack).
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.outbox_redrive_age_s)
    with unit_of_work(engine) as session:
        result = session.execute(
            update(ForumOutbox)
            .where(ForumOutbox.status == "sent", ForumOutbox.sent_at < cutoff)
            .values(status="pending", next_attempt_at=now, updated_at=now)
        )
        redriven = int(getattr(result, "rowcount", 0) or 0)
        if redriven:
            record(session.connection(), [count(OUTBOX_REDRIVES, redriven)])
    return redriven
