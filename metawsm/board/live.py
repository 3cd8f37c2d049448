"""The board's live updates: the API's event stream, for a signed-in session.

A browser's ``EventSource`` cannot send an ``Authorization`` header, so the board has its own
path to the same stream (``api/routes/log.py`` ``event_messages``, fed by the process's one
follower), authenticated by the session cookie. The page's script re-reads the live part of
the page when an event arrives and resumes from the last event it saw (``Last-Event-ID``)
after a disconnection, so nothing committed in between is missed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from metawsm.api.errors import ApiError
from metawsm.api.follower import StreamFilter
from metawsm.api.routes.log import event_messages
from metawsm.api.state import api_state
from metawsm.board.session import board_identity
from metawsm.identity import Identity

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
        event_messages(state, start, StreamFilter()),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
