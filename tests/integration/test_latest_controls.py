"""The lifecycle's control state from the deciding signals equals the fold of every signal.

``latest_controls`` (what the lifecycle consumer reads per signal) against ``agent_controls``
(the whole control threads folded), after every signal of random stories that cross epochs.
"""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine, event

from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services import runs
from metawsm.services.control_fold import latest_controls
from metawsm.services.lifecycle import iterate_run
from metawsm.services.runs import agent_controls
from metawsm.storage.models import ForumEvent, Run
from metawsm.storage.uow import unit_of_work
from tests.integration.test_lifecycle_idempotency import _runtime, _write_signals

AGENTS = ["alice", "bob", "carol"]  # carol never signals: no control thread
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


def _both(engine: Engine, run_id: str) -> tuple[dict[str, object], dict[str, object]]:
    with unit_of_work(engine, readonly=True) as s:
        run = s.get_one(Run, run_id)
        return dict(latest_controls(s, run)), dict(agent_controls(s, run))


def _new_run(rt: Runtime) -> str:
    return runs.create_run(
        rt, tickets=["TCK-F"], agents=AGENTS, mode="run", brief=None, actor=OPERATOR
    )


@pytest.mark.parametrize("seed", (3, 11, 2024))
def test_the_deciding_signals_fold_to_the_state_of_every_signal(
    engine: Engine, db_url: str, seed: int
) -> None:
    rt = _runtime(engine, db_url)
    run_id = _new_run(rt)
    rng = random.Random(seed)
    latest, full = _both(engine, run_id)
    assert latest == full  # no signal yet
    for step in range(40):
        if step in (15, 30):
            iterate_run(rt, run_id, "again", OPERATOR)  # earlier completions stop counting
        agent, kind = rng.choice(AGENTS[:2]), rng.choice(KINDS)
        _write_signals(rt, run_id, [(agent, kind, _fields(rng, kind))])
        latest, full = _both(engine, run_id)
        assert latest == full, (step, agent, kind)


def test_the_state_of_a_long_thread_is_folded_from_a_few_of_its_rows(
    engine: Engine, db_url: str
) -> None:
    rt = _runtime(engine, db_url)
    run_id = _new_run(rt)
    story = [("alice", kind, {"question": "q"} if kind == "guidance_request" else {"answer": "a"})
             for kind in ("guidance_request", "guidance_answer") * 20]  # fmt: skip
    _write_signals(rt, run_id, [*story, ("alice", "completion", {"summary": "s"})])
    loaded: list[ForumEvent] = []

    def count(target: ForumEvent, _context: object) -> None:
        loaded.append(target)

    event.listen(ForumEvent, "load", count)
    try:
        with unit_of_work(engine, readonly=True) as s:
            state = latest_controls(s, s.get_one(Run, run_id))["alice"]
    finally:
        event.remove(ForumEvent, "load", count)
    assert state.completed and not state.pending and state.request_seq == 40
    # The newest signal, request/answer and request (the completion is the newest signal).
    assert len(loaded) == 3
