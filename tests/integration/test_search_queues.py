"""Search, queues, lists and thread pages read indexes, and give today's answers.

The full-text index is kept by the projector (one row per post the view covers), rebuilt and
checked by ``projections rebuild``, and backfilled by migration 0004. Each test writes through
the real handlers and projects every event with the real projector, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, text
from sqlalchemy import event as sql_events

from metawsm.cli import cli, main
from metawsm.domain.views import is_unanswered
from metawsm.errors import UsageError
from metawsm.services import queries, search_index
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import project, view_dict
from metawsm.services.rebuild import rebuild
from metawsm.services.submit import make_command
from metawsm.storage import migrate
from metawsm.storage.models import ForumEvent, ForumPost, ForumThreadView
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import direct_runtime, handle_in_process

F = queries.ThreadFilter()


class Forum:
    """Writes through the real handlers in this process; ``project()`` runs the projector."""

    def __init__(self, engine: Engine, db_url: str) -> None:
        self.engine = engine
        self.rt = direct_runtime(engine, settings_for(db_url))
        self.projected = 0

    def run(self, command_type: str, actor: str = "operator", **payload: Any) -> None:
        """Apply one command (not projected yet)."""
        command = make_command(command_type, payload, actor_type=actor, actor_name=f"{actor}-1")
        assert handle_in_process(self.rt, command) == "applied", (command_type, payload)

    def ask(self, thread_id: str, title: str, body: str, **extra: Any) -> None:
        """An agent opens a thread on TCK-1 (unless ``ticket`` says otherwise)."""
        payload = {"ticket": "TCK-1", "priority": "normal", **extra}
        self.run("open_thread", "agent", thread_id=thread_id, title=title, body=body, **payload)

    def project(self, order: random.Random | None = None) -> None:
        """Project every event not projected yet (in log order, or shuffled by ``order``)."""
        with unit_of_work(self.engine, readonly=True) as s:
            rows = s.execute(
                select(ForumEvent)
                .where(ForumEvent.sequence > self.projected)
                .order_by(ForumEvent.sequence)
            ).scalars()
            events = [row_to_event(r) for r in rows]
        if order is not None:
            order.shuffle(events)
        for event in events:
            project(self.engine, event, f"{event.event_id}:projector")
            self.projected = max(self.projected, event.sequence or 0)


@pytest.fixture
def forum(engine: Engine, db_url: str) -> Forum:
    """An empty forum on a fresh database (each backend)."""
    return Forum(engine, db_url)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["thread_id"] for r in rows]


def search_ids(engine: Engine, query: str, **kw: Any) -> list[str]:
    return ids(queries.search(engine, F, query, limit=1000, **kw))


# Search --------------------------------------------------------------------------------------

CORPUS = {
    "t-1": ("Build fails on CI", ["the kestrel test is flaky", "Retry did not help."]),
    "t-2": ("Flaky kestrel runner", ["runner out of disk"]),
    "t-3": ("Deploy blocked", ["waiting on the red fox release", "Kestrel-2 is down"]),
    "t-4": ("Question about docs", ["fox red swapped", "nothing to see"]),
    "t-5": ("Kestrels everywhere", ["plural only"]),
}


@pytest.fixture
def corpus(forum: Forum) -> Forum:
    """Five threads whose titles and posts hold a few words in various cases and spots."""
    for thread_id, (title, posts) in CORPUS.items():
        forum.ask(thread_id, title, posts[0])
        for body in posts[1:]:
            forum.run("add_post", "agent", thread_id=thread_id, body=body)
    forum.project()
    return forum


def whole_word_substring_match(word: str) -> set[str]:
    """Today's rule (substring of title or a post, case-insensitive) kept to whole words."""
    pattern = re.compile(rf"(?<![0-9A-Za-z]){re.escape(word)}(?![0-9A-Za-z])", re.IGNORECASE)
    return {
        t for t, (title, posts) in CORPUS.items() if any(pattern.search(s) for s in [title, *posts])
    }


@pytest.mark.parametrize("word", ["kestrel", "KESTREL", "flaky", "fox", "runner", "docs", "2"])
def test_search_finds_the_threads_the_substring_match_finds_for_a_whole_word(
    corpus: Forum, word: str
) -> None:
    assert set(search_ids(corpus.engine, word)) == whole_word_substring_match(word)


def test_a_title_match_ranks_before_a_body_match(forum: Forum) -> None:
    forum.ask("t-title", "kestrel nest", "a body")
    forum.ask("t-body", "other", "we saw a kestrel today", priority="urgent")
    forum.project()

    # Urgent and newer, t-body would come first in a list; relevance comes before both.
    assert search_ids(forum.engine, "kestrel") == ["t-title", "t-body"]


def test_more_occurrences_rank_higher(forum: Forum) -> None:
    forum.ask("t-thrice", "y", "kestrel kestrel kestrel")
    forum.ask("t-once", "x", "kestrel and many other words about the weather today")
    forum.project()

    # t-once is newer, so it would come first in a list; relevance comes first.
    assert search_ids(forum.engine, "kestrel") == ["t-thrice", "t-once"]


def test_a_query_of_several_words_is_a_phrase(corpus: Forum) -> None:
    assert search_ids(corpus.engine, "red fox") == ["t-3"]  # t-4 has "fox red"
    assert search_ids(corpus.engine, "RED   fox") == ["t-3"]


def test_where_the_index_differs_from_a_substring_match(corpus: Forum) -> None:
    engine = corpus.engine
    assert search_ids(engine, "kest") == []  # no prefix or substring inside a word
    assert "t-5" not in search_ids(engine, "kestrel")  # "Kestrels": no stemming
    assert set(search_ids(engine, "kestrel 2")) == {"t-3"}  # punctuation separates words
    assert set(search_ids(engine, "help")) == {"t-1"}  # "help." : punctuation is no part
    with pytest.raises(UsageError, match="query '--': must contain at least one letter or digit"):
        queries.search(engine, F, "--")


def test_the_search_command_refuses_a_query_without_a_word_with_exit_2(
    corpus: Forum, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METAWSM_DATABASE_URL", db_url)

    with pytest.raises(SystemExit) as exited:
        main(["forum", "search", "--query", "..."])

    assert exited.value.code == 2
    assert "query '...': must contain at least one letter or digit" in capsys.readouterr().err


def test_search_keeps_the_filters_and_the_cursor(corpus: Forum) -> None:
    corpus.ask("t-6", "kestrel on another ticket", "b", ticket="TCK-2")
    corpus.project()
    engine = corpus.engine

    on_two = queries.search(engine, queries.ThreadFilter(ticket="TCK-2"), "kestrel")
    assert ids(on_two) == ["t-6"]
    newest = queries.search(engine, F, "kestrel")[0]["last_event_sequence"]
    below = queries.search(engine, F, "kestrel", cursor=newest)
    assert newest not in [r["last_event_sequence"] for r in below] and len(below) == 3


# Queues and lists ----------------------------------------------------------------------------


@pytest.fixture
def triage(forum: Forum) -> Forum:
    """Twelve threads in every mix of priority, who spoke last and state."""
    priorities = ["low", "normal", "high", "urgent"]
    for n in range(12):
        forum.ask(f"t-{n:02}", f"T{n}", "b", priority=priorities[n % 4])
    for n in range(0, 12, 3):
        forum.run("answer_thread", "human", thread_id=f"t-{n:02}", body="answered")
    for n in range(1, 12, 4):
        forum.run("change_state", thread_id=f"t-{n:02}", to_state="waiting_human")
    forum.run("add_post", "agent", thread_id="t-03", body="not fixed")  # unanswered again?
    forum.run("close_thread", thread_id="t-05")
    forum.project()
    return forum


def all_views(engine: Engine) -> list[dict[str, Any]]:
    with unit_of_work(engine, readonly=True) as s:
        return [view_dict(v) for v in s.execute(select(ForumThreadView)).scalars()]


def list_order(views: list[dict[str, Any]]) -> list[str]:
    rank = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
    ordered = sorted(views, key=lambda v: (rank[v["priority"]], -v["last_event_sequence"]))
    return ids(ordered)


def test_list_orders_by_priority_then_most_recent_activity(triage: Forum) -> None:
    views = all_views(triage.engine)

    assert ids(queries.list_threads(triage.engine, F, 100)) == list_order(views)
    assert ids(queries.list_threads(triage.engine, F, 5)) == list_order(views)[:5]
    on_state = queries.ThreadFilter(ticket="TCK-1", state="waiting_human")
    expected = list_order([v for v in views if v["state"] == "waiting_human"])
    assert ids(queries.list_threads(triage.engine, on_state, 100)) == expected


def test_the_unanswered_queue_is_the_unanswered_rule_in_list_order(triage: Forum) -> None:
    views = all_views(triage.engine)
    expected = list_order([v for v in views if is_unanswered(v)])
    assert 0 < len(expected) < len(views)

    queue = queries.search(triage.engine, F, queue="unanswered", limit=100)

    assert ids(queue) == expected
    assert all(r["is_unanswered"] for r in queue)
    assert ids(queries.search(triage.engine, F, queue="unanswered", limit=2)) == expected[:2]


def test_the_unseen_queue_leaves_out_what_the_viewer_has_seen_up_to_its_newest_event(
    triage: Forum,
) -> None:
    engine, viewer = triage.engine, ("human", "hana")
    everything = list_order(all_views(engine))
    for thread_id in ("t-00", "t-03", "t-07"):
        queries.mark_seen(engine, thread_id, *viewer)
    queries.mark_seen(engine, "t-05", *viewer, sequence=1)  # an old event of another thread
    queries.mark_seen(engine, "t-01", "human", "someone-else")

    unseen = queries.search(engine, F, viewer=viewer, queue="unseen", limit=100)

    assert ids(unseen) == [t for t in everything if t not in ("t-00", "t-03", "t-07")]
    assert all(r["is_unseen"] for r in unseen)
    triage.run("add_post", "agent", thread_id="t-03", body="news")
    triage.project()
    again = queries.search(engine, F, viewer=viewer, queue="unseen", limit=100)
    assert "t-03" in ids(again) and "t-00" not in ids(again)


def sqlite_plan(engine: Engine, stmt: Any) -> str:
    compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return "\n".join(str(r[-1]) for r in rows)


def test_lists_and_queues_read_an_index_in_order_on_sqlite(sqlite_url: str) -> None:
    from metawsm.storage.engine import build_engine

    engine = build_engine(settings_for(sqlite_url))
    V = ForumThreadView
    base = select(V).order_by(*queries.LIST_ORDER).limit(50)
    try:
        plans = {
            "list": sqlite_plan(engine, base),
            "ticket": sqlite_plan(engine, base.where(V.ticket == "TCK-1")),
            "unanswered": sqlite_plan(engine, base.where(V.is_unanswered.is_(True))),
        }
    finally:
        engine.dispose()

    assert "USING INDEX ix_forum_thread_views_list" in plans["list"], plans
    assert "USING INDEX ix_forum_thread_views_ticket_list" in plans["ticket"], plans
    assert "USING INDEX ix_forum_thread_views_unanswered" in plans["unanswered"], plans
    assert not any("TEMP B-TREE" in p for p in plans.values()), plans


# Thread pages --------------------------------------------------------------------------------


@pytest.fixture
def long_thread(forum: Forum) -> Forum:
    """t-long: the opening post, 119 replies, and a state change after every 40th post."""
    forum.ask("t-long", "long", "post 0")
    for n in range(1, 120):
        forum.run("add_post", "agent", thread_id="t-long", body=f"post {n}")
        if n % 40 == 0:
            target = "waiting_human" if n // 40 % 2 else "waiting_operator"
            forum.run("change_state", thread_id="t-long", to_state=target)
    forum.project()
    return forum


def test_a_thread_page_is_its_newest_posts_and_says_how_to_get_the_next(
    long_thread: Forum,
) -> None:
    page = queries.thread_detail(long_thread.engine, "t-long")

    assert [p["body"] for p in page["posts"]] == [f"post {n}" for n in range(70, 120)]
    seqs = [p["thread_seq"] for p in page["posts"]]
    assert seqs == sorted(seqs)
    assert page["page"]["next_before"] == seqs[0]
    assert page["page"]["next"] == (
        f"metawsm forum thread --thread-id t-long --limit 50 --before {seqs[0]}"
    )
    assert [e["thread_seq"] for e in page["events"]] == list(
        range(seqs[0], page["as_of_thread_seq"] + 1)
    )


def test_following_the_pages_gives_every_post_and_event_once(long_thread: Forum) -> None:
    posts: list[str] = []
    events: list[int] = []
    before, pages = None, 0
    while True:
        page = queries.thread_detail(long_thread.engine, "t-long", limit=30, before=before)
        posts = [p["body"] for p in page["posts"]] + posts
        events = [e["thread_seq"] for e in page["events"]] + events
        pages += 1
        before = page["page"]["next_before"]
        if before is None:
            break

    assert pages == 4
    assert posts == [f"post {n}" for n in range(120)]
    assert events == list(range(1, 123))  # 120 posts and 2 state changes


def test_a_page_never_goes_past_the_views_point_in_the_thread(long_thread: Forum) -> None:
    long_thread.run("add_post", "agent", thread_id="t-long", body="not projected yet")

    page = queries.thread_detail(long_thread.engine, "t-long", limit=5)

    assert page["posts"][-1]["body"] == "post 119"
    assert page["events"][-1]["thread_seq"] == page["as_of_thread_seq"] == 122


@pytest.mark.parametrize(
    ("limit", "before", "message"),
    [
        (0, None, "limit 0: must be between 1 and 1000"),
        (1001, None, "limit 1001: must be between 1 and 1000"),
        (5, 0, "before 0: must be a positive thread_seq"),
    ],
)
def test_a_bad_page_is_refused(
    long_thread: Forum, limit: int, before: int | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        queries.thread_detail(long_thread.engine, "t-long", limit=limit, before=before)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--limit", "0"], "--limit"),
        (["--limit", "1001"], "--limit"),
        (["--before", "0"], "--before"),
        (["--before", "x"], "--before"),
    ],
)
def test_the_thread_command_refuses_bad_page_options_with_exit_2(
    long_thread: Forum, db_url: str, args: list[str], option: str
) -> None:
    result = CliRunner().invoke(
        cli,
        ["forum", "thread", "--thread-id", "t-long", *args],
        env={"METAWSM_DATABASE_URL": db_url},
    )

    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output


def test_the_thread_command_pages_in_json(long_thread: Forum, db_url: str) -> None:
    import json

    result = CliRunner().invoke(
        cli,
        ["forum", "thread", "--thread-id", "t-long", "--limit", "10", "--before", "50", "--json"],
        env={"METAWSM_DATABASE_URL": db_url},
    )

    assert result.exit_code == 0, result.output
    page = json.loads(result.output)
    assert len(page["posts"]) == 10 and page["posts"][-1]["thread_seq"] == 49
    assert page["page"]["next_before"] == page["posts"][0]["thread_seq"]


# Rebuild and migration -----------------------------------------------------------------------


def search_rows(engine: Engine) -> list[tuple[Any, ...]]:
    key = "rowid" if engine.dialect.name == "sqlite" else "sequence"
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(f"SELECT {key}, thread_id, title, body FROM forum_search ORDER BY {key}")
            )
        ]


def test_the_index_holds_one_row_per_post_the_view_covers(corpus: Forum) -> None:
    with unit_of_work(corpus.engine, readonly=True) as s:
        posts = s.execute(select(ForumPost)).scalars().all()

    rows = search_rows(corpus.engine)

    assert sorted(r[3] for r in rows) == sorted(p.body for p in posts)
    assert sorted(r[2] for r in rows if r[2]) == sorted(title for title, _ in CORPUS.values())


def test_events_projected_in_any_order_build_the_index_rebuild_builds(
    engine: Engine, db_url: str
) -> None:
    forum = Forum(engine, db_url)
    for thread_id, (title, posts) in CORPUS.items():
        forum.ask(thread_id, title, posts[0])
        for body in posts[1:]:
            forum.run("add_post", "agent", thread_id=thread_id, body=body)
        forum.run("set_priority", thread_id=thread_id, priority="high")

    forum.project(order=random.Random(7))
    incremental = search_rows(engine)
    assert rebuild(engine, check=True).differences == []
    rebuild(engine, check=False)

    assert search_rows(engine) == incremental
    assert set(search_ids(engine, "kestrel")) == {"t-1", "t-2", "t-3"}


def test_a_view_refolded_from_the_log_replaces_its_index_rows_not_doubles_them(
    corpus: Forum,
) -> None:
    engine = corpus.engine
    before = search_rows(engine)
    with engine.begin() as conn:  # the projector re-folds a thread it has no view of
        conn.execute(text("DELETE FROM forum_thread_views WHERE thread_id = 't-1'"))
    corpus.run("add_post", "agent", thread_id="t-1", body="kestrel again")

    corpus.project()

    after = search_rows(engine)
    assert after[: len(before)] == before and [r[3] for r in after[len(before) :]] == [
        "kestrel again"
    ]
    with engine.connect() as conn:
        assert search_index.differences(conn) == []


def test_rebuild_check_reports_a_damaged_index_and_rebuild_repairs_it(corpus: Forum) -> None:
    engine = corpus.engine
    key = "rowid" if engine.dialect.name == "sqlite" else "sequence"
    first, second = search_rows(engine)[:2]
    with engine.begin() as conn:
        conn.execute(text(f"DELETE FROM forum_search WHERE {key} = :k"), {"k": first[0]})
        conn.execute(
            text(f"UPDATE forum_search SET body = 'tampered' WHERE {key} = :k"), {"k": second[0]}
        )
        stray = 10**6  # a row of no post, past every event
        conn.execute(
            text(
                f"INSERT INTO forum_search ({key}, thread_id, title, body)"
                " VALUES (:k, 't-1', '', 'x')"
            ),
            {"k": stray},
        )

    found = rebuild(engine, check=True).differences

    assert len(found) == 3, found
    assert found[0].startswith(f"search index row {first[0]}: live=missing")
    assert "tampered" in found[1]
    assert found[2].startswith(f"search index row {stray}: live=") and "rebuilt=missing" in found[2]
    rebuild(engine, check=False)
    assert rebuild(engine, check=True).differences == []
    assert set(search_ids(engine, "kestrel")) == {"t-1", "t-2", "t-3"}


def test_rebuild_check_reports_an_index_row_whose_text_alone_differs(corpus: Forum) -> None:
    engine = corpus.engine
    key = "rowid" if engine.dialect.name == "sqlite" else "sequence"
    row = search_rows(engine)[1]
    with engine.begin() as conn:  # every row there, one title changed
        conn.execute(text(f"UPDATE forum_search SET title = 'tampered' WHERE {key} = :k"),
                     {"k": row[0]})  # fmt: skip

    [found] = rebuild(engine, check=True).differences

    assert found.startswith(f"search index row {row[0]}: live=") and "tampered" in found


def test_migration_0004_backfills_the_view_columns_and_the_index(triage: Forum) -> None:
    engine = triage.engine
    for thread_id, (title, posts) in CORPUS.items():
        triage.ask(f"s-{thread_id}", title, posts[0])
    triage.project()
    views, rows = all_views(engine), search_rows(engine)
    unanswered = ids(queries.search(engine, F, queue="unanswered", limit=100))

    migrate.downgrade(engine, "0002")  # as a database written before 0004
    migrate.upgrade(engine)

    assert all_views(engine) == views
    assert search_rows(engine) == rows
    assert ids(queries.search(engine, F, queue="unanswered", limit=100)) == unanswered
    assert set(search_ids(engine, "kestrel")) == {"s-t-1", "s-t-2"}
    assert rebuild(engine, check=True).differences == []


def statements_of(engine: Engine, read: Any) -> int:
    """How many SQL statements ``read()`` issues."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    sql_events.listen(engine, "before_cursor_execute", record)
    try:
        read()
    finally:
        sql_events.remove(engine, "before_cursor_execute", record)
    return len(seen)


def test_reads_issue_the_same_statements_whatever_the_number_of_threads(triage: Forum) -> None:
    engine, viewer = triage.engine, ("human", "hana")
    reads = {
        "list": lambda: queries.list_threads(engine, F, 5),
        "search": lambda: queries.search(engine, F, "answered", limit=5),
        "unanswered": lambda: queries.search(engine, F, queue="unanswered", limit=5),
        "unseen": lambda: queries.search(engine, F, viewer=viewer, queue="unseen", limit=5),
        "thread": lambda: queries.thread_detail(engine, "t-00", limit=5),
    }
    small = {name: statements_of(engine, read) for name, read in reads.items()}
    for n in range(40):
        triage.ask(f"u-{n:02}", f"U{n}", "answered soon")
        triage.run("add_post", "agent", thread_id="t-00", body=f"more {n}")
    triage.project()

    large = {name: statements_of(engine, read) for name, read in reads.items()}

    assert large == small


def test_a_rebuild_recreates_the_fts_table_as_it_was_with_its_settings(corpus: Forum) -> None:
    # SQLite's index is emptied by dropping and re-creating its FTS5 table, not row by row.
    engine = corpus.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("the FTS5 table is SQLite's")
    definition = "SELECT sql FROM sqlite_master WHERE name = 'forum_search'"
    settings = "SELECT k, v FROM forum_search_config ORDER BY k"
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO forum_search (forum_search, rank) VALUES ('automerge', 2)"
        )
        before = conn.exec_driver_sql(definition).all(), conn.exec_driver_sql(settings).all()
    rows = search_rows(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM forum_search WHERE rowid = :k"), {"k": rows[0][0]})

    assert "search_index" in rebuild(engine, check=False).rewritten

    with engine.connect() as conn:
        assert (conn.exec_driver_sql(definition).all(), conn.exec_driver_sql(settings).all()) == (
            before
        )
    assert ("automerge", 2) in before[1]
    assert search_rows(engine) == rows
    assert set(search_ids(engine, "kestrel")) == {"t-1", "t-2", "t-3"}


def test_with_no_thread_view_left_every_index_row_is_a_difference(corpus: Forum) -> None:
    engine = corpus.engine
    rows = search_rows(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM forum_thread_views"))
    with engine.connect() as conn:
        found = search_index.differences(conn, limit=1000)
    assert len(found) == len(rows) > 0
    assert all(line.endswith("rebuilt=missing") for line in found)
