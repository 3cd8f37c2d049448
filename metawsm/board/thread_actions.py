"""Thread actions from the board's forms: answer, post, assign, state, priority, close, seen.

Each is the command the API's route of the same name submits (``api/routes/forum.py``), built
from the form's fields by the command's own contract, as the signed-in identity: an agent's
session is refused what an agent is refused everywhere, with the rule named on the page.
"""

from __future__ import annotations

from typing import Annotated, NamedTuple

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.state import api_state
from metawsm.board.actions import act, form_of, redirect, submit
from metawsm.board.inbox import viewer_of
from metawsm.board.session import board_identity, check_csrf
from metawsm.identity import Identity
from metawsm.messages.common import MAX_ID_CHARS

router = APIRouter(include_in_schema=False)
Signed = Annotated[Identity, Depends(board_identity)]
ThreadId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]


class ThreadAction(NamedTuple):
    """A form's command: its type, the form fields it takes, and what the page says after."""

    command_type: str
    fields: tuple[str, ...]
    done: str


ACTIONS = {
    "answer": ThreadAction("answer_thread", ("body",), "Answered"),
    "post": ThreadAction("add_post", ("body",), "Posted"),
    "assign": ThreadAction("assign_thread", ("assignee_type", "assignee_name", "note"), "Assigned"),
    "state": ThreadAction("change_state", ("to_state",), "State changed"),
    "priority": ThreadAction("set_priority", ("priority",), "Priority set"),
    "close": ThreadAction("close_thread", ("reason",), "Closed"),
}


@router.post("/threads/{thread_id}/seen", response_model=None)
async def mark_seen(request: Request, identity: Signed, thread_id: ThreadId) -> RedirectResponse:
    """Move the identity's seen mark on the thread to ``sequence`` (the page's script posts it
    as the person reads; an older sequence changes nothing)."""
    from metawsm.services import queries

    form = await form_of(request)
    check_csrf(request, form.get("csrf", ""))
    sequence = int(form["sequence"]) if form.get("sequence", "").isdigit() else 0
    viewer_type, viewer_id = viewer_of(identity)
    engine = api_state(request).container.engine
    await run_in_threadpool(queries.mark_seen, engine, thread_id, viewer_type, viewer_id, sequence)
    return redirect(form.get("next") or f"/threads/{thread_id}")


@router.post("/threads/{thread_id}/{action}", response_model=None)
async def thread_action(
    request: Request, identity: Signed, thread_id: ThreadId, action: str
) -> RedirectResponse:
    """Do ``action`` on the thread as the signed-in identity, then back to the form's page."""
    form = await form_of(request)
    form.setdefault("next", f"/threads/{thread_id}")
    known = ACTIONS.get(action)
    if known is None:
        check_csrf(request, form.get("csrf", ""))
        return redirect(form["next"], ("error", f"Refused: no thread action {action!r}"))
    payload = {name: form[name] for name in known.fields if form.get(name, "").strip()}
    payload["thread_id"] = thread_id
    return await act(
        request, form, known.done, lambda: submit(request, identity, known.command_type, payload)
    )
