"""Health per role with real worker processes: the events worker stopped (cleanly, then
SIGKILLed) fails ``workers:events`` within 10 s while ``workers:commands`` stays healthy; the
events written meanwhile are a growing projection backlog that fails ``projection``; an events
worker started again drains it and health recovers."""

from __future__ import annotations

import time

import pytest

from metawsm.ops.health import Health, judge
from metawsm.ops.readings import read
from metawsm.settings import Settings
from tests.fixtures.conditions import wait_until
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import FAST, Pipeline

pytestmark = pytest.mark.e2e
WITHIN_S = 10.0
MAX_LAG_S = 2.0


@pytest.fixture
def pipeline_settings(db_url: str, redis_url: str) -> Settings:
    """Fast retries, a 1 s heartbeat and a 2 s projection lag limit."""
    return settings_for(
        db_url,
        redis_url,
        **FAST,
        heartbeat_interval_s=1.0,
        health_projection_max_lag_s=MAX_LAG_S,
    )


def _health(p: Pipeline) -> Health:
    return judge(read(p.engine, p.settings), p.settings)


def _checks(p: Pipeline) -> dict[str, bool]:
    return {c.name: c.ok for c in _health(p).checks}


def _fails_within(p: Pipeline, check: str, timeout_s: float) -> float:
    started = time.monotonic()
    wait_until(lambda: not _checks(p)[check], timeout_s, f"{check} to fail")
    return time.monotonic() - started


def test_an_events_worker_stopped_or_killed_fails_its_role_and_the_projection_lag_grows(
    idle_pipeline: Pipeline,
) -> None:
    p = idle_pipeline
    with p.worker(role="commands"), p.worker(role="events") as events:
        opened = p.run(
            "open_thread", actor="agent", thread_id="t-1", ticket="TCK-1", title="T", body="b"
        )
        assert opened.status == "applied"
        p.settle()
        wait_until(lambda: _checks(p)["workers:events"], WITHIN_S, "the events worker seen")
        checks = _checks(p)
        assert checks["workers:commands"] and checks["projection"]

        events.stop()
        assert _fails_within(p, "workers:events", WITHIN_S) < WITHIN_S
        assert _checks(p)["workers:commands"]

        assert p.run("add_post", thread_id="t-1", body="unprojected").status == "applied"
        first = read(p.engine, p.settings)
        assert first.projection_backlog >= 1
        wait_until(lambda: not _checks(p)["projection"], MAX_LAG_S + WITHIN_S, "lag to fail")
        later = read(p.engine, p.settings)
        assert later.projection_oldest_age_s > max(first.projection_oldest_age_s, MAX_LAG_S)
        failing = {c.name: c.hint for c in _health(p).failing()}
        assert failing["workers:events"] == failing["projection"] == "metawsm worker --role events"

        with p.worker(role="events") as again:
            wait_until(lambda: _checks(p)["projection"], 30, "the backlog projected")
            assert read(p.engine, p.settings).projection_backlog == 0
            assert _checks(p)["workers:events"]
            again.kill()  # SIGKILL: no clean-shutdown row; liveness comes from the age alone
            assert _fails_within(p, "workers:events", WITHIN_S) < WITHIN_S
