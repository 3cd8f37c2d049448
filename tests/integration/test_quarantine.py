"""Quarantine, piece by piece: the dead-letter record and the ``metawsm dlq`` commands on
quarantined letters."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import click
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from metawsm.cli import main
from metawsm.services import deadletters
from metawsm.services.quarantine import Quarantined, quarantine_id, record
from tests.fixtures.database import settings_for

QUEUE = "forum.commands.add_post"


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
    assert plain.exit_code == 0 and f"{message_id} dead {QUEUE} attempts=1" in plain.stdout
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
