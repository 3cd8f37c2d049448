"""Folding control signals into each agent's control state, and the run status they imply.

Signals are folded per control thread in thread_seq order (a request makes guidance pending, an
answer clears it, completion stays, the last validation wins). Completion and validation count
only in the run's current control epoch; a pending question survives an iterate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from metawsm.domain.agent_control import AgentControl, control_in_epoch
from metawsm.domain.runs import RunStatus

__all__ = [
    "AgentControl",
    "ControlState",
    "SignalRecord",
    "advance",
    "control_at",
    "controls_at",
    "fold_agent",
    "fold_state",
    "is_done",
    "target_status",
]


@dataclass(frozen=True)
class SignalRecord:
    """One control signal as it sits in the event log."""

    event_id: str
    thread_id: str
    thread_seq: int
    epoch: int
    occurred_at: datetime
    control_type: str
    fields: Mapping[str, str | None]


def fold_agent(agent_name: str, records: Iterable[SignalRecord], epoch: int) -> AgentControl:
    """Fold one agent's signals (any order; sorted by thread_seq here)."""
    state = AgentControl(agent_name=agent_name)
    for r in sorted(records, key=lambda r: r.thread_seq):
        state.thread_id = r.thread_id
        state.last_signal_at, state.last_event_id = r.occurred_at, r.event_id
        if r.control_type == "guidance_request":
            state.pending, state.question = True, r.fields.get("question")
            state.context, state.asked_at = r.fields.get("context"), r.occurred_at
            state.request_event_id, state.request_seq = r.event_id, r.thread_seq
        elif r.control_type == "guidance_answer":
            state.pending, state.question, state.context = False, None, None
            state.asked_at, state.request_event_id = None, None
        elif r.epoch != epoch:
            continue  # completion and validation of an earlier epoch no longer count
        elif r.control_type == "completion":
            state.completed, state.summary = True, r.fields.get("summary")
        elif r.control_type == "validation":
            state.validation_status = (r.fields.get("status") or "").strip().lower()
            state.validation_done_criteria = (r.fields.get("done_criteria") or "").strip()
    return state


def is_done(state: AgentControl) -> bool:
    """An agent is done with a completion and a passed validation in the current epoch."""
    return state.completed and state.validation_status == "passed"


def target_status(
    current: RunStatus, agents: Mapping[str, AgentControl], agent_failed: bool
) -> list[RunStatus]:
    """The run statuses to pass through (empty: no change) given the agents' control state.

    Within running, awaiting_guidance and completed the status is a function of the folded
    control state alone, so a consumer that lags (or gets signals out of order) ends where one
    that kept up does: a guidance request after completion reopens the run.
    """
    if current not in (RunStatus.RUNNING, RunStatus.AWAITING_GUIDANCE, RunStatus.COMPLETED):
        return []
    if agent_failed:
        return [] if current is RunStatus.COMPLETED else [RunStatus.FAILED]
    pending = any(a.pending for a in agents.values())
    done = bool(agents) and all(is_done(a) for a in agents.values())
    want = (
        RunStatus.AWAITING_GUIDANCE
        if pending
        else RunStatus.COMPLETED
        if done
        else RunStatus.RUNNING
    )
    if want is current:
        return []
    # Every move between these three passes through running (see the transition table).
    path = [] if current is RunStatus.RUNNING else [RunStatus.RUNNING]
    return path if want is RunStatus.RUNNING else [*path, want]


@dataclass(frozen=True)
class ControlState:
    """One agent's control state as its signals leave it, whatever the run's epoch.

    The ``run_agent_controls`` read model stores one per (run, agent), advanced by each signal
    (:func:`advance`). Completion and validation keep the epoch they were signalled in; which
    count is decided when the state is read (:func:`control_at`), so a new epoch (``run
    iterate``) changes no row. Signals carry the run's epoch at the time they were posted, and
    epochs only grow: the newest completion of the highest epoch is the newest of the current
    one, if any.
    """

    agent_name: str
    thread_id: str | None = None
    pending: bool = False
    question: str | None = None
    context: str | None = None
    asked_at: datetime | None = None
    request_event_id: str | None = None
    request_seq: int = 0
    completion_epoch: int | None = None
    summary: str | None = None
    validation_epoch: int | None = None
    validation_status: str | None = None
    validation_done_criteria: str | None = None
    last_signal_at: datetime | None = None
    last_event_id: str | None = None
    last_thread_seq: int = 0


def advance(state: ControlState, r: SignalRecord) -> ControlState:
    """The state after signal ``r`` (one already folded, by its thread_seq, changes nothing)."""
    if r.thread_seq <= state.last_thread_seq:
        return state
    changes: dict[str, object] = {
        "thread_id": r.thread_id,
        "last_signal_at": r.occurred_at,
        "last_event_id": r.event_id,
        "last_thread_seq": r.thread_seq,
    }
    if r.control_type == "guidance_request":
        changes |= {
            "pending": True,
            "question": r.fields.get("question"),
            "context": r.fields.get("context"),
            "asked_at": r.occurred_at,
            "request_event_id": r.event_id,
            "request_seq": r.thread_seq,
        }
    elif r.control_type == "guidance_answer":
        changes |= {"pending": False, "question": None, "context": None, "asked_at": None}
        changes |= {"request_event_id": None}
    elif r.control_type == "completion" and _not_older(r.epoch, state.completion_epoch):
        changes |= {"completion_epoch": r.epoch, "summary": r.fields.get("summary")}
    elif r.control_type == "validation" and _not_older(r.epoch, state.validation_epoch):
        changes |= {
            "validation_epoch": r.epoch,
            "validation_status": (r.fields.get("status") or "").strip().lower(),
            "validation_done_criteria": (r.fields.get("done_criteria") or "").strip(),
        }
    return _changed(state, changes)


def _changed(state: ControlState, changes: dict[str, object]) -> ControlState:
    """``dataclasses.replace(state, **changes)``: the changed fields over a copy of the others.

    ``replace`` passes all 16 fields through ``__init__`` again (~8 us; a rebuild folds every
    signal of the log); a ControlState has no ``__post_init__`` to run, so the copy is the same
    record. ``changes`` holds field names only (written above).
    """
    new = object.__new__(ControlState)
    new.__dict__.update(state.__dict__)
    new.__dict__.update(changes)
    return new


def _not_older(epoch: int, held: int | None) -> bool:
    return held is None or epoch >= held


def fold_state(agent_name: str, records: Iterable[SignalRecord]) -> ControlState:
    """:func:`advance` over one agent's signals (any order; sorted by thread_seq here)."""
    state = ControlState(agent_name=agent_name)
    for r in sorted(records, key=lambda r: r.thread_seq):
        state = advance(state, r)
    return state


def control_at(state: ControlState, epoch: int) -> AgentControl:
    """The agent's control state in the run's current ``epoch`` (what :func:`fold_agent` gives
    for the same signals)."""
    return control_in_epoch(epoch, *(getattr(state, name) for name in _SHOWN_FIELDS))


# Every field of ControlState but the last thread sequence folded, in order (the parameters of
# control_in_epoch after the epoch).
_SHOWN_FIELDS = tuple(ControlState.__dataclass_fields__)[:-1]


def controls_at(
    agents: Iterable[str], states: Mapping[str, ControlState], epoch: int
) -> dict[str, AgentControl]:
    """Every agent's control state in ``epoch`` (an agent without a control thread: empty)."""
    return {
        name: control_at(states[name], epoch) if name in states else AgentControl(name)
        for name in agents
    }
