"""The unit of work: one transaction that writes state, events and outbox rows, and publishes
the outbox rows it wrote right after commit.

Every writer goes through it (accepting a command, handling one, run operations, escalation,
redrive, operator decisions), so there is one way a message reaches the broker: the outbox row
is committed with the state it announces, then published from memory. When the publish fails
the rows go back to ``pending`` for the drainer; when the process dies between commit and
publish, reconciliation re-drives them. Services return results, never claim tokens.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime
from types import TracebackType

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from metawsm.messages.common import Actor
from metawsm.ops.counters import Increment, record
from metawsm.runtime import Runtime
from metawsm.services.eventlog import EventWriter
from metawsm.services.outbox import publish_staged
from metawsm.services.outbox_rows import OutboxMessage, RelayReport
from metawsm.storage.uow import translate_db_errors


class UnitOfWork:
    """One writing transaction plus the messages it staged (module docstring).

    ``orm``: also open an ORM session on the transaction (for services that read or write ORM
    objects); without it only the Core connection exists, which is cheaper on the hot paths.
    After a successful exit, ``report`` says what was published.

    Raises (on exit):
        DatabaseBusy, DatabaseUnreachable: translated driver errors; nothing is published.
    """

    def __init__(self, rt: Runtime, *, orm: bool = True) -> None:
        self.rt = rt
        self.now: datetime = rt.clock()
        self.staged: list[OutboxMessage] = []
        self.increments: list[Increment] = []
        self.report = RelayReport()
        self._orm = orm
        self._stack = ExitStack()
        self._session: Session | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> UnitOfWork:
        stack = self._stack
        stack.enter_context(translate_db_errors(self.rt.engine))
        if self._orm:
            session = stack.enter_context(Session(bind=self.rt.engine, expire_on_commit=False))
            stack.enter_context(session.begin())
            self._session, self._conn = session, session.connection()
        else:
            self._conn = stack.enter_context(self.rt.engine.begin())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self.increments:
            try:
                # Last statement before commit: the counts commit with the work they count.
                record(self.conn, self.increments)
            except BaseException as failed:
                if not self._stack.__exit__(type(failed), failed, failed.__traceback__):
                    raise
                return
        # Commits (or rolls back) and translates driver errors; raises on a failed commit.
        self._stack.__exit__(exc_type, exc, tb)
        if exc_type is None and self.staged:
            rt = self.rt
            self.report = publish_staged(rt.engine, rt.publisher, self.staged, rt.settings)

    @property
    def conn(self) -> Connection:
        """The transaction's Core connection."""
        assert self._conn is not None, "the unit of work is not open"
        return self._conn

    @property
    def session(self) -> Session:
        """The transaction's ORM session (only with ``orm=True``)."""
        assert self._session is not None, "this unit of work has no ORM session"
        return self._session

    def events(
        self,
        actor: Actor,
        *,
        command_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
    ) -> EventWriter:
        """An event writer in this transaction whose outbox rows this unit publishes."""
        return EventWriter(
            conn=self.conn,
            topics=self.rt.topics,
            staged=self.staged,
            now=self.now,
            actor=actor,
            command_id=command_id,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )

    def count(self, *increments: Increment) -> None:
        """Add these metric increments (metawsm.ops.counters) in this transaction, at commit."""
        self.increments.extend(increments)

    def stage(self, message: OutboxMessage) -> None:
        """Publish ``message`` (an outbox row written in this transaction) after commit."""
        self.staged.append(message)
