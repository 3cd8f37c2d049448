"""The schema revision this code expects, and the check made before a process uses a database.

Every command that touches the database first checks the database is migrated to the head
revision. Asking Alembic costs ~100 ms of imports (alembic, mako, pygments) and a walk over the
migration scripts on every CLI call; here the check is one query compared with :data:`HEAD`.
``tests/unit/test_schema_head.py`` computes the real head with Alembic and fails when they differ.

Only when the revisions differ is Alembic asked
(:func:`metawsm.storage.migrate.ensure_schema_at_head`), for the precise message: no schema, a
revision behind, or one this code does not know.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the driver reads (storage/dbapi.py) check the head without SQLAlchemy
    from sqlalchemy import Engine

    from metawsm.storage.dbapi import Reader

# The head revision of migrations/versions. Update it with every new migration (the unit test
# above says so when it is forgotten).
HEAD = "0011"

VERSION_TABLE = "alembic_version"
SELECT_VERSIONS = f"SELECT version_num FROM {VERSION_TABLE}"


def database_revisions(engine: Engine) -> tuple[str, ...]:
    """The revisions recorded in the database of ``engine`` (sorted); () without a schema.

    Raises:
        DatabaseUnreachable: the database cannot be connected to.
    """
    from sqlalchemy import inspect, text

    from metawsm.storage.engine import connect

    with connect(engine) as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return ()
        return tuple(sorted(row[0] for row in connection.execute(text(SELECT_VERSIONS))))


def reader_at_head(db: Reader) -> bool:
    """True when the database ``db`` reads is at :data:`HEAD` (False also when the version
    table is missing: the caller then asks :func:`ensure_schema_at_head` why)."""
    try:
        rows = db.rows(SELECT_VERSIONS)
    except Exception as exc:  # no version table: a driver error, whichever the driver
        if type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg"):
            return False
        raise
    return [row["version_num"] for row in rows] == [HEAD]


def ensure_schema_at_head(engine: Engine) -> None:
    """Check that the database of ``engine`` is at :data:`HEAD` (no Alembic when it is).

    Raises:
        SchemaNotAtHead: naming the (masked) URL, the current and the head revision.
        DatabaseUnreachable: the database cannot be connected to.
    """
    if database_revisions(engine) == (HEAD,):
        return
    from metawsm.storage import migrate  # the slow, precise diagnosis: only on a mismatch

    migrate.ensure_schema_at_head(engine)
