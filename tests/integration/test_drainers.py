"""The outbox relay: parallel drainers, failing publishes and crashed drainers lose nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from metawsm.errors import BrokerUnreachable
from metawsm.services import outbox
from metawsm.services.submit import make_command
from metawsm.settings import Settings
from metawsm.storage.engine import build_engine
from metawsm.storage.models import ForumOutbox
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import accept_only, direct_runtime, wait_until

ROWS = 300


class RecordingPublisher:
    """Records what it publishes; optionally fails from the ``fail_at``-th publish on."""

    def __init__(self, fail_at: int | None = None, latency_s: float = 0.0) -> None:
        self.published: list[str] = []
        self.redelivery: dict[str, bool] = {}
        self.fail_at = fail_at
        self.latency_s = latency_s

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Record ``message_id``, or raise BrokerUnreachable once the failure point is reached."""
        if self.fail_at is not None and len(self.published) + 1 >= self.fail_at:
            raise BrokerUnreachable("broker unreachable at redis://test: connection refused")
        if self.latency_s:
            time.sleep(self.latency_s)  # a broker round-trip, so drainers overlap
        self.published.append(message_id)
        self.redelivery[message_id] = redelivery


def _settings(db_url: str, **overrides: Any) -> Settings:
    base: dict[str, Any] = {"outbox_batch": 25, "outbox_lease_s": 30.0}
    base.update(overrides)
    return settings_for(db_url, **base)


@pytest.fixture
def relay_engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test database."""
    engine = build_engine(settings_for(db_url))
    try:
        yield engine
    finally:
        engine.dispose()


def _accept(engine: Engine, settings: Settings, n: int) -> list[str]:
    """Accept ``n`` commands without publishing them (their rows stay staged ``sent``)."""
    rt = direct_runtime(engine, settings)
    ids = []
    for i in range(n):
        command = make_command(
            "add_post",
            {"thread_id": f"t-{i % 7}", "body": f"post {i}"},
            actor_type="agent",
            actor_name="agent-1",
        )
        assert accept_only(rt, command).status == "accepted"
        ids.append(command.command_id)
    return ids


def _expire_leases(engine: Engine, settings: Settings) -> None:
    """As if every writer crashed between commit and publish, long ago: reconciliation makes
    their staged rows due again."""
    past = utcnow() - timedelta(seconds=settings.outbox_redrive_age_s + 1)
    with unit_of_work(engine) as s:
        s.execute(update(ForumOutbox).values(sent_at=past))
    assert outbox.reconcile(engine, settings) > 0


def _rows(engine: Engine) -> dict[str, ForumOutbox]:
    with unit_of_work(engine, readonly=True) as s:
        return {r.message_id: r for r in s.execute(select(ForumOutbox)).scalars()}


def test_two_drainers_at_once_publish_every_row_exactly_once(
    relay_engine: Engine, db_url: str
) -> None:
    settings = _settings(db_url)
    ids = _accept(relay_engine, settings, ROWS)
    _expire_leases(relay_engine, settings)
    publishers = [RecordingPublisher(latency_s=0.001), RecordingPublisher(latency_s=0.001)]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def drainer(publisher: RecordingPublisher) -> None:
        try:
            start.wait()
            while outbox.drain(relay_engine, publisher, settings).claimed:
                pass
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=drainer, args=(p,)) for p in publishers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads), errors

    first, second = (set(p.published) for p in publishers)
    assert first & second == set(), "a row was claimed and published by both drainers"
    assert sorted(publishers[0].published + publishers[1].published) == sorted(ids)
    assert first and second, "one drainer did all the work: the test did not run them at once"
    rows = _rows(relay_engine)
    # A staged row counts its writer's publish (the writer died before it: we cannot know),
    # then the drainer's.
    assert {(r.status, r.publish_count, r.lease_owner) for r in rows.values()} == {
        ("sent", 2, None)
    }


def test_a_publish_failing_mid_batch_leaves_rows_pending_with_backoff_then_sends_them(
    relay_engine: Engine, db_url: str
) -> None:
    settings = _settings(db_url, retry_backoff_base_s=2.0, retry_backoff_cap_s=4.0)
    ids = _accept(relay_engine, settings, 10)
    _expire_leases(relay_engine, settings)
    failing = RecordingPublisher(fail_at=4)

    report = outbox.drain(relay_engine, failing, settings)
    assert (report.claimed, report.sent, report.failed) == (10, 3, 7)
    sent = failing.published
    assert len(sent) == 3 and set(sent) <= set(ids)
    rows = _rows(relay_engine)
    assert {rows[i].status for i in sent} == {"sent"}
    unsent = [rows[i] for i in ids if i not in sent]
    assert {(r.status, r.attempts, r.lease_owner) for r in unsent} == {("pending", 1, None)}
    for r in unsent:
        # Backoff for a first failure: between half the base and the base, from the failure.
        assert timedelta(seconds=1.0) <= r.next_attempt_at - r.updated_at <= timedelta(seconds=2)
        assert r.next_attempt_at > utcnow()
    errors = sorted(r.last_error or "" for r in unsent)
    assert sum("connection refused" in e for e in errors) == 1, errors
    assert errors.count("not attempted: broker failed earlier in the batch") == 6, errors

    working = RecordingPublisher()
    assert outbox.drain(relay_engine, working, settings).claimed == 0  # not due yet

    def all_sent() -> bool:
        outbox.drain(relay_engine, working, settings)
        return len(working.published) >= len(ids) - 3

    wait_until(all_sent, 15, "the failed rows to come due (each at its own time) and be sent")
    assert sorted(working.published) == sorted(r.message_id for r in unsent)
    rows = _rows(relay_engine)
    assert {(rows[i].status, rows[i].last_error) for i in ids} == {("sent", None)}
    assert {rows[r.message_id].attempts for r in unsent} == {1}


def test_rows_claimed_by_a_crashed_drainer_are_reclaimed_after_the_lease(
    relay_engine: Engine, db_url: str
) -> None:
    settings = _settings(db_url, outbox_lease_s=1.0)
    ids = _accept(relay_engine, settings, 5)
    _expire_leases(relay_engine, settings)
    crashed = outbox.new_claim()
    claimed_at = utcnow()
    assert outbox.claim_due(relay_engine, settings, crashed, claimed_at) == 5  # then it died
    rows = _rows(relay_engine)
    assert {(r.status, r.lease_owner) for r in rows.values()} == {("processing", crashed)}

    survivor = RecordingPublisher()
    assert outbox.drain(relay_engine, survivor, settings).claimed == 0  # the lease still holds
    wait_until(
        lambda: outbox.drain(relay_engine, survivor, settings).sent,
        15,
        "the crashed drainer's lease to expire and its rows to be re-claimed",
    )
    assert survivor.published == ids
    assert utcnow() - claimed_at >= timedelta(seconds=1.0)
    rows = _rows(relay_engine)
    # A staged row counts its writer's publish (the writer died before it: we cannot know),
    # then the drainer's.
    assert {(r.status, r.publish_count, r.lease_owner) for r in rows.values()} == {
        ("sent", 2, None)
    }


def test_a_redriven_row_goes_out_as_a_redelivery_and_a_row_never_handed_over_does_not(
    relay_engine: Engine, db_url: str
) -> None:
    """The consumer counts a redelivery before working on it: its first delivery may have died
    with its worker without a trace in the ledger (docs/contracts.md)."""
    settings = _settings(db_url, retry_backoff_base_s=0.01, retry_backoff_cap_s=0.02)
    never_sent, redriven = _accept(relay_engine, settings, 2)
    rows = _rows(relay_engine)
    staged = outbox.OutboxMessage(
        message_id=never_sent, topic=rows[never_sent].topic, payload=rows[never_sent].payload
    )
    failed = outbox.publish_staged(relay_engine, RecordingPublisher(fail_at=1), [staged], settings)
    assert failed.failed == 1
    _expire_leases(relay_engine, settings)  # the other one was handed over, long ago
    rows = _rows(relay_engine)
    assert {i: (rows[i].status, rows[i].publish_count) for i in (never_sent, redriven)} == {
        never_sent: ("pending", 0),
        redriven: ("pending", 1),
    }
    publisher = RecordingPublisher()
    wait_until(
        lambda: outbox.drain(relay_engine, publisher, settings) and len(publisher.published) == 2,
        15,
        "both rows to be drained",
    )
    assert publisher.redelivery == {never_sent: False, redriven: True}
