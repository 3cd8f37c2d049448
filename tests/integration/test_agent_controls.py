"""The ``run_agent_controls`` read model equals the fold of the control log.

After every signal of random stories that cross epochs (seeded), the rows the handler advanced
give the state the whole control threads give (``runs.agent_controls``); ``projections
rebuild`` refills them from the log to the same rows, ``--check`` names a tampered row, and
migration 0005 fills them for a database written before it.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update

from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services import agent_controls, rebuild, runs
from metawsm.services.lifecycle import iterate_run
from metawsm.services.logfold import read_connection
from metawsm.storage import migrate
from metawsm.storage.models import Run, RunAgentControl
from metawsm.storage.uow import unit_of_work
from tests.integration.test_lifecycle_idempotency import _runtime, _write_signals

AGENTS = ["alice", "bob", "carol"]  # carol never signals: no control thread, no row
OPERATOR = Actor(type="operator", name="op-1")
KINDS = ("guidance_request", "guidance_answer", "completion", "validation")


def _fields(rng: random.Random, kind: str) -> dict[str, str]:
    if kind == "guidance_request":
        return {"question": f"q{rng.randint(1, 99)}", "context": rng.choice(("c", "ctx"))}
    if kind == "guidance_answer":
        return {"answer": "a"}
    if kind == "completion":
        return {"summary": f"s{rng.randint(1, 99)}"}
    return {"status": rng.choice(("passed", "failed", " Passed ")), "done_criteria": " d "}


def _new_run(rt: Runtime) -> str:
    return runs.create_run(
        rt, tickets=["TCK-F"], agents=AGENTS, mode="run", brief=None, actor=OPERATOR
    )


def _model_and_fold(engine: Engine, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the read model's control state, the whole control threads folded) of the run."""
    with unit_of_work(engine, readonly=True) as s:
        run = s.get_one(Run, run_id)
        return agent_controls.controls_of_run(s, run), runs.agent_controls(s, run)


def _live_rows(engine: Engine) -> list[dict[str, Any]]:
    with unit_of_work(engine, readonly=True) as s:
        rows = s.execute(select(RunAgentControl.__table__)).mappings()
        return sorted((dict(r) for r in rows), key=lambda r: (r["run_id"], r["agent_name"]))


def _log_rows(engine: Engine) -> list[dict[str, Any]]:
    with read_connection(engine) as conn:
        expected = agent_controls.expected_rows(conn)
    return [expected[key] for key in sorted(expected)]


def _random_story(rt: Runtime, rng: random.Random, steps: int) -> list[str]:
    """Two runs; ``steps`` random signals, each run iterated twice on the way; after each signal
    the read model equals the fold of the log."""
    made = [_new_run(rt), _new_run(rt)]
    iterations = {rng.randrange(steps): rid for rid in made for _ in range(2)}
    for step in range(steps):
        if step in iterations:
            iterate_run(rt, iterations[step], "again", OPERATOR)  # completions stop counting
        run_id, agent, kind = rng.choice(made), rng.choice(AGENTS[:2]), rng.choice(KINDS)
        _write_signals(rt, run_id, [(agent, kind, _fields(rng, kind))])
        model, fold = _model_and_fold(rt.engine, run_id)
        assert model == fold, (step, run_id, agent, kind)
    return made


@pytest.mark.parametrize("seed", (5, 17, 2026))
def test_the_read_model_equals_the_fold_of_the_log_after_random_signals(
    engine: Engine, db_url: str, seed: int
) -> None:
    rt = _runtime(engine, db_url)
    made = _random_story(rt, random.Random(seed), 40)
    for run_id in made:
        model, fold = _model_and_fold(engine, run_id)
        assert model == fold
        assert not model["carol"].pending and model["carol"].thread_id is None
    live = _live_rows(engine)
    assert live == _log_rows(engine)
    assert {(r["run_id"], r["agent_name"]) for r in live} <= {(m, a) for m in made for a in AGENTS}


def test_a_rebuild_refills_the_read_model_to_the_same_rows(engine: Engine, db_url: str) -> None:
    rt = _runtime(engine, db_url)
    _random_story(rt, random.Random(8), 24)
    before = _live_rows(engine)
    with unit_of_work(engine) as s:
        s.execute(delete(RunAgentControl))

    report = rebuild.rebuild(engine, check=False)

    assert "agent_controls" in report.rewritten
    assert _live_rows(engine) == before
    assert rebuild.rebuild(engine, check=True).differences == []


def test_check_names_a_tampered_row_and_changes_nothing_then_rebuild_repairs_it(
    engine: Engine, db_url: str
) -> None:
    rt = _runtime(engine, db_url)
    run_id = _new_run(rt)
    _write_signals(rt, run_id, [("alice", "guidance_request", {"question": "why?"})])
    rebuild.rebuild(engine, check=False)  # the thread views: nothing projects in these tests
    assert rebuild.rebuild(engine, check=True).differences == []
    good = _live_rows(engine)
    with unit_of_work(engine) as s:
        s.execute(update(RunAgentControl).values(pending=False, question=None))
    tampered = _live_rows(engine)

    report = rebuild.rebuild(engine, check=True)

    assert report.differences == [
        f"agent control {run_id}/alice.pending: live=False rebuilt=True",
        f"agent control {run_id}/alice.question: live=None rebuilt='why?'",
    ]
    assert _live_rows(engine) == tampered
    assert "agent_controls" in rebuild.rebuild(engine, check=False).rewritten
    assert _live_rows(engine) == good


def test_migration_0005_fills_the_read_model_of_a_database_written_before(
    engine: Engine, db_url: str
) -> None:
    rt = _runtime(engine, db_url)
    _random_story(rt, random.Random(99), 20)
    before = _live_rows(engine)
    assert before

    migrate.downgrade(engine, "0004")
    migrate.upgrade(engine)

    assert _live_rows(engine) == before
