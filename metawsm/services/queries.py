"""Reads: threads, thread detail, search, queues, the event log and stats — from read models.

Every function opens a read-only unit of work; none needs Redis.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.orm import Session

from metawsm.errors import NotFound
from metawsm.services import search_index
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import view_dict
from metawsm.services.thread_reads import (  # shared with the driver reads of the CLI
    POSTS_PAGE,
    ThreadFilter,
    check_page,
    check_queue,
    page,
)
from metawsm.storage.models import (
    ForumEvent,
    ForumPost,
    ForumThreadRead,
    ForumThreadStat,
    ForumThreadView,
)
from metawsm.storage.uow import unit_of_work

V = ForumThreadView
# Urgency first, then the most recent activity: the order of ix_forum_thread_views_list (and of
# its ticket and unanswered variants), read backwards, so a page costs the same at any size.
# No tie-break is needed: a view's last_event_sequence is its newest event's, unique in the log.
LIST_ORDER = (V.urgency.desc(), V.last_event_sequence.desc())


def _clauses(filters: ThreadFilter) -> list[Any]:
    """SQL conditions for ``filters``."""
    return [getattr(V, column) == value for column, value in filters.equalities().items()]


def list_threads(engine: Engine, filters: ThreadFilter, limit: int = 50) -> list[dict[str, Any]]:
    """Threads by urgency (urgent first), then most recent activity."""
    with unit_of_work(engine, readonly=True) as session:
        query = select(V).where(*_clauses(filters)).order_by(*LIST_ORDER).limit(limit)
        return [_view_out(v) for v in session.execute(query).scalars()]


def thread_detail(
    engine: Engine, thread_id: str, *, limit: int = POSTS_PAGE, before: int | None = None
) -> dict[str, Any]:
    """The thread's view and one page of its posts and events, as of one point of its history.

    The view is what the projector has applied so far (up to its ``last_thread_seq``); the posts
    and events are read up to that same point, so the header never describes fewer posts than
    are listed (or more). ``as_of_thread_seq`` says which point that is.

    A page is the newest ``limit`` posts with ``thread_seq`` below ``before`` (all, when None),
    oldest first, with the events from its oldest post on: the pages split the thread's events
    between them. ``page.next_before`` is the ``before`` of the next (older) page, None on the
    last one.

    Raises:
        NotFound: no view exists for that thread (unknown, or not projected yet).
        UsageError: ``limit`` outside 1..POSTS_PAGE_MAX or ``before`` below 1.
    """
    check_page(limit, before)
    with unit_of_work(engine, readonly=True) as session:
        view = session.get(V, thread_id)
        if view is None:
            raise NotFound(f"forum thread {thread_id} not found")
        as_of = view.last_thread_seq
        upto = as_of if before is None else min(as_of, before - 1)
        posts = _newest_posts(session, thread_id, upto, limit + 1)
        more = len(posts) > limit
        posts = posts[:limit][::-1]
        since = posts[0][1] if posts and more else 1
        events = session.execute(
            select(ForumEvent)
            .where(ForumEvent.thread_id == thread_id, ForumEvent.thread_seq.between(since, upto))
            .order_by(ForumEvent.thread_seq)
        ).scalars()
        return {
            "thread": _view_out(view),
            "as_of_thread_seq": as_of,
            "posts": [_post_out(p, seq) for p, seq in posts],
            "events": [row_to_event(e).model_dump(mode="json") for e in events],
            "page": page(thread_id, limit, before, since if more else None),
        }


def _newest_posts(session: Session, thread_id: str, upto: int, n: int) -> list[Any]:
    """Up to ``n`` (post, thread_seq) of the thread at or below ``upto``, newest first."""
    return list(
        session.execute(
            select(ForumPost, ForumEvent.thread_seq)
            .join(ForumEvent, ForumEvent.event_id == ForumPost.event_id)
            .where(ForumEvent.thread_id == thread_id, ForumEvent.thread_seq <= upto)
            .order_by(ForumEvent.thread_seq.desc())
            .limit(n)
        ).all()
    )


def search(
    engine: Engine,
    filters: ThreadFilter,
    query: str | None = None,
    *,
    viewer: tuple[str, str] | None = None,
    queue: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Threads matching ``query`` (a phrase of whole words in the title or any post,
    case-insensitive), best match first, then by urgency and most recent activity.

    ``queue`` is ``unseen`` (needs ``viewer``) or ``unanswered``; ``cursor`` keeps threads whose
    ``last_event_sequence`` is below it. The text goes through the full-text index and the
    queues through indexes of the view (docs/performance.md, "Search, queues, lists at scale").

    Raises:
        UsageError: an unknown queue, ``unseen`` without a viewer, or a query with no word.
    """
    check_queue(queue, viewer)
    with unit_of_work(engine, readonly=True) as session:
        stmt = select(V).where(*_clauses(filters))
        order: list[Any] = list(LIST_ORDER)
        if query:
            hits = search_index.hits(session.connection().dialect.name, query)
            stmt = stmt.join(hits, hits.c.thread_id == V.thread_id)
            order.insert(0, hits.c.score)
        if cursor is not None:
            stmt = stmt.where(V.last_event_sequence < cursor)
        if queue == "unanswered":
            stmt = stmt.where(V.is_unanswered.is_(True))
        elif queue == "unseen" and viewer is not None:
            stmt = stmt.where(~_seen(viewer).exists())
        stmt = stmt.order_by(*order).limit(limit)
        rows = [_view_out(v) for v in session.execute(stmt).scalars()]
        _flag(session, rows, viewer)
    return rows


def _seen(viewer: tuple[str, str]) -> Any:
    """The viewer's watermark row that covers the view's newest event (indexed anti-join)."""
    R = ForumThreadRead
    return select(R.thread_id).where(
        R.thread_id == V.thread_id,
        R.viewer_type == viewer[0],
        R.viewer_id == viewer[1],
        R.last_seen_event_sequence >= V.last_event_sequence,
    )


def _flag(session: Session, rows: list[dict[str, Any]], viewer: tuple[str, str] | None) -> None:
    seen: dict[str, int] = {}
    if viewer is not None and rows:
        reads = session.execute(
            select(ForumThreadRead.thread_id, ForumThreadRead.last_seen_event_sequence).where(
                and_(
                    ForumThreadRead.viewer_type == viewer[0],
                    ForumThreadRead.viewer_id == viewer[1],
                    ForumThreadRead.thread_id.in_([r["thread_id"] for r in rows]),
                )
            )
        ).all()
        seen = {thread_id: int(seq) for thread_id, seq in reads}
    for row in rows:
        row["is_unseen"] = row["last_event_sequence"] > seen.get(row["thread_id"], 0)


def events_after(
    engine: Engine,
    cursor: int = 0,
    *,
    ticket: str | None = None,
    run_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Events with sequence > ``cursor`` in sequence (= commit) order."""
    with unit_of_work(engine, readonly=True) as session:
        stmt = select(ForumEvent).where(ForumEvent.sequence > cursor)
        if ticket is not None:
            stmt = stmt.where(ForumEvent.ticket == ticket)
        if run_id is not None:
            stmt = stmt.where(ForumEvent.run_id == run_id)
        rows = session.execute(stmt.order_by(ForumEvent.sequence).limit(limit)).scalars()
        return [row_to_event(r).model_dump(mode="json") for r in rows]


def last_sequence(engine: Engine) -> int:
    """The highest event sequence so far (0 when the log is empty)."""
    with unit_of_work(engine, readonly=True) as session:
        return int(session.execute(select(func.max(ForumEvent.sequence))).scalar() or 0)


def stats(
    engine: Engine, *, ticket: str | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Thread counts per (ticket, run, state, priority)."""
    S = ForumThreadStat
    with unit_of_work(engine, readonly=True) as session:
        stmt = select(S)
        if ticket is not None:
            stmt = stmt.where(S.ticket == ticket)
        if run_id is not None:
            stmt = stmt.where(S.run_id == run_id)
        stmt = stmt.order_by(S.ticket, S.run_id, S.state, S.priority)
        return [
            {
                "ticket": s.ticket,
                "run_id": s.run_id,
                "state": s.state,
                "priority": s.priority,
                "thread_count": s.thread_count,
            }
            for s in session.execute(stmt).scalars()
        ]


def _view_out(view: ForumThreadView) -> dict[str, Any]:
    data = view_dict(view)
    for key, value in list(data.items()):
        if hasattr(value, "isoformat"):
            data[key] = value.isoformat()
    return data


def _post_out(post: ForumPost, thread_seq: int) -> dict[str, Any]:
    return {
        "post_id": post.post_id,
        "thread_seq": thread_seq,
        "event_id": post.event_id,
        "author_type": post.author_type,
        "author_name": post.author_name,
        "kind": post.kind,
        "body": post.body,
        "created_at": post.created_at.isoformat(),
    }


def mark_seen(
    engine: Engine, thread_id: str, viewer_type: str, viewer_id: str, sequence: int = 0
) -> dict[str, Any]:
    """Move a viewer's 'last seen' watermark on a thread forward (never back).

    ``sequence`` <= 0 means the thread's latest event.

    Raises:
        NotFound: the thread has no view.
        Rejected: the viewer type is not human or agent, or the viewer id is blank.
    """
    from metawsm.errors import Rejected
    from metawsm.storage.types import utcnow

    if viewer_type not in ("human", "agent"):
        raise Rejected("viewer_type must be one of human|agent")
    if not viewer_id.strip():
        raise Rejected("viewer_id is required")
    with unit_of_work(engine) as session:
        view = session.get(V, thread_id)
        if view is None:
            raise NotFound(f"forum thread {thread_id} not found")
        target = view.last_event_sequence if sequence <= 0 else sequence
        key = {"thread_id": thread_id, "viewer_type": viewer_type, "viewer_id": viewer_id.strip()}
        row = session.get(ForumThreadRead, key)
        if row is None:
            row = ForumThreadRead(last_seen_event_sequence=target, updated_at=utcnow(), **key)
            session.add(row)
        elif target > row.last_seen_event_sequence:
            row.last_seen_event_sequence, row.updated_at = target, utcnow()
        return {**key, "last_seen_event_sequence": row.last_seen_event_sequence}
