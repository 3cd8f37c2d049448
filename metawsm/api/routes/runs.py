"""``/api/v1/runs``, ``/api/v1/status`` and ``/api/v1/control``: runs, their snapshot, why a run
cannot close, closing, stopping and resuming it, control signals and the answer to a guidance
request.

Reads return what ``metawsm run list --json``, ``status --json`` and ``run why --json`` print.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.contracts import (
    AgentStatusBody,
    CloseRunBody,
    CreateRunBody,
    IterateBody,
    SignalBody,
)
from metawsm.api.errors import ApiError
from metawsm.api.routes.common import (
    ERRORS,
    OUTCOME,
    WRITE_ERRORS,
    Caller,
    State,
    Writing,
    read,
    submit_write,
)
from metawsm.api.writes import MAX_WAIT_S, WaitFor, write
from metawsm.errors import Forbidden, NotFound, Rejected, RunStopped, WaitTimeout
from metawsm.messages.common import MAX_ID_CHARS, MAX_NAME_CHARS
from metawsm.storage.dbapi import Reader

router = APIRouter(prefix="/api/v1", tags=["runs"], responses=ERRORS)
RunId = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]
CreationKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="The same key, request and caller answer the run it created (no second run).",
    ),
]
# How often a waiting request looks for the answer when the follower cannot wake it (seconds).
ANSWER_POLL_S = 0.2


@router.get("/runs", summary="List runs, newest first")
async def list_runs(
    app: State, _: Caller, ticket: str | None = None, status: str | None = None
) -> dict[str, Any]:
    """``{runs}``, as ``metawsm run list --json``, keeping the runs on ``ticket`` (any case)
    and in ``status``."""
    from metawsm.services import record_reads

    rows = await read(app, record_reads.run_rows)
    if ticket is not None:
        rows = [r for r in rows if ticket.lower() in (t.lower() for t in r["tickets"])]
    if status is not None:
        rows = [r for r in rows if r["status"] == status]
    return {"runs": rows}


@router.get("/runs/{run_id}", summary="One run's typed snapshot")
async def run(app: State, _: Caller, run_id: RunId) -> dict[str, Any]:
    """``{run}``: the run's snapshot as ``metawsm status --run-id R --json`` shows it."""
    snap = await _snapshot(app, run_id, None)
    return {"run": snap["runs"][0]}


@router.get("/runs/{run_id}/record", summary="One run with its agents, brief and history")
async def run_record(app: State, _: Caller, run_id: RunId) -> dict[str, Any]:
    """The run as ``metawsm run show --json`` prints it: its row, agents, brief and the status
    ``history`` (oldest first, each with its cause)."""
    return await read(app, lambda db: _record(db, run_id))


def _record(db: Reader, run_id: str) -> dict[str, Any]:
    from metawsm.services import record_reads

    row = record_reads.run_rows(db, run_id)[0]
    row["history"] = record_reads.run_history(db, run_id)
    return row


@router.post("/runs", summary="Create a run (operators and humans)", status_code=201)
async def create_run(
    app: State, caller: Caller, body: CreateRunBody, response: Response, key: CreationKey = None
) -> dict[str, Any]:
    """As ``metawsm run create --json``: the new run with its agents, brief and history.

    With ``Idempotency-Key``, a request repeated (same key, body and caller) answers the run the
    first one created, with ``Idempotent-Replayed: true``; another body or caller is 409.
    """
    from metawsm.services import runs

    brief = runs.BriefInput(**body.brief.model_dump()) if body.brief is not None else None
    asked: dict[str, Any] = {"tickets": list(body.tickets), "agents": list(body.agents)}
    asked |= {"mode": body.mode, "brief": brief, "actor": caller}
    rt = app.container.runtime
    if key is None:
        created = runs.Created(await run_in_threadpool(lambda: runs.create_run(rt, **asked)), False)
    else:
        created = await run_in_threadpool(lambda: runs.create_run_once(rt, key, **asked))
    if created.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return await read(app, lambda db: _record(db, created.run_id))


@router.post("/runs/{run_id}/iterate", summary="Start a new control epoch with feedback")
async def iterate_run(
    app: State, caller: Caller, run_id: RunId, body: IterateBody
) -> dict[str, Any]:
    """As ``metawsm run iterate``: ``{run_id, status, control_epoch, threads}``; the feedback
    is posted on each control thread as the caller (accepted, not waited on)."""
    from metawsm.services import lifecycle

    rt = app.container.runtime
    status, epoch, threads = await run_in_threadpool(
        lifecycle.iterate_run, rt, run_id, body.feedback, caller
    )
    for thread_id in threads:
        post = {"thread_id": thread_id, "body": f"Operator feedback: {body.feedback}"}
        await write(rt, caller, "add_post", post, wait=WaitFor.NONE, timeout_s=None, key=None)
    return {"run_id": run_id, "status": status, "control_epoch": epoch, "threads": threads}


@router.post(
    "/runs/{run_id}/agents/{agent_name}/status",
    summary="Report an agent's status (the agent itself, operators and humans)",
)
async def agent_status(
    app: State,
    caller: Caller,
    run_id: RunId,
    agent_name: Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)],
    body: AgentStatusBody,
) -> dict[str, Any]:
    """As ``metawsm run agent-status``: ``{run_id, agent_name, status, run_status}``."""
    from metawsm.services import lifecycle

    rt = app.container.runtime
    run_status = await run_in_threadpool(
        lifecycle.set_agent_status, rt, run_id, agent_name, body.status, caller
    )
    return {
        "run_id": run_id,
        "agent_name": agent_name,
        "status": body.status,
        "run_status": run_status,
    }


@router.get("/status", summary="The snapshot of runs (every active run by default)")
async def status(
    app: State, _: Caller, run_id: str | None = None, ticket: str | None = None
) -> dict[str, Any]:
    """The snapshot ``metawsm status --json`` prints (one run, a ticket's, or every active)."""
    return await _snapshot(app, run_id, ticket)


async def _snapshot(app: State, run_id: str | None, ticket: str | None) -> dict[str, Any]:
    from metawsm.domain.snapshot import to_json
    from metawsm.services import snapshot

    c = app.container
    snap = await run_in_threadpool(
        lambda: snapshot.build(c.engine, c.settings, run_id=run_id, ticket=ticket)
    )
    return to_json(snap)


@router.get("/runs/{run_id}/why", summary="Every close gate the run does not meet")
async def why(app: State, _: Caller, run_id: RunId) -> dict[str, Any]:
    """As ``metawsm run why --json``: the run's summary and ``unmet`` gates, each with its fix."""
    from metawsm.services import gates

    summary, unmet = await run_in_threadpool(gates.unmet, app.container.engine, run_id)
    return {**summary, "unmet": [g.as_dict() for g in unmet]}


@router.post("/runs/{run_id}/close", summary="Close a completed run whose gates all pass")
async def close_run(app: State, caller: Caller, run_id: RunId, body: CloseRunBody) -> Any:
    """As ``metawsm close --json``: ``{run_id, closed, dry_run, status}``; 409 ``rejected`` with
    the ``unmet`` gates when one is not met (``dry_run``: check only, change nothing)."""
    from metawsm.services import gates

    rt = app.container.runtime
    try:
        status = await run_in_threadpool(
            lambda: gates.close_run(rt, run_id, dry_run=body.dry_run, actor=caller)
        )
    except (Forbidden, NotFound):
        raise
    except Rejected as exc:
        _, unmet = await run_in_threadpool(gates.unmet, rt.engine, run_id)
        extra = {"run_id": run_id, "closed": False, "unmet": [g.as_dict() for g in unmet]}
        raise ApiError(409, "rejected", str(exc), extra=extra) from None
    closed = status == "closed"
    return {"run_id": run_id, "closed": closed, "dry_run": body.dry_run, "status": status}


@router.post("/runs/{run_id}/stop", summary="Stop a run")
async def stop_run(app: State, caller: Caller, run_id: RunId) -> dict[str, Any]:
    """``{run_id, status}`` after stopping (stopping a stopped run changes nothing)."""
    from metawsm.services import lifecycle

    rt = app.container.runtime
    status = await run_in_threadpool(lifecycle.stop_run, rt, run_id, caller)
    return {"run_id": run_id, "status": status}


@router.post("/runs/{run_id}/resume", summary="Resume a stopped, paused or failed run")
async def resume_run(app: State, caller: Caller, run_id: RunId) -> dict[str, Any]:
    """``{run_id, status}`` after resuming."""
    from metawsm.services import lifecycle

    rt = app.container.runtime
    status = await run_in_threadpool(lifecycle.resume_run, rt, run_id, caller)
    return {"run_id": run_id, "status": status}


@router.post(
    "/control/signals",
    summary="Post a control signal for (run, agent)",
    responses={200: OUTCOME, **WRITE_ERRORS},
)
async def signal(app: State, caller: Caller, options: Writing, body: SignalBody) -> JSONResponse:
    """As ``metawsm forum signal``: the signal lands on the control thread of (run, agent)."""
    ids = (body.correlation_id, body.causation_id)
    return await submit_write(app, caller, options, "control_signal", body.payload(), ids)


@router.get(
    "/control/signals/{command_id}/answer",
    summary="Wait for the answer to a guidance request",
    responses={504: {"description": "no answer yet: ask again"}},
)
async def answer(
    app: State,
    _: Caller,
    command_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)],
    timeout_s: Annotated[float, Query(gt=0, le=MAX_WAIT_S)] = 60.0,
) -> dict[str, Any]:
    """The answer to the guidance request written by ``command_id``, as ``metawsm forum signal
    --type guidance_request --wait --json`` prints it; 504 ``wait_timeout`` when none came
    within ``timeout_s`` (ask again), 409 ``run_stopped`` when the run stopped."""
    from metawsm.services import guidance

    engine = app.container.engine
    cursor = app.follower.head  # before the first read: nothing committed after it is missed
    run_id, thread_id, seq = await run_in_threadpool(guidance.request_position, engine, command_id)
    deadline = time.monotonic() + timeout_s

    def touches(event: dict[str, Any]) -> bool:
        return event.get("thread_id") == thread_id or event.get("run_id") == run_id

    while True:
        found = await run_in_threadpool(guidance.find_answer, engine, thread_id, seq)
        if found is not None:
            return found.as_dict()
        run_status = await run_in_threadpool(guidance.run_status, engine, run_id)
        if run_status in guidance.STOPPED:
            raise RunStopped(f"run {run_id} is {run_status}; no answer will come")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"no guidance answer on {thread_id} within {timeout_s:g} s")
        # Woken by the process's follower when an event of this thread or run commits.
        moved = await app.follower.until_event(cursor, touches, remaining)
        if moved is None:
            continue  # the deadline passed: the loop reads once more, then says so
        if moved == cursor:  # the follower cannot tell (not ready, or behind): poll
            await asyncio.sleep(ANSWER_POLL_S)
        cursor = moved


@router.get("/commands/{command_id}", summary="Where a command stands (as command show --json)")
async def command_outcome(
    app: State,
    _: Caller,
    command_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)],
) -> dict[str, Any]:
    """The outcome of the command ``command_id`` (``Idempotency-Key`` of its write): accepted,
    applied, rejected or dead, as ``metawsm command show --json``; 404 when never accepted."""
    from metawsm.services.record_reads import command_outcome as outcome_of

    return (await read(app, lambda db: outcome_of(db, command_id))).as_dict()
