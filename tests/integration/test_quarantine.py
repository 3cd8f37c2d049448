"""Quarantine, piece by piece: the Redis channel's reading of elements, the dead-letter record,
and the ``metawsm dlq`` commands on quarantined letters (the whole path with a real worker is
tests/fault/test_bad_messages.py)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import click
import pytest
import redis
from click.testing import CliRunner, Result
from kombu import Connection
from sqlalchemy import Engine

from metawsm.cli import main
from metawsm.services import deadletters
from metawsm.services.quarantine import Quarantined, quarantine_id, record
from metawsm.services.submit import make_command
from metawsm.transport import kombu_quarantine
from metawsm.transport.publisher import make_publisher
from tests.fixtures.database import settings_for

QUEUE = "forum.commands.add_post"


@pytest.fixture
def channel(redis_url: str) -> Iterator[Any]:
    """A kombu Redis channel with metawsm's reads installed (as every worker has)."""
    kombu_quarantine.install()
    with Connection(redis_url) as conn:
        chan = conn.channel()
        try:
            yield chan
        finally:
            chan.close()


def test_a_message_metawsm_published_is_read_as_itself(channel: Any, redis_url: str) -> None:
    command = make_command(
        "add_post", {"thread_id": "t-1", "body": "hi"}, actor_type="agent", actor_name="a"
    )
    publisher = make_publisher(settings_for("sqlite://", redis_url))
    try:
        publisher.publish(QUEUE, command.command_id, command.model_dump(mode="json"))
    finally:
        publisher.close()
    [raw] = redis.Redis.from_url(redis_url).lrange(QUEUE, 0, -1)
    assert kombu_quarantine.read_element(channel, raw, QUEUE) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"garbage", "not JSON (JSONDecodeError: Expecting value"),
        (b"\xff garbage", "not UTF-8 (invalid start byte at byte 0)"),
        (b'{"x": 1}', "not a kombu message envelope (no properties object)"),
        (b'"text"', "not a kombu message envelope (a JSON str, not an object)"),
        (b'{"properties": {}}', "no delivery_tag string in its properties"),
        (
            b'{"properties": {"delivery_tag": "t", "delivery_info": {}}}',
            "no delivery_info with exchange and routing_key",
        ),
        (
            b'{"headers": [1], "properties": {"delivery_tag": "t",'
            b' "delivery_info": {"exchange": "", "routing_key": "q"}}}',
            "headers that are not an object",
        ),
        (
            b'{"body": "x", "properties": {"delivery_tag": "t", "body_encoding": "rot13",'
            b' "delivery_info": {"exchange": "", "routing_key": "q"}}}',
            "not a kombu message envelope (AttributeError",
        ),
    ],
    ids=["garbage", "not-utf8", "no-properties", "a-string", "no-tag", "no-info", "headers", "enc"],
)
def test_an_unreadable_element_becomes_a_quarantine_envelope_carrying_it(
    channel: Any, raw: bytes, reason: str
) -> None:
    envelope = kombu_quarantine.read_element(channel, raw, QUEUE)
    assert envelope["content-type"] == kombu_quarantine.CONTENT_TYPE
    assert reason in envelope["headers"][kombu_quarantine.REASON_HEADER]
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": QUEUE}
    message = channel.Message(envelope, channel=channel)  # what the consumer gets
    assert message.body == raw and message.content_type == kombu_quarantine.CONTENT_TYPE


def test_basic_get_reads_an_unreadable_element_too(channel: Any, redis_url: str) -> None:
    redis.Redis.from_url(redis_url).lpush(QUEUE, b"garbage")
    message = channel.basic_get(QUEUE, no_ack=True)
    assert message.content_type == kombu_quarantine.CONTENT_TYPE and message.body == b"garbage"


# The dead-letter record and the CLI ------------------------------------------------------------


class _Entry(click.Command):
    """``metawsm.cli.main`` shaped like a click command, so CliRunner sees its exit codes."""

    def main(self, args: Any = None, prog_name: Any = None, **_: Any) -> Any:  # type: ignore[override]
        return main(list(args or ()))


def _metawsm(db_url: str, *args: str) -> Result:
    env = {"METAWSM_DATABASE_URL": db_url, "METAWSM_BROKER_URL": settings_for(db_url).broker_url}
    return CliRunner().invoke(_Entry("metawsm"), list(args), env=env)


def _json(db_url: str, *args: str) -> Any:
    result = _metawsm(db_url, *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def _garbage(raw: bytes = b"garbage", reason: str = "not JSON") -> Quarantined:
    return Quarantined(raw=raw, queue=QUEUE, reason=reason)


def test_the_same_element_twice_is_one_dead_letter_with_two_attempts(engine: Engine) -> None:
    first = record(engine, _garbage())
    assert record(engine, _garbage(reason="not JSON, again")) == first == quarantine_id(b"garbage")
    [letter] = deadletters.list_dead_letters(engine)
    assert letter["message_id"] == first
    assert (letter["kind"], letter["attempts"], letter["status"]) == ("quarantine", 2, "dead")
    assert (letter["topic"], letter["error"]) == (QUEUE, "not JSON, again")


def test_elements_met_by_several_workers_at_once_are_each_counted(engine: Engine) -> None:
    elements = [f"garbage {i}".encode() for i in range(5)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            for raw in elements:
                record(engine, _garbage(raw))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    attempts = {r["message_id"]: r["attempts"] for r in deadletters.list_dead_letters(engine)}
    assert attempts == {quarantine_id(raw): 4 for raw in elements}


def test_what_no_text_column_takes_is_stored_escaped_or_as_base64(engine: Engine) -> None:
    raw = b"\x00\xff" + b"x" * (100 * 1024)
    message_id = record(
        engine, Quarantined(raw, QUEUE, "bad \x00 reason", task_name="task\x00", traceback="t\x00")
    )
    letter = deadletters.show_dead_letter(engine, message_id)
    payload = letter["payload"]
    assert (payload["raw_encoding"], payload["truncated"]) == ("base64", True)
    assert base64.b64decode(payload["raw"]) == raw[: 64 * 1024]
    assert (payload["raw_bytes"], payload["queue"]) == (len(raw), QUEUE)
    assert (letter["error"], letter["task_name"]) == ("bad \\x00 reason", "task\\x00")
    assert letter["traceback"] == "t\\x00"


def test_the_dlq_cli_shows_a_quarantined_element_refuses_to_redrive_it_and_purges_it(
    db_url: str, engine: Engine
) -> None:
    message_id = record(engine, _garbage())

    [listed] = _json(db_url, "dlq", "list")["dead_letters"]
    assert (listed["message_id"], listed["kind"], listed["topic"]) == (
        message_id,
        "quarantine",
        QUEUE,
    )
    plain = _metawsm(db_url, "dlq", "list")
    assert plain.exit_code == 0
    [row] = [line.split() for line in plain.stdout.splitlines() if line.startswith(message_id)]
    assert row[:4] == [message_id, "dead", QUEUE, "1"]
    shown = _json(db_url, "dlq", "show", message_id)
    assert shown["payload"]["raw"] == "garbage" and shown["error"] == "not JSON"

    refused = _metawsm(db_url, "dlq", "redrive", message_id)
    assert refused.exit_code == 1, (refused.output, refused.exception)
    assert "is a quarantined element of forum.commands.add_post" in refused.stderr
    assert "cannot be redriven" in refused.stderr and refused.stdout == ""
    assert _json(db_url, "dlq", "show", message_id)["status"] == "dead"

    assert _json(db_url, "dlq", "purge", message_id) == {"purged": 1}
    assert _json(db_url, "dlq", "list")["dead_letters"] == []
    # Met again after the purge: it needs a look again.
    record(engine, _garbage())
    [again] = _json(db_url, "dlq", "list")["dead_letters"]
    assert (again["message_id"], again["status"], again["attempts"]) == (message_id, "dead", 2)
