"""The board's routes and error pages, added to the API's app (``api/app.py``)."""

from __future__ import annotations

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from metawsm.board import inbox, live, run_actions, runs, shared, signin, thread_actions, threads
from metawsm.board.render import page
from metawsm.board.session import CsrfRefused, SignInNeeded, signin_location
from metawsm.board.timing import ServerTiming

# Static files change only with a release: browsers may keep them an hour.
STATIC_MAX_AGE_S = 3600


class _Static(StaticFiles):
    """The board's own assets, with a cache lifetime and ``nosniff``."""

    async def get_response(self, path: str, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE_S}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def install(app: FastAPI) -> None:
    """Serve the board on ``app``: its pages at ``/``, its assets at ``/board/static``, each
    page with its ``Server-Timing`` (``timing.py``)."""
    shared.install(app)
    for module in (signin, live, thread_actions, run_actions):
        app.include_router(module.router)
    for module in (inbox, threads, runs):  # pages that follow the event stream
        app.include_router(module.router, dependencies=[Depends(live.note_page_cursor)])
    app.mount("/board/static", _Static(packages=[("metawsm.board", "static")]), name="static")
    app.add_middleware(ServerTiming)  # the time each page took, for operators and bench/board.py

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> HTMLResponse | RedirectResponse:
        if request.headers.get("x-board-fragment") or request.url.path == "/board/events":
            # The page's script: say so, and let it send the person to the sign-in page.
            return HTMLResponse("sign in again", status_code=401)
        return RedirectResponse(signin_location(exc.next_path), status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, exc: CsrfRefused) -> HTMLResponse:
        return page(
            request, "refused.html", None, status_code=403, title="Refused", reason=str(exc)
        )
