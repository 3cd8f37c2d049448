"""``/api/v1/forum``: threads (list, create, detail), their writes, seen, search and queues.

Reads return what ``metawsm forum list|thread|search --json`` print (the same functions,
``services/thread_reads.py``); writes return the outcome ``--json`` prints for the command.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.contracts import (
    AssignBody,
    CloseBody,
    OpenThreadBody,
    PostBody,
    PriorityBody,
    SeenBody,
    StateBody,
    WriteBody,
)
from metawsm.api.routes.common import (
    ERRORS,
    OUTCOME,
    WRITE_ERRORS,
    Caller,
    Limit,
    State,
    Writing,
    read,
    submit_write,
)
from metawsm.ids import new_id
from metawsm.messages.common import MAX_ID_CHARS, Priority, ThreadState
from metawsm.services import thread_reads
from metawsm.services.thread_reads import ThreadFilter

router = APIRouter(prefix="/api/v1/forum", tags=["forum"], responses=ERRORS)
ThreadId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]
WRITE: dict[int | str, dict[str, Any]] = {200: OUTCOME, **WRITE_ERRORS}


def _filters(
    ticket: str | None = None,
    run_id: str | None = None,
    state: ThreadState | None = None,
    priority: Priority | None = None,
    assignee: str | None = None,
) -> ThreadFilter:
    return ThreadFilter(
        ticket=ticket,
        run_id=run_id,
        state=state.value if state else None,
        priority=priority.value if priority else None,
        assignee=assignee,
    )


@router.get("/threads", summary="List threads (urgent first, then most recent activity)")
async def list_threads(
    app: State,
    _: Caller,
    ticket: str | None = None,
    run_id: str | None = None,
    state: ThreadState | None = None,
    priority: Priority | None = None,
    assignee: str | None = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{threads: [view]}``, as ``metawsm forum list --json``."""
    filters = _filters(ticket, run_id, state, priority, assignee)
    rows = await read(app, lambda db: thread_reads.list_threads(db, filters, limit))
    return {"threads": rows}


@router.post("/threads", summary="Open a thread", status_code=200, responses=WRITE)
async def open_thread(
    app: State, caller: Caller, options: Writing, body: OpenThreadBody
) -> JSONResponse:
    """Open a thread on a ticket with its first post (``thread_id`` generated if absent)."""
    payload = {**body.payload(), "thread_id": body.thread_id or new_id("fthr")}
    return await submit_write(app, caller, options, "open_thread", payload, _ids(body))


@router.get("/threads/{thread_id}", summary="One thread with a page of posts and its events")
async def thread(
    app: State,
    _: Caller,
    thread_id: ThreadId,
    limit: Annotated[int, Query(ge=1, le=thread_reads.POSTS_PAGE_MAX)] = thread_reads.POSTS_PAGE,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """``{thread, as_of_thread_seq, posts, events, page}``, as ``metawsm forum thread
    --json``: the newest ``limit`` posts below ``before`` (``page.next_before`` pages on)."""
    return await read(
        app, lambda db: thread_reads.thread_detail(db, thread_id, limit=limit, before=before)
    )


@router.post("/threads/{thread_id}/posts", summary="Add a post", responses=WRITE)
async def add_post(
    app: State, caller: Caller, options: Writing, thread_id: ThreadId, body: PostBody
) -> JSONResponse:
    """Add a post to the thread without changing its state."""
    return await _thread_write(app, caller, options, "add_post", thread_id, body)


@router.post("/threads/{thread_id}/answer", summary="Answer the thread", responses=WRITE)
async def answer(
    app: State, caller: Caller, options: Writing, thread_id: ThreadId, body: PostBody
) -> JSONResponse:
    """Add a post that answers the thread (on a control thread: the guidance answer)."""
    return await _thread_write(app, caller, options, "answer_thread", thread_id, body)


@router.post("/threads/{thread_id}/assign", summary="Assign the thread", responses=WRITE)
async def assign(
    app: State, caller: Caller, options: Writing, thread_id: ThreadId, body: AssignBody
) -> JSONResponse:
    """Assign the thread (replacing the current assignee)."""
    return await _thread_write(app, caller, options, "assign_thread", thread_id, body)


@router.post("/threads/{thread_id}/state", summary="Change the thread's state", responses=WRITE)
async def change_state(
    app: State, caller: Caller, options: Writing, thread_id: ThreadId, body: StateBody
) -> JSONResponse:
    """Move the thread to another state (subject to the transition table)."""
    return await _thread_write(app, caller, options, "change_state", thread_id, body)


@router.post("/threads/{thread_id}/priority", summary="Set the thread's priority", responses=WRITE)
async def set_priority(
    app: State, caller: Caller, options: Writing, thread_id: ThreadId, body: PriorityBody
) -> JSONResponse:
    """Set the thread's priority."""
    return await _thread_write(app, caller, options, "set_priority", thread_id, body)


@router.post("/threads/{thread_id}/close", summary="Close the thread", responses=WRITE)
async def close(
    app: State, caller: Caller, options: Writing, thread_id: ThreadId, body: CloseBody
) -> JSONResponse:
    """Close the thread (closing a closed thread changes nothing)."""
    return await _thread_write(app, caller, options, "close_thread", thread_id, body)


async def _thread_write(
    app: State, caller: Caller, options: Writing, kind: str, thread_id: str, body: WriteBody
) -> JSONResponse:
    payload = {**body.payload(), "thread_id": thread_id}
    return await submit_write(app, caller, options, kind, payload, _ids(body))


def _ids(body: WriteBody) -> tuple[str | None, str | None]:
    return body.correlation_id, body.causation_id


@router.post("/threads/{thread_id}/seen", summary="Mark the thread seen by the caller")
async def seen(app: State, caller: Caller, thread_id: ThreadId, body: SeenBody) -> dict[str, Any]:
    """Move the caller's watermark forward (an agent token as viewer ``agent``, any other as
    ``human``; the viewer id is the token's actor name); ``{seen: {...}}``."""
    from metawsm.services import queries

    viewer_type = "agent" if caller.actor_type == "agent" else "human"
    result = await run_in_threadpool(
        queries.mark_seen,
        app.container.engine,
        thread_id,
        viewer_type,
        caller.actor_name,
        body.sequence,
    )
    return {"seen": result}


@router.get("/search", summary="Search threads (best match first)")
async def search(
    app: State,
    caller: Caller,
    query: Annotated[str | None, Query(max_length=1000)] = None,
    ticket: str | None = None,
    run_id: str | None = None,
    state: ThreadState | None = None,
    priority: Priority | None = None,
    assignee: str | None = None,
    cursor: Annotated[int | None, Query(ge=0)] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{threads}``, as ``metawsm forum search --json``; ``is_unseen`` is the caller's."""
    filters = _filters(ticket, run_id, state, priority, assignee)
    viewer = _viewer(caller)
    return {
        "threads": await read(
            app,
            lambda db: thread_reads.search(
                db, filters, query, viewer=viewer, cursor=cursor, limit=limit
            ),
        )
    }


@router.get("/queues/{queue}", summary="A queue of threads: unseen (by the caller), unanswered")
async def queue(
    app: State,
    caller: Caller,
    queue: Annotated[str, Path(pattern="^(unseen|unanswered)$")],
    ticket: str | None = None,
    run_id: str | None = None,
    state: ThreadState | None = None,
    priority: Priority | None = None,
    assignee: str | None = None,
    cursor: Annotated[int | None, Query(ge=0)] = None,
    limit: Limit = 50,
) -> dict[str, Any]:
    """``{threads}``, as ``metawsm forum search --queue QUEUE --json`` for the caller."""
    filters = _filters(ticket, run_id, state, priority, assignee)
    viewer = _viewer(caller)
    return {
        "threads": await read(
            app,
            lambda db: thread_reads.search(
                db, filters, None, viewer=viewer, queue=queue, cursor=cursor, limit=limit
            ),
        )
    }


def _viewer(caller: Caller) -> tuple[str, str]:
    return ("agent" if caller.actor_type == "agent" else "human", caller.actor_name)
