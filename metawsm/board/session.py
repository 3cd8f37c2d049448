"""Who is signed in: the board's session cookie, the identity it proves, and CSRF tokens.

The cookie holds the bearer token itself (HttpOnly: no script reads it; SameSite=Strict: no
other site's page sends it; Secure when served over HTTPS). Each request authenticates it
like a bearer token (``services/tokens.py``), so revoking or expiring a token signs its board
sessions out at once. A form's CSRF token is an HMAC of a constant keyed by the session's
token: only a page rendered for this session knows it, and no server secret has to be kept.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from metawsm.api.reads import reading
from metawsm.api.state import api_state
from metawsm.errors import Unauthenticated
from metawsm.identity import Identity
from metawsm.services import tokens

COOKIE = "metawsm_session"
FLASH_COOKIE = "metawsm_flash"
_CSRF_MESSAGE = b"metawsm board csrf v1"


class SignInNeeded(Exception):
    """The request has no valid session: the board answers with the sign-in page."""

    def __init__(self, next_path: str, reason: str | None = None) -> None:
        super().__init__(reason or "sign in")
        self.next_path = next_path
        self.reason = reason


class CsrfRefused(Exception):
    """A form post without this session's CSRF token, or from another origin (403)."""


async def board_identity(request: Request) -> Identity:
    """The signed-in identity (a FastAPI dependency of every board page and action).

    Raises:
        SignInNeeded: no session cookie, or its token is unknown, expired or revoked.
    """
    bearer = request.cookies.get(COOKIE, "")
    if not bearer:
        raise SignInNeeded(_here(request))
    try:
        return await run_in_threadpool(authenticate, request, bearer)
    except Unauthenticated as failure:
        raise SignInNeeded(_here(request), str(failure)) from failure


def authenticate(request: Request, bearer: str) -> Identity:
    """The identity ``bearer`` proves now (a blocking read: call it in a thread)."""
    rt = api_state(request).container.runtime
    with reading(rt.engine) as db:
        return tokens.authenticate(db, bearer, rt.clock())


def csrf_token(request: Request) -> str:
    """The CSRF token of the request's session ('' without one)."""
    bearer = request.cookies.get(COOKIE, "")
    if not bearer:
        return ""
    return hmac.new(bearer.encode(), _CSRF_MESSAGE, hashlib.sha256).hexdigest()[:40]


def check_csrf(request: Request, submitted: str) -> None:
    """Refuse a form post whose CSRF token is not the session's or that comes from another
    origin (the ``Origin`` header, sent by browsers on every POST, must be this site).

    Raises:
        CsrfRefused: either check failed.
    """
    check_origin(request)
    expected = csrf_token(request)
    if not expected or not hmac.compare_digest(expected, submitted or ""):
        raise CsrfRefused("the form's CSRF token is missing or not this session's: reload it")


def check_origin(request: Request) -> None:
    """Refuse a post from another site's page (the sign-in form has no session to key a CSRF
    token on: without this, another site could sign a visitor in as someone else).

    Raises:
        CsrfRefused: the ``Origin`` header names another site.
    """
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):
        raise CsrfRefused(f"a form from another origin ({origin}) is refused")


def safe_next(path: str | None, default: str = "/") -> str:
    """``path`` when it is a path on this site (``/...``, not ``//host``), else ``default``:
    a sign-in link cannot send anyone to another site."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return default
    return path


def signin_location(next_path: str) -> str:
    """Where a request without a session is sent."""
    return "/signin?next=" + quote(next_path, safe="/")


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")
