"""One driver connection per command-line write (storage/driver_session.py), SQLite and PostgreSQL.

A write's schema check, accept and polls used to connect once each (PostgreSQL: ~20 ms and a
server backend every time). The session runs them on one connection with the semantics of
``dbapi.read_transaction``/``write_transaction``: each read sees what others committed before
it, a write commits or rolls back, and a failed transaction leaves the next one a fresh
connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text

from metawsm.cli import main
from metawsm.errors import DatabaseBusy
from metawsm.storage import dbapi
from metawsm.storage.driver_session import DriverSession
from tests.fixtures.database import NO_BROKER_URL, settings_for

COUNT = "SELECT count(*) AS n FROM forum_projection_events"
INSERT = (
    "INSERT INTO forum_projection_events (projection, event_id, applied_at)"
    " VALUES ('test', :id, '2026-01-01 00:00:00')"
)


@pytest.fixture
def session(db_url: str) -> Iterator[DriverSession]:
    s = DriverSession(settings_for(db_url))
    yield s
    s.close()


def count(session: DriverSession) -> int:
    with session.reading() as db:
        return int(db.rows(COUNT)[0]["n"])


def test_transactions_share_one_connection_and_see_what_others_committed(
    session: DriverSession, engine: Engine
) -> None:
    with session.reading() as db:
        first = db.raw
    assert count(session) == 0
    with engine.begin() as conn:  # another connection commits between two reads
        conn.execute(text(INSERT), {"id": "dl-1"})
    assert count(session) == 1
    with session.writing() as db:
        db.execute(INSERT, {"id": "dl-2"})
        assert db.raw is first
    with engine.connect() as conn:
        assert conn.execute(text(COUNT)).scalar_one() == 2


def test_a_failed_write_rolls_back_and_the_next_transaction_connects_again(
    session: DriverSession,
) -> None:
    with session.reading() as db:
        first = db.raw
    with pytest.raises(DatabaseBusy), session.writing() as db:
        db.execute(INSERT, {"id": "dl-1"})
        db.execute(INSERT, {"id": "dl-1"})  # the same key: the driver refuses it
    with session.reading() as db:
        assert db.raw is not first
    assert count(session) == 0


class _Entry(click.Command):
    """``metawsm.cli.main`` shaped like a click command, so CliRunner sees its exit codes."""

    def main(self, args: Any = None, prog_name: Any = None, **_: Any) -> Any:  # type: ignore[override]
        return main(list(args or ()))


def test_a_write_and_the_polls_of_its_wait_connect_once(
    sqlite_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connects: list[str] = []
    real = dbapi._connect_sqlite

    def counted(path: str, settings: Any) -> Any:
        connects.append(path)
        return real(path, settings)

    monkeypatch.setattr(dbapi, "_connect_sqlite", counted)  # a spy: every connect happens
    env = {"METAWSM_DATABASE_URL": sqlite_url, "METAWSM_BROKER_URL": redis_url}
    args = ["forum", "ask", "--ticket", "T-1", "--title", "t", "--body", "b"]
    # No worker runs: the command stays accepted, the wait polls until its timeout (exit 4).
    result = CliRunner().invoke(_Entry("metawsm"), [*args, "--timeout", "0.3"], env=env)
    assert result.exit_code == 4, result.output
    assert len(connects) == 1, connects


def test_without_a_broker_the_write_is_still_accepted_on_the_one_connection(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"METAWSM_DATABASE_URL": sqlite_url, "METAWSM_BROKER_URL": NO_BROKER_URL}
    args = ["forum", "ask", "--ticket", "T-1", "--title", "t", "--body", "b", "--no-wait"]
    result = CliRunner().invoke(_Entry("metawsm"), [*args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    session = DriverSession(settings_for(sqlite_url))
    try:
        with session.reading() as db:
            assert db.rows("SELECT status FROM forum_commands") == [{"status": "accepted"}]
    finally:
        session.close()
