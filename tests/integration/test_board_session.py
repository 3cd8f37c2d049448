"""The board's session over HTTP (no browser needed): sign-in, the cookie's flags, CSRF and
origin checks on every post, where a sign-in may send you next, and the security headers."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from metawsm.messages.common import Actor
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from tests.fixtures.api import issue_token, serving
from tests.fixtures.pipeline import Pipeline


@pytest.fixture
def board_url(pipeline: Pipeline) -> Iterator[str]:
    with serving(pipeline.container) as (url, _):
        yield url


def signed_in(url: str, token: str) -> httpx.Client:
    browser = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    answer = browser.post("/signin", data={"token": token, "next": "/"})
    assert answer.status_code == 303, answer.text
    return browser


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def post_count(pipeline: Pipeline) -> int:
    with connect(pipeline.engine) as connection, connection.begin():
        return int(on_connection(connection).scalar("SELECT count(*) FROM forum_commands"))


def test_the_session_cookie_is_httponly_samesite_and_the_pages_say_who_is_signed_in(
    board_url: str, pipeline: Pipeline
) -> None:
    anonymous = httpx.Client(base_url=board_url, follow_redirects=False)
    assert anonymous.get("/").headers["location"] == "/signin?next=/"
    refused = anonymous.post("/signin", data={"token": "mwsm_nope", "next": "/"})
    assert refused.status_code == 401 and "unknown token" in refused.text
    assert "set-cookie" not in refused.headers

    browser = signed_in(board_url, issue_token(pipeline.engine, "human", "hana"))
    cookie = browser.cookies.jar
    header = next(iter(browser.cookies.jar)) if cookie else None
    assert header is not None and header.name == "metawsm_session"
    assert header.has_nonstandard_attr("HttpOnly")
    assert header.get_nonstandard_attr("SameSite", "").lower() == "strict"
    inbox = browser.get("/")
    assert inbox.status_code == 200 and "human/hana" in inbox.text
    assert "script-src 'self'" in inbox.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in inbox.headers["content-security-policy"]
    assert inbox.headers["cache-control"] == "no-store"


def test_a_post_without_the_sessions_csrf_token_or_from_another_site_changes_nothing(
    board_url: str, pipeline: Pipeline
) -> None:
    run_id = pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    opened = pipeline.run("open_thread", actor="human", thread_id="t-1", ticket="TCK-1",
                          run_id=run_id, title="Help", body="Which port?")  # fmt: skip
    assert opened.status == "applied"
    browser = signed_in(board_url, issue_token(pipeline.engine, "operator", "ops"))
    token = csrf_of(browser.get("/").text)
    before = post_count(pipeline)

    for form, headers in (
        ({"body": "no token"}, {}),
        ({"body": "wrong token", "csrf": "0" * 40}, {}),
        ({"body": "other site", "csrf": token}, {"Origin": "https://evil.example"}),
    ):
        refused = browser.post("/threads/t-1/post", data=form, headers=headers)
        assert refused.status_code == 403, (form, refused.text)
    assert post_count(pipeline) == before

    done = browser.post("/threads/t-1/post", data={"body": "right token", "csrf": token,
                                                    "next": "/threads/t-1"})  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/threads/t-1"
    assert post_count(pipeline) == before + 1


def test_signing_in_from_another_site_or_to_another_site_is_refused(
    board_url: str, pipeline: Pipeline
) -> None:
    token = issue_token(pipeline.engine, "human", "hana")
    anonymous = httpx.Client(base_url=board_url, follow_redirects=False)
    forged = anonymous.post("/signin", data={"token": token},
                            headers={"Origin": "https://evil.example"})  # fmt: skip
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        sent = anonymous.post("/signin", data={"token": token, "next": target})
        assert sent.status_code == 303 and sent.headers["location"] == "/", target
