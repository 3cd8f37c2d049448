"""The publisher's minimal Redis client against a real redis-server: replies, errors, log-in,
database choice, and the failures the publisher's policy tells apart (refused, frozen, restarted).

What the publisher writes through it is compared byte for byte with kombu in
``test_publisher_wire.py``; this file is about the client itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from metawsm.transport.redis_faults import ControlledRedisServer
from metawsm.transport.redis_wire import is_reset, is_unreachable
from metawsm.transport.resp import (
    ConnectionLost,
    ReplyError,
    ReplyTimeout,
    RespClient,
    parse_url,
)
from tests.fixtures.database import NO_BROKER_URL

TIMEOUT_S = 0.5


def connect(url: str, health_check_s: float = 10.0) -> RespClient:
    address = parse_url(url)
    assert address is not None, url
    return RespClient(address, TIMEOUT_S, health_check_s)


@pytest.fixture
def client(redis_url: str) -> Iterator[RespClient]:
    c = connect(redis_url)
    yield c
    c.close()


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def test_commands_return_redis_replies(client: RespClient, broker: redis.Redis) -> None:
    assert client.execute("PING") == b"PONG"
    assert client.execute("LPUSH", "q", "a", b"b\r\n", 3) == 3
    assert client.execute("LRANGE", "q", 0, -1) == [b"3", b"b\r\n", b"a"]
    assert client.execute("GET", "missing") is None
    assert client.execute("PUBLISH", "channel", "nobody listens") == 0
    assert broker.lrange("q", 0, -1) == [b"3", b"b\r\n", b"a"]


def test_a_reply_larger_than_one_read_arrives_whole(client: RespClient) -> None:
    value = "é" * 300_000  # 600 kB of UTF-8: several reads
    client.execute("SET", "big", value)
    assert client.execute("GET", "big") == value.encode("utf-8")


def test_a_transaction_runs_its_commands_and_returns_their_replies(
    client: RespClient, broker: redis.Redis
) -> None:
    replies = client.transaction([("SADD", "s", "m"), ("SADD", "s", "m"), ("SADD", "t", "m")])
    assert replies == [1, 0, 1]
    assert broker.smembers("s") == {b"m"}


def test_an_error_reply_is_raised_and_the_connection_stays_in_step(
    client: RespClient, broker: redis.Redis
) -> None:
    broker.set("text", "x")
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        client.execute("LPUSH", "text", "a")
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        client.transaction([("SADD", "s", "m"), ("LPUSH", "text", "a")])
    with pytest.raises(ReplyError, match="unknown command"):
        client.transaction([("NOSUCHCOMMAND",)])
    assert client.execute("SMEMBERS", "s") == [b"m"]  # the valid part of the first one ran
    assert client.execute("PING") == b"PONG"


def test_the_database_of_the_url_is_selected(redis_url: str) -> None:
    other = redis_url.rsplit("/", 1)[0] + "/3"
    c = connect(other)
    try:
        c.execute("SET", "where", "db3")
    finally:
        c.close()
    by_redis_py = redis.Redis.from_url(other)
    try:
        assert by_redis_py.get("where") == b"db3"
        assert by_redis_py.execute_command("SELECT", 0)
        assert by_redis_py.get("where") is None
    finally:
        by_redis_py.close()


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[ControlledRedisServer]:
    server = ControlledRedisServer(dir=tmp_path / "redis", password="s3cret:/@")
    server.start()
    yield server
    server.stop()


def test_the_password_of_the_url_logs_in(locked_redis: ControlledRedisServer) -> None:
    c = connect(locked_redis.url)
    try:
        assert c.execute("PING") == b"PONG"
    finally:
        c.close()
    wrong = connect(locked_redis.url.replace("s3cret", "wrong"))
    with pytest.raises(ConnectionLost, match="authentication refused") as refused:
        wrong.execute("PING")
    assert is_unreachable(refused.value) and "s3cret" not in str(refused.value)


def test_without_the_password_every_command_is_refused(
    locked_redis: ControlledRedisServer,
) -> None:
    c = connect(f"redis://127.0.0.1:{locked_redis.port}/0")
    with pytest.raises(ReplyError, match="NOAUTH"):
        c.execute("PING")
    c.close()


def test_a_refused_connection_is_a_reset_worth_one_retry() -> None:
    c = connect(NO_BROKER_URL)
    with pytest.raises(ConnectionLost, match="Connection refused") as refused:
        c.execute("PING")
    assert is_unreachable(refused.value) and is_reset(refused.value)


def test_a_frozen_redis_times_out_and_is_not_retried(
    private_redis: ControlledRedisServer,
) -> None:
    c = connect(private_redis.url)
    assert c.execute("PING") == b"PONG"
    private_redis.pause()
    try:
        start = time.monotonic()
        with pytest.raises(ReplyTimeout) as timed_out:
            c.execute("LPUSH", "q", "a")
        assert time.monotonic() - start < TIMEOUT_S + 1.0
        assert is_unreachable(timed_out.value) and not is_reset(timed_out.value)
    finally:
        private_redis.resume()
    assert c.execute("PING") == b"PONG"  # a fresh connection; the late reply is not read
    c.close()


def test_a_connection_a_restart_dropped_fails_once_then_connects_again(
    private_redis: ControlledRedisServer,
) -> None:
    c = connect(private_redis.url, health_check_s=0.0)
    assert c.execute("PING") == b"PONG"
    private_redis.restart()
    with pytest.raises(ConnectionLost) as lost:
        c.execute("LPUSH", "q", "a")  # the health check's PING finds it closed: not sent
    assert is_reset(lost.value)
    assert c.execute("LPUSH", "q", "a") == 1
    c.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", ("127.0.0.1", 6379, 0, None, None)),
        ("redis://localhost", ("localhost", 6379, 0, None, None)),
        ("redis://:p%40ss@h:7000/2", ("h", 7000, 2, None, "p@ss")),
        ("redis://user:pw@h/", ("h", 6379, 0, "user", "pw")),
        ("redis://[::1]:6380/1", ("::1", 6380, 1, None, None)),
    ],
)
def test_a_plain_redis_url_is_read_here(url: str, expected: tuple[object, ...]) -> None:
    address = parse_url(url)
    assert address is not None
    fields = (address.host, address.port, address.db, address.username, address.password)
    assert fields == expected


@pytest.mark.parametrize(
    "url",
    [
        "rediss://h:6379/0",
        "redis://h:6379/0?socket_timeout=3",
        "redis://user@h/0",
        "redis://h/zero",
        "redis://h:port/0",
        "unix:///tmp/redis.sock",
    ],
)
def test_any_other_url_is_left_to_redis_py(url: str) -> None:
    assert parse_url(url) is None
