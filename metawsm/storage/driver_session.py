"""One driver connection for the transactions of one command-line write.

A write runs a schema check, its accept, then polls for its outcome: each was a transaction on a
connection of its own (storage/dbapi.py). Connecting costs SQLite ~0.7 ms of CPU and PostgreSQL
~20 ms of wall time and a server backend, every time (docs/performance.md, "Command-line
start-up"). A :class:`DriverSession` connects once and runs each transaction on that
connection, with the same statements and the same semantics as ``dbapi.read_transaction`` and
``dbapi.write_transaction``; after a failed transaction it closes the connection, so the next
one starts on a fresh connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from metawsm.settings import Settings
from metawsm.storage import dbapi


class DriverSession:
    """Read and write transactions of one invocation on one driver connection, made on first
    use; :meth:`close` closes it. Not thread-safe (one command line, one thread).

    Raises (from the transactions): ``DatabaseUnreachable`` when connecting fails,
    ``DatabaseBusy`` when the write lock is not free in time or a statement fails.
    """

    def __init__(self, settings: Settings) -> None:
        if dbapi.direct_target(settings.database_url) is None:
            raise ValueError("not a database this layer opens directly")
        self._settings = settings
        self._raw: Any = None
        self._dialect = ""

    @contextmanager
    def reading(self, *, repeatable: bool = False) -> Iterator[dbapi.Reader]:
        """One read-only transaction (as ``dbapi.read_transaction``)."""
        with self._transaction() as raw, dbapi.driver_errors():
            if self._dialect == "sqlite":
                raw.execute("BEGIN")  # deferred: a snapshot for the reads, no write lock
            elif repeatable:
                raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield dbapi.Reader(raw, self._dialect)

    @contextmanager
    def writing(self) -> Iterator[dbapi.Reader]:
        """One writing transaction, committed when the block succeeds (as
        ``dbapi.write_transaction``: SQLite's write lock taken by ``begin_immediate``)."""
        busy_ms = self._settings.db_busy_timeout_ms
        with self._transaction() as raw, dbapi.driver_errors():
            if self._dialect == "sqlite" and not dbapi.begin_immediate(raw, busy_ms):
                raw.execute("BEGIN IMMEDIATE")  # last try: raises "database is locked"
            yield dbapi.Reader(raw, self._dialect)
            raw.commit()

    def close(self) -> None:
        """Close the connection, if one was made."""
        raw, self._raw = self._raw, None
        if raw is not None:
            raw.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """The connection for one transaction; rolled back after it (nothing is left to roll
        back after a commit), closed if the transaction or the rollback failed."""
        if self._raw is None:
            self._raw, self._dialect = dbapi.connect(self._settings)
        raw = self._raw
        failed = True
        try:
            yield raw
            failed = False
        finally:
            try:
                raw.rollback()
            except Exception:  # the connection broke: after a commit the work is done, and
                failed = True  # after a failure that failure is what the caller sees
            if failed:  # a broken or aborted connection is not used again
                self.close()
