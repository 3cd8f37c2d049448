"""``projections rebuild`` streams the log in chunks and still equals the fold of each thread.

The reference is the rebuild's former definition: every event validated (``row_to_event``),
grouped by thread and folded whole by ``fold_thread``; stats by ``fold_stats``.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, inspect, select, update

from metawsm.cli.projections_cmd import ProgressLine
from metawsm.domain.views import fold_stats, fold_thread
from metawsm.messages.events import Event
from metawsm.services import bulk, logfold
from metawsm.services import rebuild as rebuild_module
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import PROJECTION, project
from metawsm.services.rebuild import rebuild
from metawsm.services.submit import make_command
from metawsm.storage import tables
from metawsm.storage.models import (
    ForumEvent,
    ForumProjectionEvent,
    ForumThreadStat,
    ForumThreadView,
)
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import direct_runtime, handle_in_process
from tests.integration.test_idempotency import _fresh_database, _log, _make_history, _read_models
from tests.integration.test_lifecycle_idempotency import (
    STORIES,
    _bootstrap,
    _runtime,
    _write_signals,
)

SMALL_CHUNK = 3


def _history(engine: Engine, db_url: str) -> None:
    """Forum threads with every kind of event, and a run's two control threads."""
    _make_history(engine, db_url)
    rt = _runtime(engine, db_url)
    _write_signals(rt, _bootstrap(rt), STORIES["completes"][0])


def _reference(engine: Engine) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """Views and stats as the whole-log fold defines them (ordered like ``_read_models``)."""
    threads, rows = _log(engine)
    controls = {t.thread_id for t in threads if t.is_control}
    by_thread: dict[str, list[Event]] = defaultdict(list)
    for row in rows:
        if row.thread_id:
            by_thread[row.thread_id].append(row_to_event(row))
    views = {t: fold_thread(events, is_control=t in controls) for t, events in by_thread.items()}
    kept = {t: v for t, v in views.items() if v is not None}
    stats = sorted((*key, n) for key, n in fold_stats(kept.values()).items())
    return [kept[t] for t in sorted(kept)], stats


def _ledger(engine: Engine) -> set[str]:
    with unit_of_work(engine, readonly=True) as s:
        query = select(ForumProjectionEvent.event_id).where(
            ForumProjectionEvent.projection == PROJECTION
        )
        return set(s.execute(query).scalars())


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of three rows: every thread's events straddle chunk boundaries."""
    monkeypatch.setattr(logfold, "CHUNK_ROWS", SMALL_CHUNK)
    monkeypatch.setattr(rebuild_module, "CHUNK_ROWS", SMALL_CHUNK)


def test_a_rebuild_in_small_chunks_equals_the_fold_of_each_threads_events(
    engine: Engine, db_url: str, small_chunks: None
) -> None:
    _history(engine, db_url)
    calls: list[tuple[int, int]] = []
    report = rebuild(engine, check=False, progress=lambda n, last: calls.append((n, last)))
    _, rows = _log(engine)
    assert report.applied and report.events == len(rows) > 3 * SMALL_CHUNK
    assert _read_models(engine) == _reference(engine)
    assert _ledger(engine) == {r.event_id for r in rows}
    assert rebuild(engine, check=True).differences == []
    # Progress after every chunk, up to every event; the target is the newest sequence.
    assert [n for n, _ in calls] == [*range(SMALL_CHUNK, len(rows), SMALL_CHUNK), len(rows)]
    assert {last for _, last in calls} == {rows[-1].sequence}


def test_a_thread_logged_out_of_thread_order_is_folded_from_its_own_events(
    engine: Engine, db_url: str, tmp_path: Path, small_chunks: None
) -> None:
    _history(engine, db_url)
    threads, rows = _log(engine)
    # The replica's log holds t-2's events in reverse: its opening comes last in sequence order.
    mine = [r.sequence for r in rows if r.thread_id == "t-2"]
    moved = dict(zip(mine, reversed(mine), strict=True))
    with _fresh_database(db_url, tmp_path, "replica") as replica:
        with replica.begin() as conn:
            conn.execute(insert(tables.forum_threads), [_columns(t) for t in threads])
            conn.execute(
                insert(tables.forum_events),
                [{**_columns(r), "sequence": moved.get(r.sequence, r.sequence)} for r in rows],
            )
        rebuild(replica, check=False)
        views, stats = _read_models(replica)
        assert (views, stats) == _reference(replica)
        t2 = next(v for v in views if v["thread_id"] == "t-2")
        assert t2["posts_count"] >= 2 and t2["last_event_sequence"] == max(mine)


def test_check_lists_a_changed_and_a_missing_view_and_changes_nothing(
    engine: Engine, db_url: str
) -> None:
    _history(engine, db_url)
    rebuild(engine, check=False)
    with unit_of_work(engine) as s:
        s.execute(update(ForumThreadView).where(ForumThreadView.thread_id == "t-1")
                  .values(posts_count=99))  # fmt: skip
        s.delete(s.get_one(ForumThreadView, "t-2"))
    before = _read_models(engine)
    report = rebuild(engine, check=True)
    want = next(v["posts_count"] for v in _reference(engine)[0] if v["thread_id"] == "t-1")
    assert report.differences[:2] == [
        f"thread view t-1.posts_count: live_value=99 rebuilt={want}",
        "thread view t-2: missing",
    ]
    assert not report.applied and _read_models(engine) == before
    rebuild(engine, check=False)
    assert rebuild(engine, check=True).differences == []


def test_the_progress_line_overwrites_itself_at_most_five_times_a_second() -> None:
    out = io.StringIO()
    line = ProgressLine(out)
    line.shown -= 1.0  # the first call is due
    line(5_000, 20_000)
    line(10_000, 20_000)  # too soon: not shown
    line.clear()
    text = out.getvalue()
    assert text.count("folding events") == 1 and "5,000 of ~20,000" in text
    assert text.endswith("\r\x1b[K")


def _columns(row: Any) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in row.__table__.columns}


def test_a_rebuild_rewrites_only_the_read_models_that_differ_and_what_reads_from_them(
    engine: Engine, db_url: str
) -> None:
    _history(engine, db_url)
    rebuild(engine, check=False)
    again = rebuild(engine, check=False)
    assert (again.differences, again.rewritten) == ([], [])  # every model already right
    with unit_of_work(engine) as s:
        s.execute(update(ForumThreadView).where(ForumThreadView.thread_id == "t-1")
                  .values(posts_count=99))  # fmt: skip
    repaired = rebuild(engine, check=False)
    assert repaired.differences and repaired.rewritten == [
        "thread_views",
        "search_index",  # built from the rewritten views
    ]
    assert _read_models(engine) == _reference(engine)
    assert rebuild(engine, check=True).differences == []
    # From an empty read side every model is rewritten (the ledger, which still holds every
    # event, is left as it is).
    with unit_of_work(engine) as s:
        s.execute(delete(ForumThreadView))
        s.execute(delete(ForumThreadStat))
    assert rebuild(engine, check=False).rewritten == [
        "thread_views",
        "stats",
        "search_index",
    ]
    assert _read_models(engine) == _reference(engine)


def test_events_committed_and_projected_while_a_rebuild_folds_stay_projected_after_it(
    engine: Engine, db_url: str, small_chunks: None
) -> None:
    # The replay drill's finding: the rebuild rewrote the views and the projection ledger as of
    # the log it had folded, so an event committed and projected meanwhile lost its ledger row
    # and its effect on the views, and no one projected it again (its outbox row was done).
    _history(engine, db_url)
    rebuild(engine, check=False)
    rt = direct_runtime(engine, settings_for(db_url))
    during: list[str] = []

    def commit_and_project_once(events_so_far: int, last_sequence: int) -> None:
        if during:
            return
        post = make_command(
            "add_post", {"thread_id": "t-1", "body": "during the rebuild"},
            actor_type="agent", actor_name="agent-1",
        )  # fmt: skip
        assert handle_in_process(rt, post) == "applied"
        with unit_of_work(engine, readonly=True) as s:
            rows = s.execute(
                select(ForumEvent).where(ForumEvent.sequence > last_sequence)
                .order_by(ForumEvent.sequence)
            ).scalars().all()  # fmt: skip
            new = [(row.event_id, row_to_event(row)) for row in rows]
        for event_id, event in new:
            assert project(engine, event, f"projector-{event_id}")
            during.append(event_id)

    rebuild(engine, check=False, progress=commit_and_project_once)
    _, rows = _log(engine)
    assert during and set(during) <= {r.event_id for r in rows}
    assert _ledger(engine) == {r.event_id for r in rows}
    assert _read_models(engine) == _reference(engine)
    assert rebuild(engine, check=True).differences == []


def _indexes(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    found = inspect(engine)
    return {
        name: sorted(map(_comparable, found.get_indexes(name)), key=lambda i: str(i["name"]))
        for name in ("forum_thread_views", "forum_projection_events", "forum_thread_stats")
    }


def _comparable(index: Any) -> dict[str, Any]:
    # A partial index's condition comes back as a SQL clause, which compares by identity: its
    # text is what must come back the same.
    options = {key: str(value) for key, value in index.get("dialect_options", {}).items()}
    return {**index, "dialect_options": options}


def test_a_rebuild_from_an_empty_read_side_leaves_every_index_as_the_migrations_made_it(
    engine: Engine, db_url: str
) -> None:
    # The views' indexes are dropped for the bulk insert and re-created after it (SQLite).
    _history(engine, db_url)
    before = _indexes(engine)
    assert len(before["forum_thread_views"]) == 8
    with unit_of_work(engine) as s:
        s.execute(delete(ForumThreadView))
        s.execute(delete(ForumThreadStat))
        s.execute(delete(ForumProjectionEvent))
    report = rebuild(engine, check=False)
    assert report.rewritten[:3] == ["thread_views", "stats", "ledger"]
    assert _indexes(engine) == before
    assert _read_models(engine) == _reference(engine)
    assert rebuild(engine, check=True).differences == []


@pytest.mark.parametrize("damage", ["row missing", "row of no event", "one swapped"])
def test_a_rebuild_refills_a_ledger_that_is_not_the_fold_and_leaves_one_that_is(
    engine: Engine, db_url: str, damage: str
) -> None:
    _history(engine, db_url)
    rebuild(engine, check=False)
    _, rows = _log(engine)
    stray = {"projection": PROJECTION, "event_id": "fevt-none", "applied_at": utcnow()}
    with unit_of_work(engine) as s:
        if damage in ("row missing", "one swapped"):
            s.execute(delete(ForumProjectionEvent).where(
                ForumProjectionEvent.projection == PROJECTION,
                ForumProjectionEvent.event_id == rows[3].event_id,
            ))  # fmt: skip
        if damage in ("row of no event", "one swapped"):  # swapped: as many rows as events
            s.execute(insert(ForumProjectionEvent), [stray])
    assert rebuild(engine, check=False).rewritten == ["ledger"]
    assert _ledger(engine) == {r.event_id for r in rows}
    assert rebuild(engine, check=False).rewritten == []


def test_a_rebuild_keeps_the_ledger_rows_of_another_projection(engine: Engine, db_url: str) -> None:
    _history(engine, db_url)
    _, rows = _log(engine)
    other = {
        "projection": "another_v1",
        "event_id": rows[0].event_id,
        "applied_at": rows[0].recorded_at,
    }
    with unit_of_work(engine) as s:
        s.execute(insert(ForumProjectionEvent), [other])
    rebuild(engine, check=False)
    with unit_of_work(engine, readonly=True) as s:
        kept = s.execute(
            select(ForumProjectionEvent.event_id).where(
                ForumProjectionEvent.projection == "another_v1"
            )
        ).scalars().all()  # fmt: skip
    assert kept == [rows[0].event_id]
    assert _ledger(engine) == {r.event_id for r in rows}


def test_a_view_stored_in_another_text_of_the_same_values_is_no_difference(
    engine: Engine, db_url: str
) -> None:
    # Views are compared as the driver reads them first; one that differs only in how its
    # values are written (here a timestamp with a 'T') is compared as typed values.
    if engine.dialect.name != "sqlite":
        pytest.skip("only SQLite stores timestamps as text")
    _history(engine, db_url)
    rebuild(engine, check=False)
    rewrite = "UPDATE forum_thread_views SET updated_at = {} WHERE thread_id = 't-1'"
    with engine.begin() as conn:
        conn.exec_driver_sql(rewrite.format("replace(updated_at, ' ', 'T')"))
    assert rebuild(engine, check=True).differences == []
    with engine.begin() as conn:
        conn.exec_driver_sql(rewrite.format("'2001-02-03 04:05:06.000007'"))
    (line,) = rebuild(engine, check=True).differences
    assert line.startswith("thread view t-1.updated_at: live_value=datetime.datetime(2001, 2, 3")


def test_the_rebuilds_page_cache_is_given_back_after_it(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("a SQLite setting")
    size = "PRAGMA cache_size"
    with engine.connect() as conn:
        before = conn.exec_driver_sql(size).scalar_one()
        with bulk.page_cache(conn, kib=300_000):  # more than a connection's own (64 MiB)
            assert conn.exec_driver_sql(size).scalar_one() == -300_000
        assert conn.exec_driver_sql(size).scalar_one() == before != -300_000
