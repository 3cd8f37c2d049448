"""Runs advance only through control signals on the pipeline (real Redis, real worker)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from metawsm.errors import Rejected
from metawsm.messages.common import Actor
from metawsm.services import gates, lifecycle, runs
from metawsm.services.guidance import Answer, wait_for_answer
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage.models import ForumControlThread, ForumThread, RunEvent
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import Pipeline, wait_until

OPERATOR = Actor(type="operator", name="olga")
BRIEF = runs.BriefInput(goal="g", scope="s", done_criteria="tests pass", constraints="c")


def _bootstrap(p: Pipeline, agents: tuple[str, ...] = ("alice",)) -> str:
    return p.create_run(OPERATOR, agents, ["TCK-9"], BRIEF)


def _signal(p: Pipeline, run_id: str, agent: str, actor: str = "agent", **signal: Any) -> Any:
    return p.control_signal(run_id, agent, actor, **signal)


def _status(p: Pipeline, run_id: str) -> str:
    return str(runs.run_rows(p.engine, run_id)[0]["status"])


def _wait_status(p: Pipeline, run_id: str, status: str) -> None:
    wait_until(lambda: _status(p, run_id) == status, 15, f"run {run_id} to be {status}")


def test_the_whole_bootstrap_story_end_to_end(pipeline: Pipeline) -> None:
    run_id = _bootstrap(pipeline)
    assert _status(pipeline, run_id) == "running"
    asked = _signal(
        pipeline, run_id, "alice", control_type="guidance_request", question="Which DB?"
    )
    assert asked.status == "applied", asked.reason
    _wait_status(pipeline, run_id, "awaiting_guidance")

    answers: list[Answer] = []
    waiter = threading.Thread(
        target=lambda: answers.append(wait_for_answer(pipeline.engine, asked.command_id, 15))
    )
    waiter.start()
    answered = _signal(
        pipeline,
        run_id,
        "alice",
        actor="operator",
        control_type="guidance_answer",
        answer="Use SQLite",
    )
    assert answered.status == "applied"
    waiter.join(20)
    assert [a.answer for a in answers] == ["Use SQLite"]
    _wait_status(pipeline, run_id, "running")

    _signal(pipeline, run_id, "alice", control_type="completion", summary="done")
    _signal(
        pipeline,
        run_id,
        "alice",
        control_type="validation",
        status="PASSED",
        done_criteria="  tests pass ",
    )
    _wait_status(pipeline, run_id, "completed")
    assert gates.unmet(pipeline.engine, run_id)[1] == []
    status = gates.close_run(pipeline.container.runtime, run_id, dry_run=False, actor=OPERATOR)
    assert status == "closed"
    history = [
        (h["from_status"], h["to_status"]) for h in runs.run_history(pipeline.engine, run_id)
    ]
    assert history == [
        ("created", "planning"),
        ("planning", "running"),
        ("running", "awaiting_guidance"),
        ("awaiting_guidance", "running"),
        ("running", "completed"),
        ("completed", "closing"),
        ("closing", "closed"),
    ]
    with unit_of_work(pipeline.engine, readonly=True) as s:
        causes = (
            s.execute(
                select(RunEvent.cause_event_id).where(
                    RunEvent.run_id == run_id,
                    RunEvent.to_status.in_(("awaiting_guidance", "completed")),
                )
            )
            .scalars()
            .all()
        )
    assert all(c and c.startswith("fevt-") for c in causes)


def _unmet(p: Pipeline, run_id: str) -> dict[str, gates.Gate]:
    return {f"{g.name}:{g.agent_name}": g for g in gates.unmet(p.engine, run_id)[1]}


def test_each_close_gate_blocks_with_its_reason_and_names_its_fix(pipeline: Pipeline) -> None:
    run_id = _bootstrap(pipeline, ("alice", "bob"))
    unmet = _unmet(pipeline, run_id)
    assert unmet["status:None"].reason == "run is running, not completed"
    assert unmet["completion:alice"].fix == (
        f"metawsm forum signal --run-id {run_id} --agent-name alice --type completion"
        " --summary '<summary>' --actor-type agent"
    )
    assert "no validation signal" in unmet["validation:bob"].reason
    with pytest.raises(Rejected, match="cannot close: run is running, not completed"):
        gates.close_run(pipeline.container.runtime, run_id, dry_run=True, actor=OPERATOR)

    _signal(pipeline, run_id, "alice", control_type="guidance_request", question="Q?")
    pending = _unmet(pipeline, run_id)["guidance:alice"]
    assert pending.reason == "agent alice has pending guidance: Q?"
    assert "--type guidance_answer --answer '<answer>' --actor-type operator" in (pending.fix or "")

    for agent, criteria in (("alice", "tests pass"), ("bob", "tests pass!")):
        _signal(pipeline, run_id, agent, control_type="completion")
        _signal(
            pipeline,
            run_id,
            agent,
            control_type="validation",
            status="passed",
            done_criteria=criteria,
        )
    unmet = _unmet(pipeline, run_id)
    assert (
        unmet["validation:bob"].reason
        == "agent bob validation done_criteria does not match the brief"
    )
    assert unmet["validation:bob"].fix is not None and "'tests pass'" in unmet["validation:bob"].fix
    assert "validation:alice" not in unmet and "completion:bob" not in unmet
    assert _status(pipeline, run_id) == "awaiting_guidance"


def test_a_failed_validation_keeps_the_run_from_completing_until_a_pass(pipeline: Pipeline) -> None:
    run_id = _bootstrap(pipeline)
    _signal(pipeline, run_id, "alice", control_type="completion")
    _signal(
        pipeline,
        run_id,
        "alice",
        control_type="validation",
        status="failed",
        done_criteria="tests pass",
    )
    pipeline.settle()
    assert _status(pipeline, run_id) == "running"
    _signal(
        pipeline,
        run_id,
        "alice",
        control_type="validation",
        status="passed",
        done_criteria="tests pass",
    )
    _wait_status(pipeline, run_id, "completed")


def test_iterate_starts_a_new_epoch_in_which_old_signals_no_longer_count(
    pipeline: Pipeline,
) -> None:
    run_id = _bootstrap(pipeline)
    _signal(pipeline, run_id, "alice", control_type="completion")
    _signal(
        pipeline,
        run_id,
        "alice",
        control_type="validation",
        status="passed",
        done_criteria="tests pass",
    )
    _wait_status(pipeline, run_id, "completed")
    status, epoch, threads = lifecycle.iterate_run(
        pipeline.container.runtime, run_id, "add docs", OPERATOR
    )
    assert (status, epoch, len(threads)) == ("running", 2, 1)
    _signal(pipeline, run_id, "alice", control_type="guidance_request", question="again?")
    # Answered by an operator: nobody answers their own guidance request.
    _signal(pipeline, run_id, "alice", "operator", control_type="guidance_answer", answer="yes")
    pipeline.settle()
    assert _status(pipeline, run_id) == "running"
    assert {g.name for g in gates.unmet(pipeline.engine, run_id)[1]} >= {"completion", "validation"}


@pytest.mark.parametrize(
    ("agent", "run_suffix", "reason"),
    [("mallory", "", "agent mallory is not in run"), ("alice", "-nope", "not found")],
)
def test_a_signal_for_an_unknown_run_or_agent_is_rejected(
    pipeline: Pipeline, agent: str, run_suffix: str, reason: str
) -> None:
    run_id = _bootstrap(pipeline) + run_suffix
    outcome = _signal(pipeline, run_id, agent, control_type="completion")
    assert outcome.status == "rejected"
    assert reason in (outcome.reason or "")


def test_one_control_thread_per_run_and_agent_even_when_first_signals_race(
    pipeline: Pipeline,
) -> None:
    run_id = _bootstrap(pipeline, ("alice",))
    commands = [
        pipeline.command(
            "control_signal",
            actor="agent",
            run_id=run_id,
            agent_name="alice",
            signal={
                "control_type": "completion",
                "run_id": run_id,
                "agent_name": "alice",
                "summary": f"n{i}",
            },
        )
        for i in range(6)
    ]
    outcomes = [pipeline.submit(c) for c in commands]
    pipeline.settle()
    with unit_of_work(pipeline.engine, readonly=True) as s:
        mappings = s.execute(select(func.count()).select_from(ForumControlThread)).scalar_one()
        threads = s.execute(
            select(func.count()).select_from(ForumThread).where(ForumThread.is_control)
        ).scalar_one()
    assert (mappings, threads) == (1, 1)
    from metawsm.services.submit import read_outcome

    assert {read_outcome(pipeline.engine, o.command_id).status for o in outcomes} == {"applied"}


def test_a_control_thread_cannot_be_closed_by_hand(pipeline: Pipeline) -> None:
    run_id = _bootstrap(pipeline)
    outcome = _signal(pipeline, run_id, "alice", control_type="completion")
    closed = pipeline.run("close_thread", thread_id=outcome.thread_id)
    assert closed.status == "rejected"
    assert "control thread" in (closed.reason or "")


def test_stop_and_resume_follow_the_transition_table(pipeline: Pipeline) -> None:
    run_id = _bootstrap(pipeline)
    assert lifecycle.stop_run(pipeline.container.runtime, run_id, OPERATOR) == "stopped"
    assert lifecycle.resume_run(pipeline.container.runtime, run_id, OPERATOR) == "running"
    refused = pytest.raises(Rejected, match="cannot go from running to closing")
    with refused, UnitOfWork(pipeline.container.runtime) as uow:
        run = runs.lock_run(uow.session, run_id)
        runs.transition(uow.session, uow.events(OPERATOR), run, runs.RunStatus.CLOSING, "x")
