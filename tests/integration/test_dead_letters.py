"""Messages that fail for good land in forum_dead_letters, visibly, and can be redriven once."""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from metawsm.cli import cli
from metawsm.errors import Rejected
from metawsm.messages.events import parse_event
from metawsm.services import deadletters, delivery
from metawsm.services.submit import read_outcome, wait_for_outcome
from metawsm.storage.models import ForumCommand, ForumDeadLetter
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import Pipeline, accept_only, ledger, wait_until
from tests.fixtures.workers import TaskRecorder

POISON = "poison"


def _install_poison(p: Pipeline) -> None:
    """Make the database refuse any post whose body is ``poison``: every delivery of such a
    command fails (a transient database error), as a real poison message would."""
    with p.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN"
                " RAISE EXCEPTION 'poison post refused'; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON forum_posts FOR EACH ROW"
                f" WHEN (NEW.body = '{POISON}') EXECUTE FUNCTION refuse_poison()"
            )
        else:
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON forum_posts"
                f" WHEN NEW.body = '{POISON}'"
                " BEGIN SELECT RAISE(ABORT, 'poison post refused'); END"
            )


def _cure_poison(p: Pipeline) -> None:
    """The fix: the database accepts the post again."""
    with p.engine.begin() as conn:
        conn.exec_driver_sql(
            "DROP TRIGGER refuse_poison"
            + (" ON forum_posts" if conn.dialect.name == "postgresql" else "")
        )


def _poison(p: Pipeline, thread_id: str = "t-1") -> tuple[str, str]:
    """An add_post that fails on every delivery; returns (open, post) ids."""
    opened = p.run(
        "open_thread", actor="agent", thread_id=thread_id, ticket="TCK-1", title="T", body="b"
    )
    assert opened.status == "applied"
    _install_poison(p)
    post = p.command("add_post", thread_id=thread_id, body=POISON)
    assert p.submit(post).published
    return opened.command_id, post.command_id


def _dead_results(runs: TaskRecorder, task_id: str) -> list[str]:
    """What the failed executions of ``task_id`` raised: a dead letter fails its task."""
    return [type(exc).__name__ for exc in runs.results(task_id, "FAILURE")]


def _dead_letter(p: Pipeline, message_id: str) -> dict[str, Any] | None:
    with unit_of_work(p.engine, readonly=True) as s:
        row = s.execute(
            select(ForumDeadLetter).where(ForumDeadLetter.message_id == message_id)
        ).scalar_one_or_none()
        return deadletters.as_dict(row, full=True) if row is not None else None


def test_a_poison_command_is_dead_after_exactly_max_attempts_and_a_redrive_applies_it_once(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    max_attempts = pipeline.settings.retry_max_attempts
    open_id, post_id = _poison(pipeline)

    outcome = wait_for_outcome(pipeline.engine, post_id, 15)
    assert outcome.status == "dead"
    assert outcome.delivery_attempts == max_attempts
    assert "poison post refused" in (outcome.reason or "")
    wait_until(
        lambda: _dead_results(task_runs, post_id) == ["DeadLettered"],
        10,
        "the last delivery to end, failed",
    )
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
    assert "DatabaseBusy" in (letter["traceback"] or "")
    assert letter["first_failed_at"] < letter["last_failed_at"]  # kept from the first failure
    assert ledger(pipeline.engine).events_per_command == {open_id: 1}

    _cure_poison(pipeline)
    result = deadletters.redrive(pipeline.container.runtime, post_id)
    assert result == {"message_id": post_id, "published": True, "errors": []}
    assert wait_for_outcome(pipeline.engine, post_id, 15).status == "applied"
    # A second redrive republishes the same id: the worker finds it applied and does nothing.
    deadletters.redrive(pipeline.container.runtime, post_id)
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
    wait_until(
        lambda: _dead_results(task_runs, message_id) == ["DeadLettered"], 10, "the task to end"
    )
    assert task_runs.starts(message_id) == 1  # no retry of a message that can never be valid
    with unit_of_work(pipeline.engine, readonly=True) as s:
        assert s.get(ForumCommand, message_id) is None
    assert ledger(pipeline.engine).event_ids == []


def test_a_command_past_its_delivery_limit_is_dead_lettered_instead_of_run_again(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    _open_t1(pipeline)
    c = pipeline.container
    post = pipeline.command("add_post", thread_id="t-1", body="kills workers")
    accept_only(c.runtime, post)
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
    c.publisher.publish(c.topics.command("add_post"), post.command_id, post.model_dump(mode="json"))

    outcome = wait_for_outcome(c.engine, post.command_id, 15)
    assert outcome.status == "dead", outcome
    assert outcome.delivery_attempts == limit + 1
    wait_until(
        lambda: _dead_results(task_runs, post.command_id) == ["DeadLettered"],
        10,
        "the task to end",
    )
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
    assert shown["payload"]["command_id"] == post_id and "DatabaseBusy" in shown["traceback"]
    missing = _cli(pipeline, "dlq", "show", "cmd-nope")
    assert missing.exit_code != 0 and "no dead letter with message id cmd-nope" in str(
        missing.exception
    )

    _cure_poison(pipeline)
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


def test_a_valid_command_pushed_into_a_queue_without_being_accepted_is_dead_lettered(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    _open_t1(pipeline)
    forged = pipeline.command("add_post", thread_id="t-1", body="injected")
    wire = forged.model_dump(mode="json")
    pipeline.container.publisher.publish("forum.commands.add_post", forged.command_id, wire)

    letter = wait_until(lambda: _dead_letter(pipeline, forged.command_id), 15, "the dead letter")
    assert (letter["kind"], letter["attempts"], letter["status"]) == ("command", 1, "dead")
    assert "not accepted through metawsm: no ledger row" in letter["error"]
    wait_until(
        lambda: _dead_results(task_runs, forged.command_id) == ["DeadLettered"], 10, "the task"
    )
    pipeline.settle()
    assert read_outcome(pipeline.engine, forged.command_id) is None
    assert ledger(pipeline.engine).posts_per_thread == {"t-1": 1}


def _logged_event(p: Pipeline, thread_id: str) -> dict[str, Any]:
    from metawsm.services.eventlog import EVENTS, row_to_event

    with p.engine.connect() as conn:
        row = conn.execute(select(EVENTS).where(EVENTS.c.thread_id == thread_id)).first()
    return row_to_event(row).model_dump(mode="json")


def _open_t1(p: Pipeline) -> None:
    """Open thread t-1 and wait until it is applied."""
    assert p.run(
        "open_thread", actor="agent", thread_id="t-1", ticket="TCK-1", title="T", body="b"
    ).final


def _thread_ids(p: Pipeline) -> set[str]:
    from metawsm.storage.models import ForumThreadView

    with unit_of_work(p.engine, readonly=True) as s:
        return set(s.execute(select(ForumThreadView.thread_id)).scalars())


def test_an_event_not_in_the_log_or_unlike_the_logged_one_is_dead_lettered_never_consumed(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    _open_t1(pipeline)
    pipeline.settle()
    topics = pipeline.container.runtime.topics
    genuine = _logged_event(pipeline, "t-1")

    # An event no handler appended: a thread the log does not have.
    forged = {**genuine, "event_id": "evt-forged-1", "thread_id": "t-2", "sequence": 9_999}
    forged["payload"] = {**genuine["payload"], "title": "injected"}
    topic = topics.event(genuine["event_type"])
    pipeline.container.publisher.publish(topic, "evt-forged-1:projector", forged)
    letter = wait_until(
        lambda: _dead_letter(pipeline, "evt-forged-1:projector:not-logged"), 15, "a dead letter"
    )
    assert "not in the event log: no logged event evt-forged-1" in letter["error"]
    assert letter["kind"] == "event.projector"

    # A logged event's id, with another payload, to a subscriber that has not had it.
    tampered = {**genuine, "payload": {**genuine["payload"], "title": "rewritten"}}
    lifecycle = topics.integration("run_lifecycle")
    message_id = f"{genuine['event_id']}:run_lifecycle"
    pipeline.container.publisher.publish(lifecycle, message_id, tampered)
    letter = wait_until(
        lambda: _dead_letter(pipeline, f"{message_id}:not-logged"), 15, "a dead letter"
    )
    assert f"differs from the logged event {genuine['event_id']} in payload" in letter["error"]

    pipeline.settle()
    assert _thread_ids(pipeline) == {"t-1"}
    assert ledger(pipeline.engine).posts_per_thread == {"t-1": 1}


def test_checking_an_event_against_the_log_takes_no_write_lock(pipeline: Pipeline) -> None:
    # Every delivery compares its event with the log: a read, which must not queue behind (or
    # hold up) the writers for SQLite's write lock. Here another connection holds that lock; the
    # check still answers at once (taking the lock, it waited the busy timeout, 5 s, and failed).
    p = pipeline
    if p.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    _open_t1(p)
    p.settle()
    event = parse_event(_logged_event(p, "t-1"))
    writer = sqlite3.connect(p.engine.url.database or "", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(1) as pool:
            checked = pool.submit(delivery._not_as_logged, p.container.runtime, event)
            assert checked.result(timeout=2) is None
    finally:
        writer.rollback()
        writer.close()
