"""The threads pages: ``/threads`` (filters, search, pages) and ``/threads/{id}`` (one thread's
posts and events in order, and the actions the signed-in identity's role allows).

Reads are the API's (``services/thread_reads.py``, in a worker thread); the actions post to
``thread_actions.py``. Which controls a page shows follows the role rules of
``services/authorization.py`` and the transition table of ``domain/forum.py``; the write flow
checks them again, so a hand-made post is refused the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.reads import reading
from metawsm.api.state import api_state
from metawsm.board.inbox import viewer_of
from metawsm.board.render import page
from metawsm.board.session import board_identity
from metawsm.domain.forum import TRANSITIONS
from metawsm.errors import NotFound, UsageError
from metawsm.identity import Identity
from metawsm.messages.rules import ActorType, Priority, ThreadState
from metawsm.services import thread_reads
from metawsm.services.thread_reads import ThreadFilter

router = APIRouter(include_in_schema=False)
Signed = Annotated[Identity, Depends(board_identity)]

# Threads per page of the list.
LIST_PAGE = 50
# The filters of the list's form: (query parameter, label).
FILTERS = (("ticket", "Ticket"), ("run", "Run"), ("assignee", "Assignee"))
STATES = tuple(s.value for s in ThreadState)
PRIORITIES = tuple(p.value for p in reversed(Priority))  # urgent first
ASSIGNEE_TYPES = tuple(t.value for t in ActorType if t is not ActorType.SYSTEM)
MAX_QUERY_CHARS = 1000


@dataclass(frozen=True)
class ListQuery:
    """What the list's form asks for (blank fields are not filters)."""

    values: dict[str, str]
    after: tuple[int, int] | None = None

    @property
    def filters(self) -> ThreadFilter:
        """The filters as the service takes them."""
        v = self.values
        return ThreadFilter(
            ticket=v.get("ticket"),
            run_id=v.get("run"),
            state=v.get("state"),
            priority=v.get("priority"),
            assignee=v.get("assignee"),
        )


@dataclass
class ThreadList:
    """One page of the list, and the cursor of the next (None on the last page)."""

    threads: list[dict[str, Any]]
    next_after: str | None
    more_matches: bool = False
    error: str | None = None
    query: dict[str, str] = field(default_factory=dict)


def parse_list_query(params: dict[str, str]) -> ListQuery:
    """The list's query parameters, checked.

    Raises:
        UsageError: naming the field and its rule.
    """
    names = ("ticket", "run", "state", "priority", "assignee", "q")
    values = {n: params[n].strip() for n in names if params.get(n, "").strip()}
    if values.get("state", STATES[0]) not in STATES:
        raise UsageError(f"state {values['state']!r}: must be one of {', '.join(STATES)}")
    if values.get("priority", PRIORITIES[0]) not in PRIORITIES:
        raise UsageError(f"priority {values['priority']!r}: must be one of {', '.join(PRIORITIES)}")
    if len(values.get("q", "")) > MAX_QUERY_CHARS:
        raise UsageError(f"q: must be at most {MAX_QUERY_CHARS} characters")
    return ListQuery(values, _after(params.get("after", "")))


def _after(raw: str) -> tuple[int, int] | None:
    if not raw:
        return None
    urgency, dot, sequence = raw.partition(".")
    if not (dot and urgency.isdigit() and sequence.isdigit()):
        raise UsageError(f"after {raw!r}: must be the 'next page' link's value (N.N)")
    return int(urgency), int(sequence)


def read_list(request: Request, identity: Identity, query: ListQuery) -> ThreadList:
    """One page of threads for ``query`` (blocking reads: call in a thread).

    Raises:
        UsageError: a search with no word, or a page cursor with a search.
    """
    engine = api_state(request).container.engine
    text = query.values.get("q")
    with reading(engine) as db:
        rows = thread_reads.search(
            db, query.filters, text, viewer=viewer_of(identity),
            after=None if text else query.after, limit=LIST_PAGE + 1,
        )  # fmt: skip
    more = len(rows) > LIST_PAGE
    rows = rows[:LIST_PAGE]
    # A search shows its best matches only: a match's score is no place to page from.
    last = rows[-1] if more and rows and not text else None
    cursor = f"{last['urgency']}.{last['last_event_sequence']}" if last else None
    return ThreadList(rows, cursor, more and bool(text), query=query.values)


@router.get("/threads", response_class=HTMLResponse)
async def threads_page(request: Request, identity: Signed) -> HTMLResponse:
    """The list of threads: filters, search, and pages."""
    params = dict(request.query_params)
    try:
        query = parse_list_query(params)
        listed = await run_in_threadpool(read_list, request, identity, query)
        status = 200
    except UsageError as error:
        listed = ThreadList([], None, error=str(error), query=_echo(params))
        status = 422
    return page(request, "threads.html", identity, status, title="Threads", listed=listed,
                states=STATES, priorities=PRIORITIES, filters=FILTERS)  # fmt: skip


def _echo(params: dict[str, str]) -> dict[str, str]:
    """The form's fields as sent, to show them again next to the error."""
    names = ("ticket", "run", "state", "priority", "assignee", "q")
    return {n: params[n][:MAX_QUERY_CHARS] for n in names if params.get(n)}


@dataclass(frozen=True)
class ThreadPage:
    """One thread's page: its detail (``thread_reads.thread_detail``) and the controls shown."""

    detail: dict[str, Any]
    posts: dict[str, dict[str, Any]]
    before: int | None
    controls: Controls


@dataclass(frozen=True)
class Controls:
    """What the signed-in identity may do on the thread (what the page offers)."""

    post: bool = False
    answer: bool = False
    triage: bool = False
    states: tuple[str, ...] = ()


def controls_for(identity: Identity, thread: dict[str, Any]) -> Controls:
    """The actions ``identity`` may take on ``thread``: nothing on a closed thread; posting for
    everyone; answering for operators and humans; triage (assign, state, priority, close) for
    operators and humans on a forum thread (metawsm manages a control thread's)."""
    if thread["state"] == ThreadState.CLOSED.value:
        return Controls()
    people = identity.actor_type in ("operator", "human", "system")
    if not people:
        return Controls(post=True)
    if thread["is_control"]:
        return Controls(post=True, answer=True)
    allowed = TRANSITIONS[ThreadState(thread["state"])]
    states = tuple(s.value for s in ThreadState if s in allowed and s is not ThreadState.CLOSED)
    return Controls(post=True, answer=True, triage=True, states=states)


def read_thread(
    thread_id: str, request: Request, identity: Identity, before: int | None
) -> ThreadPage:
    """The thread's newest page of posts and events (or the page below ``before``).

    Raises:
        NotFound: no such thread.
    """
    engine = api_state(request).container.engine
    with reading(engine) as db:
        detail = thread_reads.thread_detail(db, thread_id, before=before)
    posts = {p["event_id"]: p for p in detail["posts"]}
    return ThreadPage(detail, posts, before, controls_for(identity, detail["thread"]))


@router.get("/threads/{thread_id}", response_class=HTMLResponse)
async def thread_page(
    request: Request, identity: Signed, thread_id: str, before: str = ""
) -> HTMLResponse:
    """One thread: its posts and events in order, and the actions the identity may take."""
    if (before and not before.isdigit()) or before == "0":
        return _missing(request, identity, f"before {before!r}: must be a positive number", 422)
    try:
        shown = await run_in_threadpool(
            read_thread, thread_id, request, identity, int(before) if before else None
        )
    except NotFound as error:
        return _missing(request, identity, str(error), 404)
    thread = shown.detail["thread"]
    return page(request, "thread.html", identity, title=thread["title"], shown=shown,
                thread=thread, priorities=PRIORITIES, assignee_types=ASSIGNEE_TYPES)  # fmt: skip


def _missing(request: Request, identity: Identity, reason: str, status: int) -> HTMLResponse:
    return page(request, "thread_missing.html", identity, status, title="No such thread",
                reason=reason)  # fmt: skip
