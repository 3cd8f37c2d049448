"""``Server-Timing: app;dur=<ms>`` on the board's pages: how long the app took to make a page.

Measured from the moment the request reaches the app (after uvicorn parsed it) to the moment
the response's headers are sent; a page's body is rendered before its headers go out
(``render.page`` returns a complete ``HTMLResponse``), so this is the server time of a page:
authentication, reads, rendering. Network and the browser's work are not in it. Browsers show
it in their developer tools (Network, Timing); ``bench/board.py`` reads it.

Only HTML responses get the header (the board's pages, its sign-in and error pages): the API's
JSON and the event stream are left as they are. The figure says nothing an observer could not
time from outside, so it is no secret.
"""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "Server-Timing"


class ServerTiming:
    """ASGI middleware adding ``Server-Timing: app;dur=<ms>`` to every HTML response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, stamping HTML responses with the time taken so far."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.append(HEADER, duration(started))
            await send(message)

        await self.app(scope, receive, stamped)


def duration(started: float) -> str:
    """The header's value for a request that started at ``started`` (``perf_counter``)."""
    return f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
