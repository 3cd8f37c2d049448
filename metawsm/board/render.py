"""Rendering the board's pages: Jinja2 templates (autoescaped), the page's common context, and
the live part of a page alone for the page's script.

Every page extends ``templates/base.html`` and puts what live updates refresh in its ``live``
block. A request with the ``X-Board-Fragment: live`` header (``static/board.js``, after an
event) gets that block alone, rendered from the same context: one template, one truth.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from metawsm.api.state import api_state
from metawsm.board.live import page_cursor
from metawsm.board.session import FLASH_COOKIE, csrf_token
from metawsm.identity import Identity

FRAGMENT_HEADER = "x-board-fragment"

# Served with every page: scripts, styles and images from this site only, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# What ``a.b`` finds as an attribute of a plain dict (its methods): Jinja's lookup order.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Environment(Environment):
    """Jinja's environment, with ``row.column`` on the reads' row dicts looked up as an item
    first. Jinja tries ``getattr`` first and the item after its ``AttributeError``; an
    exception per field was half the inbox's rendering time (docs/performance.md, "The board").
    The result is the same: a dict has no attributes but its methods, which still win."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute`` in a template."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


@cache
def environment() -> Environment:
    """The templates of ``metawsm/board/templates`` (built and compiled once per process).

    ``auto_reload`` is off: the templates ship with the package, and checking every template's
    file (each ``include`` of a list's items too) on every render cost a stat per item.
    """
    env = _Environment(
        loader=PackageLoader("metawsm.board", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["age"] = age_text
    env.filters["when"] = when_text
    return env


def _cursor(request: Request) -> int:
    taken = getattr(request.state, "board_cursor", None)
    return int(taken) if taken is not None else page_cursor(api_state(request))


def page(
    request: Request,
    template: str,
    identity: Identity | None,
    status_code: int = 200,
    *,
    title: str = "Board",
    **context: Any,
) -> HTMLResponse:
    """``template`` rendered with ``context`` and the common context (the identity, the CSRF
    token, the flash message, the live cursor); only its ``live`` block when the page's script
    asks for it."""
    common = {
        "identity": identity,
        "csrf": csrf_token(request),
        "flash": _flash(request),
        "path": request.url.path,
        "title": title,
        "cursor": _cursor(request),
        "is_operator": identity is not None and identity.actor_type == "operator",
        "can_answer": identity is not None and identity.actor_type in ("operator", "human"),
    }
    tmpl = environment().get_template(template)
    values = {**common, **context}
    if request.headers.get(FRAGMENT_HEADER) == "live" and "live" in tmpl.blocks:
        html = "".join(tmpl.blocks["live"](tmpl.new_context(values)))
    else:
        html = tmpl.render(values)
    response = HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def _flash(request: Request) -> dict[str, str] | None:
    """The message of the last action (set by ``actions.py`` before its redirect)."""
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, text = raw.partition(":")
    from urllib.parse import unquote

    return {"kind": kind if kind in ("ok", "error") else "ok", "text": unquote(text)[:2000]}


def age_text(seconds: int | float | None) -> str:
    """``42s``, ``7m``, ``3h 05m``, ``2d 4h``: an age as a person reads it."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when_text(value: datetime | str | None) -> str:
    """A time as ``2026-12-06 07:41:05 UTC``."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
