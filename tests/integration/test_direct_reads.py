"""The command line's reads through the driver give exactly the ORM reads' answers.

``forum list/search/thread/watch``, ``run list/show`` and ``dlq list/show`` read through
``storage/dbapi.py`` (services/thread_reads.py, services/record_reads.py) so the process does not
import SQLAlchemy. Each test seeds a database through the real handlers and projector, then
compares every read with its ORM counterpart (services/queries.py, runs.py, deadletters.py)
on SQLite and PostgreSQL, and through the CLI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from metawsm.cli import cli
from metawsm.cli.context import AppContext
from metawsm.errors import NotFound
from metawsm.messages.common import Actor
from metawsm.services import deadletters, queries, record_reads, runs, thread_reads
from metawsm.services.projections import VIEW_COLUMNS
from metawsm.services.runs import BriefInput
from metawsm.settings import Settings
from metawsm.storage import dbapi
from tests.fixtures.database import settings_for
from tests.integration.test_search_queues import Forum

VIEWER = ("human", "h-1")


@pytest.fixture
def seeded(engine: Engine, db_url: str) -> Forum:
    """Threads of every kind (urgent, answered, closed, assigned, seen, control), two runs
    (one bootstrap with a brief) and two dead letters, all projected."""
    forum = Forum(engine, db_url)
    for n in range(12):
        priority = ("low", "normal", "high", "urgent")[n % 4]
        forum.ask(f"t-{n}", f"Title {n} deploy", f"how to deploy part {n}?", priority=priority)
        if n % 3 == 0:
            forum.run("answer_thread", thread_id=f"t-{n}", body=f"like this {n}")
        if n % 4 == 1:
            forum.run("add_post", "agent", thread_id=f"t-{n}", body="more detail, deploy again")
        if n % 5 == 2:
            forum.run(
                "assign_thread", thread_id=f"t-{n}", assignee_type="human", assignee_name="ann"
            )
        if n == 7:
            forum.run("close_thread", thread_id=f"t-{n}", reason="done")
    forum.ask("t-other", "Other ticket", "  spaced body  ", ticket="TCK-2")
    actor = Actor(type="operator", name="op")
    brief = BriefInput(goal="g", scope="s", done_criteria="d", constraints="c", merge_intent="m")
    runs.create_run(
        forum.rt, tickets=["TCK-1", "TCK-4"], agents=["b", "a"], mode="run", brief=None, actor=actor
    )
    run_id = runs.create_run(
        forum.rt, tickets=["TCK-3"], agents=["c"], mode="bootstrap", brief=brief, actor=actor
    )
    signal = {
        "control_type": "guidance_request",
        "run_id": run_id,
        "agent_name": "c",
        "question": "?",
    }
    forum.run("control_signal", "agent", run_id=run_id, agent_name="c", signal=signal)
    forum.project()
    queries.mark_seen(engine, "t-1", *VIEWER)
    queries.mark_seen(engine, "t-4", *VIEWER, sequence=1)
    for k, run in enumerate((run_id, None)):
        deadletters.dead_letter(
            engine,
            deadletters.Failure(
                f"m-{k}",
                "command",
                "task",
                "topic",
                {"k": [k, "é"]},
                "boom",
                "Traceback ...",
                3,
                run,
            ),
        )
    return forum


@pytest.fixture
def db(seeded: Forum, db_url: str) -> Iterator[dbapi.Reader]:
    """A driver read transaction on the seeded database."""
    with dbapi.read_transaction(settings_for(db_url)) as reader:
        yield reader


FILTERS = [
    thread_reads.ThreadFilter(),
    thread_reads.ThreadFilter(ticket="TCK-1", priority="urgent"),
    thread_reads.ThreadFilter(state="answered"),
    thread_reads.ThreadFilter(assignee="ann"),
    thread_reads.ThreadFilter(include_control=False),
]


@pytest.mark.parametrize("limit", [1, 5, 50])
def test_lists_are_the_orm_lists(engine: Engine, db: dbapi.Reader, limit: int) -> None:
    for filters in FILTERS:
        direct = thread_reads.list_threads(db, filters, limit)
        assert direct == queries.list_threads(engine, filters, limit)
    assert len(thread_reads.list_threads(db, FILTERS[0], 50)) == 14  # control thread included


def test_thread_pages_are_the_orm_pages(engine: Engine, db: dbapi.Reader) -> None:
    control = thread_reads.list_threads(db, thread_reads.ThreadFilter(ticket="TCK-3"))[0]
    for thread_id in ("t-0", "t-1", "t-7", "t-other", control["thread_id"]):
        for limit, before in ((50, None), (1, None), (1, 3), (2, 2)):
            direct = thread_reads.thread_detail(db, thread_id, limit=limit, before=before)
            orm = queries.thread_detail(engine, thread_id, limit=limit, before=before)
            assert direct == orm, (thread_id, limit, before)
            assert json.dumps(direct, sort_keys=True) == json.dumps(orm, sort_keys=True)
    with pytest.raises(NotFound, match="forum thread nope not found"):
        thread_reads.thread_detail(db, "nope")


@pytest.mark.parametrize(
    "kw",
    [
        {"query": "deploy"},
        {"query": "deploy again"},
        {"query": "Title 3"},
        {"queue": "unanswered"},
        {"queue": "unseen", "viewer": VIEWER},
        {"query": "deploy", "queue": "unseen", "viewer": VIEWER, "limit": 3},
        {"queue": "unanswered", "cursor": 20},
        {"viewer": VIEWER},
    ],
)
def test_searches_and_queues_are_the_orm_ones(
    engine: Engine, db: dbapi.Reader, kw: dict[str, Any]
) -> None:
    for filters in FILTERS[:3]:
        assert thread_reads.search(db, filters, **kw) == queries.search(engine, filters, **kw)
    assert thread_reads.search(db, FILTERS[0], **kw) != [] or "cursor" in kw


def test_events_are_the_validated_events(engine: Engine, db: dbapi.Reader) -> None:
    for kw in ({}, {"ticket": "TCK-1"}, {"run_id": "nope"}, {"limit": 3}):
        for cursor in (0, 5):
            direct = thread_reads.events_after(db, cursor, **kw)
            assert direct == queries.events_after(engine, cursor, **kw)
    assert thread_reads.last_sequence(db) == queries.last_sequence(engine) > 0


def test_runs_and_dead_letters_are_the_orm_ones(engine: Engine, db: dbapi.Reader) -> None:
    rows = record_reads.run_rows(db)
    assert rows == runs.run_rows(engine) and len(rows) == 2
    for row in rows:
        one = record_reads.run_rows(db, row["run_id"])
        assert one == runs.run_rows(engine, row["run_id"])
        history = record_reads.run_history(db, row["run_id"])
        assert history == runs.run_history(engine, row["run_id"]) and history
    with pytest.raises(NotFound, match="run nope not found"):
        record_reads.run_rows(db, "nope")
    for include_all in (False, True):
        direct = record_reads.list_dead_letters(db, include_all=include_all)
        assert direct == deadletters.list_dead_letters(engine, include_all=include_all)
    assert record_reads.show_dead_letter(db, "m-0") == deadletters.show_dead_letter(engine, "m-0")
    with pytest.raises(NotFound, match="no dead letter with message id nope"):
        record_reads.show_dead_letter(db, "nope")


def test_the_view_columns_are_the_models() -> None:
    assert list(thread_reads.VIEW_COLUMNS) == VIEW_COLUMNS


def test_the_cli_prints_what_the_orm_reads(
    seeded: Forum, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAWSM_DATABASE_URL", db_url)
    run_id = runs.run_rows(engine)[0]["run_id"]
    cases = [
        (["forum", "list", "--json"], {"threads": queries.list_threads(engine, FILTERS[0])}),
        (["forum", "thread", "--thread-id", "t-1", "--json"], queries.thread_detail(engine, "t-1")),
        (
            ["forum", "search", "--query", "deploy", "--json"],
            {"threads": queries.search(engine, FILTERS[0], "deploy")},
        ),
        (["run", "list", "--json"], {"runs": runs.run_rows(engine)}),
        (
            ["run", "show", "--run-id", run_id, "--json"],
            {**runs.run_rows(engine, run_id)[0], "history": runs.run_history(engine, run_id)},
        ),
        (["dlq", "list", "--json"], {"dead_letters": deadletters.list_dead_letters(engine)}),
    ]
    for args, expected in cases:
        result = CliRunner().invoke(cli, args, obj=AppContext())
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == json.loads(json.dumps(expected, default=str)), args


def test_a_database_not_at_head_is_explained_as_before(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metawsm.cli import main
    from metawsm.storage import migrate
    from metawsm.storage.engine import build_engine

    engine = build_engine(Settings(database_url=empty_db_url))
    try:
        migrate.upgrade(engine, "0001")
    finally:
        engine.dispose()
    monkeypatch.setenv("METAWSM_DATABASE_URL", empty_db_url)
    with pytest.raises(SystemExit) as info:
        main(["forum", "list", "--json"])
    assert info.value.code == 3
