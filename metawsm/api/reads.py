"""Read transactions for the API: the CLI's driver reads on a pooled connection of the engine.

The API runs the same read functions as the command line (``services/thread_reads.py``,
``services/record_reads.py``) on a connection of the process's engine, so a read is the CLI's
statements without a connection set-up per request; the engine's pool is shared with the
in-process services (snapshot, seen, stats) the API also calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine

from metawsm.storage.dbapi import Reader, driver_errors, on_connection
from metawsm.storage.engine import connect
from metawsm.storage.uow import translate_db_errors


@contextmanager
def reading(engine: Engine) -> Iterator[Reader]:
    """A driver reader on a read-only transaction of ``engine``.

    Raises:
        DatabaseUnreachable: the database cannot be connected to.
        DatabaseBusy: a statement failed in the driver (locked, connection lost).
    """
    with (
        translate_db_errors(engine),
        connect(engine) as connection,
        connection.begin(),
        driver_errors(),
    ):
        yield on_connection(connection)
