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

from sqlalchemy import Engine, inspect, text

from metawsm.storage.engine import connect

# The head revision of migrations/versions. Update it with every new migration (the unit test
# above says so when it is forgotten).
HEAD = "0006"

VERSION_TABLE = "alembic_version"
_SELECT_VERSIONS = text(f"SELECT version_num FROM {VERSION_TABLE}")


def database_revisions(engine: Engine) -> tuple[str, ...]:
    """The revisions recorded in the database of ``engine`` (sorted); () without a schema.

    Raises:
        DatabaseUnreachable: the database cannot be connected to.
    """
    with connect(engine) as connection:
        if not inspect(connection).has_table(VERSION_TABLE):
            return ()
        return tuple(sorted(row[0] for row in connection.execute(_SELECT_VERSIONS)))


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
