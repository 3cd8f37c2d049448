"""The unit of work: one transaction per message, with driver errors translated at the edge.

SQLite writers begin IMMEDIATE (see engine.py); read-only units begin deferred. On PostgreSQL a
writer that appends to ``forum_events`` takes a transaction-scoped advisory lock first, so event
sequences are assigned, and become visible, in commit order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from metawsm.errors import DatabaseBusy, DatabaseUnreachable
from metawsm.settings import mask_url
from metawsm.storage.engine import READONLY

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

# Arbitrary constant naming the advisory lock that serialises event appends on PostgreSQL.
EVENT_LOG_LOCK = 0x6D657461


@contextmanager
def unit_of_work(engine: Engine, *, readonly: bool = False) -> Iterator[Session]:
    """Open a session in one transaction; commit on success, roll back on any error.

    Raises:
        DatabaseBusy: the database is locked, or a serialization conflict or deadlock happened.
        DatabaseUnreachable: the database cannot be reached.
    """
    from sqlalchemy.orm import Session  # here: the Core-only paths never load the ORM (~50 ms)

    bind = engine.execution_options(**{READONLY: True}) if readonly else engine
    with (
        translate_db_errors(engine),
        Session(bind=bind, expire_on_commit=False) as session,
        session.begin(),
    ):
        yield session


@contextmanager
def connection_unit(engine: Engine) -> Iterator[Connection]:
    """A writing unit of work on a bare Core connection (no ORM session): one transaction,
    committed on success, rolled back on any error, driver errors translated as above.

    For the hot paths that only execute prebuilt Core statements: the session's bookkeeping
    costs more than their SQL (docs/performance.md).
    """
    with translate_db_errors(engine), engine.begin() as conn:
        yield conn


@contextmanager
def translate_db_errors(engine: Engine) -> Iterator[None]:
    """Turn driver errors into metawsm's transient errors (``raise ... from exc``)."""
    try:
        yield
    except IntegrityError as exc:
        # A concurrent writer got there first (e.g. two first signals racing for one control
        # thread): retrying re-reads the winner's row.
        raise DatabaseBusy(f"conflicting concurrent write: {_first_line(exc)}") from exc
    except (OperationalError, DBAPIError) as exc:
        raise _classify(engine, exc) from exc


def lock_event_log(conn: Connection) -> None:
    """Serialise appends to ``forum_events`` until commit (PostgreSQL; SQLite already does)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": EVENT_LOG_LOCK})


def _classify(engine: Engine, exc: DBAPIError) -> Exception:
    message = _first_line(exc)
    lowered = message.lower()
    code = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if "locked" in lowered or "busy" in lowered or code in ("40001", "40P01", "55P03"):
        return DatabaseBusy(f"database busy: {message}")
    if exc.connection_invalidated or _looks_unreachable(lowered):
        return DatabaseUnreachable(
            f"database unreachable at {mask_url(str(engine.url))}: {message}"
        )
    return DatabaseBusy(f"database error: {message}")


def _looks_unreachable(message: str) -> bool:
    return any(
        marker in message
        for marker in ("connection refused", "could not connect", "unable to open", "timeout")
    )


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0][:500]
