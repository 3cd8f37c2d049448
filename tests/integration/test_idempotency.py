"""Duplicates and disorder change nothing: one effect per command, one projection per event."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from metawsm.messages.commands import AnyCommand
from metawsm.messages.events import Event
from metawsm.services import queries
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import PROJECTION, project, view_dict
from metawsm.services.rebuild import rebuild
from metawsm.services.submit import make_command, read_outcome
from metawsm.storage.engine import build_engine
from metawsm.storage.models import (
    ForumCommand,
    ForumDeadLetter,
    ForumEvent,
    ForumOutbox,
    ForumPost,
    ForumProjectionEvent,
    ForumThread,
    ForumThreadStat,
    ForumThreadView,
)
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import (
    POSTGRES_ENV,
    migrate_to_head,
    postgres_database,
    settings_for,
)
from tests.fixtures.pipeline import (
    Pipeline,
    accept_only,
    direct_runtime,
    handle_in_process,
    ledger,
    wait_until,
)
from tests.fixtures.workers import TaskRecorder


def _open(p: Pipeline, thread_id: str) -> str:
    outcome = p.run(
        "open_thread", actor="agent", thread_id=thread_id, ticket="TCK-1", title="T", body="b"
    )
    assert outcome.status == "applied", outcome.reason
    return outcome.command_id


def _counts(engine: Engine) -> tuple[int, int, int, int]:
    with unit_of_work(engine, readonly=True) as s:
        return (
            s.execute(select(func.count()).select_from(ForumEvent)).scalar_one(),
            s.execute(select(func.count()).select_from(ForumPost)).scalar_one(),
            s.execute(select(func.count()).select_from(ForumThread)).scalar_one(),
            s.execute(select(func.count()).select_from(ForumProjectionEvent)).scalar_one(),
        )


def _wire(engine: Engine, message_id: str) -> tuple[str, dict[str, Any]]:
    with unit_of_work(engine, readonly=True) as s:
        row = s.execute(
            select(ForumOutbox).where(ForumOutbox.message_id == message_id)
        ).scalar_one()
        return row.topic, dict(row.payload)


def _read_models(engine: Engine) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    with unit_of_work(engine, readonly=True) as s:
        views = [
            view_dict(v)
            for v in s.execute(
                select(ForumThreadView).order_by(ForumThreadView.thread_id)
            ).scalars()
        ]
        stats = [
            (r.ticket, r.run_id, r.state, r.priority, r.thread_count)
            for r in s.execute(select(ForumThreadStat)).scalars()
        ]
    return views, sorted(stats)


def test_a_command_delivered_twice_or_resubmitted_has_one_effect(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    open_id = _open(pipeline, "t-1")
    post = pipeline.command("add_post", thread_id="t-1", body="once")
    pipeline.submit(post)
    pipeline.settle()
    outcome = read_outcome(pipeline.engine, post.command_id)
    assert outcome is not None and outcome.status == "applied"
    before = _counts(pipeline.engine), queries.thread_detail(pipeline.engine, "t-1")["thread"]

    for command_id in (open_id, post.command_id):
        topic, payload = _wire(pipeline.engine, command_id)
        pipeline.container.publisher.publish(topic, command_id, payload)
        wait_until(
            lambda cid=command_id: len(task_runs.results(cid)) == 2,
            15,
            f"the duplicate of {command_id} to be handled",
        )
        # The duplicate finds the command applied: it reports so, and neither re-runs the handler
        # nor rejects the open as "already exists".
        assert task_runs.results(command_id)[-1] == "applied"
    again = pipeline.submit(post)
    assert (again.status, again.published, again.delivery_attempts) == ("applied", True, 1)

    pipeline.settle()
    seen = ledger(pipeline.engine)
    assert seen.events_per_command == {open_id: 1, post.command_id: 1}
    assert seen.statuses == {open_id: "applied", post.command_id: "applied"}
    assert (
        _counts(pipeline.engine),
        queries.thread_detail(pipeline.engine, "t-1")["thread"],
    ) == before
    with unit_of_work(pipeline.engine, readonly=True) as s:
        attempts = s.execute(select(ForumCommand.delivery_attempts)).scalars().all()
    assert attempts == [1, 1]  # a duplicate of a finished command is not counted as an attempt


def test_re_driven_copies_of_an_event_already_projected_never_make_a_dead_letter(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    _open(pipeline, "t-1")
    pipeline.settle()
    with unit_of_work(pipeline.engine, readonly=True) as s:
        event_id = s.execute(select(ForumEvent.event_id)).scalar_one()
    message_id = f"{event_id}:projector"
    topic, payload = _wire(pipeline.engine, message_id)
    copies = pipeline.settings.retry_max_attempts + 2
    for _ in range(copies):  # as reconciliation re-drives a message no worker took for a while
        pipeline.container.publisher.publish(topic, message_id, payload, redelivery=True)
    wait_until(lambda: len(task_runs.results(message_id)) == copies + 1, 15, "every copy handled")
    assert task_runs.results(message_id) == ["applied"] + ["duplicate"] * copies
    assert ledger(pipeline.engine).outbox == {"done": 2}
    with unit_of_work(pipeline.engine, readonly=True) as s:
        assert s.execute(select(func.count()).select_from(ForumDeadLetter)).scalar_one() == 0


def test_a_command_delivered_twice_at_once_has_one_effect(
    idle_pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    p = idle_pipeline
    rt = p.container.runtime
    opened = p.command(
        "open_thread", actor="agent", thread_id="t-1", ticket="TCK-1", title="T", body="b"
    )
    assert handle_in_process(rt, opened) == "applied"
    post = p.command("add_post", thread_id="t-1", body="raced")
    accept_only(rt, post)
    wire = post.model_dump(mode="json")
    topic = rt.topics.command("add_post")

    # Two solo workers already waiting for messages, so each can take one copy at once.
    with p.inprocess_worker(count=2):
        rt.publisher.publish(topic, post.command_id, wire)
        rt.publisher.publish(topic, post.command_id, wire)
        wait_until(lambda: len(task_runs.results(post.command_id)) == 2, 20, "both copies handled")
        p.settle()
    seen = ledger(p.engine)
    assert seen.statuses[post.command_id] == "applied"
    assert seen.events_per_command[post.command_id] == 1
    assert seen.posts_per_thread == {"t-1": 2}
    assert rebuild(p.engine, check=True).differences == []


def test_an_event_delivered_twice_is_projected_once(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    _open(pipeline, "t-1")
    assert pipeline.run("add_post", thread_id="t-1", body="more").status == "applied"
    pipeline.settle()
    with unit_of_work(pipeline.engine, readonly=True) as s:
        event_id = s.execute(
            select(ForumEvent.event_id).where(ForumEvent.event_type == "forum.post.added")
        ).scalar_one()
    message_id = f"{event_id}:projector"
    before = _counts(pipeline.engine), _read_models(pipeline.engine)

    topic, payload = _wire(pipeline.engine, message_id)
    assert topic == "forum.events.post.added"
    pipeline.container.publisher.publish(topic, message_id, payload)
    wait_until(lambda: len(task_runs.results(message_id)) == 2, 15, "the duplicate event handled")

    assert task_runs.results(message_id) == ["applied", "duplicate"]
    assert (_counts(pipeline.engine), _read_models(pipeline.engine)) == before
    with unit_of_work(pipeline.engine, readonly=True) as s:
        ledger_rows = s.execute(
            select(func.count())
            .select_from(ForumProjectionEvent)
            .where(
                ForumProjectionEvent.projection == PROJECTION,
                ForumProjectionEvent.event_id == event_id,
            )
        ).scalar_one()
        row = s.execute(
            select(ForumOutbox).where(ForumOutbox.message_id == message_id)
        ).scalar_one()
    assert ledger_rows == 1
    assert (row.status, row.deliveries) == ("done", 2)


def _history() -> list[tuple[str, dict[str, Any], str]]:
    """Commands over four threads on two tickets: every kind of forum event."""
    steps: list[tuple[str, dict[str, Any], str]] = []
    for n, ticket in ((1, "TCK-1"), (2, "TCK-1"), (3, "TCK-2"), (4, "TCK-2")):
        steps.append(
            (
                "open_thread",
                {
                    "thread_id": f"t-{n}",
                    "ticket": ticket,
                    "title": f"T{n}",
                    "body": "?",
                    "run_id": "run-1",
                    "agent_name": f"a{n}",
                },
                "agent",
            )
        )
    for n in (1, 2, 3, 4):
        steps.append(("add_post", {"thread_id": f"t-{n}", "body": f"detail {n}"}, "agent"))
    steps += [
        (
            "assign_thread",
            {"thread_id": "t-1", "assignee_type": "human", "assignee_name": "hana"},
            "operator",
        ),
        ("set_priority", {"thread_id": "t-2", "priority": "urgent"}, "operator"),
        ("change_state", {"thread_id": "t-3", "to_state": "waiting_human"}, "operator"),
        ("answer_thread", {"thread_id": "t-1", "body": "do X"}, "human"),
        ("answer_thread", {"thread_id": "t-3", "body": "do Y"}, "human"),
        ("close_thread", {"thread_id": "t-3", "reason": "done"}, "operator"),
        ("add_post", {"thread_id": "t-2", "body": "still failing"}, "agent"),
        (
            "assign_thread",
            {"thread_id": "t-2", "assignee_type": "agent", "assignee_name": "bob"},
            "operator",
        ),
        ("set_priority", {"thread_id": "t-4", "priority": "low"}, "operator"),
        ("close_thread", {"thread_id": "t-4"}, "operator"),
    ]
    return steps


def _make_history(engine: Engine, db_url: str) -> None:
    rt = direct_runtime(engine, settings_for(db_url))
    for command_type, payload, actor in _history():
        command: AnyCommand = make_command(
            command_type, payload, actor_type=actor, actor_name=f"{actor}-1"
        )
        assert handle_in_process(rt, command) == "applied", command_type


def _log(engine: Engine) -> tuple[list[ForumThread], list[ForumEvent]]:
    with unit_of_work(engine, readonly=True) as s:
        threads = list(s.execute(select(ForumThread)).scalars())
        events = list(s.execute(select(ForumEvent).order_by(ForumEvent.sequence)).scalars())
    return threads, events


def _copy(engine: Engine, rows: list[Any]) -> None:
    with unit_of_work(engine) as s:
        for row in rows:
            s.merge(row)


@contextmanager
def _fresh_database(db_url: str, directory: Path, name: str) -> Iterator[Engine]:
    """A new, migrated database of the same backend as ``db_url``."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{directory / f'{name}.db'}"
        migrate_to_head(url)
        engine = build_engine(settings_for(url))
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with postgres_database(os.environ[POSTGRES_ENV]) as url:
        migrate_to_head(url)
        engine = build_engine(settings_for(url))
        try:
            yield engine
        finally:
            engine.dispose()


def _project_all(engine: Engine, events: list[Event]) -> None:
    for event in events:
        project(engine, event, f"{event.event_id}:projector")


def test_events_projected_in_any_order_give_the_same_read_models(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    _make_history(engine, db_url)
    threads, rows = _log(engine)
    events = [row_to_event(r) for r in rows]
    assert len({e.thread_id for e in events}) == 4 and len(events) == 20
    _project_all(engine, events)  # the source: projected in log order
    live = _read_models(engine)
    assert rebuild(engine, check=True).differences == []

    rng = random.Random(20240611)
    with (
        _fresh_database(db_url, tmp_path, "shuffled") as shuffled,
        _fresh_database(db_url, tmp_path, "reversed") as backwards,
    ):
        _copy(shuffled, threads)
        _copy(backwards, threads)
        # Shuffled: the log grows in commit order while the projector gets any logged event not
        # yet projected, in random order, some of them twice.
        pending: list[Event] = []
        for row, event in zip(rows, events, strict=True):
            _copy(shuffled, [row])
            pending.append(event)
            rng.shuffle(pending)
            take = rng.randint(0, len(pending))
            _project_all(shuffled, pending[:take] + pending[: take // 2])
            del pending[:take]
        rng.shuffle(pending)
        _project_all(shuffled, pending)
        # Reversed: the whole log first, then every event newest first.
        _copy(backwards, rows)
        _project_all(backwards, list(reversed(events)))

        for replica in (shuffled, backwards):
            assert _read_models(replica) == live
            assert rebuild(replica, check=True).differences == []
            with unit_of_work(replica, readonly=True) as s:
                projected = sorted(s.execute(select(ForumProjectionEvent.event_id)).scalars())
            assert projected == sorted(e.event_id for e in events)
    assert live[0][0]["thread_id"] == "t-1"
    assert {v["thread_id"]: v["state"] for v in live[0]} == {
        "t-1": "answered",
        "t-2": "new",
        "t-3": "closed",
        "t-4": "closed",
    }
