"""The snapshot at scale: the same statements for 1, 10 and 100 runs, and the same content
whether a run is read alone or with every other run (varied runs on a real pipeline)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from metawsm.domain.snapshot import RunSnapshot
from metawsm.messages.common import Actor
from metawsm.services import escalation, lifecycle, runs, snapshot, snapshot_changes
from metawsm.services.deadletters import Failure, dead_letter
from metawsm.services.operator import operate_once
from metawsm.storage.types import utcnow
from tests.fixtures.pipeline import Pipeline, wait_until
from tests.fixtures.statements import counted_statements

OPERATOR = Actor(type="operator", name="olga")
BRIEF = runs.BriefInput(goal="ship it", scope="s", done_criteria="tests pass", constraints="c")


@pytest.fixture(autouse=True)
def settled(pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline, settled after the test (no message still in flight when it stops)."""
    yield pipeline
    pipeline.settle()


def counted(engine: Engine) -> Any:
    """The SQL statements this thread executes on ``engine`` while the block runs (not the
    in-process worker's, which shares the engine): through SQLAlchemy, and straight on the
    driver through a :class:`~metawsm.storage.dbapi.Reader` (the snapshot's reads), which
    SQLAlchemy's events do not see. The Reader's methods are wrapped, not replaced."""
    me = threading.get_ident()
    return counted_statements(engine, lambda _: threading.get_ident() == me)


def _failure(message_id: str, run_id: str) -> Failure:
    return Failure(message_id, "command", "forum.commands.add_post", "forum.commands.add_post",
                   {"command_type": "add_post"}, "boom", None, 5, run_id)  # fmt: skip


def _signal(p: Pipeline, run_id: str, agent: str, actor: str = "agent", **signal: Any) -> None:
    body = {"run_id": run_id, "agent_name": agent, **signal}
    p.submit(p.command("control_signal", actor, run_id=run_id, agent_name=agent, signal=body))


def _busy_runs(p: Pipeline, count: int, offset: int) -> list[str]:
    """``count`` runs, each with a pending question, a completed agent, an open thread of its
    own and a dead letter; submitted together, then settled."""
    made = []
    for i in range(offset, offset + count):
        run_id = p.create_run(OPERATOR, ("alice", "bob"), (f"TCK-{i % 3}",))
        _signal(p, run_id, "alice", control_type="guidance_request", question=f"q{i}?")
        _signal(p, run_id, "bob", control_type="completion", summary="done")
        opened = {"thread_id": f"t-{i}", "ticket": "TCK-1", "run_id": run_id, "body": "help"}
        p.submit(p.command("open_thread", "agent", agent_name="bob", title=f"t {i}", **opened))
        dead_letter(p.engine, _failure(f"dead-{i}", run_id))
        made.append(run_id)
    p.settle_moving()
    return made


# ~400 commands through the pipeline: 20 s on PostgreSQL on an idle machine, over a minute with
# four test processes on two cores. Its waits fail on a stuck message (settle_moving), not on time.
@pytest.mark.timeout(600)
def test_a_snapshot_issues_the_same_statements_for_1_10_and_100_runs(pipeline: Pipeline) -> None:
    later = utcnow() + timedelta(minutes=45)
    counts, made = {}, 0
    for n in (1, 10, 100):
        _busy_runs(pipeline, n - made, made)
        made = n
        # Half raised: escalations exist for the earlier runs, candidates for the newer ones.
        escalation.raise_due(pipeline.container.runtime, later - timedelta(minutes=10))
        pipeline.settle_moving()
        with counted(pipeline.engine) as seen:
            snap = snapshot.build(pipeline.engine, pipeline.settings, now=later)
        assert len(snap.runs) == n
        assert all(r.escalations and r.blockers and r.pending_guidance for r in snap.runs)
        counts[n] = len(seen)
    assert counts[1] == counts[10] == counts[100], counts


def test_the_sla_pass_issues_the_same_statements_for_1_and_30_runs(pipeline: Pipeline) -> None:
    rt = pipeline.container.runtime
    later = utcnow() + timedelta(minutes=45)
    counts = {}
    for n, offset in ((1, 0), (30, 1)):
        _busy_runs(pipeline, n if offset == 0 else n - 1, offset)
        assert escalation.raise_due(rt, later) > 0
        with counted(pipeline.engine) as seen:
            assert escalation.raise_due(rt, later) == 0  # nothing new: candidates only
        counts[n] = len(seen)
    assert counts[1] == counts[30], counts


def test_the_operator_pass_reads_a_fixed_number_of_statements(pipeline: Pipeline) -> None:
    rt = pipeline.container.runtime
    counts = {}
    made = 0
    for n in (2, 12):
        _busy_runs(pipeline, n - made, made)
        made = n
        operate_once(rt, run_id=None, mode="assist", dry_run=False, stale_after_s=3600)
        pipeline.settle()
        with counted(pipeline.engine) as seen:  # every decision already recorded: reads only
            acted = operate_once(rt, run_id=None, mode="assist", dry_run=False, stale_after_s=3600)
        assert len(acted) == n and not any(a.recorded for a in acted)
        counts[n] = len(seen)
    assert counts[2] == counts[12], counts


# Varied runs: each read alone and with all the others is the same, and is what happened -------


def _wait_status(p: Pipeline, run_id: str, status: str) -> None:
    def now_is() -> bool:
        return str(runs.run_rows(p.engine, run_id)[0]["status"]) == status

    wait_until(now_is, 15, f"run {run_id} to be {status}")


def _varied(p: Pipeline) -> dict[str, str]:
    rt = p.container.runtime
    ids = {
        "asking": p.create_run(OPERATOR, ("alice", "bob"), ("TCK-1",)),
        "quiet": p.create_run(OPERATOR, ("carl",), ("TCK-2",)),
        "boot": p.create_run(OPERATOR, ("dora",), ("TCK-3",), BRIEF),
        "stalled": p.create_run(OPERATOR, ("erin", "finn"), ("TCK-1",)),
        "stopped": p.create_run(OPERATOR, ("gus",), ("TCK-4",)),
        "done": p.create_run(OPERATOR, ("hal",), ("TCK-5",)),
    }
    _signal(p, ids["asking"], "alice", control_type="guidance_request", question="Which DB?")
    _signal(p, ids["asking"], "bob", control_type="completion", summary="ok")
    _signal(p, ids["asking"], "bob", control_type="validation", status="failed", done_criteria="x")
    _signal(p, ids["boot"], "dora", control_type="validation", status="passed",
            done_criteria="other criteria")  # fmt: skip
    for t, run in (("t-a1", "asking"), ("t-a2", "asking"), ("t-s1", "stalled")):
        p.submit(p.command("open_thread", "agent", thread_id=t, ticket="TCK-1", run_id=ids[run],
                           agent_name="alice", title=t, body="?", priority="high"))  # fmt: skip
    p.submit(p.command("open_thread", "agent", thread_id="t-a3", ticket="TCK-1",
                       run_id=ids["asking"], title="normal", body="?"))  # fmt: skip
    p.submit(p.command("open_thread", "agent", thread_id="t-free", ticket="TCK-1", title="f",
                       body="no run"))  # fmt: skip
    p.settle()
    p.run("answer_thread", thread_id="t-a2", body="yes")
    p.run("close_thread", thread_id="t-s1", reason="done")
    lifecycle.set_agent_status(rt, ids["stalled"], "finn", "stalled", OPERATOR)
    lifecycle.stop_run(rt, ids["stopped"], OPERATOR)
    _signal(p, ids["done"], "hal", control_type="completion", summary="ok")
    _signal(p, ids["done"], "hal", control_type="validation", status="passed", done_criteria="x")
    dead_letter(p.engine, _failure("dead-q", ids["quiet"]))
    dead_letter(p.engine, _failure("dead-gone", ids["quiet"]))
    p.settle()
    dead_letter(p.engine, _failure("dead-gone", ids["quiet"]))  # counted once
    from metawsm.services.deadletters import purge

    purge(p.engine, "dead-gone")
    _wait_status(p, ids["done"], "completed")
    _wait_status(p, ids["asking"], "awaiting_guidance")
    return ids


def _facts(run: RunSnapshot) -> dict[str, Any]:
    return {
        "status": run.status,
        "agents": [
            (a.agent_name, a.status, a.pending_guidance, a.completed, a.validation_status)
            for a in run.agents
        ],
        "asked": [(g.agent_name, g.question, g.age_s > 0) for g in run.pending_guidance],
        "open": sorted((t.thread_id, t.state, t.is_unanswered) for t in run.open_threads),
        "candidates": sorted(
            (c.thread_id, c.tier, bool(c.subject)) for c in run.escalation_candidates
        ),
        "raised": sorted((e.thread_id, e.tier) for e in run.escalations),
        "counts": run.queue_counts,
        "unanswered": run.unanswered_count,
        "blockers": [(b.kind, b.message_id) for b in run.blockers if b.kind == "dead_letter"],
        "gates": sorted(b.reason for b in run.blockers if b.kind == "gate"),
    }


def test_varied_runs_read_together_are_what_each_reads_alone_and_what_happened(
    pipeline: Pipeline,
) -> None:
    ids = _varied(pipeline)
    raised_at: datetime = utcnow() + timedelta(minutes=31)
    assert escalation.raise_due(pipeline.container.runtime, raised_at) > 0
    pipeline.settle()
    later = raised_at + timedelta(minutes=30)  # the human tier of what stayed normal
    every = snapshot.build(pipeline.engine, pipeline.settings, now=later).runs
    by_id = {r.run_id: r for r in every}
    assert sorted(by_id) == sorted(ids[k] for k in ("asking", "quiet", "boot", "stalled"))
    with_done = snapshot.build(pipeline.engine, pipeline.settings, now=later, with_completed=True)
    assert [r.run_id for r in with_done.runs] == [r.run_id for r in every] + [ids["done"]]
    for run_id in [*by_id, ids["stopped"], ids["done"]]:
        [alone] = snapshot.build(pipeline.engine, pipeline.settings, run_id=run_id, now=later).runs
        assert by_id.get(run_id, alone) == alone
        by_id[run_id] = alone
    facts = {name: _facts(by_id[run_id]) for name, run_id in ids.items()}
    asking, quiet, boot = facts["asking"], facts["quiet"], facts["boot"]
    assert asking["status"] == "awaiting_guidance"
    assert asking["agents"] == [
        ("alice", "running", True, False, None),
        ("bob", "running", False, True, "failed"),
    ]
    assert asking["asked"] == [("alice", "Which DB?", True)]
    assert asking["open"] == [
        ("t-a1", "new", True),
        ("t-a2", "answered", False),
        ("t-a3", "new", True),
    ]
    assert asking["counts"] == {"new": 2, "answered": 1} and asking["unanswered"] == 2
    alice_thread = by_id[ids["asking"]].agents[0].control_thread_id
    assert asking["raised"] == sorted(  # high priority reaches both tiers by 30 min
        [("t-a1", "operator"), ("t-a1", "human"), ("t-a3", "operator"), (alice_thread, "operator")]
    )
    assert asking["candidates"] == sorted([("t-a3", "human", False), (alice_thread, "human", True)])
    assert "agent bob validation status is 'failed', not 'passed'" in asking["gates"]
    assert quiet["blockers"] == [("dead_letter", "dead-q")] and quiet["open"] == []
    assert quiet["agents"] == [("carl", "running", False, False, None)]
    assert "agent dora validation done_criteria does not match the brief" in boot["gates"]
    assert by_id[ids["boot"]].brief is not None
    assert facts["stalled"]["agents"][1] == ("finn", "stalled", False, False, None)
    assert facts["stalled"]["open"] == [] and facts["stalled"]["counts"] == {"closed": 1}
    assert facts["stopped"]["status"] == "stopped"
    assert facts["done"]["status"] == "completed" and facts["done"]["gates"] == []
    last = by_id[ids["done"]]
    assert last.last_event_sequence > 0 and last.last_event_at is not None


# The loops' "anything new?" check ----------------------------------------------------------------


def test_a_loop_sees_a_change_of_a_run_but_not_forum_traffic_or_the_operators_own_notes(
    pipeline: Pipeline,
) -> None:
    engine, rt = pipeline.engine, pipeline.container.runtime
    run_id = pipeline.create_run(OPERATOR, ("alice",), ("TCK-1",))
    pipeline.settle()

    def changed_by(action: Any) -> bool:
        before = snapshot_changes.mark(engine)
        action()
        pipeline.settle()
        return snapshot_changes.runs_changed(engine, before, snapshot_changes.mark(engine))

    assert not changed_by(lambda: None)
    assert not changed_by(
        lambda: pipeline.run(
            "open_thread", "agent", thread_id="t-x", ticket="TCK-1", title="x", body="no run"
        )
    )
    assert not changed_by(
        lambda: operate_once(rt, run_id=run_id, mode="assist", dry_run=False, stale_after_s=1)
    )
    assert changed_by(
        lambda: pipeline.run(
            "open_thread",
            "agent",
            thread_id="t-r",
            ticket="TCK-1",
            title="r",
            body="of the run",
            run_id=run_id,
        )
    )
    assert changed_by(lambda: lifecycle.set_agent_status(rt, run_id, "alice", "stalled", OPERATOR))
    assert changed_by(lambda: dead_letter(engine, _failure("dead-x", run_id)))


def test_a_loop_rebuilds_for_changes_no_more_than_its_cpu_share_allows(pipeline: Pipeline) -> None:
    engine, rt = pipeline.engine, pipeline.container.runtime
    run_id = pipeline.create_run(OPERATOR, ("alice",), ("TCK-1",))
    pipeline.settle()
    refresher = snapshot_changes.Refresher(engine, refresh_s=3600)
    assert not refresher.due()
    refresher.rebuilt(None, utcnow(), took_s=60.0)  # a slow rebuild: quiet for 19 minutes
    lifecycle.set_agent_status(rt, run_id, "alice", "stalled", OPERATOR)
    assert not refresher.due()  # changed, but too soon after the last rebuild
    refresher.rebuilt(None, utcnow(), took_s=0.0)  # a cheap rebuild: no quiet time
    assert refresher.due()  # the change seen earlier is not forgotten
    assert not refresher.due()


def test_after_a_change_a_loop_rebuilds_once_more_for_its_projections_then_rests(
    pipeline: Pipeline,
) -> None:
    engine, rt = pipeline.engine, pipeline.container.runtime
    run_id = pipeline.create_run(OPERATOR, ("alice",), ("TCK-1",))
    pipeline.settle()
    refresher = snapshot_changes.Refresher(engine, refresh_s=3600)
    lifecycle.set_agent_status(rt, run_id, "alice", "stalled", OPERATOR)
    assert refresher.due()
    refresher.rebuilt(None, utcnow())
    settle_by = time.monotonic() + snapshot_changes.SETTLE_S + 5
    wait_until(refresher.due, 10, "the settle rebuild")
    assert time.monotonic() < settle_by
    refresher.rebuilt(None, utcnow())
    rest_until = time.monotonic() + snapshot_changes.SETTLE_S * 2
    while time.monotonic() < rest_until:  # a deadline, not a sleep: it must stay quiet
        assert not refresher.due()
