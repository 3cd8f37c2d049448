"""The typed snapshot on a real pipeline: every field, each selection, and no Redis to read it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from metawsm.domain.snapshot import Blocker, RunSnapshot, to_json
from metawsm.errors import NotFound
from metawsm.messages.common import Actor
from metawsm.services import escalation, gates, lifecycle, runs, snapshot
from metawsm.services.deadletters import Failure, dead_letter, purge
from metawsm.services.operator import operate_once
from metawsm.storage.engine import build_engine
from metawsm.storage.models import ForumEvent
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import NO_BROKER_URL, settings_for
from tests.fixtures.pipeline import Pipeline, wait_until
from tests.fixtures.snapshot_contract import as_contract_writes_it

OPERATOR = Actor(type="operator", name="olga")
BRIEF = runs.BriefInput(goal="ship it", scope="s", done_criteria="tests pass", constraints="c")


@pytest.fixture(autouse=True)
def settled(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline, settled after the test (no message still in flight when it stops)."""
    yield pipeline
    pipeline.settle()


def _create(
    p: Pipeline,
    agents: tuple[str, ...] = ("alice",),
    tickets: tuple[str, ...] = ("TCK-1",),
    mode: str = "run",
) -> str:
    return p.create_run(OPERATOR, agents, tickets, BRIEF if mode == "bootstrap" else None)


def _signal(p: Pipeline, run_id: str, agent: str, actor: str = "agent", **signal: Any) -> Any:
    outcome = p.control_signal(run_id, agent, actor, **signal)
    assert outcome.status == "applied", outcome.reason
    return outcome


def _ask(p: Pipeline, run_id: str, agent: str = "alice", question: str = "Which DB?") -> Any:
    return _signal(
        p, run_id, agent, control_type="guidance_request", question=question, context="pg or lite"
    )


def _run(p: Pipeline, run_id: str, now: datetime | None = None) -> RunSnapshot:
    [run] = snapshot.build(p.engine, p.settings, run_id=run_id, now=now).runs
    return run


def _status(p: Pipeline, run_id: str) -> str:
    return str(runs.run_rows(p.engine, run_id)[0]["status"])


def _wait_status(p: Pipeline, run_id: str, status: str) -> None:
    wait_until(lambda: _status(p, run_id) == status, 15, f"run {run_id} to be {status}")


def _thread(p: Pipeline, thread_id: str, run_id: str | None, **extra: Any) -> None:
    outcome = p.run(
        "open_thread",
        actor="agent",
        thread_id=thread_id,
        ticket="TCK-1",
        run_id=run_id,
        agent_name="alice" if run_id else None,
        title=f"title of {thread_id}",
        body="help",
        **extra,
    )
    assert outcome.status == "applied", outcome.reason


def _ok(outcome: Any) -> None:
    assert outcome.status == "applied", outcome.reason


# The run record ---------------------------------------------------------------------------------


def test_status_mode_tickets_epoch_and_update_time_come_from_the_run(pipeline: Pipeline) -> None:
    before = utcnow()
    run_id = _create(pipeline, tickets=("TCK-2", "TCK-1"))
    run = _run(pipeline, run_id)
    assert (run.run_id, run.status, run.mode, run.tickets, run.control_epoch) == (
        run_id,
        "running",
        "run",
        ["TCK-2", "TCK-1"],
        1,
    )
    assert before <= run.updated_at <= utcnow()
    _, epoch, _ = lifecycle.iterate_run(pipeline.container.runtime, run_id, "again", OPERATOR)
    _ask(pipeline, run_id)
    _wait_status(pipeline, run_id, "awaiting_guidance")
    run = _run(pipeline, run_id)
    assert (run.status, run.control_epoch, epoch) == ("awaiting_guidance", 2, 2)
    assert _run(pipeline, _create(pipeline, mode="bootstrap")).mode == "bootstrap"


def test_the_brief_summary_is_the_goal_and_done_criteria(pipeline: Pipeline) -> None:
    brief = _run(pipeline, _create(pipeline, mode="bootstrap")).brief
    assert brief is not None
    assert (brief.goal, brief.done_criteria) == ("ship it", "tests pass")
    assert _run(pipeline, _create(pipeline)).brief is None


def test_generated_at_is_the_given_now_and_the_json_is_snake_case(pipeline: Pipeline) -> None:
    run_id = _create(pipeline)
    now = utcnow() + timedelta(minutes=3)
    snap = snapshot.build(pipeline.engine, pipeline.settings, run_id=run_id, now=now)
    assert snap.generated_at == now and snap.runs[0].generated_at == now
    data = to_json(snap)
    assert data == as_contract_writes_it(data)
    assert set(data) == {"generated_at", "runs"}
    assert set(data["runs"][0]) == set(RunSnapshot._fields)
    assert all(key == key.lower() for key in data["runs"][0])


# Agents and pending guidance --------------------------------------------------------------------


def test_agents_show_status_last_signal_guidance_completion_validation_and_control_thread(
    pipeline: Pipeline,
) -> None:
    run_id = _create(pipeline, agents=("alice", "bob", "carl"))
    before = utcnow()
    _ask(pipeline, run_id, "alice")
    _signal(pipeline, run_id, "bob", control_type="completion", summary="done")
    _signal(pipeline, run_id, "bob", control_type="validation", status="passed", done_criteria="x")
    after = utcnow()
    status = lifecycle.set_agent_status(
        pipeline.container.runtime, run_id, "carl", "stalled", OPERATOR
    )
    agents = {a.agent_name: a for a in _run(pipeline, run_id).agents}
    assert list(agents) == ["alice", "bob", "carl"]
    alice, bob, carl = agents["alice"], agents["bob"], agents["carl"]
    assert (alice.status, alice.pending_guidance, alice.completed, alice.validation_status) == (
        "running",
        True,
        False,
        None,
    )
    assert (bob.status, bob.pending_guidance, bob.completed, bob.validation_status) == (
        "running",
        False,
        True,
        "passed",
    )
    assert (carl.status, carl.pending_guidance, carl.completed, carl.validation_status) == (
        "stalled",
        False,
        False,
        None,
    )
    assert alice.last_signal_at is not None and bob.last_signal_at is not None
    assert before <= alice.last_signal_at <= bob.last_signal_at <= after
    assert carl.last_signal_at is None and carl.control_thread_id is None
    assert alice.control_thread_id and bob.control_thread_id
    assert alice.control_thread_id != bob.control_thread_id
    assert status == "awaiting_guidance"


def test_pending_guidance_names_thread_agent_question_context_and_its_age_at_now(
    pipeline: Pipeline,
) -> None:
    run_id = _create(pipeline, agents=("alice", "bob"))
    before = utcnow()
    asked = _ask(pipeline, run_id, "alice", "Which DB?")
    after = utcnow()
    run = _run(pipeline, run_id)
    [g] = run.pending_guidance
    alice = next(a for a in run.agents if a.agent_name == "alice")
    assert (g.thread_id, g.agent_name, g.question, g.context) == (
        alice.control_thread_id,
        "alice",
        "Which DB?",
        "pg or lite",
    )
    assert asked.thread_id == g.thread_id
    assert before <= g.asked_at <= after
    assert g.request_event_id.startswith("fevt-")
    later = _run(pipeline, run_id, now=g.asked_at + timedelta(seconds=125))
    assert later.pending_guidance[0].age_s == 125
    assert (
        _run(pipeline, run_id, now=g.asked_at - timedelta(seconds=5)).pending_guidance[0].age_s == 0
    )

    _signal(
        pipeline, run_id, "alice", actor="operator", control_type="guidance_answer", answer="pg"
    )
    assert _run(pipeline, run_id).pending_guidance == []


# Forum threads, counts and unanswered ------------------------------------------------------------


def _forum(p: Pipeline, run_id: str) -> None:
    """t-open (new, unanswered), t-answered, t-waiting (waiting_human, unanswered), t-closed;
    a thread of no run and alice's control thread, which the run's forum does not count."""
    _thread(p, "t-open", run_id, priority="high")
    _thread(p, "t-answered", run_id)
    _ok(p.run("answer_thread", thread_id="t-answered", body="use 3.11"))
    _thread(p, "t-waiting", run_id)
    _ok(p.run("assign_thread", thread_id="t-waiting", assignee_type="human", assignee_name="hana"))
    _ok(p.run("change_state", thread_id="t-waiting", to_state="waiting_human"))
    _ok(p.run("add_post", actor="agent", thread_id="t-waiting", body="still stuck"))
    _thread(p, "t-closed", run_id)
    _ok(p.run("close_thread", thread_id="t-closed", reason="dup"))
    _thread(p, "t-elsewhere", None)
    _ask(p, run_id)
    p.settle()


def test_open_threads_are_the_runs_non_control_threads_that_are_not_closed(
    pipeline: Pipeline,
) -> None:
    run_id = _create(pipeline)
    _forum(pipeline, run_id)
    now = utcnow() + timedelta(minutes=2)
    threads = {t.thread_id: t for t in _run(pipeline, run_id, now=now).open_threads}
    assert sorted(threads) == ["t-answered", "t-open", "t-waiting"]
    opened = threads["t-open"]
    assert (opened.title, opened.state, opened.priority, opened.assignee_name) == (
        "title of t-open",
        "new",
        "high",
        None,
    )
    assert opened.age_s == int((now - opened.updated_at).total_seconds())
    assert 120 <= opened.age_s <= 180
    waiting = threads["t-waiting"]
    assert (waiting.state, waiting.assignee_name, waiting.is_unanswered) == (
        "waiting_human",
        "hana",
        True,
    )
    assert (opened.is_unanswered, threads["t-answered"].is_unanswered) == (True, False)
    assert threads["t-answered"].state == "answered"


def test_queue_counts_are_the_runs_threads_by_state_and_unanswered_counts_the_waiting_ones(
    pipeline: Pipeline,
) -> None:
    run_id = _create(pipeline)
    assert (_run(pipeline, run_id).queue_counts, _run(pipeline, run_id).unanswered_count) == ({}, 0)
    _forum(pipeline, run_id)
    run = _run(pipeline, run_id)
    assert run.queue_counts == {"new": 1, "answered": 1, "waiting_human": 1, "closed": 1}
    assert run.unanswered_count == 2
    _ok(pipeline.run("answer_thread", thread_id="t-open", body="here"))
    pipeline.settle()
    run = _run(pipeline, run_id)
    assert run.queue_counts == {"answered": 2, "waiting_human": 1, "closed": 1}
    assert run.unanswered_count == 1


# SLA: candidates, then escalations once raised ---------------------------------------------------


def test_escalation_candidates_become_escalations_once_raised_with_a_moved_clock(
    pipeline: Pipeline,
) -> None:
    run_id = _create(pipeline)
    _thread(pipeline, "t-slow", run_id)
    _ask(pipeline, run_id, "alice", "Which DB?")
    pipeline.settle()
    start = _run(pipeline, run_id)
    assert (start.escalation_candidates, start.escalations) == ([], [])
    [slow] = start.open_threads
    [g] = start.pending_guidance

    later = utcnow() + timedelta(minutes=31)
    candidates = {c.thread_id: c for c in _run(pipeline, run_id, now=later).escalation_candidates}
    assert set(candidates) == {"t-slow", g.thread_id}
    thread_c, guidance_c = candidates["t-slow"], candidates[g.thread_id]
    assert (thread_c.tier, thread_c.subject, thread_c.raised, thread_c.agent_name) == (
        "operator",
        "",
        False,
        "alice",
    )
    assert thread_c.since == slow.updated_at
    assert thread_c.age_s == int((later - slow.updated_at).total_seconds())
    assert "title of t-slow" in thread_c.reason and "tier operator at 30 min" in thread_c.reason
    assert (guidance_c.tier, guidance_c.subject, guidance_c.agent_name) == (
        "operator",
        g.request_event_id,
        "alice",
    )
    assert guidance_c.since == g.asked_at
    assert "agent alice has waited 3" in guidance_c.reason and "Which DB?" in guidance_c.reason

    assert escalation.raise_due(pipeline.container.runtime, later) == 2
    run = _run(pipeline, run_id, now=later + timedelta(seconds=90))
    assert run.escalation_candidates == []
    raised = {(e.thread_id, e.tier, e.subject): e for e in run.escalations}
    assert set(raised) == {
        ("t-slow", "operator", ""),
        (g.thread_id, "operator", g.request_event_id),
    }
    assert all(e.raised and e.since == later and e.age_s == 90 for e in raised.values())
    assert raised[("t-slow", "operator", "")].reason == thread_c.reason

    human_time = utcnow() + timedelta(minutes=61)
    due = _run(pipeline, run_id, now=human_time).escalation_candidates
    assert sorted((c.thread_id, c.tier) for c in due) == sorted(
        [("t-slow", "human"), (g.thread_id, "human")]
    )
    assert escalation.raise_due(pipeline.container.runtime, human_time) == 2
    assert escalation.raise_due(pipeline.container.runtime, human_time) == 0
    assert [e.tier for e in _run(pipeline, run_id, now=human_time).escalations] == [
        "operator",
        "operator",
        "human",
        "human",
    ]


# Blockers -------------------------------------------------------------------------------------


def _failure(message_id: str, run_id: str | None) -> Failure:
    return Failure(
        message_id=message_id,
        kind="command",
        task_name="forum.commands.add_post",
        topic="forum.commands.add_post",
        payload={"command_type": "add_post"},
        error="boom: the handler exploded",
        traceback=None,
        attempts=5,
        run_id=run_id,
    )


def test_blockers_are_the_unmet_gates_with_their_fix_commands(pipeline: Pipeline) -> None:
    run_id = _create(pipeline, mode="bootstrap")
    blockers = _run(pipeline, run_id).blockers
    unmet = gates.unmet(pipeline.engine, run_id)[1]
    assert blockers == [Blocker(kind="gate", reason=g.reason, fix=g.fix) for g in unmet]
    by_reason = {b.reason: b for b in blockers}
    assert by_reason["run is running, not completed"].fix is None
    completion = by_reason["agent alice has not signalled completion in epoch 1"]
    assert completion.fix == (
        f"metawsm forum signal --run-id {run_id} --agent-name alice --type completion"
        " --summary '<summary>' --actor-type agent"
    )
    assert by_reason["agent alice has no validation signal in epoch 1"].fix == (
        f"metawsm forum signal --run-id {run_id} --agent-name alice --type validation"
        " --status passed --done-criteria 'tests pass' --actor-type agent"
    )

    _signal(pipeline, run_id, "alice", control_type="completion")
    _signal(
        pipeline, run_id, "alice", control_type="validation", status="passed",
        done_criteria="tests pass",
    )  # fmt: skip
    _wait_status(pipeline, run_id, "completed")
    assert _run(pipeline, run_id).blockers == []


def test_a_dead_letter_of_the_run_is_a_blocker_fixed_by_dlq_redrive(pipeline: Pipeline) -> None:
    run_id = _create(pipeline)
    other = _create(pipeline)
    before = [b for b in _run(pipeline, run_id).blockers if b.kind == "dead_letter"]
    assert before == []
    dead_letter(pipeline.engine, _failure("cmd-dead-1", run_id))
    dead_letter(pipeline.engine, _failure("cmd-dead-2", other))
    dead_letter(pipeline.engine, _failure("cmd-dead-3", None))
    dead = [b for b in _run(pipeline, run_id).blockers if b.kind == "dead_letter"]
    assert dead == [
        Blocker(
            kind="dead_letter",
            reason="dead letter on forum.commands.add_post: boom: the handler exploded",
            fix="metawsm dlq redrive cmd-dead-1",
            message_id="cmd-dead-1",
        )
    ]
    assert purge(pipeline.engine, "cmd-dead-1") == 1
    assert [b for b in _run(pipeline, run_id).blockers if b.kind == "dead_letter"] == []


# The event log position -------------------------------------------------------------------------


def _last_run_event(p: Pipeline, run_id: str) -> tuple[int, datetime]:
    with unit_of_work(p.engine, readonly=True) as s:
        seq = s.execute(
            select(func.max(ForumEvent.sequence)).where(ForumEvent.run_id == run_id)
        ).scalar_one()
        at = s.execute(
            select(ForumEvent.occurred_at).where(ForumEvent.sequence == seq)
        ).scalar_one()
    return int(seq), at


def test_last_event_sequence_and_time_follow_the_runs_own_events(pipeline: Pipeline) -> None:
    run_id = _create(pipeline)
    first = _run(pipeline, run_id)
    assert (first.last_event_sequence, first.last_event_at) == _last_run_event(pipeline, run_id)
    assert first.last_event_sequence > 0
    _thread(pipeline, "t-elsewhere", None)
    assert _run(pipeline, run_id).last_event_sequence == first.last_event_sequence
    _ask(pipeline, run_id)
    _wait_status(pipeline, run_id, "awaiting_guidance")
    moved = _run(pipeline, run_id)
    assert moved.last_event_sequence > first.last_event_sequence
    assert (moved.last_event_sequence, moved.last_event_at) == _last_run_event(pipeline, run_id)
    assert moved.last_event_at is not None and first.last_event_at is not None
    assert moved.last_event_at >= first.last_event_at

    # The operator's own notes about the run are not activity of the run.
    [acted] = operate_once(
        pipeline.container.runtime,
        run_id=run_id,
        mode="assist",
        dry_run=False,
        stale_after_s=3600,
    )
    assert acted.recorded
    noted = _run(pipeline, run_id)
    assert (noted.last_event_sequence, noted.last_event_at) == (
        moved.last_event_sequence,
        moved.last_event_at,
    )


# Selection --------------------------------------------------------------------------------------


def test_selection_by_run_id_by_ticket_and_all_active_runs(pipeline: Pipeline) -> None:
    active = _create(pipeline, tickets=("TCK-1",))
    stopped = _create(pipeline, tickets=("TCK-2", "tck-1"))
    failed = _create(pipeline, tickets=("TCK-3",))
    lifecycle.stop_run(pipeline.container.runtime, stopped, OPERATOR)
    lifecycle.set_agent_status(pipeline.container.runtime, failed, "alice", "failed", OPERATOR)
    completed = _create(pipeline, tickets=("TCK-3",))
    _signal(pipeline, completed, "alice", control_type="completion")
    _signal(
        pipeline, completed, "alice", control_type="validation", status="passed",
        done_criteria="tests pass",
    )  # fmt: skip
    _wait_status(pipeline, completed, "completed")
    assert (_status(pipeline, stopped), _status(pipeline, failed)) == ("stopped", "failed")

    def ids(**selector: Any) -> list[str]:
        return [
            r.run_id for r in snapshot.build(pipeline.engine, pipeline.settings, **selector).runs
        ]

    assert ids() == [active]
    assert ids(run_id=stopped) == [stopped]
    assert ids(run_id=failed) == [failed]
    assert sorted(ids(ticket="TCK-1")) == sorted([active, stopped])
    assert ids(run_id=completed) == [completed]
    assert ids(ticket="tck-3") == [completed, failed]  # newest first
    with pytest.raises(NotFound):
        ids(run_id="run-nope")
    with pytest.raises(NotFound):
        ids(ticket="TCK-404")


# No Redis to read ---------------------------------------------------------------------------------


def test_reading_the_snapshot_needs_no_redis(pipeline: Pipeline) -> None:
    run_id = _create(pipeline)
    _forum(pipeline, run_id)
    offline = settings_for(pipeline.settings.database_url, NO_BROKER_URL)
    engine = build_engine(offline)
    try:
        now = utcnow()
        alone = snapshot.build(engine, offline, run_id=run_id, now=now)
        every = snapshot.build(engine, offline, now=now)
    finally:
        engine.dispose()
    assert alone == snapshot.build(pipeline.engine, pipeline.settings, run_id=run_id, now=now)
    assert [r.run_id for r in every.runs] == [run_id]
    assert alone.runs[0].pending_guidance and alone.runs[0].open_threads
