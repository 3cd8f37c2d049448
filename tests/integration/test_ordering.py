"""Commands of one thread are applied in acceptance order, whatever order they arrive in, and
waiting for a predecessor never spends a command's failure budget (docs/contracts.md)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from metawsm.messages.commands import AnyCommand
from metawsm.services.submit import wait_for_outcome
from metawsm.settings import Settings
from metawsm.storage.models import ForumCommand, ForumEvent
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import FAST, Pipeline, accept_only, all_final, wait_until
from tests.fixtures.workers import TaskRecorder
from tests.integration.test_dead_letters import POISON, _dead_results, _install_poison


@pytest.fixture
def pipeline_settings(db_url: str, redis_url: str) -> Settings:
    """Five attempts (more than Celery's own default of three retries)."""
    return settings_for(db_url, redis_url, **{**FAST, "retry_max_attempts": 5})


def _accepted(p: Pipeline, commands: list[AnyCommand]) -> None:
    for command in commands:
        assert accept_only(p.container.runtime, command).status == "accepted"


def _publish(p: Pipeline, commands: list[AnyCommand]) -> None:
    c = p.container
    for command in commands:
        topic = c.topics.command(command.command_type)
        c.publisher.publish(topic, command.command_id, command.model_dump(mode="json"))


def _applied_order(p: Pipeline, thread_id: str) -> list[str]:
    with unit_of_work(p.engine, readonly=True) as s:
        rows = s.execute(
            select(ForumEvent.command_id)
            .where(ForumEvent.thread_id == thread_id)
            .order_by(ForumEvent.thread_seq)
        ).scalars()
        seen: list[str] = []
        for command_id in rows:
            if command_id not in seen:
                seen.append(str(command_id))
        return seen


def _attempts(p: Pipeline) -> dict[str, tuple[str, int]]:
    with unit_of_work(p.engine, readonly=True) as s:
        rows = s.execute(
            select(ForumCommand.command_id, ForumCommand.status, ForumCommand.delivery_attempts)
        ).all()
    return {cid: (status, attempts) for cid, status, attempts in rows}


def _story(p: Pipeline, thread_id: str) -> list[AnyCommand]:
    return [
        p.command(
            "open_thread", actor="agent", thread_id=thread_id, ticket="T", title="t", body="b"
        ),
        *(p.command("add_post", thread_id=thread_id, body=f"post {i}") for i in range(4)),
        p.command("set_priority", thread_id=thread_id, priority="high"),
        p.command("answer_thread", thread_id=thread_id, body="done"),
        p.command("close_thread", thread_id=thread_id),
    ]


def test_a_close_delivered_before_its_threads_open_is_applied_after_it(
    idle_pipeline: Pipeline,
) -> None:
    p = idle_pipeline
    opened, closed = _story(p, "t-1")[0], _story(p, "t-1")[-1]
    _accepted(p, [opened, closed])
    with p.inprocess_worker():
        _publish(p, [closed])  # the open is accepted but never published (its writer died)
        outcome = wait_for_outcome(p.engine, closed.command_id, 15)
        assert outcome.status == "applied", outcome.reason
        p.settle()
    assert _applied_order(p, "t-1") == [opened.command_id, closed.command_id]
    assert _attempts(p) == {opened.command_id: ("applied", 0), closed.command_id: ("applied", 1)}


@pytest.mark.parametrize("concurrency", [1, 3])
def test_commands_arriving_in_reverse_are_applied_in_acceptance_order(
    idle_pipeline: Pipeline, concurrency: int
) -> None:
    p = idle_pipeline
    threads = {f"t-{n}": _story(p, f"t-{n}") for n in range(3)}
    everything = [command for story in threads.values() for command in story]
    _accepted(p, everything)
    with p.inprocess_worker(count=concurrency):
        _publish(p, list(reversed(everything)))
        ids = [c.command_id for c in everything]
        wait_until(lambda: all_final(p.engine, ids), 30, "every command to finish")
        p.settle()
    for thread_id, story in threads.items():
        assert _applied_order(p, thread_id) == [c.command_id for c in story], thread_id
    attempts = _attempts(p)
    assert {status for status, _ in attempts.values()} == {"applied"}
    # Nobody spent a failed attempt waiting: at most the one delivery that applied it.
    assert max(n for _, n in attempts.values()) <= 1


def test_waiting_behind_a_failing_predecessor_spends_no_attempt(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    p = pipeline
    assert p.run("open_thread", actor="agent", thread_id="t-1", ticket="T", title="t", body="b")
    _install_poison(p)
    poison = p.command("add_post", thread_id="t-1", body=POISON)
    after = p.command("add_post", thread_id="t-1", body="after the poison")
    assert p.submit(poison).published and p.submit(after).published

    assert wait_for_outcome(p.engine, poison.command_id, 30).status == "dead"
    outcome = wait_for_outcome(p.engine, after.command_id, 30)
    assert (outcome.status, outcome.delivery_attempts) == ("applied", 1), outcome
    assert _attempts(p)[poison.command_id] == ("dead", 5)  # the configured limit, not Celery's 3
    wait_until(
        lambda: _dead_results(task_runs, poison.command_id) == ["DeadLettered"], 10, "its task"
    )
    assert len(task_runs.results(poison.command_id, "RETRY")) == 4
    p.settle()
