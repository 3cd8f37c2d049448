"""The board's live updates: the API's event stream, for a signed-in session.

A browser's ``EventSource`` cannot send an ``Authorization`` header, so the board has its own
path to the same stream (``api/routes/log.py`` ``event_messages``, fed by the process's one
follower), authenticated by the session cookie. The page's script re-reads the live part of
the page when an event arrives and resumes from the last event it saw (``Last-Event-ID``)
after a disconnection, so nothing committed in between is missed.

The page shows read models, which an events worker fills a moment after the event commits; so
an event is sent once it is projected (a re-read then shows it), and a page's starting cursor
is the position every event up to which it shows (``services/projected.py``), not the log's
head: an event committed but not yet projected when the page was rendered still comes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from metawsm.api.errors import ApiError
from metawsm.api.follower import StreamFilter
from metawsm.api.reads import reading
from metawsm.api.state import ApiState, api_state
from metawsm.board.session import board_identity
from metawsm.identity import Identity
from metawsm.services import thread_reads
from metawsm.services.projected import is_event_projected, projected_through

router = APIRouter(include_in_schema=False)


@router.get("/board/events")
async def board_events(
    request: Request,
    _: Annotated[Identity, Depends(board_identity)],
    cursor: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every event after ``cursor`` (or ``Last-Event-ID`` on a reconnection), then live."""
    state = api_state(request)
    if not state.follower.ready:
        raise ApiError(503, "stream_unavailable", "the event follower is not ready")
    start = int(last_event_id) if last_event_id and last_event_id.isdigit() else cursor
    return StreamingResponse(
        projected_messages(state, start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# How long an event waits to be projected before it is sent anyway (workers stopped: the page
# re-reads what there is, and says nothing is lost: the event is in the log).
PROJECTION_WAIT_S = 3.0
_FIRST_PAUSE_S = 0.005
_MAX_PAUSE_S = 0.1


def page_cursor(state: ApiState) -> int:
    """Where a page rendered now starts its live stream: every event up to it is shown."""
    with reading(state.container.engine) as db:
        return projected_through(db, state.follower.head)


async def note_page_cursor(request: Request) -> None:
    """Take a page's live cursor before its reads (a dependency of the page routes): an
    event projected while the page reads then comes again, rather than not at all."""
    if request.method == "GET":
        request.state.board_cursor = await asyncio.to_thread(page_cursor, api_state(request))


async def projected_messages(state: ApiState, start: int) -> AsyncIterator[str]:
    """The SSE text of every event after ``start``, each once it is in the read models."""
    engine = state.container.engine

    def page(after: int, limit: int, _: StreamFilter) -> list[dict[str, Any]]:
        with reading(engine) as db:
            return thread_reads.events_after(db, after, limit=limit)

    state.stream_clients += 1
    try:
        yield f"retry: 1000\n: stream from {start}\n\n"
        events = state.follower.stream(
            start, StreamFilter(), page, heartbeat_s=state.options.stream_heartbeat_s
        )
        async for event in events:
            if event is None:
                yield ": keep-alive\n\n"
                continue
            await _until_projected(state, str(event["event_id"]))
            yield f"id: {event['sequence']}\ndata: {json.dumps(event, sort_keys=True)}\n\n"
    finally:
        state.stream_clients -= 1


async def _until_projected(state: ApiState, event_id: str) -> None:
    engine = state.container.engine

    def projected() -> bool:
        with reading(engine) as db:
            return is_event_projected(db, event_id)

    deadline = time.monotonic() + PROJECTION_WAIT_S
    pause = _FIRST_PAUSE_S
    while not await asyncio.to_thread(projected) and time.monotonic() < deadline:
        await asyncio.sleep(pause)  # polling a condition, with a deadline
        pause = min(pause * 2, _MAX_PAUSE_S)
