"""Operator decisions from hand-built snapshots: each intent, what executes, and fingerprints."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from metawsm.domain.operator import INTENTS, Decision, decide
from metawsm.domain.snapshot import (
    Blocker,
    EscalationItem,
    PendingGuidance,
    RunSnapshot,
    ThreadItem,
)
from tests.fixtures.snapshots import NOW, RID, agent

STALE_S = 3600
MODES = ["observe", "assist", "auto"]


def guidance(name: str = "alice", event_id: str = "fevt-1", age_s: int = 60) -> PendingGuidance:
    """A guidance request asked ``age_s`` seconds before NOW."""
    return PendingGuidance(
        thread_id=f"fctrl-{name}",
        agent_name=name,
        question="Which DB?",
        context=None,
        asked_at=NOW - timedelta(seconds=age_s),
        age_s=age_s,
        request_event_id=event_id,
    )


def dead_letter(message_id: str = "cmd-1", error: str = "boom") -> Blocker:
    """A dead letter of the run."""
    return Blocker(
        kind="dead_letter",
        reason=f"dead letter on forum.commands.add_post: {error}",
        fix=f"metawsm dlq redrive {message_id}",
        message_id=message_id,
    )


GATE = Blocker(kind="gate", reason="agent alice has no validation signal", fix="metawsm ...")


def snap(idle_s: int = 60, **fields: Any) -> RunSnapshot:
    """A healthy running run whose last event was ``idle_s`` seconds before NOW."""
    data: dict[str, Any] = {
        "run_id": RID,
        "status": "running",
        "mode": "run",
        "tickets": ["TCK-1"],
        "control_epoch": 1,
        "updated_at": NOW - timedelta(seconds=idle_s),
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
        "last_event_at": NOW - timedelta(seconds=idle_s),
        "generated_at": NOW,
    }
    data.update(fields)
    return RunSnapshot(**data)


def run_decide(run: RunSnapshot, mode: str = "assist", now: datetime = NOW) -> Decision:
    """decide() with the default stale threshold."""
    return decide(run, mode=mode, now=now, stale_after_s=STALE_S)


def test_the_intents_are_the_documented_five() -> None:
    assert INTENTS == ("escalate_guidance", "escalate_blocked", "close_ready", "stale_run", "noop")


# escalate_guidance ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_pending_guidance_escalates_with_the_answer_command_and_never_executes(mode: str) -> None:
    d = run_decide(snap(status="awaiting_guidance", pending_guidance=[guidance()]), mode)
    assert (d.run_id, d.intent, d.executes) == (RID, "escalate_guidance", False)
    assert d.reason == "operator input is required: Which DB?"
    assert d.command == (
        f"metawsm forum signal --run-id {RID} --agent-name alice"
        " --type guidance_answer --answer '<answer>'"
    )


def test_guidance_outranks_blockers_and_a_completed_run() -> None:
    run = snap(
        status="completed",
        pending_guidance=[guidance()],
        agents=[agent("bob", "dead")],
        blockers=[dead_letter()],
    )
    assert run_decide(run, "auto").intent == "escalate_guidance"


# escalate_blocked ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["failed", "stalled", "dead"])
def test_an_unhealthy_agent_escalates_as_blocked(status: str) -> None:
    d = run_decide(snap(agents=[agent("alice"), agent("bob", status)]), "auto")
    assert (d.intent, d.executes) == ("escalate_blocked", False)
    assert d.reason == "unhealthy agents: bob"
    assert d.command == f"metawsm run show --run-id {RID}"


def test_a_dead_letter_of_the_run_escalates_as_blocked() -> None:
    d = run_decide(snap(blockers=[dead_letter("cmd-1"), dead_letter("cmd-2")]), "auto")
    assert (d.intent, d.executes) == ("escalate_blocked", False)
    assert d.reason == "dead letters: 2"


def test_a_failed_run_escalates_as_blocked() -> None:
    d = run_decide(snap(status="failed"), "auto")
    assert (d.intent, d.executes, d.reason) == ("escalate_blocked", False, "run failed")


def test_a_blocked_reason_names_every_cause() -> None:
    run = snap(status="failed", agents=[agent("b", "dead"), agent("a", "failed")])
    run = run._replace(**{"blockers": [dead_letter()]})
    assert run_decide(run).reason == "unhealthy agents: a, b; dead letters: 1; run failed"


def test_a_completed_run_with_a_dead_letter_is_blocked_not_ready_to_close() -> None:
    d = run_decide(snap(status="completed", blockers=[dead_letter()]), "auto")
    assert (d.intent, d.executes) == ("escalate_blocked", False)


# close_ready -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "executes"), [("observe", False), ("assist", False), ("auto", True)]
)
def test_a_completed_run_whose_gates_pass_is_close_ready_executed_only_in_auto(
    mode: str, executes: bool
) -> None:
    d = run_decide(snap(status="completed", idle_s=10 * STALE_S), mode)
    assert (d.intent, d.executes) == ("close_ready", executes)
    assert d.command == f"metawsm close --run-id {RID}"


def test_a_completed_run_with_an_unmet_gate_is_not_close_ready() -> None:
    d = run_decide(snap(status="completed", blockers=[GATE]), "auto")
    assert (d.intent, d.executes, d.command) == ("noop", False, None)


@pytest.mark.parametrize("status", ["running", "closed", "stopped", "paused", "awaiting_guidance"])
def test_only_a_completed_run_is_close_ready(status: str) -> None:
    assert run_decide(snap(status=status), "auto").intent != "close_ready"


# stale_run -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["running", "awaiting_guidance"])
def test_a_run_with_no_event_for_stale_after_s_is_stale(status: str) -> None:
    d = run_decide(snap(status=status, idle_s=STALE_S), "auto")
    assert (d.intent, d.executes) == ("stale_run", False)
    assert d.reason == "no event for 60 min"
    assert d.command == f"metawsm run show --run-id {RID}"


def test_a_run_one_second_short_of_stale_after_s_is_not_stale() -> None:
    assert run_decide(snap(idle_s=STALE_S - 1)).intent == "noop"


def test_without_any_event_the_run_update_time_is_the_clock() -> None:
    run = snap(last_event_at=None, updated_at=NOW - timedelta(seconds=STALE_S + 5))
    assert run_decide(run).intent == "stale_run"
    assert run_decide(run._replace(**{"updated_at": NOW})).intent == "noop"


@pytest.mark.parametrize("status", ["paused", "stopped", "planning", "closed"])
def test_runs_not_driven_by_agents_are_never_stale(status: str) -> None:
    assert run_decide(snap(status=status, idle_s=100 * STALE_S)).intent == "noop"


def test_the_stale_threshold_is_a_parameter() -> None:
    run = snap(idle_s=120)
    assert decide(run, mode="assist", now=NOW, stale_after_s=60).intent == "stale_run"
    assert decide(run, mode="assist", now=NOW, stale_after_s=600).intent == "noop"


# noop --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_a_healthy_busy_run_is_noop(mode: str) -> None:
    d = run_decide(snap(), mode)
    assert (d.intent, d.command, d.executes) == ("noop", None, False)
    assert d.reason == "run is running"


def test_an_sla_escalation_alone_is_no_operator_intent() -> None:
    item = EscalationItem(
        thread_id="t-1",
        tier="operator",
        reason="waited",
        subject="",
        since=NOW,
        age_s=0,
        raised=True,
    )
    assert run_decide(snap(escalations=[item])).intent == "noop"


# Fingerprints: unchanged while nothing relevant changes ----------------------------------------

OPEN = ThreadItem(
    thread_id="t-1",
    title="t",
    state="new",
    priority="normal",
    assignee_name=None,
    updated_at=NOW,
    age_s=0,
    is_unanswered=True,
)


def _later(run: RunSnapshot, minutes: int = 5) -> RunSnapshot:
    """The same facts observed later: ages grew, other counters moved."""
    return run._replace(
        **{
            "generated_at": run.generated_at + timedelta(minutes=minutes),
            "pending_guidance": [
                g._replace(**{"age_s": g.age_s + 60 * minutes}) for g in run.pending_guidance
            ],
            "open_threads": [OPEN],
            "queue_counts": {"new": 1},
            "unanswered_count": 1,
        }
    )


CASES = {
    "escalate_guidance": snap(status="awaiting_guidance", pending_guidance=[guidance()]),
    "escalate_blocked": snap(agents=[agent("bob", "dead")], blockers=[dead_letter()]),
    "close_ready": snap(status="completed"),
    "stale_run": snap(idle_s=2 * STALE_S),
    "noop": snap(),
}


@pytest.mark.parametrize("intent", sorted(CASES))
def test_the_fingerprint_stays_the_same_when_nothing_relevant_changes(intent: str) -> None:
    run = CASES[intent]
    first = run_decide(run)
    again = run_decide(_later(run), now=NOW + timedelta(minutes=5))
    assert first.intent == again.intent == intent
    assert first.fingerprint == again.fingerprint
    assert len(first.fingerprint) == 16


@pytest.mark.parametrize("intent", sorted(set(CASES) - {"close_ready"}))
def test_a_decision_that_never_executes_has_the_same_fingerprint_in_every_mode(intent: str) -> None:
    assert len({run_decide(CASES[intent], mode).fingerprint for mode in MODES}) == 1


def test_close_ready_that_executes_differs_from_close_ready_that_does_not() -> None:
    # An assist operator's note must not keep a later auto operator from closing the run.
    run = CASES["close_ready"]
    observe, assist, auto = (run_decide(run, mode).fingerprint for mode in MODES)
    assert observe == assist != auto


def test_a_new_guidance_request_changes_the_fingerprint() -> None:
    run = CASES["escalate_guidance"]
    first = run_decide(run).fingerprint
    second_request = run._replace(**{"pending_guidance": [guidance("alice", "fevt-2", age_s=1)]})
    another_agent = run._replace(**{"pending_guidance": [guidance(), guidance("bob", "fevt-3")]})
    prints = {first, run_decide(second_request).fingerprint, run_decide(another_agent).fingerprint}
    assert len(prints) == 3


def test_another_blocker_changes_the_blocked_fingerprint() -> None:
    run = CASES["escalate_blocked"]
    first = run_decide(run).fingerprint
    more_sick = run._replace(**{"agents": [agent("bob", "dead"), agent("carl", "stalled")]})
    more_dead = run._replace(**{"blockers": [dead_letter(), dead_letter("cmd-2")]})
    now_failed = run._replace(**{"status": "failed"})
    prints = [run_decide(r).fingerprint for r in (run, more_sick, more_dead, now_failed)]
    assert prints[0] == first
    assert len(set(prints)) == 4


def test_the_same_blocker_with_another_error_text_keeps_the_fingerprint() -> None:
    run = CASES["escalate_blocked"]
    reworded = run._replace(**{"blockers": [dead_letter("cmd-1", "other words")]})
    assert run_decide(run).fingerprint == run_decide(reworded).fingerprint


def test_a_new_event_changes_the_stale_fingerprint() -> None:
    run = CASES["stale_run"]
    moved = run._replace(**{"last_event_sequence": run.last_event_sequence + 1})
    assert run_decide(run).fingerprint != run_decide(moved).fingerprint


def test_a_change_of_intent_changes_the_fingerprint() -> None:
    prints = {run_decide(run).fingerprint for run in CASES.values()}
    assert len(prints) == len(CASES)


def test_a_fingerprint_is_the_sha256_of_the_canonical_json_whichever_module_computes_it() -> None:
    # domain/operator.py takes SHA-256 from the interpreter's own module, not hashlib's OpenSSL:
    # the fingerprints recorded before must stay the same.
    import hashlib
    import json

    from metawsm.domain.operator import _fingerprint

    facts = ["fevt-2", "fevt-1", {"b": 1, "a": "ü"}]
    text = json.dumps(["escalate_guidance", facts], sort_keys=True, default=str)
    assert (
        _fingerprint("escalate_guidance", facts) == hashlib.sha256(text.encode()).hexdigest()[:16]
    )


# The operator decides from snapshot_parts.decision_snapshot (its runs without threads,
# escalations and counts): every decision must be the one made from the whole snapshot.


@pytest.mark.parametrize("seed", range(200))
def test_a_decision_from_the_decision_snapshot_is_the_one_from_the_whole_snapshot(
    seed: int,
) -> None:
    import random

    from metawsm.services.snapshot import snapshot_of
    from metawsm.services.snapshot_reads import RunRow
    from metawsm.settings import Settings
    from tests.unit.test_snapshot_json import BASE, _document, _text, _time

    rng = random.Random(seed)
    settings = Settings(database_url="sqlite:///unused.db", sla_minutes=rng.choice([1, 30, 600]))
    runs = []
    for _ in range(rng.randint(1, 6)):
        status = rng.choice(["running", "awaiting_guidance", "completed", "failed", "stopped"])
        doc = _document(rng, status)
        if rng.random() < 0.5:  # no guidance pending: the other intents get their turn
            doc[6] = []
        for agent_row in doc[5]:
            agent_row[1] = rng.choice(["running", "done", "failed", "stalled", "dead"])
        tickets = [_text(rng) for _ in range(rng.randint(0, 2))]
        runs.append((RunRow(_text(rng), status, "run", tickets, 1, _time(rng), 0), doc))
    whole = snapshot_of(runs, settings, BASE).runs
    decided_from = snapshot_of(runs, settings, BASE, for_decisions=True).runs
    for mode in MODES:
        stale_s = rng.choice([1, 3600, 10**9])
        assert [decide(r, mode=mode, now=BASE, stale_after_s=stale_s) for r in decided_from] == [
            decide(r, mode=mode, now=BASE, stale_after_s=stale_s) for r in whole
        ]
