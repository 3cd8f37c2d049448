"""Who calls: the bearer token of every request (but health and readiness) proves an identity.

``Authorization: Bearer <token>`` is checked by ``services/tokens.py`` ``authenticate`` (one
indexed read); the identity it returns is the actor of every write the request makes. A
failure answers 401 and is counted and logged by its reason, never with the token. A client
address out of failed attempts (``services/failure_limiter.py``: a burst of 10, refilled at 10
a minute) gets 429 without its tokens being looked at: guessing is slowed down, the database
spared, and a client that authenticates correctly is never slowed.
"""

from __future__ import annotations

import logging
import math
import time

from fastapi import Request
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from metawsm.api.errors import ApiError
from metawsm.api.reads import reading
from metawsm.api.state import ApiState, api_state
from metawsm.errors import MetawsmError, Unauthenticated
from metawsm.identity import Identity
from metawsm.services import tokens

log = logging.getLogger(__name__)


async def identity(request: Request) -> Identity:
    """The identity the request's bearer token proves (a FastAPI dependency).

    Raises:
        Unauthenticated: no token, or one that is malformed, unknown, expired or revoked (401).
        ApiError: 429 after too many failures from this address.
    """
    state = api_state(request)
    source = request.client.host if request.client else "unknown"
    wait_s = state.failures.blocked(source, time.monotonic())
    if wait_s > 0:
        raise ApiError(429, "too_many_failures", "too many failed authentications; retry later",
                       headers={"Retry-After": str(math.ceil(wait_s))})  # fmt: skip
    bearer = _bearer(request.headers.get("authorization", ""))
    try:
        return await run_in_threadpool(_authenticate, state, bearer)
    except Unauthenticated as failure:
        state.failures.failed(source, time.monotonic())
        await run_in_threadpool(_record, state, failure, source)
        raise


def _bearer(header: str) -> str:
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _authenticate(state: ApiState, bearer: str) -> Identity:
    rt = state.container.runtime
    with reading(rt.engine) as db:
        return tokens.authenticate(db, bearer, rt.clock())


def _record(state: ApiState, failure: Unauthenticated, source: str) -> None:
    """Count and log the failure; a database that cannot take the count does not turn the
    401 into another error (the log line is written first)."""
    from metawsm.storage.dbapi import on_connection
    from metawsm.storage.engine import connect

    engine = state.container.engine
    try:
        with connect(engine, readonly=False) as connection, connection.begin():
            db = on_connection(connection)
            tokens.record_failed_authentication(db, failure, f"api {source}")
    except (MetawsmError, SQLAlchemyError) as exc:
        log.warning("could not count a failed authentication: %s", exc)
