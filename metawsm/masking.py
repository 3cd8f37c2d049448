"""Hiding credentials in what metawsm prints: URLs, free text and secret-named settings.

What counts as a credential (issue 14; ``tests/unit/test_masking.py`` walks every setting):

- in a URL: the password of its userinfo (``redis://:***@host``); a userinfo with no password
  when the URL is not a database or broker URL (``https://***@hooks.example``: a bare token);
  and the value of every query parameter named like a credential (``?token=***``);
- in any text (a shell command, say): every URL in it, as above, ``NAME=value`` where NAME is
  named like a credential, and what follows ``Bearer`` or ``Basic``;
- a setting named like a secret (``metrics_basic_auth``): its whole value, except the user
  of a ``user:password`` (``metawsm:***``).

Nothing here imports a library: ``config show`` and every error message use it.
"""

from __future__ import annotations

import re

MASK = "***"
# The patterns are compiled when first used (re keeps them), not at import: every command
# imports this module, few mask anything (~4 M instructions of each process's start).
# A name that holds a credential: token, api_key, secret, password, passwd, pwd, auth, sig...
_SECRET_NAME = (
    r"(token|secret|passw(or)?d|pwd|api[_-]?key|apikey|auth|credential|signature|^sig$|"
    r"^key$|session|private)"
)
# URL schemes whose userinfo names an account (kept) rather than being a token (masked).
_ACCOUNT_SCHEMES = ("postgres", "postgresql", "redis", "rediss", "sqlite", "mysql", "amqp")
_URL = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+"
_ASSIGNMENT = r"([A-Za-z0-9_.-]+)=([^\s&'\"]+)"
_SCHEME_TOKEN = r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]+"


def secret_name(name: str) -> bool:
    """True when ``name`` (a setting, a query parameter, a variable) is named like a secret."""
    return re.search(_SECRET_NAME, name, re.IGNORECASE) is not None


def mask_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***`` (module rules); safe to log."""
    from urllib.parse import urlsplit, urlunsplit  # only when masking: ~12 M instructions

    try:
        parts = urlsplit(url)
    except ValueError:
        return _mask_assignments(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        if sep:
            netloc = f"{user}:{MASK}@{hostport}"
        elif parts.scheme.split("+")[0].lower() not in _ACCOUNT_SCHEMES:
            netloc = f"{MASK}@{hostport}"
    query = _mask_query(parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _mask_query(query: str) -> str:
    if not query:
        return query
    pairs = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        pairs.append(f"{name}={MASK}" if sep and value and secret_name(name) else pair)
    return "&".join(pairs)


def _mask_assignments(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={MASK}" if secret_name(name) else match.group(0)

    return re.sub(_ASSIGNMENT, one, text)


def mask_text(text: str) -> str:
    """``text`` with every URL masked (:func:`mask_url`), ``NAME=value`` of a secret-named
    NAME and a ``Bearer``/``Basic`` token replaced by ``***``."""
    masked = re.sub(_URL, lambda m: mask_url(m.group(0)), text)
    masked = re.sub(_SCHEME_TOKEN, lambda m: f"{m.group(1)} {MASK}", masked, flags=re.IGNORECASE)
    return _mask_assignments(masked)


def mask_setting(name: str, value: object) -> object:
    """A setting's value as ``config show`` prints it: text masked by its name and content."""
    if not isinstance(value, str):
        return value
    if secret_name(name):
        user, sep, _ = value.partition(":")
        return f"{user}:{MASK}" if sep and user and "/" not in user else MASK
    return mask_text(value)
