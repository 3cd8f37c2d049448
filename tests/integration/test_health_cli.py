"""``metawsm health`` and ``metawsm metrics serve`` as a user runs them, on a real database and
a real (or absent) Redis."""

from __future__ import annotations

import json
import socket
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine

from metawsm.cli import cli
from metawsm.database_location import missing_sqlite_file
from metawsm.ops.health import CHECK_NAMES
from metawsm.ops.heartbeats import BEAT_ROLE, WORKER_ROLES, beat
from metawsm.storage.types import utcnow
from metawsm.storage.uow import connection_unit
from tests.fixtures.database import NO_BROKER_URL


def _health(db_url: str, broker_url: str, *args: str) -> tuple[int, Any]:
    env = {"METAWSM_DATABASE_URL": db_url, "METAWSM_BROKER_URL": broker_url}
    result = CliRunner().invoke(cli, ["health", *args], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _alive(engine: Engine) -> None:
    """Heartbeats of a worker in every role and of beat, written as they write them."""
    with connection_unit(engine) as conn:
        beat(conn, "w@test:1", WORKER_ROLES, utcnow())
        beat(conn, "beat@test:2", [BEAT_ROLE], utcnow())


def test_health_is_exit_0_when_every_check_passes(
    engine: Engine, db_url: str, redis_url: str
) -> None:
    _alive(engine)
    code, out = _health(db_url, redis_url, "--json")
    body = json.loads(out)
    assert code == 0, out
    assert body["healthy"] is True
    assert [c["name"] for c in body["checks"]] == list(CHECK_NAMES)
    assert "PING answered in" in body["checks"][2]["detail"]


def test_without_redis_or_workers_health_is_exit_1_naming_each_check_and_its_fix(
    engine: Engine, db_url: str
) -> None:
    code, out = _health(db_url, NO_BROKER_URL)
    assert code == 1
    lines = out.splitlines()
    assert lines[-1] == (
        "unhealthy: broker, workers:commands, workers:events, workers:integration,"
        " workers:housekeeping, beat"
    )
    assert any(
        line.startswith("FAIL workers:events") and "-> metawsm worker --role events" in line
        for line in lines
    )
    assert any(line.startswith("FAIL beat") and "-> metawsm beat" in line for line in lines)
    assert any(line.startswith("ok   database") for line in lines)


def test_a_database_without_the_schema_fails_schema_with_the_upgrade_hint(
    empty_db_url: str,
) -> None:
    missing = missing_sqlite_file(empty_db_url)
    if missing is not None:
        missing.touch()  # an empty SQLite file (no file at all: the test below)
    code, out = _health(empty_db_url, NO_BROKER_URL, "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 1
    assert checks["database"]["ok"] is True
    assert (checks["schema"]["ok"], checks["schema"]["hint"]) == (False, "metawsm db upgrade")


def test_a_database_file_that_does_not_exist_fails_database_and_is_not_created(
    empty_sqlite_url: str,
) -> None:
    code, out = _health(empty_sqlite_url, NO_BROKER_URL, "--json")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert code == 1 and checks["database"]["ok"] is False
    missing = missing_sqlite_file(empty_sqlite_url)
    assert (
        missing is not None and f"no metawsm database at {missing}" in checks["database"]["detail"]
    )
    assert not missing.exists()


def test_metrics_serve_on_a_taken_port_is_exit_1_naming_the_option(db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"METAWSM_DATABASE_URL": db_url, "METAWSM_BROKER_URL": NO_BROKER_URL}
        result = CliRunner().invoke(cli, ["metrics", "serve", "--port", str(port)], env=env)
    assert isinstance(result.exception, Exception)
    from metawsm.errors import PortTaken

    assert isinstance(result.exception, PortTaken)
    assert result.exception.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in str(result.exception)
    assert "--port" in str(result.exception)
