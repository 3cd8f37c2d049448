"""The scheme, host and query of a URL as ``urllib.parse.urlsplit`` finds them, without importing
it: every command checks its database and broker URLs, and ``urllib.parse`` (with the
``ipaddress`` module it loads) costs each process ~12 M instructions (docs/performance.md,
"Session 14"). ``tests/unit/test_url_parts.py`` holds each function to ``urlsplit`` over a table
of URLs, odd ones included.
"""

from __future__ import annotations

# What urlsplit strips or removes before it parses (WHATWG: C0 controls and space in front;
# tab, CR and LF anywhere).
_LEADING = "".join(map(chr, range(0x21)))
_UNSAFE = ("\t", "\r", "\n")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


def _cleaned(url: str) -> str:
    url = url.lstrip(_LEADING)
    for c in _UNSAFE:
        url = url.replace(c, "")
    return url


def split_scheme(url: str) -> tuple[str, str]:
    """The scheme (lower case; "" when there is none) and the rest after its colon."""
    url = _cleaned(url)
    i = url.find(":")
    if i > 0 and url[0].isascii() and url[0].isalpha() and _SCHEME_CHARS.issuperset(url[:i]):
        return url[:i].lower(), url[i + 1 :]
    return "", url


def scheme(url: str) -> str:
    """``urlsplit(url).scheme``."""
    return split_scheme(url)[0]


def query(url: str) -> str:
    """``urlsplit(url).query``."""
    rest = split_scheme(url)[1].partition("#")[0]
    return rest.partition("?")[2]


def hostname(url: str) -> str | None:
    """``urlsplit(url).hostname`` (lower case; None when there is none).

    Raises:
        ValueError: brackets of an IPv6 host unbalanced, as urlsplit raises.
    """
    rest = split_scheme(url)[1]
    if not rest.startswith("//"):
        return None
    netloc = rest[2:]
    for end in "/?#":
        netloc = netloc.partition(end)[0]
    if ("[" in netloc) != ("]" in netloc):
        raise ValueError("Invalid IPv6 URL")
    host = netloc.rpartition("@")[2]
    host = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
    return host.lower() or None
