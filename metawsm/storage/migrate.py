"""Migrations glue: Alembic configured in code, run on an engine, and the schema-at-head check.

The revisions live in the top-level ``migrations`` package, so no ``alembic.ini`` is needed at
runtime (the one at the repository root is for developers running ``alembic`` by hand). Every
function takes an engine built by :func:`metawsm.storage.engine.build_engine`; none builds one.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, text

from metawsm.errors import MetawsmError, SchemaNotAtHead, UsageError
from metawsm.settings import Settings
from metawsm.storage.engine import connect, masked_url, normalize_url
from metawsm.storage.tables import is_search_index_table, metadata

MIGRATIONS_PACKAGE = "migrations"
UPGRADE_HINT = "run `metawsm db upgrade`"


def alembic_config(settings_or_url: Settings | str | None = None) -> Config:
    """An Alembic ``Config`` built in code, pointing at the installed ``migrations`` package.

    With ``settings_or_url`` the database URL is set as ``sqlalchemy.url`` (for the Alembic
    commands that connect by themselves); without it, pass a connection in
    ``config.attributes["connection"]`` as the functions of this module do.
    """
    cfg = Config()
    cfg.set_main_option("script_location", script_location())
    cfg.set_main_option("path_separator", "os")
    if settings_or_url is not None:
        url = settings_or_url if isinstance(settings_or_url, str) else settings_or_url.database_url
        # The option is interpolated by configparser: a URL-encoded password may contain '%'.
        cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def script_location() -> str:
    """The directory of the installed ``migrations`` package (holding ``env.py``).

    Raises:
        MetawsmError: the package is missing (a broken install).
    """
    spec = find_spec(MIGRATIONS_PACKAGE)
    # A stale editable install may present the package as a namespace: take the real directory.
    for entry in (spec.submodule_search_locations or []) if spec else []:
        if (Path(entry) / "env.py").is_file():
            return str(Path(entry).resolve())
    raise MetawsmError(f"the {MIGRATIONS_PACKAGE!r} package of metawsm is not installed")


def context_options(dialect_name: str) -> dict[str, Any]:
    """Options of every metawsm ``MigrationContext`` (``env.py`` and :func:`check_drift` alike).

    SQLite alters tables in batch mode (copy and rename) and, since the engine controls
    transactions itself (``BEGIN IMMEDIATE``), runs each upgrade as one atomic transaction.
    The full-text search index is no model: comparisons leave it out (``include_name``).
    """
    options: dict[str, Any] = {
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",
        "include_name": _not_search_index,
    }
    if dialect_name == "sqlite":
        options["transactional_ddl"] = True
    return options


def _not_search_index(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave the search index out of autogenerate: no model describes it (models.py says why)."""
    return not (type_ == "table" and is_search_index_table(name))


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` up to ``revision`` (default: head) in one transaction.

    Raises:
        DatabaseUnreachable: the database cannot be connected to.
        UsageError: ``revision`` is unknown, or the database is at a revision this code lacks.
    """
    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database of ``engine`` down to ``revision`` (``base`` drops every table).

    Raises:
        DatabaseUnreachable: the database cannot be connected to.
        UsageError: ``revision`` is unknown or not below the current one.
    """
    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def current_revision(engine: Engine) -> str | None:
    """The revision the database of ``engine`` is at, or None when it has no metawsm schema.

    Raises:
        DatabaseUnreachable: the database cannot be connected to.
    """
    with connect(engine) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The head revision of the installed migrations (what ``metawsm db upgrade`` goes to)."""
    head = _script_directory().get_current_head()
    if head is None:
        raise MetawsmError(f"no migrations found in package {MIGRATIONS_PACKAGE!r}")
    return head


def check_drift(engine: Engine) -> list[Any]:
    """Differences between the models and the schema of ``engine``'s database; [] when none.

    Each item is an Alembic autogenerate diff (a tuple such as ``("add_table", Table)``, or a
    list of column modifications). Meaningful only on a database at head.

    Raises:
        DatabaseUnreachable: the database cannot be connected to.
    """
    with connect(engine) as connection:
        opts = {**context_options(connection.dialect.name), "target_metadata": metadata}
        context = MigrationContext.configure(connection, opts=opts)
        return list(compare_metadata(context, metadata))


def ensure_schema_at_head(engine: Engine) -> None:
    """Check that the database of ``engine`` is migrated to the head revision.

    Raises:
        SchemaNotAtHead: naming the (masked) URL, the current and the head revision.
        DatabaseUnreachable: the database cannot be connected to.
    """
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    where = f"database at {masked_url(engine)}"
    if current is None:
        raise SchemaNotAtHead(f"{where} has no metawsm schema, head is {head}: {UPGRADE_HINT}")
    if not _is_known(current):
        raise SchemaNotAtHead(
            f"{where} is at revision {current}, which this metawsm does not know (a newer"
            f" release migrated it?), head is {head}"
        )
    raise SchemaNotAtHead(f"{where} is at revision {current}, head is {head}: {UPGRADE_HINT}")


# Every process of a Procfile may run ``metawsm db upgrade`` as it starts (worker and beat at
# once on a fresh database): migrations must serialise. SQLite's ``BEGIN IMMEDIATE`` already takes
# the write lock before Alembic reads the version; on PostgreSQL two transactions would both see
# no schema and the second would fail creating the tables, so they take this advisory lock first.
MIGRATION_LOCK_KEY = 0x6D657461  # "meta"


def _run(engine: Engine, action: Callable[[Config], None]) -> None:
    cfg = alembic_config()
    with connect(engine, readonly=False) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        cfg.attributes["connection"] = connection
        try:
            action(cfg)
        except CommandError as exc:
            raise UsageError(f"migration of {masked_url(engine)} refused: {exc}") from exc


def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _is_known(revision: str) -> bool:
    try:
        return _script_directory().get_revision(revision) is not None
    except CommandError:
        return False
