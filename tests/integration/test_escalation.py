"""SLA escalation on beat: once per (thread, tier, subject), even with two beats racing."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import select

from metawsm.messages.common import Actor
from metawsm.services import escalation, runs, snapshot
from metawsm.storage.models import ForumEscalation, ForumEvent
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import Pipeline

OPERATOR = Actor(type="operator", name="olga")


def _escalations(p: Pipeline) -> list[tuple[str, str, str]]:
    with unit_of_work(p.engine, readonly=True) as s:
        rows = s.execute(
            select(
                ForumEscalation.thread_id, ForumEscalation.tier, ForumEscalation.subject
            ).order_by(ForumEscalation.id)
        ).all()
    return [tuple(r) for r in rows]


def _two_beats(p: Pipeline, now: datetime) -> int:
    results: list[int] = []
    barrier = threading.Barrier(2)

    def beat() -> None:
        barrier.wait()
        results.append(escalation.raise_due(p.container.runtime, now))

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sum(results)


def test_escalation_fires_exactly_once_per_tier_with_two_beats_while_the_clock_moves(
    pipeline: Pipeline,
) -> None:
    assert (
        pipeline.run(
            "open_thread", actor="agent", thread_id="t-sla", ticket="T", title="stuck", body="help"
        ).status
        == "applied"
    )
    pipeline.run(
        "open_thread", actor="agent", thread_id="t-tri", ticket="T", title="triaged", body="x"
    )
    pipeline.run("change_state", thread_id="t-tri", to_state="triaged")
    pipeline.settle()
    start = utcnow()
    assert _two_beats(pipeline, start + timedelta(minutes=5)) == 0
    assert _two_beats(pipeline, start + timedelta(minutes=31)) == 1
    assert _two_beats(pipeline, start + timedelta(minutes=45)) == 0
    assert _two_beats(pipeline, start + timedelta(minutes=61)) == 1
    assert _two_beats(pipeline, start + timedelta(minutes=300)) == 0
    assert _escalations(pipeline) == [("t-sla", "operator", ""), ("t-sla", "human", "")]
    pipeline.settle()
    with unit_of_work(pipeline.engine, readonly=True) as s:
        events = s.execute(
            select(ForumEvent.thread_id, ForumEvent.payload)
            .where(ForumEvent.event_type == "forum.sla.escalation_requested")
            .order_by(ForumEvent.sequence)
        ).all()
    assert [(t, p["tier"]) for t, p in events] == [("t-sla", "operator"), ("t-sla", "human")]


def test_urgent_threads_escalate_to_the_operator_at_once(pipeline: Pipeline) -> None:
    pipeline.run(
        "open_thread",
        actor="agent",
        thread_id="t-urgent",
        ticket="T",
        title="fire",
        body="x",
        priority="urgent",
    )
    pipeline.settle()
    assert _two_beats(pipeline, utcnow()) == 1
    assert _escalations(pipeline) == [("t-urgent", "operator", "")]


def test_pending_guidance_escalates_per_request_and_shows_in_the_snapshot(
    pipeline: Pipeline,
) -> None:
    run_id = runs.create_run(
        pipeline.container.runtime,
        tickets=["T"],
        agents=["alice"],
        mode="run",
        brief=None,
        actor=OPERATOR,
    )
    signal = {
        "control_type": "guidance_request",
        "run_id": run_id,
        "agent_name": "alice",
        "question": "which?",
    }
    asked = pipeline.run(
        "control_signal", actor="agent", run_id=run_id, agent_name="alice", signal=signal
    )
    assert asked.status == "applied"
    pipeline.settle()
    later = utcnow() + timedelta(minutes=31)
    snap = snapshot.build(pipeline.engine, pipeline.settings, run_id=run_id, now=later)
    [candidate] = snap.runs[0].escalation_candidates
    assert (candidate.tier, candidate.agent_name, candidate.raised) == ("operator", "alice", False)
    assert _two_beats(pipeline, later) == 1
    snap = snapshot.build(pipeline.engine, pipeline.settings, run_id=run_id, now=later)
    assert snap.runs[0].escalation_candidates == []
    assert [(e.tier, e.raised) for e in snap.runs[0].escalations] == [("operator", True)]
    assert snap.runs[0].escalations[0].subject.startswith("fevt-")


def test_a_thread_closed_but_not_yet_projected_is_not_escalated(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    with p.inprocess_worker():
        opened = p.run(
            "open_thread", actor="agent", thread_id="t-1", ticket="T", title="x", body="y",
            priority="urgent",
        )  # fmt: skip
        assert opened.status == "applied"
        p.settle()
    with p.inprocess_worker(role="commands"):  # the close is applied; no projector runs
        assert p.run("close_thread", thread_id="t-1").status == "applied"
    # The read model still says "new": it is a candidate, but the command side says closed.
    assert [c.thread_id for c in _candidates(p)] == ["t-1"]
    assert escalation.raise_due(p.container.runtime, utcnow()) == 0
    assert _escalations(p) == []


def test_a_thread_answered_but_not_yet_projected_is_not_escalated(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    with p.inprocess_worker():
        p.run(
            "open_thread", actor="agent", thread_id="t-1", ticket="T", title="x", body="y",
            priority="urgent",
        )  # fmt: skip
        p.settle()
    with p.inprocess_worker(role="commands"):
        assert p.run("answer_thread", thread_id="t-1", body="done").status == "applied"
    assert escalation.raise_due(p.container.runtime, utcnow()) == 0
    assert _escalations(p) == []


def _candidates(p: Pipeline) -> list[escalation.Candidate]:
    with unit_of_work(p.engine, readonly=True) as s:
        return escalation.pending_candidates(s, p.settings, utcnow())
