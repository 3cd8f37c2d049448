"""A worker SIGKILLed mid-batch — main process and pool children (or the solo supervisor and
its workers) at once — loses nothing.

Its unacked messages stay in Redis until the visibility timeout (an hour), and whatever it took
between BRPOP and ack is simply gone; reconciliation re-drives both from the outbox.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from metawsm.messages.commands import AnyCommand
from metawsm.services.submit import make_command, submit
from metawsm.settings import Settings
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import (
    FAST,
    all_final,
    assert_applied_exactly_once,
    client_container,
    ledger,
    redrive_until,
    settled,
    wait_until,
)
from tests.fixtures.redis import ControlledRedisServer
from tests.fixtures.workers import SubprocessWorker, subprocess_worker

pytestmark = pytest.mark.fault

THREADS = 4
BATCH = 50


def _pause_holding_no_write_lock(worker: SubprocessWorker, settings: Settings) -> None:
    """SIGSTOP ``worker`` at a moment none of its processes holds SQLite's write lock: stopped
    inside a write transaction (a projection, a heartbeat) it would hold the lock for as long
    as it stays stopped, and the submitter would time out behind it (seen once in CI). On
    PostgreSQL the submitter's rows are its own: paused at once."""
    if not settings.database_url.startswith("sqlite:///"):
        worker.pause()
        return
    path = settings.database_url.removeprefix("sqlite:///")

    def paused_without_the_lock() -> bool:
        worker.pause()
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")  # free: nobody is inside a write transaction
            probe.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:  # locked: let it finish that transaction first
            worker.resume()
            return False
        finally:
            probe.close()

    wait_until(paused_without_the_lock, 15, "a moment the worker holds no write lock")


def _command(command_type: str, **payload: str) -> AnyCommand:
    return make_command(command_type, dict(payload), actor_type="agent", actor_name="agent-1")


@pytest.fixture
def kill_settings(db_url: str, private_redis: ControlledRedisServer) -> Settings:
    """Fast settings on this test's Redis, with the production default of 5 attempts."""
    return settings_for(db_url, private_redis.url, **{**FAST, "retry_max_attempts": 5})


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_worker_killed_mid_batch_loses_nothing_once_another_worker_takes_over(
    kill_settings: Settings, tmp_path: Path, pool: str
) -> None:
    opens = [
        _command("open_thread", thread_id=f"t-{i}", ticket="TCK-1", title="T", body="?")
        for i in range(THREADS)
    ]
    batch = [
        _command("add_post", thread_id=f"t-{i % THREADS}", body=f"post {i}")
        if i % 2
        else _command("open_thread", thread_id=f"t-b{i}", ticket="TCK-1", title="B", body="!")
        for i in range(BATCH)
    ]
    with client_container(kill_settings) as ops:

        def run(commands: list[AnyCommand]) -> None:
            for command in commands:
                assert submit(ops.runtime, command).published

        with subprocess_worker(kill_settings, tmp_path / "first", pool=pool) as first:
            run(opens)
            wait_until(
                lambda: all_final(ops.engine, [c.command_id for c in opens]),
                45,
                f"the first worker to apply the opens; log:\n{first.log_tail()}",
            )
            # Frozen while the batch is submitted, so a fast worker cannot keep pace with the
            # submitter and finish the batch before the kill.
            _pause_holding_no_write_lock(first, kill_settings)
            run(batch)
            first.resume()
            wait_until(
                lambda: (
                    sum(s == "applied" for s in ledger(ops.engine).statuses.values()) >= THREADS + 2
                ),
                20,
                "the batch to be under way",
            )
            first.kill()  # SIGKILL to the whole group: no warm shutdown, no requeue
        ids = [c.command_id for c in opens + batch]
        unfinished = sum(s != "applied" for s in ledger(ops.engine).statuses.values())
        assert unfinished, "the worker finished the whole batch before the kill: nothing tested"

        with subprocess_worker(kill_settings, tmp_path / "second", pool=pool) as second:
            redrive_until(
                ops,
                lambda: all_final(ops.engine, ids) and settled(ops.engine),
                60,
                f"the second worker to finish the batch; log:\n{second.log_tail()}",
            )
        # One post per open_thread and per add_post, on the thread each names.
        expected = Counter(str(c.payload.thread_id) for c in opens + batch)
        assert_applied_exactly_once(ops.engine, ids, dict(expected))
