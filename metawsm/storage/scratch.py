"""Scratch PostgreSQL databases: created empty on a server, dropped afterwards.

For the drills (``metawsm drill --database``), the benchmarks and the tests: each needs a
database of its own on a shared server, gone when it is done, even when a process it started was
killed mid-run and left a session behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from metawsm.storage.engine import normalize_url

_TERMINATE = text(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = :name AND pid <> pg_backend_pid()"
)


@contextmanager
def postgres_scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create an empty database named ``<prefix>_<12 hex>`` on the PostgreSQL server of
    ``server_url``; yield its URL (password kept, for the processes that use it); drop it after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    url = make_url(normalize_url(server_url))
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # A session left behind (a killed process, an engine not disposed) must not keep
                # the scratch database from being dropped.
                conn.execute(_TERMINATE, {"name": name})
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        admin.dispose()
