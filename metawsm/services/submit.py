"""Accepting commands durably, publishing them, and waiting for their outcome (in-process).

The database is the record of what was accepted: a command is written to ``forum_commands`` with
its outbox row in one unit of work, which publishes it right after commit. If Redis is down the
command stays accepted and the drainer publishes it when Redis is back.

The accept itself, the outcome and the waits are :mod:`metawsm.services.accept`, written against
the driver and shared with the command line; this module runs them on a SQLAlchemy engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from metawsm.services.accept import (
    FINAL_STATUSES,
    Outcome,
    accept,
    is_projected,
    ledger_row,
    make_command,
    outcome_of,
    target_thread,
)
from metawsm.services.accept import read_outcome as read_outcome_in
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.services.waiting import wait_until_final, wait_until_projected
from metawsm.storage.dbapi import Reader, on_connection
from metawsm.storage.engine import connect
from metawsm.storage.uow import translate_db_errors

if TYPE_CHECKING:
    from metawsm.identity import Identity
    from metawsm.messages.commands import AnyCommand
    from metawsm.runtime import Runtime

__all__ = [
    "FINAL_STATUSES",
    "Outcome",
    "ledger_row",
    "make_command",
    "outcome_of",
    "read_outcome",
    "submit",
    "target_thread",
    "wait_for_outcome",
    "wait_for_projection",
]


def submit(rt: Runtime, command: AnyCommand, *, identity: Identity | None = None) -> Outcome:
    """Accept the command durably as ``identity`` (its actor is set from the identity, the role
    rules checked) and publish it right after commit; a known command id is a no-op (its
    outcome as it stands). A broker failure leaves the command to the drainer and says so in
    the outcome (``published`` false, ``publish_error``). ``identity`` None: metawsm's own
    in-process callers only (see :func:`metawsm.services.accept.accept`).

    Raises:
        Forbidden: the identity may not ask for this command; nothing is written.
        CommandIdReused: the id is known for a different command; nothing is written.
    """
    with UnitOfWork(rt, orm=False) as uow:
        topic = rt.topics.command(command.command_type)
        db = on_connection(uow.conn)
        accepted = accept(db, command, topic, uow.now, identity=identity)
        if accepted.message is not None:
            uow.stage(accepted.message)
    if uow.report.failed:
        return accepted.outcome.unpublished("; ".join(uow.report.errors))
    return accepted.outcome


@contextmanager
def _reading(engine: Engine) -> Iterator[Reader]:
    """A driver reader on a read-only transaction of ``engine`` (errors translated)."""
    with translate_db_errors(engine), connect(engine) as connection, connection.begin():
        yield on_connection(connection)


def read_outcome(engine: Engine, command_id: str) -> Outcome | None:
    """The current outcome of a command, or None if it was never accepted."""
    with _reading(engine) as db:
        return read_outcome_in(db, command_id)


def wait_for_outcome(engine: Engine, command_id: str, timeout_s: float) -> Outcome:
    """Wait until the command is applied, rejected or dead.

    Raises:
        WaitTimeout: the command is still in flight after ``timeout_s`` seconds.
    """
    return wait_until_final(lambda: read_outcome(engine, command_id), command_id, timeout_s)


def wait_for_projection(engine: Engine, command_id: str, timeout_s: float) -> None:
    """Wait until the read models show every event the (applied) command wrote.

    Raises:
        WaitTimeout: an event of the command is still not projected after ``timeout_s``.
    """

    def projected() -> bool:
        with _reading(engine) as db:
            return is_projected(db, command_id)

    wait_until_projected(projected, command_id, timeout_s)
