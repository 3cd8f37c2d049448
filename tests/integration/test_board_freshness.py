"""The board shows read models but follows the event log: a page must not take an event for
shown before an events worker has projected it (else the page stays stale until the next
event; CI saw an assignment never appear on a thread page)."""

from __future__ import annotations

import re

import httpx
import pytest

from metawsm.bootstrap import build
from metawsm.services.accept import make_command
from metawsm.services.projected import projected_through
from metawsm.services.projections import project_logged_after
from metawsm.settings import Settings
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from tests.fixtures.api import issue_token, serving
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import direct_runtime, handle_in_process


@pytest.fixture
def settings(db_url: str) -> Settings:
    return settings_for(db_url)


def head_of(engine: object) -> int:
    with connect(engine) as connection, connection.begin():  # type: ignore[arg-type]
        return int(on_connection(connection).scalar("SELECT max(sequence) FROM forum_events"))


def open_thread_unprojected(settings: Settings, engine: object, thread_id: str) -> None:
    """Apply an open_thread here, as a commands worker would; no events worker projects it."""
    command = make_command("open_thread", {"thread_id": thread_id, "ticket": "TCK-1",
                           "title": "Which port?", "body": "The API's port"},
                           actor_type="human", actor_name="hana")  # fmt: skip
    assert handle_in_process(direct_runtime(engine, settings), command) == "applied"


def project_everything(engine: object) -> None:
    from datetime import UTC, datetime

    with connect(engine) as connection, connection.begin():  # type: ignore[arg-type]
        project_logged_after(connection, 0, datetime.now(UTC))


def test_a_page_starts_its_live_stream_below_an_event_not_yet_projected(
    settings: Settings,
) -> None:
    container = build(settings)
    try:
        open_thread_unprojected(settings, container.engine, "t-a")
        project_everything(container.engine)
        open_thread_unprojected(settings, container.engine, "t-b")
        head = head_of(container.engine)
        with connect(container.engine) as connection, connection.begin():
            first_b = int(on_connection(connection).scalar(
                "SELECT min(sequence) FROM forum_events WHERE thread_id = 't-b'"))  # fmt: skip
            assert projected_through(on_connection(connection), head) == first_b - 1

        with serving(container) as (url, state):
            from tests.fixtures.conditions import wait_until

            wait_until(lambda: state.follower.head >= head, 10, "the follower to read the log")
            browser = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
            token = issue_token(container.engine, "human", "hana")
            assert browser.post("/signin", data={"token": token, "next": "/threads"}).is_redirect
            html = browser.get("/threads").text
            cursor = int(re.search(r'data-cursor="(\d+)"', html).group(1))  # type: ignore[union-attr]
            # t-b is not in the read models, so not on the page: its events must still come.
            assert "t-b" not in html
            assert cursor == first_b - 1 < head

            project_everything(container.engine)
            html = browser.get("/threads").text
            assert int(re.search(r'data-cursor="(\d+)"', html).group(1)) == head  # type: ignore[union-attr]
    finally:
        container.close()
