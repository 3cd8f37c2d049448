"""The full-text search index of forum threads, kept by the projector.

One index row per post, keyed by the event sequence of the event that wrote the post: the title
(on the opening post's row only), the body and the thread id. A thread's rows are exactly its
posts up to its view's ``last_thread_seq``: when the projector moves a view forward it adds the
posts of the thread_seq range it moved over, in the same transaction (:func:`follow_view`), so the
index is idempotent with the view and never ahead of or behind it. ``projections rebuild``
rewrites it from the posts and the views (:func:`rebuild`), and ``--check`` compares it
(:func:`differences`).

- SQLite: an FTS5 virtual table ``forum_search(title, body, thread_id UNINDEXED)`` with the
  ``unicode61`` tokenizer (diacritics kept), rowid = sequence; ranked by ``bm25`` with a title
  match worth 10 body matches.
- PostgreSQL: a table ``forum_search(sequence, thread_id, title, body, document)``, ``document``
  a generated ``tsvector`` (``simple`` configuration: no stemming, no stop words; punctuation
  turned into spaces first, so words split as on SQLite; title weight A, body weight D) under a
  GIN index; ranked by ``ts_rank``.

A query is one phrase: its words, adjacent and in order, case-insensitive (README, "Searching").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Float, String, TextClause, bindparam, text
from sqlalchemy.sql.selectable import Subquery

from metawsm.services import search_sql
from metawsm.services.bulk import driver_rows

if TYPE_CHECKING:  # annotations only: a rebuild imports no message model
    from metawsm.messages.events import Event

# Event types that write a post (and so an index row).
POSTING = frozenset({"forum.thread.opened", "forum.post.added", "forum.control.signal"})
# Rows compared per round by differences(): bounded memory whatever the size of the log.
CHECK_CHUNK = 20_000

_POSTS = """
    SELECT e.sequence, e.thread_id,
           CASE WHEN p.kind = 'opening' THEN {title} ELSE '' END AS title, p.body
    FROM forum_events e JOIN forum_posts p ON p.event_id = e.event_id
"""
_THREAD_POSTS = (
    _POSTS.format(title=":title")
    + " WHERE e.thread_id = :thread AND e.thread_seq > :after AND e.thread_seq <= :upto"
)
# Every post a view covers: what the index holds when it agrees with the views.
_VIEW_POSTS = (
    _POSTS.format(title="v.title")
    + " JOIN forum_thread_views v"
    + " ON v.thread_id = e.thread_id AND e.thread_seq <= v.last_thread_seq"
)
# The rebuild's statement on SQLite: the same rows, read posts first (each post finds its event by
# the unique event_id, then its view), in the log's order (a post is written with its event) so
# FTS5 receives ascending rowids. The planner's own choice scans every event and looks up its
# view, posts or not: half again as long.
_VIEW_POSTS_BY_POST = (
    "SELECT e.sequence, e.thread_id, CASE WHEN p.kind = 'opening' THEN v.title ELSE '' END, p.body"
    " FROM forum_posts p CROSS JOIN forum_events e ON e.event_id = p.event_id"
    " CROSS JOIN forum_thread_views v"
    " ON v.thread_id = e.thread_id AND e.thread_seq <= v.last_thread_seq"
)
_INSERT = {
    "sqlite": "INSERT INTO forum_search (rowid, thread_id, title, body) ",
    "postgresql": "INSERT INTO forum_search (sequence, thread_id, title, body) ",
}
# A row already there (its view was deleted and re-folded from the log) is replaced: the same
# post gives the same row, so adding a post twice changes nothing.
_INDEX_THREAD = {
    "sqlite": text("INSERT OR REPLACE INTO forum_search (rowid, thread_id, title, body) "
                   + _THREAD_POSTS),
    "postgresql": text(_INSERT["postgresql"] + _THREAD_POSTS + " ON CONFLICT (sequence) DO UPDATE"
                       " SET thread_id = excluded.thread_id, title = excluded.title,"
                       " body = excluded.body"),
}  # fmt: skip
_KEY = {"sqlite": "rowid", "postgresql": "sequence"}
# True when the index rows of a sequence range are exactly the posts the views cover there:
# as many rows, each post's row with its values (keys are unique, so nothing else is left).
_SAME = """
    SELECT (SELECT count(*) FROM forum_search WHERE {key} >= :lo AND {key} < :hi) = count(*)
       AND count(s.{key}) = count(*)
       AND coalesce(sum(CASE WHEN {differs} THEN 1 ELSE 0 END), 0) = 0
    FROM ({posts} WHERE e.sequence >= :lo AND e.sequence < :hi) w
    LEFT JOIN forum_search s ON s.{key} = w.sequence
"""
_DIFFERS = {
    "sqlite": "s.thread_id IS NOT w.thread_id OR s.title IS NOT w.title OR s.body IS NOT w.body",
    "postgresql": "s.thread_id IS DISTINCT FROM w.thread_id OR s.title IS DISTINCT FROM w.title"
    " OR s.body IS DISTINCT FROM w.body",
}
_FTS_DEFINITION = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'forum_search'"
# FTS5 keeps its settings (automerge, crisismerge, ...) in a shadow table; 'version' is its own.
_FTS_SETTINGS = "SELECT k, v FROM forum_search_config WHERE k <> 'version' ORDER BY k"
_FTS_SET = "INSERT INTO forum_search (forum_search, rank) VALUES (?, ?)"


def follow_view(
    conn: Connection, event: Event, old: dict[str, Any] | None, new: dict[str, Any]
) -> None:
    """Index the posts the view moved over (``old`` -> ``new``), in the projector's transaction.

    One statement when the view moved past a post (or re-folded over a gap); none for an event
    that follows the view and writes no post (a state, priority or assignee change).
    """
    after = old["last_thread_seq"] if old is not None else 0
    upto = new["last_thread_seq"]
    if upto <= after:
        return
    if upto == after + 1 and event.thread_seq == upto and event.event_type not in POSTING:
        return
    params = {"thread": new["thread_id"], "after": after, "upto": upto, "title": new["title"]}
    conn.execute(_INDEX_THREAD[conn.dialect.name], params)


def rebuild(conn: Connection) -> None:
    """Rewrite the whole index from the posts and the (already rebuilt) thread views."""
    if conn.dialect.name == "sqlite":
        _recreate_fts_table(conn)
        conn.exec_driver_sql(_INSERT["sqlite"] + _VIEW_POSTS_BY_POST)
        return
    conn.execute(text("DELETE FROM forum_search"))
    conn.execute(text(_INSERT[conn.dialect.name] + _VIEW_POSTS))


def _recreate_fts_table(conn: Connection) -> None:
    """Empty the FTS5 table by dropping it and creating it again from its own definition, with
    the settings it had: a ``DELETE`` of every row reads each one back to unindex its words
    (1 s for 240,000 posts, the drop a sixth of that)."""
    create = conn.exec_driver_sql(_FTS_DEFINITION).scalar_one()
    settings = conn.exec_driver_sql(_FTS_SETTINGS).all()
    conn.exec_driver_sql("DROP TABLE forum_search")
    conn.exec_driver_sql(create)
    for name, value in settings:
        conn.exec_driver_sql(_FTS_SET, (name, value))


def differences(conn: Connection, limit: int = 200) -> list[str]:
    """How the index differs from the posts the thread views cover ([] when identical).

    Compared in sequence ranges of :data:`CHECK_CHUNK`, so memory stays bounded: both sides
    of a range are read in sequence order as the driver returns them and compared in one step,
    row by row only when they differ; at most ``limit`` differences are listed.
    """
    key = _KEY[conn.dialect.name]
    tops = f"SELECT max({key}) AS m FROM forum_search "
    tops += " UNION ALL SELECT max(sequence) FROM forum_events"
    top = conn.execute(text(f"SELECT max(m) FROM ({tops}) AS tops")).scalar()
    out: list[str] = []
    live_sql = text(
        f"SELECT {key}, thread_id, title, body FROM forum_search"
        f" WHERE {key} >= :lo AND {key} < :hi ORDER BY {key}"
    )
    want_sql = text(
        _VIEW_POSTS + " WHERE e.sequence >= :lo AND e.sequence < :hi ORDER BY e.sequence"
    )
    # No view covers any post: the index should be empty, and the log need not be read.
    any_view = conn.execute(text("SELECT 1 FROM forum_thread_views LIMIT 1")).first()
    same_sql = text(_SAME.format(posts=_VIEW_POSTS, key=key, differs=_DIFFERS[conn.dialect.name]))
    for lo in range(0, int(top or 0) + 1, CHECK_CHUNK):
        bounds = {"lo": lo, "hi": lo + CHECK_CHUNK}
        if any_view is not None and conn.execute(same_sql, bounds).scalar():
            continue  # compared in the database: no text read into Python (the common case)
        live = driver_rows(conn, live_sql, bounds)
        want = driver_rows(conn, want_sql, bounds) if any_view is not None else []
        if live == want:
            continue
        out += _diff_rows(_by_sequence(want), _by_sequence(live))
        if len(out) >= limit:
            break
    return out[:limit]


def _by_sequence(rows: list[tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    return {int(row[0]): tuple(row[1:]) for row in rows}


def _diff_rows(want: dict[int, tuple[Any, ...]], live: dict[int, tuple[Any, ...]]) -> list[str]:
    out = []
    for seq in sorted(set(want) | set(live)):
        have, rebuilt = live.get(seq), want.get(seq)
        if have != rebuilt:
            out.append(f"search index row {seq}: live={_short(have)} rebuilt={_short(rebuilt)}")
    return out


def _short(row: tuple[Any, ...] | None) -> str:
    return "missing" if row is None else repr(row)[:120]


def hits(dialect: str, query: str) -> Subquery:
    """``(thread_id, score)`` of the threads matching ``query``; a lower score ranks first.

    Raises:
        UsageError: the query holds no letter or digit (nothing a word index can match).
    """
    stmt: TextClause = text(search_sql.HITS[dialect]).bindparams(
        bindparam("phrase", search_sql.phrase(dialect, query))
    )
    return stmt.columns(thread_id=String, score=Float).subquery("hits")
