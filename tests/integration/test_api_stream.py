"""The live event stream: every event once, in commit order, across disconnects, while writers
commit concurrently (SQLite and PostgreSQL), fed by the one follower of the API process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from metawsm.api.state import ApiOptions
from metawsm.bootstrap import Container, build
from metawsm.services import thread_reads
from metawsm.services.submit import make_command
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from tests.fixtures.api import Api, api_for, sse_messages
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import direct_runtime, handle_in_process

STREAM = "/api/v1/events/stream"
WRITERS = 3
THREADS_PER_WRITER = 3
POSTS_PER_THREAD = 3
# A small buffer: resuming clients fall behind it and catch up from the database.
OPTIONS = ApiOptions(stream_keep=10, stream_poll_s=0.02, stream_heartbeat_s=0.5)


@pytest.fixture
def container(db_url: str) -> Iterator[Container]:
    """A composition root on the test database (no broker: nothing here publishes)."""
    built = build(settings_for(db_url))
    try:
        yield built
    finally:
        built.close()


def _write(container: Container, writer: int, failures: list[BaseException]) -> None:
    """One writer: opens threads on ticket T-<writer> and posts on them, applying each command
    in this thread (its own transactions, concurrent with the other writers)."""
    rt = direct_runtime(container.engine, container.settings)
    try:
        for t in range(THREADS_PER_WRITER):
            thread_id = f"th-{writer}-{t}"
            payload = {"thread_id": thread_id, "ticket": f"T-{writer}", "title": "t", "body": "b"}
            _apply(rt, "open_thread", payload)
            for p in range(POSTS_PER_THREAD):
                _apply(rt, "add_post", {"thread_id": thread_id, "body": f"post {p}"})
    except BaseException as exc:  # reported by the test, not lost in the thread
        failures.append(exc)


def _apply(rt: Any, kind: str, payload: dict[str, Any]) -> None:
    command = make_command(kind, payload, actor_type="agent", actor_name="alice")
    assert handle_in_process(rt, command) == "applied"


def _log(container: Container, ticket: str | None = None) -> list[dict[str, Any]]:
    with connect(container.engine) as connection, connection.begin():
        return thread_reads.events_after(on_connection(connection), 0, ticket=ticket, limit=10**6)


def _read(api: Api, seen: list[dict[str, Any]], *, stop: Any, at_most: int, **params: Any) -> None:
    """Connect (resuming after the last event in ``seen``), read up to ``at_most`` events into
    ``seen``, then disconnect; stop early when ``stop()`` holds."""
    headers = {"Last-Event-ID": str(seen[-1]["sequence"])} if seen else {}
    with api.agent.stream("GET", STREAM, params=params, headers=headers) as response:
        assert response.status_code == 200
        read = 0
        for message in sse_messages(response):
            if message is not None:
                assert message.id == message.data["sequence"]
                seen.append(message.data)
                read += 1
            if read >= at_most or stop():
                return


def _follow(api: Api, done: threading.Event, total: Any, **params: Any) -> list[dict[str, Any]]:
    """Read in short connections until the writers are done and every event of the log has
    come; the events seen, in the order they came."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60

    def caught_up() -> bool:
        if not done.is_set():
            return False
        expected = total()
        return bool(not expected or (seen and seen[-1]["sequence"] >= expected[-1]["sequence"]))

    at_most = 1
    while not caught_up():
        assert time.monotonic() < deadline, f"stream stalled after {len(seen)} events"
        _read(api, seen, stop=caught_up, at_most=at_most, **params)
        at_most = at_most % 7 + 2  # disconnect after 1, 3, 5, ... events: every kind of point
    return seen


def test_a_client_resuming_with_last_event_id_sees_every_event_once_in_commit_order(
    container: Container,
) -> None:
    failures: list[BaseException] = []
    done = threading.Event()

    def write_all() -> None:
        writers = [
            threading.Thread(target=_write, args=(container, w, failures)) for w in range(WRITERS)
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
        done.set()

    with api_for(container, OPTIONS) as api:
        filtered: list[list[dict[str, Any]]] = []

        def follow_one_ticket() -> None:
            filtered.append(_follow(api, done, lambda: _log(container, "T-1"), ticket="T-1"))

        threads = [threading.Thread(target=write_all), threading.Thread(target=follow_one_ticket)]
        for thread in threads:
            thread.start()
        try:
            seen = _follow(api, done, lambda: _log(container))
        finally:
            for thread in threads:
                thread.join(60)
        assert not failures, failures
        everything = _log(container)
        assert len(everything) >= WRITERS * THREADS_PER_WRITER * (1 + POSTS_PER_THREAD)
        assert seen == everything
        assert filtered == [_log(container, "T-1")]
        # A new client from the start catches up from the database, behind the buffer.
        fresh: list[dict[str, Any]] = []
        _read(api, fresh, stop=lambda: len(fresh) == len(everything), at_most=10**6)
        assert fresh == everything


def test_the_stream_refuses_a_bad_last_event_id_and_needs_a_token(container: Container) -> None:
    with api_for(container, OPTIONS) as api:
        bad = api.agent.get(STREAM, headers={"Last-Event-ID": "ten"})
        assert bad.status_code == 422
        assert bad.json()["field"] == "Last-Event-ID"
        assert api.anonymous.get(STREAM).status_code == 401


def test_live_clients_are_fed_by_the_follower_without_reads_of_their_own(
    container: Container,
) -> None:
    with api_for(container, OPTIONS) as api:
        follower = api.state.follower
        clients = [httpx.Client(base_url=api.url, headers=api.agent.headers) for _ in range(20)]
        streams = [c.stream("GET", STREAM) for c in clients]
        try:
            responses = [s.__enter__() for s in streams]
            assert {r.status_code for r in responses} == {200}
            rt = direct_runtime(container.engine, container.settings)
            _apply(rt, "open_thread", {"thread_id": "th-x", "ticket": "T", "title": "t",
                                       "body": "b"})  # fmt: skip
            for response in responses:
                message = next(m for m in sse_messages(response) if m is not None)
                assert message.data["thread_id"] == "th-x"
        finally:
            for s, c in zip(streams, clients, strict=True):
                s.__exit__(None, None, None)
                c.close()
        assert follower.polls > 0
        assert follower.pages == 0  # no client read the log itself
