"""Test configuration: fixtures as plugins, and which tests also run on PostgreSQL.

Every test that takes ``db_url`` is parametrized over SQLite and PostgreSQL. To keep a CI run
well under 15 minutes on two cores, the PostgreSQL variant runs only for the modules where the
backend matters (storage, concurrency, ordering, the pipeline's contracts) unless
``METAWSM_TEST_ALL_BACKENDS=1`` asks for every test on both.
"""

from __future__ import annotations

import os
import signal

import pytest

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.database",
    "tests.fixtures.workers",
    "tests.fixtures.pipeline",
    "tests.fixtures.api",
    "tests.fixtures.browser",
]

POSTGRES_MODULES = {
    "test_migrations.py",
    "test_pipeline_commands.py",
    "test_drainers.py",
    "test_idempotency.py",
    "test_dead_letters.py",
    "test_quarantine.py",
    "test_escalation.py",
    "test_run_lifecycle.py",
    "test_lifecycle_idempotency.py",
    "test_latest_controls.py",
    "test_agent_controls.py",
    "test_snapshot.py",
    "test_snapshot_at_scale.py",
    "test_snapshot_docs.py",
    "test_legacy_import.py",
    "test_search_queues.py",
    "test_direct_reads.py",
    "test_accept_rows.py",
    "test_scale_data.py",
    "test_metrics_counts.py",
    "test_api_stream.py",
    "test_tokens.py",
    "test_identities.py",
    "test_driver_session.py",
    "test_api_run_creation.py",
}
# Single PostgreSQL tests worth their cost in modules that otherwise run on SQLite only.
POSTGRES_TESTS = (
    "test_watch_follow_prints_every_event_once",
    "test_concurrent_projectors_of_one_ticket_serialise",
    "test_stats_follow_state_and_priority_changes_by_difference",
    "test_events_committed_and_projected_while_a_rebuild_folds",
)


def _wants_postgres(item: pytest.Item) -> bool:
    if item.path.name in POSTGRES_MODULES:
        return True
    return any(word in item.name for word in POSTGRES_TESTS)


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker, give SIGINT back its default: the worker ignores it, and the CLI
    processes the tests start would inherit that and never see the Ctrl-C a test sends them."""
    if hasattr(config, "workerinput"):
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect PostgreSQL variants outside the modules where the backend matters."""
    if os.environ.get("METAWSM_TEST_ALL_BACKENDS") == "1":
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgres" in callspec.id.split("-")
        (drop if on_postgres and not _wants_postgres(item) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
