"""The one accept (services/accept.py) writes the rows SQLAlchemy's Core inserts wrote.

Accepting a command runs against the driver: in-process through a SQLAlchemy unit of work's
driver connection, on the command line in a driver transaction of its own. Each test writes the
ledger and outbox rows of one command the way they were written before (Core inserts with the
column types' bind processors) and through both accept paths, then compares the stored values
as text (JSON, timestamps), on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, insert, text

from metawsm.errors import CommandIdReused
from metawsm.messages import plain
from metawsm.messages.commands import AnyCommand
from metawsm.services.accept import accept, ledger_row, make_command
from metawsm.storage import dbapi, tables
from tests.fixtures.database import settings_for

NOW = datetime(2026, 12, 6, 1, 2, 3, 45_000, tzinfo=UTC)
TOPIC = "forum.commands.open_thread"
COMMAND = make_command(
    "open_thread",
    {"thread_id": "t-1", "ticket": "T-1", "title": "Ünïcode title", "body": 'a "quoted" body'},
    actor_type="agent",
    actor_name="ann",
    command_id="cmd-accept-1",
)

SIGNAL = make_command(
    "control_signal",
    {
        "run_id": "Run.1",
        "agent_name": "ann",
        "signal": {"control_type": "completion", "run_id": "Run.1", "agent_name": "ann"},
    },
    actor_type="agent",
    actor_name="ann",
    command_id="cmd-accept-2",
)


def stored(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """The ledger and outbox rows as the database holds them (JSON and timestamps as text)."""
    as_text = "CAST({} AS TEXT)"
    ledger = ", ".join(
        [
            "command_id, command_type, status, reason, thread_id, delivery_attempts",
            as_text.format("payload"),
            as_text.format("accepted_at"),
            as_text.format("updated_at"),
            as_text.format("finished_at"),
        ]
    )
    outbox = ", ".join(
        [
            "message_id, kind, topic, message_key, status, attempts, publish_count, deliveries",
            "lease_owner, last_error",
            *(
                as_text.format(c)
                for c in (
                    "payload",
                    "next_attempt_at",
                    "sent_at",
                    "lease_until",
                    "created_at",
                    "updated_at",
                    "first_failed_at",
                )
            ),
        ]
    )
    with engine.connect() as conn:
        return {
            "ledger": [
                tuple(r) for r in conn.execute(text(f"SELECT {ledger} FROM forum_commands"))
            ],
            "outbox": [tuple(r) for r in conn.execute(text(f"SELECT {outbox} FROM forum_outbox"))],
        }


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM forum_outbox"))
        conn.execute(text("DELETE FROM forum_commands"))


def write_as_before(engine: Engine) -> None:
    """The rows as submit() and enqueue() wrote them through SQLAlchemy Core."""
    row = ledger_row(COMMAND, NOW)
    outbox = {
        "message_id": COMMAND.command_id,
        "kind": "command",
        "topic": TOPIC,
        "message_key": row["thread_id"],
        "payload": row["payload"],
        "status": "sent",
        "attempts": 0,
        "publish_count": 1,
        "deliveries": 0,
        "next_attempt_at": NOW,
        "sent_at": NOW,
        "lease_until": None,
        "lease_owner": None,
        "created_at": NOW,
        "updated_at": NOW,
    }
    with engine.begin() as conn:
        conn.execute(insert(tables.forum_commands), row)
        conn.execute(insert(tables.forum_outbox), outbox)


def test_both_accept_paths_store_what_core_stored(engine: Engine, db_url: str) -> None:
    write_as_before(engine)
    before = stored(engine)
    clear(engine)
    with engine.begin() as conn:  # in-process: inside a SQLAlchemy transaction
        accepted = accept(dbapi.on_connection(conn), COMMAND, TOPIC, NOW)
    in_process = stored(engine)
    clear(engine)
    with dbapi.write_transaction(settings_for(db_url)) as db:  # the command line's
        accept(db, COMMAND, TOPIC, NOW)
    direct = stored(engine)

    assert in_process == before == direct
    assert len(before["ledger"]) == len(before["outbox"]) == 1
    assert (
        accepted.message is not None
        and accepted.message.payload == ledger_row(COMMAND, NOW)["payload"]
    )
    assert accepted.outcome.status == "accepted" and accepted.outcome.thread_id == "t-1"


def test_a_known_id_is_a_no_op_and_a_reused_one_is_refused(engine: Engine, db_url: str) -> None:
    settings = settings_for(db_url)
    with dbapi.write_transaction(settings) as db:
        accept(db, COMMAND, TOPIC, NOW)
    with dbapi.write_transaction(settings) as db:
        again = accept(db, COMMAND, TOPIC, NOW)
    assert again.message is None and again.outcome.status == "accepted"
    other = make_command(
        "open_thread",
        {"thread_id": "t-2", "ticket": "T-1", "title": "other", "body": "b"},
        actor_type="agent",
        actor_name="ann",
        command_id=COMMAND.command_id,
    )
    with (
        pytest.raises(CommandIdReused, match="differs in payload"),
        dbapi.write_transaction(settings) as db,
    ):
        accept(db, other, TOPIC, NOW)
    assert len(stored(engine)["ledger"]) == 1


def test_a_failed_statement_rolls_the_driver_transaction_back(engine: Engine, db_url: str) -> None:
    with (
        pytest.raises(RuntimeError, match="stop"),
        dbapi.write_transaction(settings_for(db_url)) as db,
    ):
        accept(db, COMMAND, TOPIC, NOW)
        raise RuntimeError("stop")
    assert stored(engine) == {"ledger": [], "outbox": []}


@pytest.mark.parametrize("command", [COMMAND, SIGNAL], ids=["open_thread", "control_signal"])
def test_a_command_checked_without_the_models_is_stored_as_its_model_is(
    engine: Engine, db_url: str, command: AnyCommand
) -> None:
    settings = settings_for(db_url)
    with dbapi.write_transaction(settings) as db:
        by_model = accept(db, command, TOPIC, NOW)
    rows = stored(engine)
    clear(engine)
    data = {**command.model_dump(mode="json"), "issued_at": command.issued_at}
    with dbapi.write_transaction(settings) as db:
        by_plain = accept(db, plain.command(data), TOPIC, NOW)

    assert stored(engine) == rows and len(rows["ledger"]) == 1
    assert (by_plain.outcome, by_plain.message) == (by_model.outcome, by_model.message)
