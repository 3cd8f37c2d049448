"""Reads: threads, thread detail, search, queues, the event log and stats — from read models.

Every function opens a read-only unit of work; none needs Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, case, func, or_, select
from sqlalchemy.orm import Session

from metawsm.domain.views import is_unanswered
from metawsm.errors import NotFound
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import view_dict
from metawsm.storage.models import (
    ForumEvent,
    ForumPost,
    ForumThreadRead,
    ForumThreadStat,
    ForumThreadView,
)
from metawsm.storage.uow import unit_of_work

V = ForumThreadView
PRIORITY_ORDER = case({"urgent": 1, "high": 2, "normal": 3, "low": 4}, value=V.priority, else_=5)


@dataclass(frozen=True)
class ThreadFilter:
    """Filters shared by list, search and queues (None = any)."""

    ticket: str | None = None
    run_id: str | None = None
    state: str | None = None
    priority: str | None = None
    assignee: str | None = None
    include_control: bool = True

    def clauses(self) -> list[Any]:
        """SQL conditions for these filters."""
        out: list[Any] = []
        for column, value in (
            (V.ticket, self.ticket),
            (V.run_id, self.run_id),
            (V.state, self.state),
            (V.priority, self.priority),
            (V.assignee_name, self.assignee),
        ):
            if value is not None:
                out.append(column == value)
        if not self.include_control:
            out.append(V.is_control.is_(False))
        return out


def list_threads(engine: Engine, filters: ThreadFilter, limit: int = 50) -> list[dict[str, Any]]:
    """Threads by priority rank, then most recent activity."""
    with unit_of_work(engine, readonly=True) as session:
        query = (
            select(V)
            .where(*filters.clauses())
            .order_by(PRIORITY_ORDER, V.last_event_sequence.desc(), V.thread_id)
            .limit(limit)
        )
        return [_view_out(v) for v in session.execute(query).scalars()]


def thread_detail(engine: Engine, thread_id: str) -> dict[str, Any]:
    """The thread's view, its posts and its events, all as of one point of the thread's history.

    The view is what the projector has applied so far (up to its ``last_thread_seq``); the posts
    and events are read up to that same point, so the header never describes fewer posts than
    are listed (or more). ``as_of_thread_seq`` says which point that is.

    Raises:
        NotFound: no view exists for that thread (unknown, or not projected yet).
    """
    with unit_of_work(engine, readonly=True) as session:
        view = session.get(V, thread_id)
        if view is None:
            raise NotFound(f"forum thread {thread_id} not found")
        as_of = view.last_thread_seq
        posts = session.execute(
            select(ForumPost)
            .join(ForumEvent, ForumEvent.event_id == ForumPost.event_id)
            .where(ForumPost.thread_id == thread_id, ForumEvent.thread_seq <= as_of)
            .order_by(ForumEvent.thread_seq)
        ).scalars()
        events = session.execute(
            select(ForumEvent)
            .where(ForumEvent.thread_id == thread_id, ForumEvent.thread_seq <= as_of)
            .order_by(ForumEvent.sequence)
        ).scalars()
        return {
            "thread": _view_out(view),
            "as_of_thread_seq": as_of,
            "posts": [_post_out(p) for p in posts],
            "events": [row_to_event(e).model_dump(mode="json") for e in events],
        }


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
    """Threads matching ``query`` (title or any post, case-insensitive), newest activity first.

    ``queue`` is ``unseen`` (needs ``viewer``) or ``unanswered``; ``cursor`` pages by
    ``last_event_sequence`` (exclusive). Title hits rank before body-only hits.
    """
    with unit_of_work(engine, readonly=True) as session:
        stmt = select(V).where(*filters.clauses())
        order: list[Any] = [PRIORITY_ORDER, V.last_event_sequence.desc()]
        if query:
            stmt, rank = _text_match(stmt, query)
            order.insert(0, rank)
        if cursor is not None:
            stmt = stmt.where(V.last_event_sequence < cursor)
        stmt = stmt.order_by(*order)
        rows = [_view_out(v) for v in session.execute(stmt).scalars()]
        _flag(session, rows, viewer)
    if queue == "unseen":
        rows = [r for r in rows if r["is_unseen"]]
    elif queue == "unanswered":
        rows = [r for r in rows if r["is_unanswered"]]
    return rows[:limit]


def _text_match(stmt: Any, query: str) -> tuple[Any, Any]:
    pattern = f"%{query.lower()}%"
    in_title = func.lower(V.title).like(pattern)
    in_body = (
        select(ForumPost.post_id)
        .where(ForumPost.thread_id == V.thread_id, func.lower(ForumPost.body).like(pattern))
        .exists()
    )
    return stmt.where(or_(in_title, in_body)), case((in_title, 0), else_=1)


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
    data["is_unanswered"] = is_unanswered(data)
    for key, value in list(data.items()):
        if hasattr(value, "isoformat"):
            data[key] = value.isoformat()
    return data


def _post_out(post: ForumPost) -> dict[str, Any]:
    return {
        "post_id": post.post_id,
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
