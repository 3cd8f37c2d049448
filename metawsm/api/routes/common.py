"""What every router uses: the state, the caller, the write options, a read in a thread."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.auth import identity
from metawsm.api.contracts import OutcomeOut
from metawsm.api.errors import ErrorBody
from metawsm.api.reads import reading
from metawsm.api.state import ApiState, api_state
from metawsm.api.writes import MAX_WAIT_S, WaitFor, write
from metawsm.identity import Identity
from metawsm.storage.dbapi import Reader

T = TypeVar("T")

State = Annotated[ApiState, Depends(api_state)]
Caller = Annotated[Identity, Depends(identity)]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many rows.")]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": what}
    for status, what in {
        401: "no valid bearer token",
        403: "the caller's role may not do this",
        422: "invalid input (the field and the rule are named)",
        503: "the database is unavailable",
    }.items()
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ErrorBody, "description": "no such thread"},
    409: {"model": ErrorBody, "description": "rejected by a rule, or Idempotency-Key reused"},
    504: {"model": ErrorBody, "description": "no outcome within the wait"},
}


@dataclass(frozen=True)
class WriteOptions:
    """``?wait=applied|projected|none``, ``?timeout_s=`` and the ``Idempotency-Key`` header."""

    wait: WaitFor
    timeout_s: float | None
    key: str | None


def write_options(
    wait: Annotated[WaitFor, Query(description="What to wait for before answering.")] = (
        WaitFor.APPLIED
    ),
    timeout_s: Annotated[
        float | None, Query(gt=0, le=MAX_WAIT_S, description="Longest wait (seconds).")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=128,
            description="The command id: the same key and command return the same outcome.",
        ),
    ] = None,
) -> WriteOptions:
    """The write options of a request (a FastAPI dependency)."""
    return WriteOptions(wait, timeout_s, idempotency_key)


Writing = Annotated[WriteOptions, Depends(write_options)]


async def submit_write(
    state: ApiState,
    caller: Identity,
    options: WriteOptions,
    command_type: str,
    payload: dict[str, Any],
    ids: tuple[str | None, str | None] = (None, None),
) -> JSONResponse:
    """Submit a command and answer with its outcome (200 applied, 202 accepted)."""
    status, outcome = await write(
        state.container.runtime,
        caller,
        command_type,
        payload,
        wait=options.wait,
        timeout_s=options.timeout_s,
        key=options.key,
        correlation_id=ids[0],
        causation_id=ids[1],
        follower=state.follower,
    )
    return JSONResponse(outcome, status_code=status)


async def read(state: ApiState, fn: Callable[[Reader], T]) -> T:
    """Run ``fn`` on a read transaction, in a worker thread."""

    def run() -> T:
        with reading(state.container.engine) as db:
            return fn(db)

    return await run_in_threadpool(run)


OUTCOME = {"model": OutcomeOut, "description": "applied (200) or accepted (202)"}
