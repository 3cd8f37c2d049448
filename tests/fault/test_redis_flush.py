"""A FLUSHALL while commands and events are in flight loses none of them.

Whatever Redis held is gone at once; reconciliation finds the outbox rows that were published
but never had their effect, and the drainer publishes them again.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from metawsm.storage.models import ForumOutbox
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import (
    Pipeline,
    all_final,
    assert_applied_exactly_once,
    client_container,
    redrive_until,
    settled,
    wait_until,
)
from tests.fixtures.redis import ControlledRedisServer

pytestmark = pytest.mark.fault

THREADS = 8


def _sent_by_kind(p: Pipeline) -> dict[str, int]:
    with unit_of_work(p.engine, readonly=True) as s:
        rows = s.execute(
            select(ForumOutbox.kind, func.count())
            .where(ForumOutbox.status == "sent")
            .group_by(ForumOutbox.kind)
        ).all()
    return {kind: int(n) for kind, n in rows}


def test_commands_and_events_flushed_from_redis_are_each_applied_and_projected_once(
    private_idle_pipeline: Pipeline, private_redis: ControlledRedisServer
) -> None:
    p = private_idle_pipeline
    opens = [
        p.command(
            "open_thread", actor="agent", thread_id=f"t-{i}", ticket="TCK-1", title="T", body="?"
        )
        for i in range(THREADS)
    ]
    for command in opens:
        assert p.submit(command).published
    # Commands only: they are applied and their events published, but nobody projects them.
    with p.worker(role="commands"):
        wait_until(lambda: all_final(p.engine, [c.command_id for c in opens]), 20, "opens applied")
    posts = [
        p.command("add_post", thread_id=f"t-{i % THREADS}", body=f"post {i}")
        for i in range(2 * THREADS)
    ]
    more_opens = [
        p.command(
            "open_thread",
            actor="agent",
            thread_id=f"t-late-{i}",
            ticket="TCK-2",
            title="L",
            body="!",
        )
        for i in range(THREADS)
    ]
    for command in posts + more_opens:
        assert p.submit(command).published  # on the broker, with no worker to take them
    in_flight = _sent_by_kind(p)
    assert in_flight == {"command": len(posts) + len(more_opens), "event.projector": THREADS}

    private_redis.flushall()

    commands = opens + posts + more_opens
    ids = [c.command_id for c in commands]
    with client_container(p.settings) as beat, p.worker():
        redrive_until(
            beat,
            lambda: all_final(p.engine, ids) and settled(p.engine),
            60,
            "every flushed command and event to be re-driven and take effect",
        )
    expected = {f"t-{i}": 3 for i in range(THREADS)} | {f"t-late-{i}": 1 for i in range(THREADS)}
    assert_applied_exactly_once(p.engine, ids, expected)
