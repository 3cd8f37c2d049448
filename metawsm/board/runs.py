"""The runs pages: ``/runs`` (every active and completed run) and ``/runs/{run_id}`` (one run's
snapshot, its close gates met and unmet with their fixing actions, and its status history).

``/runs`` is one snapshot read (``services/snapshot.py``: a fixed number of statements whatever
the number of runs), so it costs the same for a hundred runs as for one. The completed runs are
listed too: they are the ones waiting to be closed. A run page reads the run's snapshot, its
gates (``services/gates.py``, what ``metawsm run why`` reports) and its history (what the API's
``/runs/{id}/record`` answers).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.state import api_state
from metawsm.board.render import page
from metawsm.board.session import board_identity
from metawsm.board.shared import every_run_snapshot
from metawsm.domain.gates import Gate, gate_count
from metawsm.domain.runs import RunStatus
from metawsm.domain.snapshot import AgentSnapshot, Blocker, RunSnapshot
from metawsm.errors import NotFound
from metawsm.identity import Identity
from metawsm.messages.common import MAX_NAME_CHARS

router = APIRouter(include_in_schema=False)
Signed = Annotated[Identity, Depends(board_identity)]
RunId = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]

# Statuses a run can be stopped from, and resumed from (services/lifecycle.py).
STOPPABLE = frozenset({"planning", "running", "awaiting_guidance", "paused", "failed"})
RESUMABLE = frozenset({"stopped", "paused", "failed"})


def version_of(*parts: Any) -> str:
    """A short tag that changes when any of ``parts`` changes: an item's ``data-version``, so
    the page's live updates keep the items that did not change."""
    return format(zlib.crc32(repr(parts).encode()), "08x")


def can_steer(identity: Identity, run_id: str) -> bool:
    """Whether ``identity`` may close, stop, resume or iterate ``run_id`` (the rule of
    ``services/authorization.py`` ``run_actor``: the buttons follow it, the service enforces
    it)."""
    if identity.actor_type not in ("operator", "human", "system"):
        return False
    return identity.run_id is None or identity.run_id == run_id


@dataclass(frozen=True)
class RunLine:
    """One run of ``/runs``: its snapshot and its gates counted."""

    run: RunSnapshot
    gates_total: int
    gates_unmet: int
    dead_letters: int
    idle_s: int | None
    version: str

    @property
    def first_pending_thread(self) -> str | None:
        """The control thread of its oldest pending guidance request (the link to answer it)."""
        asked = sorted(self.run.pending_guidance, key=lambda g: g.asked_at)
        return asked[0].thread_id if asked else None


def run_line(run: RunSnapshot) -> RunLine:
    """``run`` as a line of ``/runs``."""
    failed = sum(1 for a in run.agents if a.status == "failed")
    unmet = sum(1 for b in run.blockers if b.kind == "gate")
    last = run.last_event_at or run.updated_at
    idle = int((run.generated_at - last).total_seconds()) if last else None
    version = version_of(run.status, run.updated_at, run.last_event_sequence, run.control_epoch,
                         run.agents, run.blockers, len(run.pending_guidance))  # fmt: skip
    total = gate_count(run.mode, run.status, len(run.agents), failed)
    dead = len(run.blockers) - unmet
    return RunLine(run, total, unmet, dead, idle, version)


def read_runs(request: Request) -> list[RunLine]:
    """Every active run, then the completed ones (one snapshot read, shared with the boards
    refreshing at the same moment; call in a thread)."""
    snap = every_run_snapshot(request, with_completed=True)
    return [run_line(r) for r in snap.runs]


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(request: Request, identity: Signed) -> HTMLResponse:
    """Every active run (and the completed ones, waiting to be closed)."""
    lines = await run_in_threadpool(read_runs, request)
    return page(request, "runs.html", identity, lines=lines, title="Runs")


@dataclass(frozen=True)
class GateItem:
    """A close gate on the run page, with its agent's control thread (to answer guidance)."""

    gate: Gate
    thread_id: str | None
    version: str


@dataclass(frozen=True)
class RunPage:
    """What a run page shows."""

    run: RunSnapshot
    gates: list[GateItem]
    dead_letters: list[Blocker]
    history: list[dict[str, Any]]

    @property
    def gates_pass(self) -> bool:
        """Every gate is met: the run can close."""
        return all(item.gate.met for item in self.gates)

    @property
    def closed(self) -> bool:
        """The run is closed."""
        return self.run.status == RunStatus.CLOSED.value

    @property
    def stoppable(self) -> bool:
        """The run's status lets it be stopped."""
        return self.run.status in STOPPABLE

    @property
    def resumable(self) -> bool:
        """The run's status lets it be resumed."""
        return self.run.status in RESUMABLE

    @property
    def version(self) -> str:
        """Changes when what the run's actions depend on changes."""
        return version_of(self.run.status, self.gates_pass, len(self.dead_letters))


def read_run(request: Request, run_id: str) -> RunPage:
    """The run page of ``run_id`` (blocking reads: call in a thread).

    Raises:
        NotFound: no such run.
    """
    from metawsm.api.reads import reading
    from metawsm.services import gates, record_reads, snapshot
    from metawsm.storage.models import Run
    from metawsm.storage.uow import unit_of_work

    container = api_state(request).container
    run = snapshot.build(container.engine, container.settings, run_id=run_id).runs[0]
    with unit_of_work(container.engine, readonly=True) as session:
        row = session.get(Run, run_id)
        if row is None:  # deleted between the two reads
            raise NotFound(f"run {run_id} not found")
        every = gates.evaluate(session, row)
    with reading(container.engine) as db:
        history = record_reads.run_history(db, run_id)
    threads = {a.agent_name: a.control_thread_id for a in run.agents}
    items = [GateItem(g, threads.get(g.agent_name or ""), version_of(g)) for g in every]
    dead = [b for b in run.blockers if b.kind == "dead_letter"]
    return RunPage(run, items, dead, history)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, identity: Signed, run_id: RunId) -> HTMLResponse:
    """One run: agents, pending guidance, open threads, escalations, gates and history."""
    try:
        view = await run_in_threadpool(read_run, request, run_id)
    except NotFound as missing:
        return page(request, "refused.html", identity, status_code=404, title="No such run",
                    reason=str(missing))  # fmt: skip
    return page(request, "run.html", identity, view=view, title=f"Run {run_id}",
                steer=can_steer(identity, run_id), agent_version=agent_version)  # fmt: skip


def agent_version(agent: AgentSnapshot) -> str:
    """An agent row's ``data-version``."""
    return version_of(agent)
