"""The forum reads of the command line, through the driver: list, thread, search, queues, events.

Same statements and results as :mod:`metawsm.services.queries` (which runs them through the ORM
for in-process callers; ``tests/integration/test_direct_reads.py`` compares the two on both
backends), without importing SQLAlchemy, the models or pydantic: a ``forum list`` process costs
a few tens of ms instead of half a second (docs/performance.md, "Command-line start-up").

Events are rendered from their stored rows as ``Event.model_dump(mode="json")`` renders them:
each was validated and normalised when it was appended (services/eventlog.py), so the stored
envelope and payload are the validated ones (the snapshot trusts them the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metawsm.errors import NotFound, UsageError
from metawsm.services import search_sql
from metawsm.storage.dbapi import Reader, flag, iso, json_value, placeholders, utc

QUEUES = ("unseen", "unanswered")
# Posts per page of ``forum thread`` (default and maximum).
POSTS_PAGE = 50
POSTS_PAGE_MAX = 1000

# forum_thread_views, in the model's column order (a unit test compares them).
VIEW_COLUMNS = [
    "thread_id",
    "ticket",
    "run_id",
    "agent_name",
    "title",
    "state",
    "priority",
    "assignee_type",
    "assignee_name",
    "opened_by_type",
    "opened_by_name",
    "is_control",
    "posts_count",
    "last_post_at",
    "last_post_by_type",
    "last_post_by_name",
    "opened_at",
    "updated_at",
    "closed_at",
    "last_event_sequence",
    "last_thread_seq",
    "last_actor_type",
    "last_non_system_actor_type",
    "last_human_or_operator_sequence",
    "last_agent_sequence",
    "urgency",
    "is_unanswered",
]
VIEW_TIMES = ("last_post_at", "opened_at", "updated_at", "closed_at")
VIEW_FLAGS = ("is_control", "is_unanswered")
_VIEW = ", ".join(f"v.{c}" for c in VIEW_COLUMNS)
# Urgency first, then the most recent activity: the order of ix_forum_thread_views_list (and of
# its ticket and unanswered variants), read backwards, so a page costs the same at any size.
LIST_ORDER = "v.urgency DESC, v.last_event_sequence DESC"

EVENT_COLUMNS = [
    "event_id",
    "event_type",
    "event_version",
    "occurred_at",
    "sequence",
    "thread_id",
    "thread_seq",
    "run_id",
    "ticket",
    "agent_name",
    "actor_type",
    "actor_name",
    "correlation_id",
    "causation_id",
    "payload",
]
_EVENT = ", ".join(EVENT_COLUMNS)
# Envelope fields that are optional names or identifiers: blank is None, as the model reads them.
_OPTIONAL = ("thread_id", "run_id", "ticket", "agent_name", "correlation_id", "causation_id")

_ONE_VIEW = f"SELECT {_VIEW} FROM forum_thread_views v WHERE v.thread_id = :t"
_POSTS = (
    "SELECT p.post_id, e.thread_seq, p.event_id, p.author_type, p.author_name, p.kind, p.body,"
    " p.created_at FROM forum_posts p JOIN forum_events e ON e.event_id = p.event_id"
    " WHERE e.thread_id = :thread_id AND e.thread_seq <= :upto"
    " ORDER BY e.thread_seq DESC LIMIT :n"
)
_THREAD_EVENTS = (
    f"SELECT {_EVENT} FROM forum_events"
    " WHERE thread_id = :thread_id AND thread_seq BETWEEN :since AND :upto ORDER BY thread_seq"
)
_UNSEEN = (
    " AND NOT EXISTS (SELECT r.thread_id FROM forum_thread_reads r"
    " WHERE r.thread_id = v.thread_id AND r.viewer_type = :viewer_type"
    " AND r.viewer_id = :viewer_id AND r.last_seen_event_sequence >= v.last_event_sequence)"
)


@dataclass(frozen=True)
class ThreadFilter:
    """Filters shared by list, search and queues (None = any)."""

    ticket: str | None = None
    run_id: str | None = None
    state: str | None = None
    priority: str | None = None
    assignee: str | None = None
    include_control: bool = True

    def equalities(self) -> dict[str, Any]:
        """``{view column: value}`` of the filters that are set."""
        pairs = {
            "ticket": self.ticket,
            "run_id": self.run_id,
            "state": self.state,
            "priority": self.priority,
            "assignee_name": self.assignee,
        }
        out: dict[str, Any] = {k: v for k, v in pairs.items() if v is not None}
        if not self.include_control:
            out["is_control"] = False
        return out


def _where(filters: ThreadFilter) -> tuple[str, dict[str, Any]]:
    equal = filters.equalities()
    sql = "".join(f" AND v.{column} = :f_{column}" for column in equal)
    return " WHERE 1 = 1" + sql, {f"f_{k}": v for k, v in equal.items()}


def list_threads(db: Reader, filters: ThreadFilter, limit: int = 50) -> list[dict[str, Any]]:
    """Threads by urgency (urgent first), then most recent activity."""
    where, params = _where(filters)
    sql = f"SELECT {_VIEW} FROM forum_thread_views v{where} ORDER BY {LIST_ORDER} LIMIT :limit"
    return [view_out(row) for row in db.rows(sql, {**params, "limit": limit})]


def thread_detail(
    db: Reader, thread_id: str, *, limit: int = POSTS_PAGE, before: int | None = None
) -> dict[str, Any]:
    """The thread's view and one page of its posts and events, as of one point of its history
    (see :func:`metawsm.services.queries.thread_detail`).

    Raises:
        NotFound: no view exists for that thread (unknown, or not projected yet).
        UsageError: ``limit`` outside 1..POSTS_PAGE_MAX or ``before`` below 1.
    """
    check_page(limit, before)
    views = db.rows(_ONE_VIEW, {"t": thread_id})
    if not views:
        raise NotFound(f"forum thread {thread_id} not found")
    view = views[0]
    as_of = int(view["last_thread_seq"])
    upto = as_of if before is None else min(as_of, before - 1)
    posts = db.rows(_POSTS, {"thread_id": thread_id, "upto": upto, "n": limit + 1})
    more = len(posts) > limit
    posts = posts[:limit][::-1]
    since = posts[0]["thread_seq"] if posts and more else 1
    events = db.rows(_THREAD_EVENTS, {"thread_id": thread_id, "since": since, "upto": upto})
    return {
        "thread": view_out(view),
        "as_of_thread_seq": as_of,
        "posts": [{**p, "created_at": iso(p["created_at"])} for p in posts],
        "events": [event_out(e, db.dialect) for e in events],
        "page": page(thread_id, limit, before, since if more else None),
    }


def check_page(limit: int, before: int | None) -> None:
    """Raises UsageError for a page size outside 1..POSTS_PAGE_MAX or ``before`` below 1."""
    if not 1 <= limit <= POSTS_PAGE_MAX:
        raise UsageError(f"limit {limit}: must be between 1 and {POSTS_PAGE_MAX}")
    if before is not None and before < 1:
        raise UsageError(f"before {before}: must be a positive thread_seq")


def page(thread_id: str, limit: int, before: int | None, next_before: int | None) -> dict[str, Any]:
    """The ``page`` part of a thread's detail, with the command that shows the next page."""
    out: dict[str, Any] = {"limit": limit, "before": before, "next_before": next_before}
    if next_before is not None:
        out["next"] = (
            f"metawsm forum thread --thread-id {thread_id} --limit {limit} --before {next_before}"
        )
    return out


def check_queue(queue: str | None, viewer: tuple[str, str] | None) -> None:
    """Raises UsageError for an unknown queue, or ``unseen`` without a viewer."""
    if queue is not None and queue not in QUEUES:
        raise UsageError(f"queue {queue!r}: must be one of {'|'.join(QUEUES)}")
    if queue == "unseen" and viewer is None:
        raise UsageError("queue unseen: needs a viewer (type and id)")


def search(
    db: Reader,
    filters: ThreadFilter,
    query: str | None = None,
    *,
    viewer: tuple[str, str] | None = None,
    queue: str | None = None,
    cursor: int | None = None,
    after: tuple[int, int] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Threads matching ``query``, best match first, then by urgency and most recent activity
    (see :func:`metawsm.services.queries.search`).

    ``after`` = (urgency, last_event_sequence) of the last row of the previous page: the rows
    that follow it in the list's order (the board's pages; without a query only, since a
    match's score is no stable place to resume from).

    Raises:
        UsageError: an unknown queue, ``unseen`` without a viewer, a query with no word, or
            ``after`` with a query.
    """
    check_queue(queue, viewer)
    if after is not None and query:
        raise UsageError("after: pages a list without a query only")
    where, params = _where(filters)
    sql, order = f"SELECT {_VIEW} FROM forum_thread_views v", LIST_ORDER
    if query:
        params["phrase"] = search_sql.phrase(db.dialect, query)
        sql += f" JOIN ({search_sql.HITS[db.dialect]}) hits ON hits.thread_id = v.thread_id"
        order = f"hits.score, {order}"
    sql += where
    if cursor is not None:
        sql, params["cursor"] = sql + " AND v.last_event_sequence < :cursor", cursor
    if after is not None:
        # A row value: both dialects read the list's index backwards from this place.
        sql += " AND (v.urgency, v.last_event_sequence) < (:after_u, :after_s)"
        params["after_u"], params["after_s"] = after
    if queue == "unanswered":
        sql, params["yes"] = sql + " AND v.is_unanswered = :yes", True
    elif queue == "unseen" and viewer is not None:
        sql += _UNSEEN
        params["viewer_type"], params["viewer_id"] = viewer
    found = db.rows(f"{sql} ORDER BY {order} LIMIT :limit", {**params, "limit": limit})
    rows = [view_out(r) for r in found]
    _flag_unseen(db, rows, viewer)
    return rows


def _flag_unseen(db: Reader, rows: list[dict[str, Any]], viewer: tuple[str, str] | None) -> None:
    seen: dict[str, int] = {}
    if viewer is not None and rows:
        names, params = placeholders("t", [r["thread_id"] for r in rows])
        reads = db.rows(
            "SELECT thread_id, last_seen_event_sequence FROM forum_thread_reads"
            f" WHERE viewer_type = :vt AND viewer_id = :vid AND thread_id IN ({names})",
            {**params, "vt": viewer[0], "vid": viewer[1]},
        )
        seen = {r["thread_id"]: int(r["last_seen_event_sequence"]) for r in reads}
    for row in rows:
        row["is_unseen"] = row["last_event_sequence"] > seen.get(row["thread_id"], 0)


def events_after(
    db: Reader,
    cursor: int = 0,
    *,
    ticket: str | None = None,
    run_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Events with sequence > ``cursor`` in sequence (= commit) order."""
    sql = f"SELECT {_EVENT} FROM forum_events WHERE sequence > :cursor"
    params: dict[str, Any] = {"cursor": cursor, "limit": limit}
    if ticket is not None:
        sql, params["ticket"] = sql + " AND ticket = :ticket", ticket
    if run_id is not None:
        sql, params["run_id"] = sql + " AND run_id = :run_id", run_id
    rows = db.rows(sql + " ORDER BY sequence LIMIT :limit", params)
    return [event_out(r, db.dialect) for r in rows]


def last_sequence(db: Reader) -> int:
    """The highest event sequence so far (0 when the log is empty)."""
    return int(db.scalar("SELECT max(sequence) FROM forum_events") or 0)


def view_out(row: dict[str, Any]) -> dict[str, Any]:
    """A view row as the JSON the reads print (timestamps ISO 8601, flags booleans)."""
    for column in VIEW_TIMES:
        row[column] = iso(row[column])
    for column in VIEW_FLAGS:
        row[column] = flag(row[column])
    return row


def event_out(row: dict[str, Any], dialect: str) -> dict[str, Any]:
    """An event row as ``Event.model_dump(mode="json")`` renders it."""
    out = {name: row[name] for name in EVENT_COLUMNS if not name.startswith("actor_")}
    for name in _OPTIONAL:
        value = out[name]
        out[name] = value.strip() or None if isinstance(value, str) else value
    out["event_id"] = str(out["event_id"]).strip()
    occurred = utc(row["occurred_at"])
    assert occurred is not None
    out["occurred_at"] = occurred.isoformat().replace("+00:00", "Z")
    out["actor"] = {"type": row["actor_type"], "name": str(row["actor_name"]).strip()}
    out["payload"] = json_value(row["payload"], dialect)
    return out
