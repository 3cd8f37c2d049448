"""Control signals delivered twice or out of order leave the run where it would be anyway.

The run lifecycle consumer folds each agent's control state from the event log, so a duplicate
(with or without its ledger row) or a different delivery order ends in the same run status.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select

from metawsm.messages.common import Actor
from metawsm.messages.events import Event
from metawsm.runtime import Runtime
from metawsm.services import runs
from metawsm.services.control import LIFECYCLE, consume_lifecycle
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import view_dict
from metawsm.services.submit import make_command, read_outcome
from metawsm.storage.engine import build_engine
from metawsm.storage.models import (
    ForumControlThread,
    ForumEvent,
    ForumOutbox,
    ForumPost,
    ForumProjectionEvent,
    ForumThread,
    ForumThreadView,
    Run,
    RunAgent,
    RunBrief,
    RunEvent,
)
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import POSTGRES_ENV, migrate_to_head, postgres_database, settings_for
from tests.fixtures.pipeline import Pipeline, direct_runtime, handle_in_process, wait_until
from tests.fixtures.workers import TaskRecorder

OPERATOR = Actor(type="operator", name="olga")
BRIEF = runs.BriefInput(goal="g", scope="s", done_criteria="tests pass", constraints="c")
LIFECYCLE_TOPIC = "forum.integration.run_lifecycle"
PROJECTOR_TOPIC = "forum.events.control.signal"

Signal = tuple[str, str, dict[str, str]]  # (agent, control_type, fields)
STORIES: dict[str, tuple[list[Signal], str]] = {
    "completes": (
        [
            ("alice", "guidance_request", {"question": "Which DB?"}),
            ("bob", "completion", {"summary": "bob done"}),
            ("alice", "guidance_answer", {"answer": "SQLite"}),
            ("bob", "validation", {"status": "failed", "done_criteria": "tests pass"}),
            ("alice", "completion", {}),
            ("bob", "guidance_request", {"question": "retry?"}),
            ("bob", "guidance_answer", {"answer": "yes"}),
            ("bob", "validation", {"status": "passed", "done_criteria": "tests pass"}),
            ("alice", "validation", {"status": "passed", "done_criteria": "tests pass"}),
        ],
        "completed",
    ),
    "awaits guidance": (
        [
            ("alice", "completion", {}),
            ("bob", "guidance_request", {"question": "first?"}),
            ("alice", "validation", {"status": "passed", "done_criteria": "tests pass"}),
            ("bob", "guidance_answer", {"answer": "go"}),
            ("bob", "completion", {}),
            ("bob", "guidance_request", {"question": "second?"}),
        ],
        "awaiting_guidance",
    ),
    "keeps running": (
        [
            ("alice", "guidance_request", {"question": "q"}),
            ("alice", "guidance_answer", {"answer": "a"}),
            ("alice", "completion", {}),
            ("bob", "completion", {}),
            ("alice", "validation", {"status": "passed", "done_criteria": "tests pass"}),
            ("bob", "validation", {"status": "failed", "done_criteria": "tests pass"}),
        ],
        "running",
    ),
}


def _signal_payload(run_id: str, agent: str, control_type: str, fields: dict[str, str]) -> Any:
    return {
        "run_id": run_id,
        "agent_name": agent,
        "signal": {"run_id": run_id, "agent_name": agent, "control_type": control_type, **fields},
    }


def _actor(control_type: str) -> str:
    return "operator" if control_type == "guidance_answer" else "agent"


def _control_events(engine: Engine, run_id: str) -> list[Event]:
    """The run's control-signal events in log order."""
    with unit_of_work(engine, readonly=True) as s:
        rows = s.execute(
            select(ForumEvent)
            .where(ForumEvent.run_id == run_id, ForumEvent.event_type == "forum.control.signal")
            .order_by(ForumEvent.sequence)
        ).scalars()
        return [row_to_event(r) for r in rows]


def _run_state(engine: Engine, run_id: str) -> dict[str, Any]:
    """Everything the lifecycle and the projector own for the run, as plain data."""
    with unit_of_work(engine, readonly=True) as s:
        run = s.get_one(Run, run_id)
        threads = list(
            s.execute(
                select(ForumControlThread.thread_id).where(ForumControlThread.run_id == run_id)
            ).scalars()
        )
        return {
            "run": (run.status, run.reason, run.control_epoch, run.updated_at),
            "run_events": [
                (e.id, e.event_type, e.from_status, e.to_status, e.reason, e.cause_event_id)
                for e in s.execute(
                    select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.id)
                ).scalars()
            ],
            "events": sorted(
                (t, n)
                for t, n in s.execute(
                    select(ForumEvent.event_type, func.count()).group_by(ForumEvent.event_type)
                ).all()
            ),
            "posts": s.execute(select(func.count()).select_from(ForumPost)).scalar_one(),
            "views": [
                view_dict(v)
                for v in s.execute(
                    select(ForumThreadView)
                    .where(ForumThreadView.thread_id.in_(threads))
                    .order_by(ForumThreadView.thread_id)
                ).scalars()
            ],
            "ledger": sorted(
                (p, e)
                for p, e in s.execute(
                    select(ForumProjectionEvent.projection, ForumProjectionEvent.event_id)
                ).all()
            ),
            "controls": runs.agent_controls(s, run),
        }


def _wire(engine: Engine, message_id: str) -> tuple[str, dict[str, Any]]:
    with unit_of_work(engine, readonly=True) as s:
        row = s.execute(
            select(ForumOutbox).where(ForumOutbox.message_id == message_id)
        ).scalar_one()
        return row.topic, dict(row.payload)


def _bootstrap(rt: Runtime) -> str:
    return runs.create_run(
        rt,
        tickets=["TCK-9"],
        agents=["alice", "bob"],
        mode="bootstrap",
        brief=BRIEF,
        actor=OPERATOR,
    )


def _play(p: Pipeline, run_id: str, story: list[Signal]) -> list[str]:
    """Send the story's signals one by one through the pipeline; returns their command ids."""
    ids = []
    for agent, control_type, fields in story:
        outcome = p.run(
            "control_signal",
            actor=_actor(control_type),
            **_signal_payload(run_id, agent, control_type, fields),
        )
        assert outcome.status == "applied", outcome.reason
        ids.append(outcome.command_id)
    p.settle()
    return ids


# Duplicates through the real broker and worker -------------------------------------------------


def test_control_signal_events_delivered_again_change_nothing(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    run_id = _bootstrap(pipeline.container.runtime)
    story, final = STORIES["completes"]
    _play(pipeline, run_id, story)
    before = _run_state(pipeline.engine, run_id)
    assert before["run"][0] == final

    events = _control_events(pipeline.engine, run_id)
    assert len(events) == len(story)
    messages = []
    for event in reversed(events):  # newest first: out of order as well as twice
        for subscriber, expected_topic in (
            ("run_lifecycle", LIFECYCLE_TOPIC),
            ("projector", PROJECTOR_TOPIC),
        ):
            message_id = f"{event.event_id}:{subscriber}"
            topic, payload = _wire(pipeline.engine, message_id)
            assert topic == expected_topic
            messages.append(message_id)
            pipeline.container.publisher.publish(topic, message_id, payload)
    for message_id in messages:
        wait_until(
            lambda m=message_id: len(task_runs.results(m)) == 2, 20, f"{message_id} handled again"
        )
        assert task_runs.results(message_id) == ["applied", "duplicate"], message_id
    pipeline.settle()
    assert _run_state(pipeline.engine, run_id) == before


def test_redelivered_events_change_nothing_even_without_the_lifecycle_ledger(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    run_id = _bootstrap(pipeline.container.runtime)
    story, final = STORIES["awaits guidance"]
    _play(pipeline, run_id, story)
    with unit_of_work(pipeline.engine) as s:
        s.execute(delete(ForumProjectionEvent).where(ForumProjectionEvent.projection == LIFECYCLE))
    before = _run_state(pipeline.engine, run_id)
    assert before["run"][0] == final

    events = _control_events(pipeline.engine, run_id)
    rng = random.Random(7)
    shuffled = events + events[:2]
    rng.shuffle(shuffled)
    for event in shuffled:
        message_id = f"{event.event_id}:run_lifecycle"
        topic, payload = _wire(pipeline.engine, message_id)
        pipeline.container.publisher.publish(topic, message_id, payload)
    expected = Counter(f"{e.event_id}:run_lifecycle" for e in [*events, *shuffled])
    wait_until(
        lambda: all(len(task_runs.results(m)) == n for m, n in expected.items()),
        20,
        "every lifecycle message handled again",
    )
    pipeline.settle()
    after = _run_state(pipeline.engine, run_id)
    # The consumer applied them again (new ledger rows) but the run did not move.
    assert {e for p, e in after["ledger"] if p == LIFECYCLE} == {e.event_id for e in events}
    assert {k: v for k, v in after.items() if k != "ledger"} == {
        k: v for k, v in before.items() if k != "ledger"
    }


def test_a_control_signal_command_delivered_twice_posts_once(
    pipeline: Pipeline, task_runs: TaskRecorder
) -> None:
    run_id = _bootstrap(pipeline.container.runtime)
    [request_id] = _play(pipeline, run_id, STORIES["completes"][0][:1])
    before = _run_state(pipeline.engine, run_id)
    assert before["run"][0] == "awaiting_guidance"

    topic, payload = _wire(pipeline.engine, request_id)
    assert topic == "forum.commands.control_signal"
    pipeline.container.publisher.publish(topic, request_id, payload)
    wait_until(lambda: len(task_runs.results(request_id)) == 2, 20, "the duplicate handled")
    again = pipeline.submit(make_command_from(payload))
    assert (again.status, again.command_id) == ("applied", request_id)
    pipeline.settle()
    assert _run_state(pipeline.engine, run_id) == before
    assert read_outcome(pipeline.engine, request_id).delivery_attempts == 1  # type: ignore[union-attr]


def make_command_from(wire: dict[str, Any]) -> Any:
    """The same command again (same command id), as a client retrying would send it."""
    return make_command(
        wire["command_type"],
        wire["payload"],
        actor_type=wire["actor_type"],
        actor_name=wire["actor_name"],
        command_id=wire["command_id"],
    )


# Delivery order, with the consumer called directly ----------------------------------------------


def _runtime(engine: Engine, url: str) -> Runtime:
    # Publishes nothing: these tests call the lifecycle consumer themselves.
    return direct_runtime(engine, settings_for(url))


def _consume(rt: Runtime, events: list[Event]) -> None:
    for event in events:
        consume_lifecycle(rt, event, f"{event.event_id}:run_lifecycle")


def _write_signals(rt: Runtime, run_id: str, story: list[Signal]) -> None:
    """Apply the story's signal commands (no consumer runs: the publisher drops everything)."""
    for agent, control_type, fields in story:
        actor = _actor(control_type)
        command = make_command(
            "control_signal",
            _signal_payload(run_id, agent, control_type, fields),
            actor_type=actor,
            actor_name=f"{actor}-1",
        )
        assert handle_in_process(rt, command) == "applied", (agent, control_type)


def _rows(engine: Engine, *models: Any) -> list[Any]:
    with unit_of_work(engine, readonly=True) as s:
        return [row for model in models for row in s.execute(select(model)).scalars()]


def _copy(engine: Engine, rows: list[Any]) -> None:
    with unit_of_work(engine) as s:
        for row in rows:
            s.merge(row)


@contextmanager
def _fresh_database(db_url: str, directory: Path, name: str) -> Iterator[tuple[Engine, str]]:
    """A new, migrated database of the same backend as ``db_url``."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{directory / f'{name}.db'}"
        migrate_to_head(url)
        engine = build_engine(settings_for(url))
        try:
            yield engine, url
        finally:
            engine.dispose()
        return
    with postgres_database(os.environ[POSTGRES_ENV]) as url:
        migrate_to_head(url)
        engine = build_engine(settings_for(url))
        try:
            yield engine, url
        finally:
            engine.dispose()


def _final(engine: Engine, run_id: str) -> tuple[str, dict[str, Any]]:
    state = _run_state(engine, run_id)
    return state["run"][0], state["controls"]


@pytest.mark.parametrize("story_name", list(STORIES))
def test_the_same_signals_consumed_in_any_order_end_in_the_same_run_status(
    engine: Engine, db_url: str, tmp_path: Path, story_name: str
) -> None:
    story, final = STORIES[story_name]
    source = _runtime(engine, db_url)
    run_id = _bootstrap(source)
    base = _rows(engine, Run, RunAgent, RunBrief)  # the run as created: running, no signals
    _write_signals(source, run_id, story)
    rows = _rows(engine, ForumThread, ForumControlThread, ForumEvent, ForumPost)
    events = _control_events(engine, run_id)
    assert len(events) == len(story)
    by_id = {r.event_id: r for r in rows if isinstance(r, ForumEvent)}
    others = [r for r in rows if not isinstance(r, ForumEvent)]

    rng = random.Random(story_name)
    orders = {
        "reversed": list(reversed(events)),
        "shuffled, some twice": rng.sample(events, len(events)) + rng.sample(events, 3),
    }
    results = {}
    with (
        _fresh_database(db_url, tmp_path, "live") as (live, live_url),
        _fresh_database(db_url, tmp_path, "reordered") as (reordered, reordered_url),
    ):
        # Live: the consumer keeps up, each event consumed right after it is committed.
        _copy(live, base + others)
        live_rt = _runtime(live, live_url)
        for event in events:
            _copy(live, [by_id[event.event_id]])
            _consume(live_rt, [event])
        results["live"] = _final(live, run_id)
        live_history = [(f, t) for _, _, f, t, *_ in _run_state(live, run_id)["run_events"]]
        assert live_history[0][0] == "running"
        assert len(live_history) >= 2  # the live run moved with the signals on its way

        # A lagging consumer: every event is in the log before the first is consumed.
        _consume(source, events)
        results["lagging, in log order"] = _final(engine, run_id)
        for name, order in orders.items():
            with unit_of_work(reordered) as s:
                # Start over: the run as created, the same log, no consumer ledger.
                for model in (Run, RunAgent, RunBrief, RunEvent, ForumEvent, ForumOutbox):
                    s.execute(delete(model))
                s.execute(delete(ForumProjectionEvent))
            _copy(reordered, base + rows)
            _consume(_runtime(reordered, reordered_url), order)
            results[name] = _final(reordered, run_id)

    assert {name: status for name, (status, _) in results.items()} == dict.fromkeys(results, final)
    controls = [c for _, c in results.values()]
    assert all(c == controls[0] for c in controls)
    assert live_history[-1][1] == final


@pytest.mark.parametrize("story_name", list(STORIES))
def test_consuming_every_signal_again_without_the_ledger_moves_nothing(
    engine: Engine, db_url: str, story_name: str
) -> None:
    story, final = STORIES[story_name]
    rt = _runtime(engine, db_url)
    run_id = _bootstrap(rt)
    for signal in story:
        _write_signals(rt, run_id, [signal])
        _consume(rt, _control_events(engine, run_id)[-1:])
    before = _run_state(engine, run_id)
    assert before["run"][0] == final

    events = _control_events(engine, run_id)
    _consume(rt, events)  # duplicates: the ledger says already done
    assert _run_state(engine, run_id) == before
    with unit_of_work(engine) as s:
        s.execute(delete(ForumProjectionEvent).where(ForumProjectionEvent.projection == LIFECYCLE))
    rng = random.Random(story_name)
    _consume(rt, rng.sample(events, len(events)) + rng.sample(events, 2))
    after = _run_state(engine, run_id)
    assert after["run"] == before["run"]
    assert after["run_events"] == before["run_events"]
    assert after["controls"] == before["controls"]
