"""A board action: a form post done as the signed-in identity, then back to the page.

Every write goes through the API's write flow (``api/writes.py`` ``write``): the command is
built from the form as the session's identity, checked by the same role rules and contracts as
the API and the command line, and waited on until applied and projected (the page it
redirects to then shows its effect). The result is said on the next page (a short-lived flash
cookie) after a 303 redirect, so a reload does not post twice; a refusal names the rule that
refused it, and a command still in flight is said to be accepted, not refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from metawsm.api.errors import ApiError, from_metawsm, from_validation
from metawsm.api.state import api_state
from metawsm.api.writes import WaitFor, write
from metawsm.board.session import FLASH_COOKIE, check_csrf, safe_next
from metawsm.errors import MetawsmError
from metawsm.identity import Identity

# How long an action waits for its command to be applied before saying it was accepted.
ACTION_WAIT_S = 15.0


async def submit(
    request: Request, identity: Identity, command_type: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Submit ``command_type`` as ``identity`` and wait until applied; the outcome.

    Raises:
        ApiError: refused (403), invalid (422), rejected (409) or not applied in time (504).
    """
    state = api_state(request)
    _, outcome = await write(
        state.container.runtime,
        identity,
        command_type,
        payload,
        wait=WaitFor.PROJECTED,
        timeout_s=ACTION_WAIT_S,
        key=None,
        follower=state.follower,
    )
    return outcome


async def act(
    request: Request,
    form: dict[str, str],
    done: str,
    step: Callable[[], Awaitable[Any]],
) -> RedirectResponse:
    """Check the form's CSRF token, run ``step``, and redirect to the form's ``next`` page
    saying ``done`` or why it was refused."""
    check_csrf(request, form.get("csrf", ""))
    try:
        await step()
        flash = ("ok", done)
    except ApiError as error:
        flash = ("error", refusal_text(error))
    except ValidationError as error:
        flash = ("error", refusal_text(from_validation(error, skip=1)))
    except MetawsmError as error:
        flash = ("error", refusal_text(from_metawsm(error)))
    return redirect(form.get("next"), flash)


def refusal_text(error: ApiError) -> str:
    """What the page says of an action that did not go through: the message and the rule that
    refused it."""
    body = error.body
    if error.status == 504:  # accepted and durable: it is applied when workers catch up
        return f"Accepted, not shown yet: {body.message}"
    rule = f" (rule: {body.rule})" if body.rule else ""
    return f"Refused: {body.message}{rule}"


def redirect(next_path: str | None, flash: tuple[str, str] | None = None) -> RedirectResponse:
    """303 to ``next_path`` (a path of this site), with the flash message when given."""
    response = RedirectResponse(safe_next(next_path), status_code=303)
    if flash:
        kind, text = flash
        response.set_cookie(FLASH_COOKIE, f"{kind}:{quote(text)}", max_age=60, path="/",
                            httponly=True, samesite="strict")  # fmt: skip
    return response


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's fields (``application/x-www-form-urlencoded``, what every board form
    sends; the API's request size limit bounds it). A repeated field keeps its last value;
    bytes that are not UTF-8 become U+FFFD and the contracts then judge the text."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))
