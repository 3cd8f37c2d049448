"""The API's write flow: build the command as the acting identity, submit it, wait, answer.

The same flow as the CLI's ``run_write`` (``cli/options.py``) over the same services: the
command is validated by its contract (``services/accept.py`` ``make_command``), accepted and
published by ``services/submit.py``, and the outcome is what ``--json`` prints. The waits poll
the same reads (``read_outcome``, ``is_projected``) without holding a server thread between two
reads.

The ``Idempotency-Key`` header is the command id: the same key with the same command returns
the outcome as it stands; with a different command it is refused (409).
"""

from __future__ import annotations

import asyncio
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from metawsm.api.errors import ApiError
from metawsm.errors import WaitTimeout
from metawsm.services.accept import Outcome, make_command
from metawsm.services.submit import read_outcome, submit
from metawsm.storage.engine import connect
from metawsm.storage.uow import translate_db_errors

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from metawsm.api.follower import EventFollower
    from metawsm.identity import Identity
    from metawsm.runtime import Runtime

# The longest wait a request may ask for (seconds): a proxy would cut the request sooner.
MAX_WAIT_S = 300.0
_FIRST_PAUSE_S = 0.002
_MAX_PAUSE_S = 0.05
# A wait woken by the follower still reads at least this often (seconds): a rejected or
# dead-lettered command writes no event to wake it.
FALLBACK_S = 0.1


class WaitFor(StrEnum):
    """What a write waits for before answering."""

    APPLIED = "applied"
    PROJECTED = "projected"
    NONE = "none"


async def write(
    rt: Runtime,
    identity: Identity,
    command_type: str,
    payload: dict[str, Any],
    *,
    wait: WaitFor,
    timeout_s: float | None,
    key: str | None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    follower: EventFollower | None = None,
) -> tuple[int, dict[str, Any]]:
    """Submit ``command_type`` with ``payload`` as ``identity``; (HTTP status, outcome).

    200 once applied (and projected, when asked), 202 when accepted and not waited on. With the
    process's ``follower``, a wait for applied re-reads the outcome when an event of the
    command's thread commits (an applied command writes one), and every ``FALLBACK_S`` for the
    outcomes that write none (rejected, dead).

    Raises:
        pydantic.ValidationError: the payload breaks its contract (422).
        Forbidden: the identity may not ask for this command (403).
        CommandIdReused: ``key`` names a different command (409).
        ApiError: the command was rejected or dead-lettered (409, with the outcome).
        WaitTimeout: no outcome within the wait (504).
    """
    command = make_command(
        command_type,
        payload,
        actor_type=identity.actor_type,
        actor_name=identity.actor_name,
        command_id=key,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    pacer = _Pacer(follower)  # its cursor is taken before the command can be applied
    outcome = await run_in_threadpool(submit, rt, command, identity=identity)
    limit = min(timeout_s if timeout_s is not None else rt.settings.wait_timeout_s, MAX_WAIT_S)
    deadline = time.monotonic() + limit
    if wait is not WaitFor.NONE and not outcome.final:
        outcome = await _until_final(rt.engine, outcome, deadline, limit, pacer)
    if outcome.status in ("rejected", "dead"):
        raise _refused(outcome)
    if wait is WaitFor.PROJECTED and outcome.status == "applied":
        await _until_projected(rt.engine, outcome.command_id, deadline, limit)
    return (200 if outcome.final else 202), outcome.as_dict()


def _refused(outcome: Outcome) -> ApiError:
    code = "rejected" if outcome.status == "rejected" else "dead_lettered"
    message = outcome.reason or f"command {outcome.command_id} {outcome.status}"
    return ApiError(409, code, message, extra={"outcome": outcome.as_dict()})


class _Pacer:
    """When a wait for an outcome reads again: woken by the follower on an event of the
    command's thread (at most ``FALLBACK_S`` apart), else on a backoff from 2 to 50 ms."""

    def __init__(self, follower: EventFollower | None) -> None:
        self.follower = follower if follower is not None and follower.ready else None
        self.cursor = self.follower.head if self.follower is not None else 0
        self.pause = _FIRST_PAUSE_S

    async def next_read(self, thread_id: str | None, remaining_s: float) -> None:
        """Return when the outcome may have changed (or after ``remaining_s``)."""
        if self.follower is None or thread_id is None:
            await asyncio.sleep(min(self.pause, remaining_s))  # a condition, with a deadline
            self.pause = min(self.pause * 1.5, _MAX_PAUSE_S)
            return
        wait_s = max(0.0, min(FALLBACK_S, remaining_s))
        moved = await self.follower.until_event(
            self.cursor, lambda event: event.get("thread_id") == thread_id, wait_s
        )
        if moved is not None:
            self.cursor = moved


async def _until_final(
    engine: Engine, outcome: Outcome, deadline: float, limit: float, pacer: _Pacer
) -> Outcome:
    while True:
        current = await run_in_threadpool(read_outcome, engine, outcome.command_id)
        if current is not None and current.final:
            return current
        if time.monotonic() >= deadline:
            state = current.status if current else "unknown"
            raise WaitTimeout(
                f"command {outcome.command_id} still {state} after {limit:g} s; it stays"
                " accepted and will be applied when workers and Redis are available"
            )
        await pacer.next_read(outcome.thread_id, deadline - time.monotonic())


async def _until_projected(engine: Engine, command_id: str, deadline: float, limit: float) -> None:
    pause = _FIRST_PAUSE_S
    while not await run_in_threadpool(_projected, engine, command_id):
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"command {command_id} is applied but its events are not in the read models"
                f" after {limit:g} s; they will show once an events worker projects them"
            )
        await asyncio.sleep(pause)  # polling a condition with a deadline, off the threads
        pause = min(pause * 1.5, _MAX_PAUSE_S)


def _projected(engine: Engine, command_id: str) -> bool:
    from metawsm.services.accept import is_projected
    from metawsm.storage.dbapi import on_connection

    with translate_db_errors(engine), connect(engine) as connection, connection.begin():
        return is_projected(on_connection(connection), command_id)
