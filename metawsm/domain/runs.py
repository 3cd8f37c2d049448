"""Run rules: statuses and the transitions allowed between them (spec §5.1)."""

from __future__ import annotations

from enum import StrEnum

from metawsm.errors import Rejected


class RunStatus(StrEnum):
    """Statuses of a run."""

    CREATED = "created"
    PLANNING = "planning"
    RUNNING = "running"
    AWAITING_GUIDANCE = "awaiting_guidance"
    PAUSED = "paused"
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CLOSING = "closing"
    CLOSED = "closed"
    COMPLETED = "completed"


R = RunStatus
RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    R.CREATED: frozenset({R.PLANNING}),
    R.PLANNING: frozenset({R.RUNNING, R.PAUSED, R.FAILED, R.STOPPING}),
    R.RUNNING: frozenset({R.AWAITING_GUIDANCE, R.PAUSED, R.FAILED, R.COMPLETED, R.STOPPING}),
    R.AWAITING_GUIDANCE: frozenset({R.RUNNING, R.FAILED, R.STOPPING}),
    R.PAUSED: frozenset({R.RUNNING, R.STOPPING}),
    R.FAILED: frozenset({R.RUNNING, R.STOPPING}),
    R.STOPPING: frozenset({R.STOPPED}),
    R.STOPPED: frozenset({R.RUNNING}),
    R.COMPLETED: frozenset({R.CLOSING, R.RUNNING}),
    R.CLOSING: frozenset({R.CLOSED, R.FAILED}),
    R.CLOSED: frozenset(),
}
ACTIVE = frozenset({R.PLANNING, R.RUNNING, R.AWAITING_GUIDANCE, R.PAUSED, R.STOPPING, R.CLOSING})
TERMINAL = frozenset({R.COMPLETED, R.CLOSED, R.FAILED, R.STOPPED})
# Statuses in which control signals move the run.
SIGNAL_DRIVEN = frozenset({R.RUNNING, R.AWAITING_GUIDANCE})


def check_run_transition(run_id: str, current: RunStatus, target: RunStatus) -> None:
    """Raise :class:`Rejected` unless ``current -> target`` is allowed."""
    if target is current:
        return
    if target not in RUN_TRANSITIONS[current]:
        allowed = ", ".join(sorted(RUN_TRANSITIONS[current])) or "none (final)"
        raise Rejected(
            f"run {run_id} cannot go from {current} to {target} (allowed from {current}: {allowed})"
        )
