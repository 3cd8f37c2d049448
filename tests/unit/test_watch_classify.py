"""Watch classification from hand-built snapshots: every class, its order, hints and exit codes."""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import Any

import pytest

from metawsm.domain.snapshot import (
    Blocker,
    EscalationItem,
    PendingGuidance,
    RunSnapshot,
    ThreadItem,
)
from metawsm.domain.watch import TERMINAL, WATCH_EXIT, classify
from tests.fixtures.snapshots import NOW, RID, agent


def guidance(name: str = "alice", question: str = "Which DB?", n: int = 1) -> PendingGuidance:
    """A guidance request asked five minutes ago."""
    return PendingGuidance(
        thread_id=f"fctrl-{name}",
        agent_name=name,
        question=question,
        context=None,
        asked_at=NOW - timedelta(minutes=5),
        age_s=300,
        request_event_id=f"fevt-{n}",
    )


def thread(thread_id: str = "t-1", state: str = "new") -> ThreadItem:
    """An open non-control thread, waiting for 40 minutes."""
    return ThreadItem(
        thread_id=thread_id,
        title="stuck",
        state=state,
        priority="normal",
        assignee_name=None,
        updated_at=NOW - timedelta(minutes=40),
        age_s=2400,
        is_unanswered=True,
    )


def escalation(thread_id: str = "t-1", tier: str = "operator", raised: bool = True) -> Any:
    """An escalation of ``thread_id`` to ``tier``."""
    return EscalationItem(
        thread_id=thread_id,
        tier=tier,
        reason=f"thread {thread_id} waited too long",
        subject="",
        since=NOW - timedelta(minutes=10),
        age_s=600,
        raised=raised,
    )


def snap(**fields: Any) -> RunSnapshot:
    """A healthy running run with one agent; ``fields`` override."""
    data: dict[str, Any] = {
        "run_id": RID,
        "status": "running",
        "mode": "run",
        "tickets": ["TCK-1"],
        "control_epoch": 1,
        "updated_at": NOW - timedelta(minutes=1),
        "brief": None,
        "agents": [agent()],
        "pending_guidance": [],
        "open_threads": [],
        "escalation_candidates": [],
        "escalations": [],
        "queue_counts": {},
        "unanswered_count": 0,
        "blockers": [],
        "last_event_sequence": 7,
        "last_event_at": NOW - timedelta(minutes=1),
        "generated_at": NOW,
    }
    data.update(fields)
    return RunSnapshot(**data)


# Each class, with its message, hint and terminal flag --------------------------------------------


def test_a_healthy_running_run_is_ok_with_no_hint() -> None:
    alert = classify(snap())
    assert (alert.run_id, alert.event, alert.hint, alert.terminal) == (RID, "ok", None, False)
    assert alert.message == f"run {RID} is running"


def test_a_failed_run_is_run_failed_and_the_hint_resumes_it() -> None:
    alert = classify(snap(status="failed"))
    assert (alert.event, alert.terminal) == ("run_failed", True)
    assert alert.hint == f"metawsm run resume --run-id {RID}"
    assert RID in alert.message


def test_a_stopped_run_is_run_stopped_and_the_hint_resumes_it() -> None:
    alert = classify(snap(status="stopped"))
    assert (alert.event, alert.terminal) == ("run_stopped", True)
    assert alert.hint == f"metawsm run resume --run-id {RID}"


def test_pending_guidance_is_guidance_needed_with_the_forum_signal_answer_command() -> None:
    alert = classify(snap(status="awaiting_guidance", pending_guidance=[guidance()]))
    assert (alert.event, alert.terminal) == ("guidance_needed", True)
    assert alert.message == "agent alice asks: Which DB?"
    assert alert.hint == (
        f"metawsm forum signal --run-id {RID} --agent-name alice"
        " --type guidance_answer --answer '<answer>'"
    )
    assert "forum answer" not in alert.hint


def test_guidance_needed_names_the_first_request_and_counts_the_others() -> None:
    alert = classify(
        snap(pending_guidance=[guidance("alice", "Q1?", 1), guidance("bob", "Q2?", 2)])
    )
    assert alert.message == "agent alice asks: Q1? (+1 more)"
    assert "--agent-name alice" in (alert.hint or "")


def test_the_guidance_hint_is_shell_quoted_so_it_splits_back_into_its_arguments() -> None:
    alert = classify(snap(pending_guidance=[guidance("bob's agent", "Why?")]))
    argv = shlex.split((alert.hint or "").replace("<answer>", "use $HOME; rm -rf /"))
    assert argv == [
        "metawsm", "forum", "signal", "--run-id", RID, "--agent-name", "bob's agent",
        "--type", "guidance_answer", "--answer", "use $HOME; rm -rf /",
    ]  # fmt: skip


def test_a_raised_escalation_is_sla_escalation_answered_on_its_thread() -> None:
    alert = classify(snap(open_threads=[thread("t-9")], escalations=[escalation("t-9", "human")]))
    assert (alert.event, alert.terminal) == ("sla_escalation", False)
    assert alert.message == "escalated to human: thread t-9 waited too long"
    assert alert.hint == "metawsm forum answer --thread-id t-9 --body '<answer>'"


def test_a_due_but_unraised_candidate_is_an_sla_escalation_too() -> None:
    candidate = escalation("t-3", "operator", raised=False)
    alert = classify(snap(open_threads=[thread("t-3")], escalation_candidates=[candidate]))
    assert alert.event == "sla_escalation"
    assert "--thread-id t-3" in (alert.hint or "")


def test_a_completed_run_whose_gates_pass_is_run_done_and_the_hint_closes_it() -> None:
    alert = classify(snap(status="completed"))
    assert (alert.event, alert.terminal) == ("run_done", True)
    assert alert.hint == f"metawsm close --run-id {RID}"


def test_a_completed_run_with_an_unmet_gate_points_at_run_why() -> None:
    gate = Blocker(kind="gate", reason="agent alice has no validation signal", fix="x")
    alert = classify(snap(status="completed", blockers=[gate]))
    assert alert.event == "run_done"
    assert alert.hint == f"metawsm run why --run-id {RID}"


def test_a_closed_run_is_run_done_with_nothing_left_to_do() -> None:
    alert = classify(snap(status="closed"))
    assert (alert.event, alert.hint, alert.terminal) == ("run_done", None, True)


@pytest.mark.parametrize("status", ["stalled", "failed", "dead"])
def test_an_unhealthy_agent_of_a_running_run_is_agent_unhealthy(status: str) -> None:
    alert = classify(snap(agents=[agent("alice"), agent("bob", status)]))
    assert (alert.event, alert.terminal) == ("agent_unhealthy", False)
    assert alert.message == f"agent bob is {status}"
    assert (
        alert.hint == f"metawsm run agent-status --run-id {RID} --agent-name bob --status running"
    )


def test_agent_unhealthy_names_the_first_agent_and_counts_the_others() -> None:
    alert = classify(snap(agents=[agent("a", "dead"), agent("b", "stalled")]))
    assert alert.message == "agent a is dead (+1 more)"


@pytest.mark.parametrize("status", ["paused", "planning", "stopping"])
def test_unhealthy_agents_of_a_run_that_is_not_running_are_not_alerted(status: str) -> None:
    assert classify(snap(status=status, agents=[agent("bob", "dead")])).event == "ok"


def test_idle_agents_are_healthy() -> None:
    assert classify(snap(agents=[agent("bob", "idle")])).event == "ok"


# Priority: first match wins ----------------------------------------------------------------------

ORDER = [
    "run_failed",
    "run_stopped",
    "guidance_needed",
    "sla_escalation",
    "run_done",
    "agent_unhealthy",
    "ok",
]


def _with_every_condition_from(event: str) -> RunSnapshot:
    """A snapshot meeting the condition of ``event`` and of every class below it."""
    below = ORDER[ORDER.index(event) :]
    status = "running"
    if "run_done" in below:
        status = "completed"  # run_done outranks agent_unhealthy, which needs 'running'
    if "run_stopped" in below:
        status = "stopped"
    if "run_failed" in below:
        status = "failed"
    return snap(
        status=status,
        agents=[agent("bob", "dead")] if "agent_unhealthy" in below else [agent()],
        pending_guidance=[guidance()] if "guidance_needed" in below else [],
        open_threads=[thread("t-1")],
        escalation_candidates=[escalation(raised=False)] if "sla_escalation" in below else [],
    )


@pytest.mark.parametrize("event", ORDER)
def test_each_class_outranks_every_class_below_it(event: str) -> None:
    assert classify(_with_every_condition_from(event)).event == event


def test_the_priority_ladder_when_every_condition_holds_at_once() -> None:
    everything = snap(
        status="failed",
        agents=[agent("bob", "stalled")],
        pending_guidance=[guidance()],
        open_threads=[thread("t-1")],
        escalations=[escalation()],
    )
    assert classify(everything).event == "run_failed"
    assert classify(everything._replace(**{"status": "stopped"})).event == "run_stopped"
    assert classify(everything._replace(**{"status": "running"})).event == ("guidance_needed")
    no_guidance = everything._replace(**{"status": "completed", "pending_guidance": []})
    assert classify(no_guidance).event == "sla_escalation"
    # Once the thread no longer waits, its (historic) escalation no longer outranks run_done.
    answered = no_guidance._replace(**{"open_threads": [thread("t-1", "answered")]})
    assert classify(answered).event == "run_done"
    running = answered._replace(**{"status": "running"})
    assert classify(running).event == "agent_unhealthy"


def test_a_resolved_escalation_no_longer_keeps_a_finished_run_from_run_done() -> None:
    # The guidance request escalated, was answered, and the run completed: watch must stop.
    resolved = EscalationItem(
        thread_id="fctrl-alice",
        tier="operator",
        reason="agent alice has waited 31 min for guidance: Which DB?",
        subject="fevt-1",
        since=NOW - timedelta(hours=1),
        age_s=3600,
        raised=True,
    )
    done = snap(status="completed", escalations=[resolved])
    assert classify(done).event == "run_done"
    closed_thread = snap(status="completed", escalations=[escalation("t-1")], open_threads=[])
    assert classify(closed_thread).event == "run_done"


def test_a_raised_escalation_of_a_thread_still_waiting_on_a_human_stays_alerted() -> None:
    still = snap(open_threads=[thread("t-1", "waiting_human")], escalations=[escalation("t-1")])
    assert classify(still).event == "sla_escalation"


# Terminal classes and exit codes -----------------------------------------------------------------


def test_watch_exit_codes_of_the_terminal_classes() -> None:
    assert WATCH_EXIT == {"run_done": 0, "run_failed": 1, "run_stopped": 5, "guidance_needed": 6}
    assert frozenset(WATCH_EXIT) == TERMINAL


@pytest.mark.parametrize("event", ORDER)
def test_a_class_is_terminal_exactly_when_it_has_a_watch_exit_code(event: str) -> None:
    alert = classify(_with_every_condition_from(event))
    assert alert.terminal is (event in WATCH_EXIT)
    assert alert.terminal is (event in TERMINAL)


@pytest.mark.parametrize("event", [e for e in ORDER if e != "ok"])
def test_every_class_but_a_closed_run_and_ok_carries_a_hint(event: str) -> None:
    alert = classify(_with_every_condition_from(event))
    assert alert.hint and alert.hint.startswith("metawsm ")
    assert RID in alert.hint or "--thread-id" in alert.hint
