"""metawsm/url_parts.py finds what ``urllib.parse.urlsplit`` finds, over URLs odd ones included."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from metawsm import url_parts

URLS = [
    "sqlite:///x.db",
    "sqlite+pysqlite:////abs/x.db?mode=ro",
    "SQLite:///Upper.db",
    "postgresql://u:p@h:5432/db",
    "postgresql+psycopg://h/db?sslmode=require#frag",
    "redis://127.0.0.1:6379/0",
    "rediss://:pw@Host.Example:6380/1",
    "redis://",
    "redis:///0",
    "redis://@/0",
    "redis://[::1]:6379/0",
    "redis://u@[FE80::1]/0",
    "redis://user:pa@ss@host/0",
    "redis://h?x=1",
    "redis://h#x?y",
    "redis://h:abc/0",
    "redis:/host",
    "redis:host",
    "  redis://h/0",
    "\tsqlite:///x",
    "\x00\x1fredis://h/0",
    "red\nis://h",
    "redis://ho\tst/0",
    "1redis://h",
    "+redis://h",
    "x+y.z-w://host",
    "ünicode://h",
    "redis",
    "",
    ":",
    "http:",
    "C:\\x",
    "sqlite://",
    "/just/a/path?q=1",
]


@pytest.mark.parametrize("url", URLS)
def test_scheme_query_and_host_are_what_urlsplit_finds(url: str) -> None:
    parts = urlsplit(url)
    assert url_parts.scheme(url) == parts.scheme
    assert url_parts.query(url) == parts.query
    assert url_parts.hostname(url) == parts.hostname


@pytest.mark.parametrize("url", ["redis://[::1/0", "redis://::1]/0"])
def test_unbalanced_ipv6_brackets_raise_as_urlsplit_does(url: str) -> None:
    with pytest.raises(ValueError):
        urlsplit(url)
    with pytest.raises(ValueError):
        url_parts.hostname(url)
