"""The scale dataset builder (bench/scale_data.py) builds the shape it promises, through the
product's write path, the same way twice, and the read models it leaves are rebuildable."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.scale_data import DEAD_LETTERS, Shape, build_store
from tests.fixtures.database import BACKENDS, POSTGRES_ENV, postgres_database

TINY = Shape(threads=30, runs=3, big_threads=(10, 20), seed=3)


@pytest.fixture(scope="module", params=BACKENDS)
def tiny_manifest(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, object]]]:
    """A tiny dataset built into a fresh database (SQLite, and PostgreSQL when configured);
    built once per module and backend, as the tests only read it."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('scale') / 'tiny.db'}"
        yield url, build_store(url, TINY)
        return
    with postgres_database(os.environ[POSTGRES_ENV]) as url:
        yield url, build_store(url, TINY)


def test_builder_makes_the_promised_threads_runs_and_control_threads(
    tiny_manifest: tuple[str, dict[str, object]],
) -> None:
    _url, manifest = tiny_manifest
    counts = manifest["counts"]
    assert isinstance(counts, dict)
    assert counts["threads"] == TINY.threads + len(TINY.big_threads)
    assert counts["runs"] == TINY.runs
    assert counts["run_agents"] == 2 * TINY.runs
    assert counts["control_threads"] == 2 * TINY.runs  # one per (run, agent): every agent signals
    assert set(counts["runs_by_status"]) <= {"running", "awaiting_guidance"}  # all active
    assert sum(counts["threads_by_state"].values()) == counts["threads"]
    assert counts["dead_letters"] == DEAD_LETTERS
    assert counts["escalations"] > 0


def test_builder_applies_every_command_and_delivers_every_event(
    tiny_manifest: tuple[str, dict[str, object]],
) -> None:
    _url, manifest = tiny_manifest
    counts, facts = manifest["counts"], manifest["facts"]
    assert isinstance(counts, dict) and isinstance(facts, dict)
    assert counts["commands_by_status"] == {"applied": facts["commands_submitted"]}
    assert counts["outbox_by_status"] == {"done": sum(counts["outbox_by_status"].values())}
    # posts: every opening and post of the forum threads, the big threads' posts, the signals
    assert counts["posts"] > sum(TINY.big_threads) + TINY.threads
    assert counts["events"] > counts["posts"]


def test_builder_is_deterministic_for_a_seed(
    tiny_manifest: tuple[str, dict[str, object]], tmp_path: Path
) -> None:
    _url, first = tiny_manifest
    second = build_store(f"sqlite:///{tmp_path / 'second.db'}", TINY)
    same = ("threads_by_state", "events", "posts", "runs_by_status", "escalations")
    assert {k: second["counts"][k] for k in same} == {k: first["counts"][k] for k in same}  # type: ignore[index]


def test_built_read_models_pass_projections_rebuild_check(
    tiny_manifest: tuple[str, dict[str, object]],
) -> None:
    url, _manifest = tiny_manifest
    env = {**os.environ, "METAWSM_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "metawsm", "projections", "rebuild", "--check"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
