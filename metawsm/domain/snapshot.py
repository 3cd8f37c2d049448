"""The typed snapshot: what watch, operator and status decide and render from.

Pure data (pydantic, snake_case JSON). Built by metawsm.services.snapshot from the database
alone; nothing here parses text.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from metawsm.domain.sla import ESCALATING_STATES, tiers_for


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """The model from values already of the right types, every field given, unvalidated.

        For the snapshot builder: its values come typed from the database and its own folds,
        and validating (or even ``model_construct``-ing) the ten thousand small models of a
        1,000-run snapshot costs more than reading them. ``tests/unit/test_snapshot_trusted.py``
        checks the result equals the validated model.
        """
        if values.keys() != cls.__pydantic_fields__.keys():
            raise TypeError(f"{cls.__name__}.trusted needs exactly its fields: {sorted(values)}")
        model = _new(cls)
        _set(model, "__dict__", values)
        _set(model, "__pydantic_fields_set__", set(values))
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model


_set = object.__setattr__  # frozen models refuse their own __setattr__
_new = object.__new__  # BaseModel has no __new__ of its own


class AgentSnapshot(_Model):
    """One agent of a run: its status and control state."""

    agent_name: str
    status: str
    last_signal_at: datetime | None
    pending_guidance: bool
    completed: bool
    validation_status: str | None
    control_thread_id: str | None


class PendingGuidance(_Model):
    """A guidance request still waiting for its answer."""

    thread_id: str
    agent_name: str
    question: str
    context: str | None
    asked_at: datetime
    age_s: int
    request_event_id: str


class ThreadItem(_Model):
    """An open, non-control thread of the run."""

    thread_id: str
    title: str
    state: str
    priority: str
    assignee_name: str | None
    updated_at: datetime
    age_s: int
    is_unanswered: bool


class EscalationItem(_Model):
    """An escalation: a candidate past its SLA, or one already raised."""

    thread_id: str
    tier: str
    reason: str
    subject: str
    since: datetime
    age_s: int
    raised: bool
    agent_name: str | None = None


class Blocker(_Model):
    """Something that keeps the run from closing: an unmet gate or a dead letter."""

    kind: str
    reason: str
    fix: str | None = None
    message_id: str | None = None


class BriefSummary(_Model):
    """The bootstrap brief, in short."""

    goal: str
    done_criteria: str


class RunSnapshot(_Model):
    """Everything known about one run at ``generated_at``."""

    run_id: str
    status: str
    mode: str
    tickets: list[str]
    control_epoch: int
    updated_at: datetime
    brief: BriefSummary | None
    agents: list[AgentSnapshot]
    pending_guidance: list[PendingGuidance]
    open_threads: list[ThreadItem]
    escalation_candidates: list[EscalationItem]
    escalations: list[EscalationItem]
    queue_counts: dict[str, int]
    unanswered_count: int
    blockers: list[Blocker]
    last_event_sequence: int
    last_event_at: datetime | None
    generated_at: datetime


class Snapshot(_Model):
    """Snapshots of the selected runs."""

    generated_at: datetime
    runs: list[RunSnapshot]


def next_due(
    snap: Snapshot, *, sla_minutes: int, human_minutes: int, stale_after_s: int | None = None
) -> datetime | None:
    """When the next decision that changes with the clock alone falls due (None: none will).

    The data of ``snap`` staying the same, what watch and operator decide changes only when a
    waiting thread or guidance request reaches its next SLA tier, or (``stale_after_s``) a
    signal-driven run has been idle that long. A loop rebuilds then, not on every tick.
    """
    times: list[datetime] = []
    for run in snap.runs:
        for thread in run.open_threads:
            if thread.state in ESCALATING_STATES:
                times += _tier_times(thread.updated_at, thread.priority, sla_minutes, human_minutes)
        for asked in run.pending_guidance:
            times += _tier_times(asked.asked_at, "normal", sla_minutes, human_minutes)
        if stale_after_s is not None and run.status in ("running", "awaiting_guidance"):
            idle_since = run.last_event_at or run.updated_at
            times.append(idle_since + timedelta(seconds=stale_after_s))
    future = [t for t in times if t > snap.generated_at]
    return min(future) if future else None


def _tier_times(
    since: datetime, priority: str, sla_minutes: int, human_minutes: int
) -> list[datetime]:
    tiers = tiers_for(priority, sla_minutes, human_minutes)
    return [since + timedelta(minutes=t.after_minutes) for t in tiers]
