"""Redis going away — down before a submit, crashed mid-run, frozen — loses no command.

The database is the record of what was accepted; the drainer and the reconciliation sweep (what
beat runs) re-publish whatever Redis refused or lost, and idempotent handlers absorb duplicates.
The mid-run outages use a real prefork worker in a subprocess, so its own reconnection is tested.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from metawsm.bootstrap import Container
from metawsm.messages.commands import AnyCommand
from metawsm.services import outbox
from metawsm.services.submit import Outcome, make_command, read_outcome, submit
from metawsm.settings import Settings
from metawsm.storage.models import ForumOutbox
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import (
    FAST,
    Pipeline,
    all_final,
    assert_applied_exactly_once,
    client_container,
    redrive_until,
    settled,
    wait_until,
)
from tests.fixtures.redis import ControlledRedisServer
from tests.fixtures.workers import SubprocessWorker, subprocess_worker

pytestmark = pytest.mark.fault

WARM_THREADS = 4
# How long Redis stays frozen: as long as a submit used to block on it before accepting gave up
# after the publish timeout (three 5 s socket timeouts), so workers ride out as long a freeze.
FROZEN_S = 15.0


def _open(thread_id: str) -> AnyCommand:
    payload = {"thread_id": thread_id, "ticket": "TCK-1", "title": f"T {thread_id}", "body": "?"}
    return make_command("open_thread", payload, actor_type="agent", actor_name="agent-1")


def _post(thread_id: str, n: int) -> AnyCommand:
    payload = {"thread_id": thread_id, "body": f"post {n}"}
    return make_command("add_post", payload, actor_type="agent", actor_name="agent-1")


class Submitter(threading.Thread):
    """Submits commands one after another (as agents would) until stopped; keeps the outcomes.

    Alternates new threads with posts on threads opened before the fault, so no command waits
    on another one still in flight.
    """

    def __init__(self, settings: Settings, pace_s: float = 0.02) -> None:
        super().__init__(name="submitter", daemon=True)
        self.settings = settings
        self.pace_s = pace_s
        self.commands: list[AnyCommand] = []
        self.outcomes: list[Outcome] = []
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        """Submit until stopped."""
        try:
            with client_container(self.settings) as c:
                n = 0
                while not self._halt.is_set():
                    command = _open(f"t-new-{n}") if n % 2 else _post(f"t-{n % WARM_THREADS}", n)
                    outcome = submit(c.runtime, command)
                    with self._lock:
                        self.commands.append(command)
                        self.outcomes.append(outcome)
                    n += 1
                    self._halt.wait(self.pace_s)  # pacing the load, not synchronising
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        """Stop submitting and wait for the thread; re-raise what it failed with."""
        self._halt.set()
        self.join(timeout=60)
        assert not self.is_alive(), "the submitter did not stop"
        if self.error is not None:
            raise self.error

    def count(self) -> int:
        """Commands submitted so far."""
        with self._lock:
            return len(self.outcomes)

    def published_since(self, mark: int, published: bool) -> int:
        """Submits after the first ``mark`` that were (or were not) published at once."""
        with self._lock:
            return sum(1 for o in self.outcomes[mark:] if o.published is published)

    def expected_posts(self) -> dict[str, int]:
        """Posts per thread once every submitted command is applied."""
        posts = {f"t-{i}": 1 for i in range(WARM_THREADS)}
        for command in self.commands:
            thread_id = str(getattr(command.payload, "thread_id", ""))
            posts[thread_id] = posts.get(thread_id, 0) + 1
        return posts


@pytest.fixture
def fault_settings(db_url: str, private_redis: ControlledRedisServer) -> Settings:
    """Fast settings on this test's Redis, with the production default of 5 attempts.

    Deliveries cut short by the outage are counted too; the default leaves the same headroom as
    in production.
    """
    return settings_for(db_url, private_redis.url, **{**FAST, "retry_max_attempts": 5})


@pytest.fixture
def ops(fault_settings: Settings) -> Iterator[Container]:
    """What beat and the CLI use: a send-only container with its own engine."""
    with client_container(fault_settings) as container:
        yield container


def _warm_up(ops: Container, worker: SubprocessWorker) -> list[str]:
    """Open the threads the submitter posts to; proves the worker consumes."""
    ids = []
    for i in range(WARM_THREADS):
        command = _open(f"t-{i}")
        assert submit(ops.runtime, command).published
        ids.append(command.command_id)
    what = f"the subprocess worker to apply the first commands; log:\n{worker.log_tail()}"
    wait_until(lambda: all_final(ops.engine, ids), 45, what)
    return ids


def _recover(ops: Container, worker: SubprocessWorker, ids: list[str]) -> None:
    def done() -> bool:
        return all_final(ops.engine, ids) and settled(ops.engine)

    redrive_until(
        ops, done, 60, f"every command applied and projected; worker log:\n{worker.log_tail()}"
    )


def test_a_command_submitted_while_redis_is_down_is_drained_and_applied_once(
    private_idle_pipeline: Pipeline, private_redis: ControlledRedisServer
) -> None:
    p = private_idle_pipeline
    with client_container(p.settings) as cli:
        command = _open("t-1")
        private_redis.stop()
        outcome = submit(cli.runtime, command)
        assert (outcome.status, outcome.published) == ("accepted", False)
        assert "broker unreachable" in (outcome.publish_error or "")
        # While Redis is still down, the drainer tries, fails and keeps the row for later.
        wait_until(
            lambda: outbox.drain(cli.engine, cli.publisher, cli.settings).failed,
            10,
            "a drain attempt while Redis is down",
        )
        with unit_of_work(cli.engine, readonly=True) as s:
            row = s.execute(select(ForumOutbox)).scalar_one()
        assert (row.message_id, row.status, row.attempts) == (command.command_id, "pending", 2)
        assert "broker unreachable" in (row.last_error or "")

        private_redis.start()
        with p.worker():

            def applied() -> bool:
                outbox.drain(cli.engine, cli.publisher, cli.settings)
                current = read_outcome(cli.engine, command.command_id)
                return current is not None and current.status == "applied"

            wait_until(applied, 20, "the drained command to be applied")
            p.settle()
    assert_applied_exactly_once(p.engine, [command.command_id], {"t-1": 1})


def _lasting_processes(worker: SubprocessWorker, pool: str) -> set[int]:
    """Processes that must survive an outage: the main process, and with solo every worker (a
    prefork child running a task when the connection drops is replaced by design:
    worker_cancel_long_running_tasks_on_connection_loss)."""
    return worker.group_pids() if pool == "solo" else {worker.pid}


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_running_worker_recovers_from_a_redis_crash_without_a_restart(
    fault_settings: Settings,
    private_redis: ControlledRedisServer,
    ops: Container,
    tmp_path: Path,
    pool: str,
) -> None:
    with subprocess_worker(fault_settings, tmp_path / "worker", pool=pool) as worker:
        warm = _warm_up(ops, worker)
        processes = _lasting_processes(worker, pool)
        submitter = Submitter(fault_settings)
        submitter.start()
        try:
            wait_until(lambda: submitter.count() >= 10, 20, "commands flowing")
            private_redis.kill()
            mark = submitter.count()
            wait_until(
                lambda: submitter.published_since(mark, False) >= 3, 30, "submits refused by Redis"
            )
            private_redis.start()  # same port, empty: everything it held is gone
            mark = submitter.count()
            wait_until(
                lambda: submitter.published_since(mark, True) >= 10, 30, "submits published again"
            )
        finally:
            submitter.stop()
        ids = warm + [c.command_id for c in submitter.commands]
        _recover(ops, worker, ids)
        assert worker.alive() and _lasting_processes(worker, pool) == processes, worker.log_tail()
    assert_applied_exactly_once(ops.engine, ids, submitter.expected_posts())


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_running_worker_recovers_from_a_frozen_redis_without_a_restart(
    fault_settings: Settings,
    private_redis: ControlledRedisServer,
    ops: Container,
    tmp_path: Path,
    pool: str,
) -> None:
    with subprocess_worker(fault_settings, tmp_path / "worker", pool=pool) as worker:
        warm = _warm_up(ops, worker)
        processes = _lasting_processes(worker, pool)
        submitter = Submitter(fault_settings)
        submitter.start()
        try:
            wait_until(lambda: submitter.count() >= 10, 20, "commands flowing")
            private_redis.pause()  # SIGSTOP: connections stay open, nothing answers
            paused_at = time.monotonic()
            mark = submitter.count()
            # The freeze lasts FROZEN_S (the length of the fault, not a synchronisation), while
            # the submitter's commands keep being accepted, left to the drainer.
            wait_until(
                lambda: (
                    time.monotonic() - paused_at >= FROZEN_S
                    and submitter.published_since(mark, False) >= 10
                ),
                FROZEN_S + 30,
                "submits accepted without publishing during the freeze",
            )
            frozen_s = time.monotonic() - paused_at
            private_redis.resume()
            mark = submitter.count()
            wait_until(
                lambda: submitter.published_since(mark, True) >= 10, 30, "submits published again"
            )
        finally:
            submitter.stop()
        assert frozen_s >= FROZEN_S
        ids = warm + [c.command_id for c in submitter.commands]
        _recover(ops, worker, ids)
        assert worker.alive() and _lasting_processes(worker, pool) == processes, worker.log_tail()
    assert_applied_exactly_once(ops.engine, ids, submitter.expected_posts())


def test_a_channel_of_a_closed_broker_connection_fails_with_a_connection_error(
    private_redis: ControlledRedisServer,
) -> None:
    # What celery 5.7's consumer does on a connection loss: collect the connection (detaching its
    # transport), then ack a task that finished meanwhile on the old channel. An AttributeError
    # there is "unrecoverable" and the worker exits; a connection error is logged and survived.
    from kombu import Connection
    from redis.exceptions import ConnectionError as RedisConnectionError

    from metawsm.transport import kombu_redis_patch

    kombu_redis_patch.install()
    connection = Connection(private_redis.url)
    channel = connection.default_channel
    channel.qos._delivered["tag-1"] = None  # a delivery still unacked (acks_late)
    connection.collect()
    channel._pool = None  # the pool it had is gone with the connection
    with pytest.raises(RedisConnectionError, match="broker connection of this channel was closed"):
        channel.qos.ack("tag-1")
    assert issubclass(RedisConnectionError, Connection(private_redis.url).connection_errors)


def test_a_channel_keeps_one_redis_client_until_its_pool_is_replaced(
    private_redis: ControlledRedisServer,
) -> None:
    # kombu builds a redis.Redis per publish/ack; ours keeps one per channel and pool.
    from kombu import Connection

    from metawsm.transport import kombu_redis_patch

    kombu_redis_patch.install()
    with Connection(private_redis.url) as connection:
        channel = connection.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
            first.lpush("k", "v")
        channel._pool = None  # a reconnect gives the channel a new pool
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
            assert third.rpop("k") == b"v"
        explicit = object()
        with channel.conn_or_acquire(explicit) as given:
            assert given is explicit
