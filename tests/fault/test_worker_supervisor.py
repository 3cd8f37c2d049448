"""``metawsm worker --pool solo`` under faults: time limits enforced, a killed task not lost.

The solo workers run each task in the process that received it; their supervisor enforces the
hard time limit and the workers the soft one. A task is made to hang by holding SQLite's write
lock from the test: the handler waits for it (the busy timeout is set far beyond the limits).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from metawsm.bootstrap import Container
from metawsm.messages.commands import AnyCommand
from metawsm.services.submit import make_command, submit
from metawsm.settings import Settings
from metawsm.storage.models import ForumCommand
from metawsm.storage.uow import unit_of_work
from metawsm.transport.task_slots import SlotFile
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import (
    FAST,
    accept_only,
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

HARD_LIMIT_S = 3  # the soft limit is max(1, hard - 10) = 1 s


@pytest.fixture
def limit_settings(sqlite_url: str, private_redis: ControlledRedisServer) -> Settings:
    """Short time limits; handlers wait for a busy database far longer than either limit."""
    return settings_for(
        sqlite_url,
        private_redis.url,
        **{**FAST, "task_time_limit_s": HARD_LIMIT_S, "db_busy_timeout_ms": 60_000},
    )


def _command(command_type: str, **payload: str) -> AnyCommand:
    return make_command(command_type, dict(payload), actor_type="agent", actor_name="agent-1")


@contextmanager
def write_lock(settings: Settings) -> Iterator[None]:
    """Hold SQLite's write lock (what a long transaction of another process does)."""
    conn = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def _slot_started(worker: SubprocessWorker) -> float | None:
    """Monotonic start of the task the (single) solo worker runs now, if any."""
    found = list((worker.log_path.parent / "tmp").glob("metawsm-solo-*/slots"))
    if not found:
        return None
    slots = SlotFile(found[0], 1, create=False)
    try:
        state = slots.read(0)
    finally:
        slots.close()
    return state.started if state else None


@contextmanager
def solo_stack(
    settings: Settings, tmp_path: Path, workers: int
) -> Iterator[tuple[Container, SubprocessWorker]]:
    """A client container and ``metawsm worker --pool solo`` that has applied one open."""
    with (
        client_container(settings) as ops,
        subprocess_worker(settings, tmp_path / "w", workers, "solo") as worker,
    ):
        _open_and_wait(ops, worker)
        yield ops, worker


def _open_and_wait(ops: Container, worker: SubprocessWorker) -> None:
    opened = _command("open_thread", thread_id="t-1", ticket="TCK-1", title="T", body="?")
    assert submit(ops.runtime, opened).published
    wait_until(
        lambda: all_final(ops.engine, [opened.command_id]) and settled(ops.engine),
        45,
        f"the worker to apply and project the open; log:\n{worker.log_tail()}",
    )


def _attempts(ops: Container, command_id: str) -> int:
    with unit_of_work(ops.engine, readonly=True) as s:
        row = s.get(ForumCommand, command_id)
        assert row is not None
        return int(row.delivery_attempts)


def _unacked(settings: Settings) -> int:
    client = redis.Redis.from_url(settings.broker_url)
    try:
        return int(client.hlen("unacked"))  # kombu's record of messages held by consumers
    finally:
        client.close()


def _hung_post(ops: Container, worker: SubprocessWorker, hold_until: str) -> AnyCommand:
    """Submit a post that starts while the database is locked; keep it locked until
    ``hold_until`` appears in the worker's log (or the soft limit has passed, for "")."""
    post = _command("add_post", thread_id="t-1", body="stuck")
    accepted = accept_only(ops.runtime, post)
    assert accepted.status == "accepted"
    with write_lock(ops.settings):
        ops.publisher.publish(
            ops.topics.command("add_post"), post.command_id, post.model_dump(mode="json")
        )
        started = wait_until(
            lambda: _slot_started(worker), 20, f"the task to start; log:\n{worker.log_tail()}"
        )
        # A solo worker keeps no Redis-side record of the message it runs (no ack emulation):
        # if it dies, reconciliation re-drives the message from the outbox.
        assert _unacked(ops.settings) == 0
        if hold_until:
            wait_until(
                lambda: hold_until in worker.log_path.read_text(errors="replace"),
                HARD_LIMIT_S + 15,
                f"{hold_until!r} in the worker log:\n{worker.log_tail()}",
            )
        else:
            soft_s = max(1, HARD_LIMIT_S - 10)
            # The condition is the clock itself: the soft limit must have fired by then.
            wait_until(lambda: time.monotonic() > started + soft_s + 0.5, soft_s + 5, "soft limit")
            assert _slot_started(worker) == started, "the task ended while the database was locked"
    return post


def test_the_soft_limit_interrupts_a_task_which_is_counted_and_retried(
    limit_settings: Settings, tmp_path: Path
) -> None:
    with solo_stack(limit_settings, tmp_path, 1) as (ops, worker):
        post = _hung_post(ops, worker, hold_until="")
        wait_until(
            lambda: all_final(ops.engine, [post.command_id]),
            30,
            f"the retried post to be applied; log:\n{worker.log_tail()}",
        )
        log = worker.log_path.read_text(errors="replace")
        assert "soft time limit (1 s) exceeded" in log
        # The interrupted delivery counted, then the retry: two attempts, one effect.
        assert _attempts(ops, post.command_id) == 2
        wait_until(lambda: settled(ops.engine), 20, "every event projected")
    assert_applied_exactly_once(ops.engine, [post.command_id], {"t-1": 2})


def test_the_hard_limit_kills_and_replaces_the_worker_and_the_command_is_redriven_once(
    limit_settings: Settings, tmp_path: Path
) -> None:
    with solo_stack(limit_settings, tmp_path, 1) as (ops, worker):
        post = _hung_post(ops, worker, hold_until="past the hard time limit")
        assert worker.alive(), "the supervisor itself must survive the kill"
        redrive_until(
            ops,
            lambda: all_final(ops.engine, [post.command_id]) and settled(ops.engine),
            45,
            f"the re-driven post to be applied by the replacement; log:\n{worker.log_tail()}",
        )
        # The killed delivery left nothing; the re-driven one was counted before it ran.
        assert _attempts(ops, post.command_id) == 1
    assert_applied_exactly_once(ops.engine, [post.command_id], {"t-1": 2})


def test_sigterm_to_the_supervisor_stops_every_solo_worker_warmly(
    limit_settings: Settings, tmp_path: Path
) -> None:
    with solo_stack(limit_settings, tmp_path, 2) as (_ops, worker):
        os.kill(worker.pid, signal.SIGTERM)  # the supervisor only, as a process manager does
        try:
            code = worker.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the supervisor did not stop; log:\n{worker.log_tail()}")
        assert code == 0, worker.log_tail()
        left = worker.group_pids()
        assert not left, f"processes left in the worker's group: {left}"
        assert not list((tmp_path / "w" / "tmp").glob("metawsm-solo-*")), "slot file left"


def test_a_ready_solo_worker_writes_its_log_directly_after_its_start_up_output_came_through(
    limit_settings: Settings, tmp_path: Path
) -> None:
    """Until it is ready a solo worker's output goes through its supervisor (which keeps the
    tail, to name the cause if the worker cannot start); once ready, the worker writes to the
    supervisor's stdout and stderr itself: no copy per log line."""
    with solo_stack(limit_settings, tmp_path, 1) as (_ops, worker):
        [child] = worker.group_pids() - {worker.pid}
        log = worker.log_path.resolve()
        outputs = {fd: Path(os.readlink(f"/proc/{child}/fd/{fd}")) for fd in (1, 2)}
        wait_until(
            lambda: "[queues]" in worker.log_path.read_text(errors="replace"),
            5,
            f"the start-up banner to come through the supervisor; log:\n{worker.log_tail()}",
        )
    assert outputs == {1: log, 2: log}, "its own stdout and stderr: the supervisor's"
