"""Soak: ``metawsm worker --pool solo`` loses nothing and keeps going while its workers are
SIGKILLed every 2 to 3 s with commands flowing.

The supervisor must restart every killed worker (they were ready and working: never a failure to
start) and never give up; what a killed worker held is re-driven by reconciliation, as beat would
(the test runs reconcile and drain itself). At the end every command is applied exactly once: none
lost, none duplicated, none dead; and the supervisor still runs its workers.

Duration: ``METAWSM_SOAK_S`` seconds of kills, 40 by default (what CI runs, about a minute in
all). The long form, five minutes::

    METAWSM_SOAK_S=300 ./scripts/test tests/fault/test_solo_worker_soak.py

Posts go to any thread opened so far, its open possibly still in flight. (Should a post die
here after its thread's open was re-driven, that is the known ordering issue of a command that
arrives before its thread's open, not the supervisor.)
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select

from metawsm.bootstrap import Container
from metawsm.messages.commands import AnyCommand
from metawsm.services import outbox
from metawsm.services.submit import FINAL_STATUSES, make_command, submit
from metawsm.settings import Settings
from metawsm.storage.models import ForumCommand, ForumOutbox
from metawsm.storage.uow import unit_of_work
from metawsm.transport.redis_server import RedisServer
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import (
    FAST,
    SubprocessWorker,
    all_final,
    assert_applied_exactly_once,
    client_container,
    redrive_until,
    settled,
    subprocess_worker,
    wait_until,
)

SOAK_S = float(os.environ.get("METAWSM_SOAK_S", "40"))
WORKERS = 2
KILL_EVERY_S = (2.0, 3.0)
REDRIVE_EVERY_S = 0.5  # what beat's reconciliation and drain do, more often
REDRIVE_AGE_S = 5.0  # a message lost with a killed worker is published again after this
POSTS_PER_BATCH = 8
IN_FLIGHT = 24  # submitted and not final yet: the submitter waits below this

pytestmark = [pytest.mark.fault, pytest.mark.timeout(SOAK_S + 240)]


@pytest.fixture
def soak_settings(db_url: str, private_redis: RedisServer) -> Settings:
    """Fast settings on this test's Redis, with the production default of 5 attempts.

    The re-drive age stays well above a worker's start-up (seconds on a busy machine), as in
    production (60 s): shorter, reconciliation piles up copies of messages while no worker is
    ready to take them, and copies past the attempt limit are counted as failed deliveries.
    """
    return settings_for(
        db_url,
        private_redis.url,
        **{**FAST, "retry_max_attempts": 5, "outbox_redrive_age_s": REDRIVE_AGE_S},
    )


def _command(command_type: str, **payload: str) -> AnyCommand:
    return make_command(command_type, dict(payload), actor_type="agent", actor_name="agent-1")


def _count(ops: Container, *where: object) -> int:
    with unit_of_work(ops.engine, readonly=True) as s:
        return int(s.execute(select(func.count()).where(*where)).scalar_one())


def _supervisor_lines(worker: SubprocessWorker) -> str:
    log = worker.log_path.read_text(errors="replace")
    return "\n".join(line for line in log.splitlines() if "/solo-pool]" in line)


def _stuck(ops: Container, worker: SubprocessWorker) -> str:
    """What is not final or not done, and the supervisor's last messages (for a failure)."""
    with unit_of_work(ops.engine, readonly=True) as s:
        commands = s.execute(
            select(
                ForumCommand.command_id,
                ForumCommand.command_type,
                ForumCommand.status,
                ForumCommand.delivery_attempts,
                ForumCommand.reason,
            ).where(ForumCommand.status != "applied")
        ).all()
        rows = s.execute(
            select(
                ForumOutbox.message_id,
                ForumOutbox.topic,
                ForumOutbox.status,
                ForumOutbox.publish_count,
                ForumOutbox.deliveries,
                ForumOutbox.sent_at,
                ForumOutbox.last_error,
            ).where(ForumOutbox.status != "done")
        ).all()
    lines = _supervisor_lines(worker).splitlines()[-12:]
    return (
        f"commands not applied: {[tuple(c) for c in commands[:20]]}\n"
        f"outbox rows not done: {[tuple(r) for r in rows[:20]]}\n"
        f"workers: {sorted(worker.group_pids() - {worker.pid})}\n"
        "supervisor:\n" + "\n".join(lines)
    )


@dataclass
class Soak:
    """The workload (a new thread, posts to threads opened so far) and the killer, driven by
    tick()."""

    ops: Container
    worker: SubprocessWorker
    rng: random.Random
    commands: list[AnyCommand] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)
    kills: int = 0
    next_kill_at: float = 0.0
    next_redrive_at: float = 0.0

    def tick(self) -> bool:
        """Kill a worker and re-drive when due; True (for use inside a wait predicate). Fails
        as soon as the supervisor has exited."""
        if not self.worker.alive():
            raise AssertionError(
                f"the supervisor exited with {self.worker.proc.returncode} after {self.kills} "
                f"kills; its messages:\n{_supervisor_lines(self.worker)}"
            )
        now = time.monotonic()
        if now >= self.next_kill_at and self._kill_a_worker():
            self.next_kill_at = now + self.rng.uniform(*KILL_EVERY_S)
        if now >= self.next_redrive_at:
            outbox.reconcile(self.ops.engine, self.ops.settings)
            outbox.drain(self.ops.engine, self.ops.publisher, self.ops.settings)
            self.next_redrive_at = now + REDRIVE_EVERY_S
        return True

    def _kill_a_worker(self) -> bool:
        workers = sorted(self.worker.group_pids() - {self.worker.pid})
        if not workers:
            return False  # all being restarted: kill at the next tick
        os.kill(self.rng.choice(workers), signal.SIGKILL)
        self.kills += 1
        return True

    def submit_batch(self) -> None:
        """One new thread, and posts to threads opened so far."""
        thread_id = f"t-{len(self.threads)}"
        self._submit(
            _command("open_thread", thread_id=thread_id, ticket="TCK-1", title="T", body="?")
        )
        self.threads.append(thread_id)
        for _ in range(POSTS_PER_BATCH):
            target = self.rng.choice(self.threads)
            self._submit(_command("add_post", thread_id=target, body=f"post {len(self.commands)}"))

    def _submit(self, command: AnyCommand) -> None:
        assert submit(self.ops.runtime, command).published
        self.commands.append(command)

    def in_flight(self) -> int:
        """Commands accepted and not final yet."""
        return _count(self.ops, ForumCommand.status.notin_(FINAL_STATUSES))


def test_solo_workers_killed_every_few_seconds_lose_nothing_and_the_supervisor_keeps_going(
    soak_settings: Settings, tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    with (
        client_container(soak_settings) as ops,
        subprocess_worker(soak_settings, tmp_path / "w", WORKERS, "solo") as worker,
    ):
        soak = Soak(ops, worker, random.Random(seed))
        started = time.monotonic()
        soak.next_kill_at = started + soak.rng.uniform(*KILL_EVERY_S)
        while time.monotonic() - started < SOAK_S:
            soak.submit_batch()
            try:
                wait_until(lambda: soak.tick() and soak.in_flight() <= IN_FLIGHT, 30)
            except AssertionError as exc:
                raise AssertionError(
                    f"commands stopped flowing (seed {seed}):\n{_stuck(ops, worker)}"
                ) from exc
        kills_s = time.monotonic() - started

        ids = [c.command_id for c in soak.commands]
        try:
            redrive_until(
                ops, lambda: all_final(ops.engine, ids) and settled(ops.engine), 90, "final"
            )
        except AssertionError as exc:
            raise AssertionError(f"not all final (seed {seed}):\n{_stuck(ops, worker)}") from exc
        wait_until(
            lambda: len(worker.group_pids() - {worker.pid}) == WORKERS,
            30,
            f"{WORKERS} solo workers running again; log:\n{worker.log_tail()}",
        )
        assert worker.alive(), f"the supervisor exited; log:\n{worker.log_tail()}"
        log = worker.log_path.read_text(errors="replace")
        redriven = _count(ops, ForumOutbox.publish_count > 1)
        summary = (
            f"seed {seed}: {len(ids)} commands, {soak.kills} kills in {kills_s:.0f} s, "
            f"{redriven} messages re-driven"
        )
        print(summary)
        assert "giving up" not in log and "cannot start" not in log, summary
        assert "restarting in" not in log, f"a restart was held back ({summary})"
        assert soak.kills >= int(SOAK_S / (KILL_EVERY_S[1] + 1)), f"kills all along ({summary})"
        assert log.count("was killed by SIGKILL") == soak.kills, "each kill seen, then restarted"
        assert redriven, f"no kill caught a worker holding a message: nothing tested ({summary})"
        assert len(ids) > 2 * len(soak.threads), f"mostly posts ({summary})"
        expected = Counter(str(c.payload.thread_id) for c in soak.commands)
        assert_applied_exactly_once(ops.engine, ids, dict(expected))
