"""``/api/v1/events`` (the event log by cursor), ``/api/v1/events/stream`` (Server-Sent
Events) and ``/api/v1/forum/stats``.

The stream: every event after the cursor (``?cursor=``, or the ``Last-Event-ID`` header of a
reconnecting client), once each, in commit order, then live ones as they commit; each SSE
message has ``id: <sequence>`` and the event (as ``forum events --json`` prints it) as its data,
and a comment line keeps an idle connection alive. Every client is fed by the process's one
follower (``api/follower.py``), not by reads of its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.errors import ApiError
from metawsm.api.follower import StreamFilter
from metawsm.api.reads import reading
from metawsm.api.routes.common import ERRORS, Caller, Limit, State, read
from metawsm.api.state import ApiState
from metawsm.services import thread_reads

router = APIRouter(prefix="/api/v1", tags=["events"], responses=ERRORS)
Cursor = Annotated[int, Query(ge=0, description="Events with a sequence above this.")]


@router.get("/events", summary="The event log after a cursor, in commit order")
async def events(
    app: State,
    _: Caller,
    cursor: Cursor = 0,
    ticket: str | None = None,
    run_id: str | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    """``{events, next_cursor}``: ``next_cursor`` is the last event's sequence (the input
    cursor when there is none), what the next call passes."""
    rows = await read(
        app,
        lambda db: thread_reads.events_after(db, cursor, ticket=ticket, run_id=run_id, limit=limit),
    )
    return {"events": rows, "next_cursor": rows[-1]["sequence"] if rows else cursor}


@router.get(
    "/events/stream",
    summary="Live events (Server-Sent Events) from a cursor, resumable with Last-Event-ID",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    app: State,
    _: Caller,
    cursor: Cursor = 0,
    ticket: str | None = None,
    run_id: str | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every event after ``cursor`` (or after ``Last-Event-ID``, which wins), then live."""
    start = _resume_point(cursor, last_event_id)
    wanted = StreamFilter(ticket=ticket, run_id=run_id)
    if not app.follower.ready:
        reason = app.follower.error or "it has not read the log yet"
        raise ApiError(503, "stream_unavailable", f"the event follower is not ready: {reason}")
    return StreamingResponse(
        event_messages(app, start, wanted),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _resume_point(cursor: int, last_event_id: str | None) -> int:
    if last_event_id is None or not last_event_id.strip():
        return cursor
    text = last_event_id.strip()
    if not text.isdigit():
        raise ApiError(422, "invalid_input", f"Last-Event-ID {text[:40]!r}: must be a sequence",
                       field="Last-Event-ID", rule="non_negative_integer")  # fmt: skip
    return int(text)


async def event_messages(app: ApiState, start: int, wanted: StreamFilter) -> AsyncIterator[str]:
    """The SSE text of every event after ``start`` that ``wanted`` keeps, then live ones
    (the API's stream and the board's)."""
    engine = app.container.engine

    def page(after: int, limit: int, keep: StreamFilter) -> list[dict[str, Any]]:
        with reading(engine) as db:
            return thread_reads.events_after(
                db, after, ticket=keep.ticket, run_id=keep.run_id, limit=limit
            )

    app.stream_clients += 1
    try:
        yield f"retry: 1000\n: stream from {start}\n\n"
        events = app.follower.stream(
            start, wanted, page, heartbeat_s=app.options.stream_heartbeat_s
        )
        async for event in events:
            if event is None:
                yield ": keep-alive\n\n"
            else:
                yield f"id: {event['sequence']}\ndata: {json.dumps(event, sort_keys=True)}\n\n"
    finally:
        app.stream_clients -= 1


@router.get("/forum/stats", summary="Thread counts per ticket, run, state and priority")
async def stats(
    app: State, _: Caller, ticket: str | None = None, run_id: str | None = None
) -> dict[str, Any]:
    """``{stats: [{ticket, run_id, state, priority, thread_count}]}``."""
    from metawsm.services import queries

    rows = await run_in_threadpool(
        lambda: queries.stats(app.container.engine, ticket=ticket, run_id=run_id)
    )
    return {"stats": rows}
