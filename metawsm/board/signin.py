"""Sign-in and sign-out: a token pasted once, then kept in the session cookie."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.reads import reading
from metawsm.api.state import api_state
from metawsm.board.actions import form_of
from metawsm.board.render import page
from metawsm.board.session import COOKIE, authenticate, check_csrf, check_origin, safe_next
from metawsm.errors import Unauthenticated
from metawsm.services import tokens

router = APIRouter(include_in_schema=False)


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request, next: str = "/") -> HTMLResponse:
    """The sign-in form."""
    return page(request, "signin.html", None, title="Sign in", next=safe_next(next), error=None)


@router.post("/signin", response_model=None)
async def signin(request: Request) -> HTMLResponse | RedirectResponse:
    """Check the pasted token; on success keep it in the session cookie and go on."""
    check_origin(request)
    form = await form_of(request)
    next_path = safe_next(form.get("next"))
    bearer = form.get("token", "").strip()
    try:
        await run_in_threadpool(authenticate, request, bearer)
    except Unauthenticated as failure:
        return page(request, "signin.html", None, status_code=401, title="Sign in", next=next_path,
                    error=f"Not signed in: {failure} (rule: {failure.reason})")  # fmt: skip
    response = RedirectResponse(next_path, status_code=303)
    expires = await run_in_threadpool(_expiry, request, bearer)
    response.set_cookie(
        COOKIE,
        bearer,
        expires=expires,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/signout", response_model=None)
async def signout(request: Request) -> RedirectResponse:
    """Forget the session cookie (the token itself stays valid: `metawsm token revoke`)."""
    form = await form_of(request)
    check_csrf(request, form.get("csrf", ""))
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _expiry(request: Request, bearer: str) -> datetime | None:
    """The cookie's expiry: the token's (a session cookie for a token that never expires)."""
    rt = api_state(request).container.runtime
    with reading(rt.engine) as db:
        return tokens.valid_token(db, bearer, rt.clock()).expires_at
