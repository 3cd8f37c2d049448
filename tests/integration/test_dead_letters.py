"""Messages that fail for good land in forum_dead_letters, visibly, and can be redriven once."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from sqlalchemy import select, update

from metawsm.cli import cli
from metawsm.errors import Rejected
from metawsm.services import deadletters, outbox
from metawsm.services.submit import accept, read_outcome, wait_for_outcome
from metawsm.storage.models import ForumCommand, ForumDeadLetter
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import Pipeline, ledger, wait_until
from tests.fixtures.workers import TaskRecorder


def _open_in_flight_forever(p: Pipeline, thread_id: str) -> str:
    """Accept an open_thread command but never publish it: its thread stays 'not yet open'."""
    c = p.container
    command = p.command(
        "open_thread", actor="agent", thread_id=thread_id, ticket="TCK-1", title="T", body="b"
    )
    outcome, staged = accept(c.engine, c.settings, c.topics, command)
    assert outcome.status == "accepted" and staged
    return command.command_id


def _poison(p: Pipeline, thread_id: str = "t-1") -> tuple[str, str]:
    """An add_post that fails with ThreadNotYetOpen on every delivery; returns (open, post) ids."""
    open_id = _open_in_flight_forever(p, thread_id)
    post = p.command("add_post", thread_id=thread_id, body="hello")
    assert p.submit(post).published
    return open_id, post.command_id


def _dead_letter(p: Pipeline, message_id: str) -> dict[str, Any] | None:
    with unit_of_work(p.engine, readonly=True) as s:
        row = s.execute(
            select(ForumDeadLetter).where(ForumDeadLetter.message_id == message_id)
        ).scalar_one_or_none()
        return deadletters.as_dict(row, full=True) if row is not None else None


def _drain_until_applied(p: Pipeline, command_id: str) -> None:
    c = p.container

    def applied() -> bool:
        outbox.reconcile(c.engine, c.settings)
        outbox.drain(c.engine, c.publisher, c.settings)
        outcome = read_outcome(c.engine, command_id)
        return outcome is not None and outcome.status == "applied"

    # The open's row is staged 'sent' but was never published (as if its writer died first):
    # reconciliation makes it due once it is older than outbox_redrive_age_s, then it is drained.
    wait_until(applied, 15, f"{command_id} to be drained and applied")


def test_a_poison_command_is_dead_after_exactly_max_attempts_and_a_redrive_applies_it_once(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    max_attempts = pipeline.settings.retry_max_attempts
    open_id, post_id = _poison(pipeline)

    outcome = wait_for_outcome(pipeline.engine, post_id, 15)
    assert outcome.status == "dead"
    assert outcome.delivery_attempts == max_attempts
    assert "forum thread t-1 is not open yet" in (outcome.reason or "")
    wait_until(lambda: task_runs.results(post_id) == ["dead"], 10, "the last delivery to end")
    assert task_runs.starts(post_id) == max_attempts
    assert len(task_runs.results(post_id, "RETRY")) == max_attempts - 1
    letter = _dead_letter(pipeline, post_id)
    assert letter is not None
    assert (letter["kind"], letter["status"], letter["attempts"]) == (
        "command",
        "dead",
        max_attempts,
    )
    assert letter["topic"] == "forum.commands.add_post"
    assert letter["payload"]["command_id"] == post_id
    assert "ThreadNotYetOpen" in (letter["traceback"] or "")
    assert ledger(pipeline.engine).events_per_command == {}

    _drain_until_applied(pipeline, open_id)  # the fix: the open command finally goes out
    result = deadletters.redrive(
        pipeline.engine, pipeline.container.publisher, pipeline.settings, post_id
    )
    assert result == {"message_id": post_id, "published": True, "errors": []}
    assert wait_for_outcome(pipeline.engine, post_id, 15).status == "applied"
    # A second redrive republishes the same id: the worker finds it applied and does nothing.
    deadletters.redrive(pipeline.engine, pipeline.container.publisher, pipeline.settings, post_id)
    wait_until(lambda: task_runs.results(post_id)[-2:] == ["applied", "applied"], 15, "redrives")
    pipeline.settle()

    seen = ledger(pipeline.engine)
    assert seen.events_per_command == {open_id: 1, post_id: 1}
    assert seen.posts_per_thread == {"t-1": 2}
    letter = _dead_letter(pipeline, post_id)
    assert letter is not None and letter["status"] == "redriven" and letter["redriven_at"]
    with unit_of_work(pipeline.engine, readonly=True) as s:
        row = s.get(ForumCommand, post_id)
        assert row is not None and (row.status, row.delivery_attempts) == ("applied", 1)


def test_a_message_failing_validation_is_dead_lettered_at_once_naming_the_field(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    wire = pipeline.command("add_post", thread_id="t-1", body="x").model_dump(mode="json")
    wire["payload"]["body"] = "   "
    message_id = wire["command_id"]
    pipeline.container.publisher.publish("forum.commands.add_post", message_id, wire)

    letter = wait_until(lambda: _dead_letter(pipeline, message_id), 15, "the dead letter")
    assert (letter["kind"], letter["attempts"], letter["status"]) == ("command", 1, "dead")
    assert letter["error"].startswith("invalid command: ")
    assert "payload.body" in letter["error"], letter["error"]
    assert letter["payload"] == wire
    wait_until(lambda: task_runs.results(message_id) == ["dead"], 10, "the task to end")
    assert task_runs.starts(message_id) == 1  # no retry of a message that can never be valid
    with unit_of_work(pipeline.engine, readonly=True) as s:
        assert s.get(ForumCommand, message_id) is None
    assert ledger(pipeline.engine).event_ids == []


def test_a_command_past_its_delivery_limit_is_dead_lettered_instead_of_run_again(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    assert pipeline.run(
        "open_thread", actor="agent", thread_id="t-1", ticket="TCK-1", title="T", body="b"
    ).final
    c = pipeline.container
    post = pipeline.command("add_post", thread_id="t-1", body="kills workers")
    _outcome, staged = accept(c.engine, c.settings, c.topics, post)
    limit = c.settings.retry_max_attempts
    # Earlier deliveries were counted and then lost with the worker running them (SIGKILL).
    with unit_of_work(c.engine) as s:
        s.execute(
            update(ForumCommand)
            .where(ForumCommand.command_id == post.command_id)
            .values(delivery_attempts=limit)
        )
    # Published afresh (as reconciliation would after Redis lost it): a first delivery to the
    # worker, whose ledger row is already at the limit.
    assert outbox.publish_staged(c.engine, c.publisher, staged, c.settings).sent == 1

    outcome = wait_for_outcome(c.engine, post.command_id, 15)
    assert outcome.status == "dead", outcome
    assert outcome.delivery_attempts == limit + 1
    wait_until(lambda: task_runs.results(post.command_id) == ["dead"], 10, "the task to end")
    letter = _dead_letter(pipeline, post.command_id)
    assert letter is not None and letter["attempts"] == limit + 1
    assert f"limit {limit}" in letter["error"], letter["error"]
    assert post.command_id not in ledger(c.engine).events_per_command
    pipeline.settle()


def _cli(p: Pipeline, *args: str) -> Any:
    env = {
        "METAWSM_DATABASE_URL": p.settings.database_url,
        "METAWSM_BROKER_URL": p.settings.broker_url,
    }
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=True)
    return result


def _json(p: Pipeline, *args: str) -> Any:
    result = _cli(p, *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_the_dlq_cli_lists_shows_redrives_and_purges(pipeline: Pipeline) -> None:
    open_id, post_id = _poison(pipeline)
    assert wait_for_outcome(pipeline.engine, post_id, 15).status == "dead"
    bad = pipeline.command("add_post", thread_id="t-1", body="x").model_dump(mode="json")
    bad["payload"]["body"] = ""
    pipeline.container.publisher.publish("forum.commands.add_post", bad["command_id"], bad)
    wait_until(lambda: _dead_letter(pipeline, bad["command_id"]), 15, "the invalid one dead")

    listed = _json(pipeline, "dlq", "list")["dead_letters"]
    assert {r["message_id"]: r["attempts"] for r in listed} == {
        post_id: pipeline.settings.retry_max_attempts,
        bad["command_id"]: 1,
    }
    assert all(r["status"] == "dead" and "payload" not in r for r in listed)
    plain = _cli(pipeline, "dlq", "list")
    assert plain.exit_code == 0 and post_id in plain.stdout and bad["command_id"] in plain.stdout

    shown = _json(pipeline, "dlq", "show", post_id)
    assert shown["payload"]["command_id"] == post_id and "ThreadNotYetOpen" in shown["traceback"]
    missing = _cli(pipeline, "dlq", "show", "cmd-nope")
    assert missing.exit_code != 0 and "no dead letter with message id cmd-nope" in str(
        missing.exception
    )

    _drain_until_applied(pipeline, open_id)
    redriven = _json(pipeline, "dlq", "redrive", post_id)
    assert redriven == {"errors": [], "message_id": post_id, "published": True}
    assert wait_for_outcome(pipeline.engine, post_id, 15).status == "applied"

    assert _json(pipeline, "dlq", "purge", bad["command_id"]) == {"purged": 1}
    assert _json(pipeline, "dlq", "list")["dead_letters"] == []
    every = {
        r["message_id"]: r["status"]
        for r in _json(pipeline, "dlq", "list", "--all")["dead_letters"]
    }
    assert every == {post_id: "redriven", bad["command_id"]: "purged"}
    refused = _cli(pipeline, "dlq", "redrive", bad["command_id"])
    assert isinstance(refused.exception, Rejected) and "purged" in str(refused.exception)
    usage = _cli(pipeline, "dlq", "purge")
    assert usage.exit_code == 2 and "give a MESSAGE_ID or --all" in usage.output

    pipeline.settle()
    seen = ledger(pipeline.engine)
    assert seen.events_per_command == {open_id: 1, post_id: 1}
    assert seen.posts_per_thread == {"t-1": 2}
