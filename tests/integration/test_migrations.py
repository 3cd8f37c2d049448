"""Alembic owns the schema: migrations, the head check, ``metawsm db`` and SQLite's locking."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import OperationalError

from metawsm.cli import cli
from metawsm.database_location import missing_sqlite_file
from metawsm.errors import DatabaseUnreachable, MetawsmError, SchemaNotAtHead, UsageError
from metawsm.storage import dbapi, migrate, schema_head
from metawsm.storage.engine import READONLY, build_engine
from metawsm.storage.tables import SEARCH_INDEX_TABLE, is_search_index_table, metadata
from tests.fixtures.database import settings_for

MODEL_TABLES = set(metadata.tables)


@pytest.fixture
def empty_engine(empty_db_url: str) -> Iterator[Engine]:
    """An engine on a fresh database without any schema (each backend)."""
    built = build_engine(settings_for(empty_db_url))
    yield built
    built.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def model_table_names(engine: Engine) -> set[str]:
    """The tables, less the full-text search index: no model describes it (its shape differs
    per dialect: an FTS5 virtual table and its shadow tables on SQLite, a tsvector table on
    PostgreSQL), so the drift check and these comparisons leave it out on purpose."""
    return {name for name in table_names(engine) if not is_search_index_table(name)}


def run_db(url: str, *args: str) -> tuple[int, str]:
    """Run ``metawsm db ARGS`` on ``url`` as a user would (settings from the environment)."""
    result = CliRunner().invoke(cli, ["db", *args], env={"METAWSM_DATABASE_URL": url})
    if isinstance(result.exception, MetawsmError):  # what metawsm.cli.main makes of it
        return result.exception.exit_code, f"{result.output}error: {result.exception}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_upgrade_creates_every_model_table_on_an_empty_database(empty_engine: Engine) -> None:
    assert migrate.current_revision(empty_engine) is None

    migrate.upgrade(empty_engine)

    assert model_table_names(empty_engine) == MODEL_TABLES | {"alembic_version"}
    assert SEARCH_INDEX_TABLE in table_names(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()


def test_upgrade_at_head_changes_nothing(engine: Engine) -> None:
    migrate.upgrade(engine)

    assert migrate.current_revision(engine) == migrate.head_revision()
    assert migrate.check_drift(engine) == []


def test_migrated_schema_matches_the_models_exactly(engine: Engine) -> None:
    assert migrate.check_drift(engine) == []


def test_downgrade_to_base_drops_every_table_and_upgrade_brings_them_back(engine: Engine) -> None:
    migrate.downgrade(engine, "base")

    assert table_names(engine) & MODEL_TABLES == set()
    assert not any(is_search_index_table(name) for name in table_names(engine))
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)

    assert table_names(engine) >= MODEL_TABLES
    assert migrate.check_drift(engine) == []


def test_downgrade_to_an_unknown_revision_is_a_usage_error(engine: Engine) -> None:
    with pytest.raises(UsageError, match="no-such-revision"):
        migrate.downgrade(engine, "no-such-revision")

    assert migrate.current_revision(engine) == migrate.head_revision()


def test_drift_is_reported_when_the_schema_differs_from_the_models(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_run_events_run_id")

    diffs = migrate.check_drift(engine)

    assert [diff[0] for diff in diffs] == ["add_index"]
    assert diffs[0][1].name == "ix_run_events_run_id"


def test_ensure_schema_at_head_rejects_an_empty_database_and_accepts_a_migrated_one(
    empty_engine: Engine,
) -> None:
    with pytest.raises(SchemaNotAtHead) as caught:
        migrate.ensure_schema_at_head(empty_engine)
    message = str(caught.value)
    assert "has no metawsm schema" in message
    assert f"head is {migrate.head_revision()}" in message
    assert "run `metawsm db upgrade`" in message

    migrate.upgrade(empty_engine)

    migrate.ensure_schema_at_head(empty_engine)


def test_ensure_schema_at_head_names_a_revision_this_code_does_not_know(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))

    with pytest.raises(SchemaNotAtHead, match="at revision f00dfeed, which this metawsm does not"):
        migrate.ensure_schema_at_head(engine)


def test_an_unreachable_postgres_is_reported_with_its_password_masked() -> None:
    url = "postgresql://metawsm:s3cret@127.0.0.1:1/nowhere"
    engine = build_engine(settings_for(url))
    try:
        with pytest.raises(DatabaseUnreachable) as caught:
            migrate.ensure_schema_at_head(engine)
        with pytest.raises(DatabaseUnreachable) as caught_fast:
            schema_head.ensure_schema_at_head(engine)
    finally:
        engine.dispose()

    for error in (caught.value, caught_fast.value):
        assert "metawsm:***@127.0.0.1:1/nowhere" in str(error)
        assert "s3cret" not in str(error)


def test_a_sqlite_path_that_cannot_be_opened_is_unreachable(tmp_path: Path) -> None:
    engine = build_engine(settings_for(f"sqlite:///{tmp_path}"))  # a directory, not a file
    try:
        with pytest.raises(DatabaseUnreachable, match="cannot connect to the database at sqlite"):
            migrate.upgrade(engine)
    finally:
        engine.dispose()


def test_alembic_config_needs_no_ini_file_and_keeps_percent_signs_in_the_url() -> None:
    url = "postgresql://metawsm:p%40ss@db.example:5432/metawsm"

    cfg = migrate.alembic_config(url)

    assert cfg.config_file_name is None
    assert (Path(cfg.get_main_option("script_location") or "") / "env.py").is_file()
    assert cfg.get_main_option("sqlalchemy.url") == url.replace("postgresql", "postgresql+psycopg")


def test_alembic_with_a_url_in_its_config_migrates_that_database(empty_engine: Engine) -> None:
    url = empty_engine.url.render_as_string(hide_password=False)

    command.upgrade(migrate.alembic_config(url), "head")

    assert migrate.current_revision(empty_engine) == migrate.head_revision()


def test_alembic_without_a_url_migrates_the_database_named_by_the_metawsm_settings(
    empty_db_url: str, empty_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METAWSM_DATABASE_URL", empty_db_url)

    command.upgrade(migrate.alembic_config(), "head")

    assert migrate.current_revision(empty_engine) == migrate.head_revision()


def test_db_upgrade_then_db_current_reports_the_head_as_json(empty_db_url: str) -> None:
    exit_code, output = run_db(empty_db_url, "upgrade")
    assert exit_code == 0, output

    exit_code, output = run_db(empty_db_url, "current", "--json")

    assert exit_code == 0, output
    status = json.loads(output)
    assert status["current"] == status["head"] == migrate.head_revision()
    assert status["at_head"] is True


def test_db_current_says_an_empty_database_is_not_at_head(empty_db_url: str) -> None:
    missing = missing_sqlite_file(empty_db_url)
    if missing is not None:  # no file at all is no database: said, and not created
        exit_code, output = run_db(empty_db_url, "current", "--json")
        assert exit_code == 3 and f"no metawsm database at {missing}" in output
        assert not missing.exists()
        missing.touch()  # an empty SQLite file: a database without the schema
    exit_code, output = run_db(empty_db_url, "current", "--json")

    assert exit_code == 0, output
    assert json.loads(output)["current"] is None
    assert json.loads(output)["at_head"] is False


def test_db_check_exits_3_on_an_empty_database_and_0_once_upgraded(empty_db_url: str) -> None:
    exit_code, output = run_db(empty_db_url, "check")
    assert exit_code == 3
    assert "metawsm db upgrade" in output

    run_db(empty_db_url, "upgrade")
    exit_code, output = run_db(empty_db_url, "check")

    assert exit_code == 0, output
    assert "no drift" in output


def test_db_check_exits_1_and_prints_the_diff_when_models_and_schema_drift(
    db_url: str, engine: Engine
) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_run_events_run_id")

    exit_code, output = run_db(db_url, "check")

    assert exit_code == 1
    assert "add_index" in output
    assert "ix_run_events_run_id" in output


def test_db_downgrade_to_base_leaves_no_metawsm_table(db_url: str, engine: Engine) -> None:
    exit_code, output = run_db(db_url, "downgrade", "base")

    assert exit_code == 0, output
    assert table_names(engine) & MODEL_TABLES == set()


def test_sqlite_connections_use_wal_the_configured_busy_timeout_and_a_64_mib_page_cache(
    sqlite_url: str,
) -> None:
    engine = build_engine(settings_for(sqlite_url, db_busy_timeout_ms=1234))
    try:
        with engine.connect() as conn:
            journal_mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            busy_timeout_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            cache = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    finally:
        engine.dispose()

    assert journal_mode == "wal"
    assert busy_timeout_ms == 1234
    assert cache == -64 * 1024  # KiB: the snapshot's pages stay cached between calls


def test_the_command_lines_driver_connections_have_the_engines_page_cache(
    sqlite_url: str,
) -> None:
    # a one-shot read of 1,000 runs reads more than the default 2 MiB of pages
    settings = settings_for(sqlite_url, db_busy_timeout_ms=1234)
    with dbapi.read_transaction(settings) as db:
        assert db.scalar("PRAGMA cache_size") == -64 * 1024
        assert db.scalar("PRAGMA busy_timeout") == 1234
    raw, _ = dbapi.connect(settings)
    try:
        assert raw.execute("PRAGMA cache_size").fetchone()[0] == -64 * 1024
    finally:
        raw.close()


def test_a_sqlite_writer_begins_immediate_so_a_second_writer_is_refused_at_begin(
    sqlite_url: str,
) -> None:
    settings = settings_for(sqlite_url, db_busy_timeout_ms=50)
    holder, contender = build_engine(settings), build_engine(settings)
    try:
        with holder.begin():
            # No statement has run in either transaction: only BEGIN IMMEDIATE takes the lock.
            with pytest.raises(OperationalError, match="database is locked"), contender.begin():
                pass
            # Readers begin deferred and are not blocked by the writer (WAL).
            with contender.connect().execution_options(**{READONLY: True}) as reader:
                assert reader.execute(text("SELECT count(*) FROM runs")).scalar() == 0
    finally:
        holder.dispose()
        contender.dispose()


def test_a_waiting_sqlite_writer_gets_the_lock_once_the_holder_commits_and_keeps_its_timeout(
    sqlite_url: str,
) -> None:
    settings = settings_for(sqlite_url, db_busy_timeout_ms=10_000)
    holder, contender = build_engine(settings), build_engine(settings)
    waiting, got_lock = threading.Event(), threading.Event()
    timeouts: list[int] = []

    def contend() -> None:
        waiting.set()
        with contender.begin() as conn:  # polls while the holder has the lock
            got_lock.set()
            timeouts.append(conn.exec_driver_sql("PRAGMA busy_timeout").scalar())

    try:
        with holder.begin():
            thread = threading.Thread(target=contend)
            thread.start()
            assert waiting.wait(5)
            assert not got_lock.wait(0.05), "the contender got the lock the holder has"
        thread.join(10)
        assert got_lock.is_set() and not thread.is_alive()
        # Polling sets busy_timeout to 0 for its tries only: every other statement keeps it.
        assert timeouts == [10_000]
    finally:
        holder.dispose()
        contender.dispose()


def test_a_refused_sqlite_writer_waited_its_whole_busy_timeout(sqlite_url: str) -> None:
    settings = settings_for(sqlite_url, db_busy_timeout_ms=200)
    holder, contender = build_engine(settings), build_engine(settings)
    try:
        with holder.begin():
            started = time.monotonic()
            with pytest.raises(OperationalError, match="database is locked"), contender.begin():
                pass
            assert time.monotonic() - started >= 0.2
    finally:
        holder.dispose()
        contender.dispose()


def test_the_fast_head_check_reads_the_revision_without_alembic_and_agrees_with_it(
    empty_engine: Engine,
) -> None:
    assert schema_head.database_revisions(empty_engine) == ()
    with pytest.raises(SchemaNotAtHead, match="has no metawsm schema"):
        schema_head.ensure_schema_at_head(empty_engine)

    migrate.upgrade(empty_engine, "0001")
    assert schema_head.database_revisions(empty_engine) == ("0001",)
    with pytest.raises(SchemaNotAtHead, match="is at revision 0001, head is"):
        schema_head.ensure_schema_at_head(empty_engine)

    migrate.upgrade(empty_engine)
    assert schema_head.database_revisions(empty_engine) == (migrate.head_revision(),)
    schema_head.ensure_schema_at_head(empty_engine)


def test_the_fast_head_check_names_a_revision_this_code_does_not_know(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))

    with pytest.raises(SchemaNotAtHead, match="at revision f00dfeed, which this metawsm does not"):
        schema_head.ensure_schema_at_head(engine)


def test_processes_upgrading_a_fresh_database_at_once_all_succeed(
    empty_db_url: str, empty_engine: Engine, tmp_path: Path
) -> None:
    # The Procfile's worker and beat lines each run `metawsm db upgrade` as they start.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    env["METAWSM_DATABASE_URL"] = empty_db_url
    argv = [sys.executable, "-m", "metawsm", "db", "upgrade"]
    procs = [
        subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(4)
    ]  # fmt: skip
    results = [(p.wait(timeout=120), p.stdout.read() if p.stdout else "") for p in procs]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    assert model_table_names(empty_engine) == MODEL_TABLES | {"alembic_version"}


def test_the_procfile_migrates_before_worker_and_beat_start() -> None:
    lines = dict(
        line.split(": ", 1)
        for line in (Path(__file__).parents[2] / "Procfile").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in ("worker", "beat"):
        assert lines[name].startswith("metawsm db upgrade && exec metawsm "), lines[name]
