"""Alembic environment of metawsm.

Run in-process by ``metawsm.storage.migrate`` (which passes an open connection in
``config.attributes["connection"]``) or by ``alembic`` from the repository root, where the URL is
``sqlalchemy.url`` when set and otherwise ``METAWSM_DATABASE_URL`` (the metawsm settings).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from metawsm.settings import load_settings
from metawsm.storage.engine import build_engine, normalize_url
from metawsm.storage.migrate import context_options
from metawsm.storage.tables import metadata

config = context.config
target_metadata = metadata

# Only a hand-run `alembic` has an ini file; in-process runs leave the host's logging alone.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """``sqlalchemy.url`` if configured, else the metawsm settings' database URL."""
    return config.get_main_option("sqlalchemy.url") or load_settings().database_url


def run_migrations_offline() -> None:
    """Emit the migration SQL for ``database_url()`` without connecting (``alembic --sql``)."""
    url = normalize_url(database_url())
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **context_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_with(connection: Connection) -> None:
    """Run the migrations on an open connection (its transaction, if any, is the caller's)."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        **context_options(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the given connection, or on an engine built from the settings."""
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations_with(connection)
        return
    engine = build_engine(load_settings(database_url=database_url()))
    try:
        with engine.connect() as conn:
            run_migrations_with(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
