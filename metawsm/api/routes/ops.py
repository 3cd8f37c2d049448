"""``/api/v1/health``, ``/api/v1/readiness`` (no token), ``/api/v1/checks`` and
``/api/v1/dead-letters`` (operators only).

Health says the process serves; readiness that it can do its work: the database answers at the
schema head and the event follower runs. Neither needs a token and neither says more than that;
the full checks of ``metawsm health --json`` need one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.contracts import PurgeBody
from metawsm.api.errors import ApiError
from metawsm.api.routes.common import ERRORS, Caller, State, read
from metawsm.errors import MetawsmError
from metawsm.identity import Identity
from metawsm.messages.common import MAX_ID_CHARS
from metawsm.services import record_reads
from metawsm.services.authorization import require_role
from metawsm.storage.dbapi import Reader
from metawsm.storage.types import utcnow

router = APIRouter(prefix="/api/v1", tags=["operations"])
MessageId = Annotated[str, Path(min_length=1, max_length=2 * MAX_ID_CHARS)]


@router.get("/health", summary="The process serves (no token)")
async def health(app: State) -> dict[str, Any]:
    """``{status: "ok", started_at, now}``."""
    return {"status": "ok", "started_at": app.started_at.isoformat(), "now": utcnow().isoformat()}


@router.get(
    "/readiness",
    summary="The database answers at the schema head and the stream follows the log (no token)",
    responses={503: {"description": "not ready: which part, and why"}},
)
async def readiness(app: State) -> JSONResponse:
    """200 ``{ready: true}``, else 503 ``{ready: false, database, stream}`` saying what fails."""
    from metawsm.storage.schema_head import reader_at_head

    database = "ok"
    try:
        if not await read(app, reader_at_head):
            database = "schema not at head: run metawsm db upgrade"
    except MetawsmError as exc:
        database = str(exc)
    follower = app.follower
    stream = (
        "ok" if follower.running and follower.error is None else (follower.error or "not running")
    )
    ready = database == "ok" and stream == "ok"
    body = {"ready": ready, "database": database, "stream": stream}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/checks", summary="Every health check of the deployment", responses=ERRORS)
async def checks(app: State, _: Caller) -> dict[str, Any]:
    """``{healthy, checks}`` as ``metawsm health --json`` prints it."""
    from metawsm.ops.health import judge
    from metawsm.ops.readings import read as read_all

    c = app.container
    result = await run_in_threadpool(lambda: judge(read_all(c.engine, c.settings), c.settings))
    return result.as_dict()


@router.get("/me", summary="Who the bearer token proves", responses=ERRORS)
async def me(caller: Caller) -> dict[str, Any]:
    """``{actor_type, actor_name, run_id, token_id}``: the identity the API acts as for this
    token (the command line checks typed ``--actor-type``/``--actor-name`` against it)."""
    return {
        "actor_type": caller.actor_type,
        "actor_name": caller.actor_name,
        "run_id": caller.run_id,
        "token_id": caller.token_id,
    }


def _operators_only(caller: Identity) -> None:
    require_role(caller, ("operator",), "dead_letters_are_for_operators", "handle dead letters")


@router.get("/dead-letters", summary="Dead letters, newest first (operators)", responses=ERRORS)
async def dead_letters(app: State, caller: Caller, all: bool = False) -> dict[str, Any]:
    """``{dead_letters}`` as ``metawsm dlq list --json`` (``all``: redriven and purged too)."""
    _operators_only(caller)

    def rows(db: Reader) -> list[dict[str, Any]]:
        return record_reads.list_dead_letters(db, include_all=all)

    return {"dead_letters": await read(app, rows)}


@router.get("/dead-letters/{message_id}", summary="One dead letter (operators)", responses=ERRORS)
async def dead_letter(app: State, caller: Caller, message_id: MessageId) -> dict[str, Any]:
    """The dead letter with its payload and traceback, as ``metawsm dlq show --json``."""
    _operators_only(caller)
    return await read(app, lambda db: record_reads.show_dead_letter(db, message_id))


@router.post(
    "/dead-letters/{message_id}/redrive",
    summary="Republish a dead message with its id (operators)",
    responses=ERRORS,
)
async def redrive(app: State, caller: Caller, message_id: MessageId) -> dict[str, Any]:
    """As ``metawsm dlq redrive --json``: nothing is applied twice."""
    from metawsm.services import deadletters

    _operators_only(caller)
    result: dict[str, Any] = await run_in_threadpool(
        deadletters.redrive, app.container.runtime, message_id
    )
    return result


@router.post(
    "/dead-letters/purge",
    summary="Mark one dead letter, or every one, purged (operators)",
    responses=ERRORS,
)
async def purge(app: State, caller: Caller, body: PurgeBody) -> dict[str, Any]:
    """As ``metawsm dlq purge --json``: ``{purged}``, how many; exactly one of ``message_id``
    and ``all`` (422 otherwise)."""
    from metawsm.services import deadletters

    if (body.message_id is None) == (not body.all):
        raise ApiError(
            422,
            "invalid_input",
            "give message_id or all=true (one of them)",
            field="body.message_id",
            rule="one_of_message_id_or_all",
        )
    identity = caller
    count = await run_in_threadpool(
        lambda: deadletters.purge(
            app.container.engine, None if body.all else body.message_id, identity=identity
        )
    )
    return {"purged": count}
