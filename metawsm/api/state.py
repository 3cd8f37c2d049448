"""What the API's handlers share: the composition root, the options, the event follower."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import Request

if TYPE_CHECKING:
    from metawsm.api.follower import EventFollower
    from metawsm.bootstrap import Container
    from metawsm.services.failure_limiter import FailureLimiter


@dataclass(frozen=True)
class ApiOptions:
    """How the API serves: request size limit (bytes), CORS origins (none: CORS off), the
    reverse proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto`` are believed (addresses or
    networks; none: those headers are ignored), and the stream's follower (poll interval, events
    kept in memory) and keep-alive (seconds)."""

    max_request_bytes: int = 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    stream_poll_s: float = 0.05
    stream_keep: int = 10_000
    stream_heartbeat_s: float = 15.0


@dataclass
class ApiState:
    """The process's API state (``app.state.api``)."""

    container: Container
    options: ApiOptions
    follower: EventFollower
    failures: FailureLimiter
    started_at: datetime
    stream_clients: int = field(default=0)


def api_state(request: Request) -> ApiState:
    """The API state of the app serving ``request``."""
    state: ApiState = request.app.state.api
    return state
