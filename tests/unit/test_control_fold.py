"""Pure tests of the control fold, the lifecycle decision table and the run transition table."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest

from metawsm.domain.control import AgentControl, SignalRecord, fold_agent, is_done, target_status
from metawsm.domain.runs import RUN_TRANSITIONS, RunStatus, check_run_transition
from metawsm.errors import Rejected

R = RunStatus
T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Spec §5.1, written out again here so a change to the code's table is a visible decision.
SPEC_TRANSITIONS: dict[RunStatus, set[RunStatus]] = {
    R.CREATED: {R.PLANNING},
    R.PLANNING: {R.RUNNING, R.PAUSED, R.FAILED, R.STOPPING},
    R.RUNNING: {R.AWAITING_GUIDANCE, R.PAUSED, R.FAILED, R.COMPLETED, R.STOPPING},
    R.AWAITING_GUIDANCE: {R.RUNNING, R.FAILED, R.STOPPING},
    R.PAUSED: {R.RUNNING, R.STOPPING},
    R.FAILED: {R.RUNNING, R.STOPPING},
    R.STOPPING: {R.STOPPED},
    R.STOPPED: {R.RUNNING},
    R.COMPLETED: {R.CLOSING, R.RUNNING},
    R.CLOSING: {R.CLOSED, R.FAILED},
    R.CLOSED: set(),
}


class Thread:
    """Builds the signal records of one control thread, numbering them as the log does."""

    def __init__(self, thread_id: str = "fctrl-run-1-alice") -> None:
        self.thread_id = thread_id
        self.records: list[SignalRecord] = []

    def add(self, control_type: str, epoch: int = 1, **fields: str | None) -> SignalRecord:
        """Append one signal of ``control_type`` in ``epoch`` with its payload ``fields``."""
        seq = len(self.records) + 1
        record = SignalRecord(
            event_id=f"fevt-{seq:03d}",
            thread_id=self.thread_id,
            thread_seq=seq,
            epoch=epoch,
            occurred_at=T0 + timedelta(seconds=seq),
            control_type=control_type,
            fields=fields,
        )
        self.records.append(record)
        return record

    def fold(self, epoch: int = 1) -> AgentControl:
        """The agent's control state after every signal so far."""
        return fold_agent("alice", self.records, epoch)


def done_agent(name: str) -> AgentControl:
    return AgentControl(agent_name=name, completed=True, validation_status="passed")


def pending_agent(name: str) -> AgentControl:
    return AgentControl(agent_name=name, pending=True, question="which db?")


# fold_agent ------------------------------------------------------------------------------------


def test_no_signals_fold_to_an_idle_agent_without_a_thread() -> None:
    state = fold_agent("alice", [], 1)
    assert state == AgentControl(agent_name="alice")
    assert not is_done(state)


def test_a_guidance_request_makes_guidance_pending_with_its_question() -> None:
    thread = Thread()
    request = thread.add("guidance_request", question="Which DB?", context="migrating")
    state = thread.fold()
    assert (state.pending, state.question, state.context) == (True, "Which DB?", "migrating")
    assert (state.request_event_id, state.request_seq) == (request.event_id, 1)
    assert state.asked_at == request.occurred_at
    assert (state.thread_id, state.last_event_id) == (thread.thread_id, request.event_id)


def test_the_last_of_several_requests_is_the_pending_question() -> None:
    thread = Thread()
    thread.add("guidance_request", question="first?")
    second = thread.add("guidance_request", question="second?")
    state = thread.fold()
    assert (state.pending, state.question, state.request_event_id) == (
        True,
        "second?",
        second.event_id,
    )


def test_an_answer_clears_the_pending_guidance() -> None:
    thread = Thread()
    thread.add("guidance_request", question="Which DB?", context="ctx")
    answer = thread.add("guidance_answer", answer="SQLite")
    state = thread.fold()
    assert not state.pending
    assert (state.question, state.context, state.asked_at, state.request_event_id) == (
        None,
        None,
        None,
        None,
    )
    assert state.last_event_id == answer.event_id


def test_an_answer_without_a_request_leaves_nothing_pending() -> None:
    thread = Thread()
    thread.add("guidance_answer", answer="unprompted")
    assert not thread.fold().pending


def test_a_request_after_an_answer_is_pending_again() -> None:
    thread = Thread()
    thread.add("guidance_request", question="one?")
    thread.add("guidance_answer", answer="yes")
    thread.add("guidance_request", question="two?")
    state = thread.fold()
    assert (state.pending, state.question) == (True, "two?")


def test_completion_stays_once_signalled() -> None:
    thread = Thread()
    thread.add("completion", summary="done")
    thread.add("guidance_request", question="more?")
    thread.add("guidance_answer", answer="no")
    thread.add("validation", status="failed", done_criteria="tests pass")
    state = thread.fold()
    assert (state.completed, state.summary) == (True, "done")


def test_the_last_validation_wins_whichever_status_it_has() -> None:
    thread = Thread()
    thread.add("validation", status="failed", done_criteria="a")
    thread.add("validation", status=" PASSED ", done_criteria="  tests pass ")
    state = thread.fold()
    assert (state.validation_status, state.validation_done_criteria) == ("passed", "tests pass")
    thread.add("validation", status="failed", done_criteria="b")
    state = thread.fold()
    assert (state.validation_status, state.validation_done_criteria) == ("failed", "b")


def test_done_needs_both_completion_and_a_passed_validation() -> None:
    thread = Thread()
    thread.add("completion")
    assert not is_done(thread.fold())
    thread.add("validation", status="failed", done_criteria="c")
    assert not is_done(thread.fold())
    thread.add("validation", status="passed", done_criteria="c")
    assert is_done(thread.fold())
    only_validation = Thread()
    only_validation.add("validation", status="passed", done_criteria="c")
    assert not is_done(only_validation.fold())


def test_completion_and_validation_of_an_earlier_epoch_no_longer_count() -> None:
    thread = Thread()
    thread.add("completion", epoch=1, summary="v1")
    thread.add("validation", epoch=1, status="passed", done_criteria="c")
    assert is_done(thread.fold(epoch=1))
    state = thread.fold(epoch=2)
    assert (state.completed, state.summary, state.validation_status) == (False, None, None)
    assert not is_done(state)
    thread.add("completion", epoch=2, summary="v2")
    thread.add("validation", epoch=2, status="passed", done_criteria="c")
    state = thread.fold(epoch=2)
    assert (state.completed, state.summary, state.validation_status) == (True, "v2", "passed")


def test_a_later_epoch_validation_is_not_undone_by_an_old_one_arriving_late() -> None:
    thread = Thread()
    thread.add("validation", epoch=2, status="passed", done_criteria="c")
    thread.add("validation", epoch=1, status="failed", done_criteria="old")
    assert thread.fold(epoch=2).validation_status == "passed"


def test_a_pending_question_survives_a_new_epoch_and_an_answer_in_it_clears_it() -> None:
    thread = Thread()
    thread.add("guidance_request", epoch=1, question="still open?")
    state = thread.fold(epoch=2)
    assert (state.pending, state.question) == (True, "still open?")
    thread.add("guidance_answer", epoch=2, answer="yes")
    assert not thread.fold(epoch=2).pending


def test_an_unknown_control_type_changes_no_control_state() -> None:
    thread = Thread()
    thread.add("completion")
    before = thread.fold()
    thread.add("heartbeat")
    after = thread.fold()
    assert (after.completed, after.pending, after.validation_status) == (
        before.completed,
        before.pending,
        before.validation_status,
    )


def _story() -> Thread:
    thread = Thread()
    thread.add("guidance_request", epoch=1, question="q1")
    thread.add("completion", epoch=1, summary="first")
    thread.add("guidance_answer", epoch=1, answer="a1")
    thread.add("validation", epoch=1, status="failed", done_criteria="c")
    thread.add("validation", epoch=1, status="passed", done_criteria="c")
    thread.add("completion", epoch=2, summary="second")
    thread.add("guidance_request", epoch=2, question="q2", context="ctx")
    thread.add("validation", epoch=2, status="failed", done_criteria="c2")
    thread.add("guidance_answer", epoch=2, answer="a2")
    thread.add("guidance_request", epoch=2, question="q3")
    return thread


@pytest.mark.parametrize("epoch", [1, 2, 3])
def test_the_fold_does_not_depend_on_the_order_records_arrive_in(epoch: int) -> None:
    thread = _story()
    expected = thread.fold(epoch)
    rng = random.Random(epoch)
    for _ in range(50):
        shuffled = thread.records[:]
        rng.shuffle(shuffled)
        assert fold_agent("alice", shuffled, epoch) == expected
    assert fold_agent("alice", reversed(thread.records), epoch) == expected


def test_the_story_folds_to_the_expected_state() -> None:
    state = _story().fold(epoch=2)
    assert (state.pending, state.question, state.request_seq) == (True, "q3", 10)
    assert (state.completed, state.summary) == (True, "second")
    assert (state.validation_status, state.validation_done_criteria) == ("failed", "c2")
    assert state.last_event_id == "fevt-010"


# target_status: the decision table -------------------------------------------------------------

# (current, agents, an agent failed) -> statuses passed through
DECISIONS = [
    ("running", {"a": pending_agent("a")}, False, [R.AWAITING_GUIDANCE]),
    ("running", {"a": pending_agent("a"), "b": done_agent("b")}, False, [R.AWAITING_GUIDANCE]),
    ("running", {"a": done_agent("a"), "b": done_agent("b")}, False, [R.COMPLETED]),
    ("running", {"a": done_agent("a"), "b": AgentControl("b")}, False, []),
    ("running", {"a": AgentControl("a")}, False, []),
    ("running", {}, False, []),
    ("running", {"a": done_agent("a")}, True, [R.FAILED]),
    ("running", {"a": pending_agent("a")}, True, [R.FAILED]),
    ("awaiting_guidance", {"a": pending_agent("a")}, False, []),
    ("awaiting_guidance", {"a": pending_agent("a"), "b": done_agent("b")}, False, []),
    ("awaiting_guidance", {"a": done_agent("a")}, False, [R.RUNNING, R.COMPLETED]),
    ("awaiting_guidance", {"a": done_agent("a"), "b": AgentControl("b")}, False, [R.RUNNING]),
    ("awaiting_guidance", {"a": AgentControl("a")}, False, [R.RUNNING]),
    ("awaiting_guidance", {}, False, [R.RUNNING]),
    ("awaiting_guidance", {"a": pending_agent("a")}, True, [R.FAILED]),
    ("awaiting_guidance", {"a": done_agent("a")}, True, [R.FAILED]),
]


def _decision_id(current: str, agents: dict[str, AgentControl], failed: bool) -> str:
    def label(a: AgentControl) -> str:
        return "pending" if a.pending else ("done" if is_done(a) else "working")

    names = "+".join(label(a) for a in agents.values()) or "no-agents"
    return f"{current}-{names}{'-agent-failed' if failed else ''}"


@pytest.mark.parametrize(
    ("current", "agents", "failed", "expected"),
    DECISIONS,
    ids=[_decision_id(cur, agents, failed) for cur, agents, failed, _ in DECISIONS],
)
def test_the_decision_table(
    current: str, agents: dict[str, AgentControl], failed: bool, expected: list[RunStatus]
) -> None:
    path = target_status(RunStatus(current), agents, failed)
    assert path == expected
    # Every step of the path is an allowed transition.
    status = RunStatus(current)
    for step in path:
        check_run_transition("run-1", status, step)
        status = step


@pytest.mark.parametrize(
    "current", [s for s in RunStatus if s not in (R.RUNNING, R.AWAITING_GUIDANCE, R.COMPLETED)]
)
@pytest.mark.parametrize(
    "agents",
    [{"a": pending_agent("a")}, {"a": done_agent("a")}, {"a": AgentControl("a")}],
    ids=["pending", "done", "working"],
)
@pytest.mark.parametrize("failed", [False, True], ids=["ok", "failed"])
def test_signals_move_only_running_awaiting_guidance_or_completed_runs(
    current: RunStatus, agents: dict[str, AgentControl], failed: bool
) -> None:
    assert target_status(current, agents, failed) == []


@pytest.mark.parametrize(
    ("agents", "failed", "expected"),
    [
        ({"a": done_agent("a")}, False, []),
        ({"a": done_agent("a")}, True, []),
        ({"a": pending_agent("a")}, False, [R.RUNNING, R.AWAITING_GUIDANCE]),
        ({"a": AgentControl("a")}, False, [R.RUNNING]),
    ],
    ids=["still-done", "failed-agent-after-completion", "new-request", "not-done-any-more"],
)
def test_a_completed_run_follows_its_control_state_like_a_lagging_consumer_would(
    agents: dict[str, AgentControl], failed: bool, expected: list[RunStatus]
) -> None:
    assert target_status(R.COMPLETED, agents, failed) == expected


# check_run_transition: the whole table ---------------------------------------------------------


def test_the_transition_table_is_the_specified_one() -> None:
    assert {k: set(v) for k, v in RUN_TRANSITIONS.items()} == SPEC_TRANSITIONS
    assert set(RUN_TRANSITIONS) == set(RunStatus)


ALLOWED = [(a, b) for a in RunStatus for b in RunStatus if a is b or b in SPEC_TRANSITIONS[a]]
FORBIDDEN = [
    (a, b) for a, b in itertools.product(RunStatus, RunStatus) if (a, b) not in set(ALLOWED)
]


@pytest.mark.parametrize(("current", "target"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_every_allowed_transition_passes(current: RunStatus, target: RunStatus) -> None:
    check_run_transition("run-1", current, target)


@pytest.mark.parametrize(("current", "target"), FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_every_other_transition_is_rejected_naming_both_statuses(
    current: RunStatus, target: RunStatus
) -> None:
    with pytest.raises(Rejected) as info:
        check_run_transition("run-1", current, target)
    message = str(info.value)
    assert f"run run-1 cannot go from {current} to {target}" in message
    allowed = ", ".join(sorted(SPEC_TRANSITIONS[current])) or "none (final)"
    assert f"(allowed from {current}: {allowed})" in message


def test_a_closed_run_is_final() -> None:
    with pytest.raises(Rejected, match=r"allowed from closed: none \(final\)"):
        check_run_transition("run-1", R.CLOSED, R.RUNNING)
