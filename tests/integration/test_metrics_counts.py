"""The exporter counts real work: commands through the services on a real worker and Redis,
counted in the transaction that did the work, read back through a real scrape's readings."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from metawsm.messages.common import Actor
from metawsm.ops import catalogue as m
from metawsm.ops.counters import label_text
from metawsm.ops.exporter import render
from metawsm.ops.readings import Readings, read
from metawsm.services import deadletters, runs
from metawsm.services.rebuild import rebuild
from metawsm.storage.models import ForumEvent, ForumProjectionEvent
from metawsm.storage.uow import unit_of_work
from metawsm.transport.broker_probe import BrokerProbe
from tests.fixtures.pipeline import Pipeline, wait_until
from tests.integration.test_dead_letters import _cure_poison, _poison

OPERATOR = Actor(type="operator", name="olga")


def _read(p: Pipeline) -> Readings:
    return read(p.engine, p.settings, probe=lambda: BrokerProbe(True, 0.0))


def _counter(r: Readings, name: str, **labels: str) -> float:
    return r.counters.get((name, label_text(**labels)), 0.0)


def _histogram_count(r: Readings, name: str) -> float:
    return sum(v for (n, _), v in r.counters.items() if n == name + ":bucket")


def _projected(p: Pipeline) -> int:
    with unit_of_work(p.engine, readonly=True) as s:
        return int(s.execute(select(func.count()).select_from(ForumProjectionEvent)).scalar_one())


def _events(p: Pipeline) -> int:
    with unit_of_work(p.engine, readonly=True) as s:
        return int(s.execute(select(func.count()).select_from(ForumEvent)).scalar_one())


def test_commands_are_counted_by_type_and_outcome_with_their_lag_and_projection_lag(
    pipeline: Pipeline,
) -> None:
    for n in (1, 2):
        opened = pipeline.run(
            "open_thread", actor="agent", thread_id=f"t-{n}", ticket="TCK-1", title="T", body="b"
        )
        assert opened.status == "applied"
    assert pipeline.run("add_post", thread_id="t-1", body="more").status == "applied"
    assert pipeline.run("close_thread", thread_id="t-2", reason="done").status == "applied"
    rejected = pipeline.run("change_state", thread_id="t-2", to_state="triaged")
    assert rejected.status == "rejected"
    pipeline.settle()

    r = _read(pipeline)
    assert _counter(r, m.COMMANDS_ACCEPTED, command_type="open_thread") == 2
    assert _counter(r, m.COMMANDS_ACCEPTED, command_type="change_state") == 1
    assert _counter(r, m.COMMANDS_APPLIED, command_type="open_thread") == 2
    assert _counter(r, m.COMMANDS_APPLIED, command_type="add_post") == 1
    assert _counter(r, m.COMMANDS_APPLIED, command_type="change_state") == 0
    assert _counter(r, m.COMMANDS_REJECTED, command_type="change_state") == 1
    assert _histogram_count(r, m.COMMAND_LAG) == 4
    assert _counter(r, m.COMMAND_LAG + ":sum") > 0
    assert _histogram_count(r, m.PROJECTION_LAG) == _projected(pipeline) == _events(pipeline)
    assert (r.projection_backlog, r.outbox_pending) == (0, 0)

    # Rebuilding the read models refills them without counting a projection again.
    report = rebuild(pipeline.engine, check=False)
    assert report.events == _events(pipeline)
    assert _read(pipeline).counters == r.counters


def test_a_dead_command_stays_counted_after_its_redrive_and_the_redrive_is_counted(
    pipeline: Pipeline,
) -> None:
    _, post_id = _poison(pipeline)
    wait_until(
        lambda: _counter(_read(pipeline), m.COMMANDS_DEAD, command_type="add_post"),
        20,
        "the dead command counted",
    )
    r = _read(pipeline)
    assert r.dead_letters == {"command": 1}
    _cure_poison(pipeline)
    deadletters.redrive(pipeline.container.runtime, post_id)
    wait_until(
        lambda: _counter(_read(pipeline), m.COMMANDS_APPLIED, command_type="add_post") == 1,
        15,
        "the redriven command applied",
    )
    after = _read(pipeline)
    assert _counter(after, m.COMMANDS_DEAD, command_type="add_post") == 1  # ever dead
    assert _counter(after, m.DEAD_LETTER_REDRIVES) == 1
    assert _counter(after, m.COMMANDS_ACCEPTED, command_type="add_post") == 1
    assert after.dead_letters == {}


def test_guidance_pending_and_the_answer_time_are_measured(pipeline: Pipeline) -> None:
    run_id = pipeline.create_run(OPERATOR, ["alice", "bob"], ["TCK-9"])
    asked = pipeline.control_signal(
        run_id, "alice", control_type="guidance_request", question="Which DB?"
    )
    assert asked.status == "applied", asked.reason
    pending = _read(pipeline)
    assert pending.guidance_pending == 1
    assert pending.guidance_oldest_age_s >= 0
    assert _histogram_count(pending, m.GUIDANCE_ANSWER) == 0

    answered = pipeline.control_signal(
        run_id, "alice", actor="operator", control_type="guidance_answer", answer="SQLite"
    )
    assert answered.status == "applied", answered.reason
    after = _read(pipeline)
    assert (after.guidance_pending, after.guidance_oldest_age_s) == (0, 0.0)
    assert _histogram_count(after, m.GUIDANCE_ANSWER) == 1
    assert runs.run_rows(pipeline.engine, run_id)[0]["status"] in ("running", "awaiting_guidance")


def test_a_scrape_exposes_exactly_the_catalogue(pipeline: Pipeline) -> None:
    assert (
        pipeline.run(
            "open_thread", actor="agent", thread_id="t-1", ticket="TCK-1", title="T", body="b"
        ).status
        == "applied"
    )
    text = render(_read(pipeline))
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert names == m.exposed_series_names()


def test_upgrading_an_older_database_seeds_the_counts_its_rows_can_tell(
    pipeline: Pipeline,
) -> None:
    from metawsm.storage import migrate

    run_id = pipeline.create_run(OPERATOR, ["alice"], ["TCK-9"])
    asked = pipeline.control_signal(
        run_id, "alice", control_type="guidance_request", question="Which DB?"
    )
    assert asked.status == "applied"
    opened = pipeline.run(
        "open_thread", actor="agent", thread_id="t-1", ticket="TCK-1", title="T", body="b"
    )
    assert opened.status == "applied"
    assert pipeline.run("close_thread", thread_id="t-1", reason="x").status == "applied"
    assert pipeline.run("change_state", thread_id="t-1", to_state="triaged").status == "rejected"
    pipeline.settle()
    live = _read(pipeline)

    migrate.downgrade(pipeline.engine, "0004")  # as written before the metrics existed
    migrate.upgrade(pipeline.engine)
    seeded = _read(pipeline)

    commands = {
        key: value for key, value in live.counters.items() if key[0].startswith("metawsm_commands_")
    }
    assert commands and {k: seeded.counters.get(k) for k in commands} == commands
    assert (seeded.guidance_pending, live.guidance_pending) == (1, 1)
    assert seeded.guidance_oldest_age_s >= live.guidance_oldest_age_s
    assert _histogram_count(seeded, m.COMMAND_LAG) == 0  # observations were never kept


def test_a_count_that_cannot_be_written_rolls_back_the_work_it_counts(
    engine: Engine, db_url: str
) -> None:
    from metawsm.errors import DatabaseBusy
    from metawsm.services.submit import make_command, read_outcome, submit
    from tests.fixtures.database import settings_for
    from tests.fixtures.pipeline import direct_runtime

    rt = direct_runtime(engine, settings_for(db_url))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE ops_counters")
    command = make_command(
        "open_thread",
        {"thread_id": "t-1", "ticket": "TCK-1", "title": "T", "body": "b"},
        actor_type="agent",
        actor_name="a",
    )
    with pytest.raises(DatabaseBusy, match="ops_counters"):
        submit(rt, command)
    assert read_outcome(engine, command.command_id) is None  # the ledger row went with it
