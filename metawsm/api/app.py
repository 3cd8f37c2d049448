"""The API's app factory: routers, errors, limits and the event follower, on a given runtime.

``create_app`` takes the process's composition root (``bootstrap.Container``) and the options;
it connects to nothing until the server starts it (the lifespan starts the follower). FastAPI
because its request and response schemas are the pydantic models the message contracts already
are: the OpenAPI document (``/api/v1/openapi.json``) is generated from them, and bodies are
validated by the same field types as the commands (docs/api.md, "Why FastAPI").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

import metawsm
from metawsm.api import errors
from metawsm.api.follower import EventFollower
from metawsm.api.limits import RequestSizeLimit
from metawsm.api.reads import reading
from metawsm.api.routes import forum, log, ops, runs
from metawsm.api.state import ApiOptions, ApiState
from metawsm.board import app as board
from metawsm.services import thread_reads
from metawsm.services.failure_limiter import FailureLimiter
from metawsm.storage.types import utcnow

if TYPE_CHECKING:
    from metawsm.bootstrap import Container


def create_app(container: Container, options: ApiOptions | None = None) -> FastAPI:
    """The API over ``container``'s runtime (nothing connects until the server starts it)."""
    options = options or ApiOptions()
    state = ApiState(
        container=container,
        options=options,
        follower=_follower(container, options),
        failures=FailureLimiter(),
        started_at=utcnow(),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await state.follower.start()
        try:
            yield
        finally:
            await state.follower.stop()

    app = FastAPI(
        title="metawsm",
        version=metawsm.__version__,
        summary="Control plane of coding agents, operators and humans (docs/api.md)",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.api = state
    errors.install(app)
    for module in (ops, forum, runs, log):
        app.include_router(module.router)
    board.install(app)
    if options.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(options.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
        )
    app.add_middleware(RequestSizeLimit, max_bytes=options.max_request_bytes)
    return app


def _follower(container: Container, options: ApiOptions) -> EventFollower:
    def read_after(after: int, limit: int) -> list[dict[str, Any]]:
        with reading(container.engine) as db:
            return thread_reads.events_after(db, after, limit=limit)

    def read_head() -> int:
        with reading(container.engine) as db:
            return thread_reads.last_sequence(db)

    return EventFollower(
        read_after, read_head, poll_s=options.stream_poll_s, keep=options.stream_keep
    )
