"""Stored snapshot documents (services/snapshot_docs.py, migration 0010): a document in use is
never out of date, whatever wrote the change; a snapshot of unchanged runs reads two
statements and makes none; storing never goes back to an older version, and gives up quietly
when the database is busy."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from metawsm.messages.common import Actor
from metawsm.services import escalation, lifecycle, runs, snapshot, snapshot_docs
from metawsm.services.deadletters import Failure, dead_letter, purge
from metawsm.services.rebuild import rebuild
from metawsm.services.snapshot_parts import doc_fits
from metawsm.services.snapshot_reads import Scope, stored_docs
from metawsm.services.snapshot_reads import runs as run_rows
from metawsm.storage.dbapi import on_connection
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.statements import counted_statements

OPERATOR = Actor(type="operator", name="olga")
BRIEF = runs.BriefInput(goal="ship it", scope="s", done_criteria="tests pass", constraints="c")
SOURCES = ("run_agents", "run_agent_controls", "run_briefs", "forum_thread_views",
           "forum_escalations", "forum_dead_letters", "forum_events")  # fmt: skip
EVENT = (
    "INSERT INTO forum_events (sequence, event_id, event_type, event_version, occurred_at,"
    " recorded_at, run_id, actor_type, actor_name, payload)"
    " SELECT max(sequence) + 1, :event_id, :event_type, 1, :at, :at, :one, 'operator', 'olga',"
    " '{}' FROM forum_events"
)


@pytest.fixture(autouse=True)
def settled(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline, settled after the test."""
    yield pipeline
    pipeline.settle()


def _versions(engine: Engine) -> dict[str, int]:
    with unit_of_work(engine, readonly=True) as s:
        rows = s.execute(text("SELECT run_id, facts_version FROM runs")).all()
    return {rid: int(v) for rid, v in rows}


def _current_and_wrong(engine: Engine) -> tuple[set[str], list[str]]:
    """The runs whose stored document is current (a snapshot would use it), and those of them
    whose document is not the one their facts make now."""
    with unit_of_work(engine, readonly=True) as s:
        db = on_connection(s.connection())
        every = run_rows(db)
        scope = Scope(tuple(r.run_id for r in every))
        stored = stored_docs(db, scope)
        made = snapshot.made_docs(db, every, scope)
    current, wrong = set(), []
    for run in every:
        found = stored.get(run.run_id)
        if found is None or found[0] != run.facts_version:
            continue
        doc = snapshot_docs.decode(found[1])
        if doc_fits(doc, run):
            current.add(run.run_id)
            if doc != snapshot_docs.decode(made[run.run_id]):
                wrong.append(run.run_id)
    return current, wrong


def _signal(p: Pipeline, run_id: str, agent: str, **signal: Any) -> None:
    body = {"run_id": run_id, "agent_name": agent, **signal}
    p.submit(p.command("control_signal", "agent", run_id=run_id, agent_name=agent, signal=body))


def _failure(message_id: str, run_id: str) -> Failure:
    return Failure(message_id, "command", "forum.commands.add_post", "forum.commands.add_post",
                   {"command_type": "add_post"}, "boom", None, 5, run_id)  # fmt: skip


def test_a_stored_document_in_use_is_never_out_of_date_whatever_writes(pipeline: Pipeline) -> None:
    p, rt = pipeline, pipeline.container.runtime
    one = p.create_run(OPERATOR, ("alice", "bob"), ("TCK-1",))
    boot = p.create_run(OPERATOR, ("dora",), ("TCK-2",), BRIEF)
    later = utcnow() + timedelta(minutes=45)

    def thread(tid: str, **extra: Any) -> None:
        p.submit(p.command("open_thread", "agent", thread_id=tid, ticket="TCK-1", run_id=one,
                           agent_name="alice", title=tid, body="?", **extra))  # fmt: skip

    def sql(statement: str, **params: Any) -> Callable[[], None]:
        def run() -> None:
            with unit_of_work(p.engine) as s:
                s.execute(text(statement), {"one": one, "boot": boot, **params})

        return run

    def event(event_type: str) -> Callable[[], None]:
        at = p.engine.dialect.name == "sqlite" and later.replace(tzinfo=None).isoformat(" ")
        return sql(EVENT, event_id=f"e-{event_type}", event_type=event_type, at=at or later)

    steps: list[tuple[str, str, Callable[[], Any]]] = [
        (
            "a guidance request",
            one,
            lambda: _signal(p, one, "alice", control_type="guidance_request", question="Which DB?"),
        ),
        (
            "a completion",
            one,
            lambda: _signal(p, one, "bob", control_type="completion", summary="done"),
        ),
        ("a thread opened", one, lambda: thread("t-1", priority="high")),
        ("a thread answered", one, lambda: p.run("answer_thread", thread_id="t-1", body="yes")),
        ("a second thread", one, lambda: thread("t-2")),
        ("a thread closed", one, lambda: p.run("close_thread", thread_id="t-2", reason="done")),
        (
            "an agent stalled",
            one,
            lambda: lifecycle.set_agent_status(rt, one, "bob", "stalled", OPERATOR),
        ),
        ("escalations raised", one, lambda: escalation.raise_due(rt, later)),
        ("a dead letter", one, lambda: dead_letter(p.engine, _failure("dead-1", one))),
        ("a dead letter purged", one, lambda: purge(p.engine, "dead-1")),
        (
            "a validation of the brief",
            boot,
            lambda: _signal(
                p,
                boot,
                "dora",
                control_type="validation",
                status="passed",
                done_criteria="tests pass",
            ),
        ),
        (
            "the brief's criteria changed",
            boot,
            sql("UPDATE run_briefs SET done_criteria = 'all green' WHERE run_id = :boot"),
        ),
        (
            "a thread's view out of step with the log",
            one,
            sql("UPDATE forum_thread_views SET title = 'not so' WHERE thread_id = 't-1'"),
        ),
        ("a projections rebuild, which rewrites it", one, lambda: rebuild(p.engine, check=False)),
        ("an event of the run", one, event("forum.run.noted")),
        ("an operator's decision", one, event("operator.decision")),
    ]
    steps += [
        (f"a row of {table} deleted", one, sql(f"DELETE FROM {table} WHERE run_id = :one"))
        for table in SOURCES
        if table != "run_briefs"
    ]
    steps.append(("the brief deleted", boot, sql("DELETE FROM run_briefs WHERE run_id = :boot")))
    # The run's own row has no trigger: its document names the status, mode and epoch its
    # blockers were made for, and is not used for another.
    steps.append(("the run stopped", one, lambda: lifecycle.stop_run(rt, one, OPERATOR)))
    uncounted = ("the run stopped", "an operator's decision")
    snapshot.build(p.engine, p.settings, now=later)  # stores every run's document
    for what, run_id, act in steps:
        before = _versions(p.engine)
        current, wrong = _current_and_wrong(p.engine)
        assert run_id in current, f"before {what}: no current document of {run_id} to test"
        act()
        p.settle()
        if what not in uncounted:
            assert _versions(p.engine)[run_id] > before[run_id], f"{what} did not count"
        current, wrong = _current_and_wrong(p.engine)
        assert not wrong, f"after {what}: {wrong} out of date and in use"
        # The operator's own decisions are no activity of the run: its document stays in use.
        assert (run_id in current) == (what == "an operator's decision"), what
        for stored_again in (one, boot):  # by id: the stopped run too
            snapshot.build(p.engine, p.settings, run_id=stored_again, now=later)
        current, wrong = _current_and_wrong(p.engine)
        assert current == {one, boot} and not wrong, what


def test_a_snapshot_of_unchanged_runs_reads_two_statements_and_makes_no_document(
    pipeline: Pipeline,
) -> None:
    for i in range(3):
        run_id = pipeline.create_run(OPERATOR, ("alice",), (f"TCK-{i}",))
        _signal(pipeline, run_id, "alice", control_type="guidance_request", question="?")
    pipeline.settle()
    first = snapshot.build(pipeline.engine, pipeline.settings)
    with pipeline.engine.connect() as connection, connection.begin():
        db = on_connection(connection)
        fresh: list[snapshot_docs.Fresh] = []
        with counted_statements(pipeline.engine, lambda _: True) as seen:
            again = snapshot.read(db, pipeline.settings, now=first.generated_at, fresh=fresh)
    assert again == first and fresh == []
    assert len(seen) == 2, seen  # the runs, their documents


def _stored(engine: Engine) -> dict[str, int]:
    with unit_of_work(engine, readonly=True) as s:
        rows = s.execute(text("SELECT run_id, facts_version FROM run_snapshot_docs")).all()
    return {rid: int(v) for rid, v in rows}


def test_storing_never_replaces_a_newer_version_with_an_older_one(pipeline: Pipeline) -> None:
    engine = pipeline.engine

    def keep(version: int, doc: bytes) -> bool:
        with engine.connect() as connection:
            raw = connection.connection.driver_connection
            return snapshot_docs.keep(raw, engine.dialect.name,
                                      [snapshot_docs.Fresh("run-x", version, doc)])  # fmt: skip

    assert keep(5, b"[5]")
    assert keep(3, b"[3]")  # stored by a read that began before the change to 5: ignored
    assert _stored(engine) == {"run-x": 5}
    assert keep(7, b"[7]") and _stored(engine) == {"run-x": 7}


def test_storing_gives_up_without_waiting_when_sqlite_is_locked(
    pipeline: Pipeline, db_url: str
) -> None:
    if pipeline.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pipeline.engine.connect() as connection:
            raw = connection.connection.driver_connection
            stored = snapshot_docs.keep(raw, "sqlite", [snapshot_docs.Fresh("run-x", 1, b"[]")])
    finally:
        holder.rollback()
        holder.close()
    assert not stored and _stored(pipeline.engine) == {}
