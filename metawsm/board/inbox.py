"""The inbox (``/``): what needs the signed-in person now, across runs.

Pending guidance requests first (most urgent escalation tier, then the oldest), each answered
in place; then threads waiting on a human or an operator (unanswered), then the threads with
activity the signed-in identity has not seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.reads import reading
from metawsm.api.state import api_state
from metawsm.board.render import page
from metawsm.board.session import board_identity
from metawsm.board.shared import every_run_snapshot
from metawsm.domain.sla import TIER_NAMES
from metawsm.domain.snapshot import PendingGuidance, RunSnapshot
from metawsm.identity import Identity
from metawsm.services import thread_reads
from metawsm.services.thread_reads import ThreadFilter

router = APIRouter(include_in_schema=False)
Signed = Annotated[Identity, Depends(board_identity)]

# Threads listed per inbox section (the threads page lists the rest).
SECTION_LIMIT = 50


@dataclass(frozen=True)
class GuidanceItem:
    """A pending guidance request with its run and the escalation tier it has reached."""

    run_id: str
    tickets: list[str]
    request: PendingGuidance
    tier: str | None
    tier_raised: bool

    @property
    def urgency(self) -> tuple[int, datetime, str]:
        """Sort key: the highest tier first, then the oldest (by the time asked: an age in
        whole seconds ties two requests asked within a second)."""
        rank = TIER_NAMES.index(self.tier) + 1 if self.tier in TIER_NAMES else 0
        return (-rank, self.request.asked_at, self.request.request_event_id)


@dataclass(frozen=True)
class Inbox:
    """What the inbox shows."""

    guidance: list[GuidanceItem]
    waiting: list[dict[str, Any]]
    unseen: list[dict[str, Any]]


def viewer_of(identity: Identity) -> tuple[str, str]:
    """The viewer whose seen marks are the identity's (as the API's ``seen``)."""
    return ("agent" if identity.actor_type == "agent" else "human", identity.actor_name)


def guidance_items(runs: list[RunSnapshot]) -> list[GuidanceItem]:
    """Every pending guidance request of ``runs``, most urgent first."""
    items = []
    for run in runs:
        for request in run.pending_guidance:
            tier, raised = _tier_of(run, request.thread_id)
            items.append(GuidanceItem(run.run_id, run.tickets, request, tier, raised))
    return sorted(items, key=lambda item: item.urgency)


def _tier_of(run: RunSnapshot, thread_id: str) -> tuple[str | None, bool]:
    reached = [(e.tier, e.raised) for e in (*run.escalations, *run.escalation_candidates)
               if e.thread_id == thread_id and e.tier in TIER_NAMES]  # fmt: skip
    if not reached:
        return None, False
    return max(reached, key=lambda pair: (TIER_NAMES.index(pair[0]), pair[1]))


def read_inbox(request: Request, identity: Identity) -> Inbox:
    """The inbox of ``identity`` (blocking reads: call in a thread)."""
    container = api_state(request).container
    snap = every_run_snapshot(request)  # shared with the boards refreshing at the same moment
    people = ThreadFilter(include_control=False)
    with reading(container.engine) as db:
        waiting = thread_reads.search(db, people, queue="unanswered", limit=SECTION_LIMIT)
        unseen = thread_reads.search(
            db, people, viewer=viewer_of(identity), queue="unseen", limit=SECTION_LIMIT
        )
    return Inbox(guidance_items(snap.runs), waiting, unseen)


@router.get("/", response_class=HTMLResponse)
async def inbox_page(request: Request, identity: Signed) -> HTMLResponse:
    """The inbox."""
    inbox = await run_in_threadpool(read_inbox, request, identity)
    return page(request, "inbox.html", identity, inbox=inbox, title="Inbox")
