"""The typed snapshot: what watch, operator and status decide and render from.

Pure data, snake_case JSON (:func:`to_json`). Built by metawsm.services.snapshot from the
database alone; nothing here parses text.

Each part is a typed ``NamedTuple``: immutable, checked by mypy, and built from a database row
for a fraction of what a validated model costs (a 1,000-run snapshot holds ~12,000 parts, and
the command line imports no validation library to show it: docs/performance.md, "Snapshot at
scale", session 8). Nothing here validates: the builder's values come typed from the database
and its own folds. ``tests/fixtures/snapshot_contract.py`` keeps the validated models the JSON
has always been, and the tests check :func:`to_json` against them.
"""

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from metawsm.domain.sla import ESCALATING_STATES, tiers_for


class AgentSnapshot(NamedTuple):
    """One agent of a run: its status and control state."""

    agent_name: str
    status: str
    last_signal_at: datetime | None
    pending_guidance: bool
    completed: bool
    validation_status: str | None
    control_thread_id: str | None


class PendingGuidance(NamedTuple):
    """A guidance request still waiting for its answer."""

    thread_id: str
    agent_name: str
    question: str
    context: str | None
    asked_at: datetime
    age_s: int
    request_event_id: str


class ThreadItem(NamedTuple):
    """An open, non-control thread of the run."""

    thread_id: str
    title: str
    state: str
    priority: str
    assignee_name: str | None
    updated_at: datetime
    age_s: int
    is_unanswered: bool


class EscalationItem(NamedTuple):
    """An escalation: a candidate past its SLA, or one already raised."""

    thread_id: str
    tier: str
    reason: str
    subject: str
    since: datetime
    age_s: int
    raised: bool
    agent_name: str | None = None


class Blocker(NamedTuple):
    """Something that keeps the run from closing: an unmet gate or a dead letter."""

    kind: str
    reason: str
    fix: str | None = None
    message_id: str | None = None


class BriefSummary(NamedTuple):
    """The bootstrap brief, in short."""

    goal: str
    done_criteria: str


class RunSnapshot(NamedTuple):
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


class Snapshot(NamedTuple):
    """Snapshots of the selected runs."""

    generated_at: datetime
    runs: list[RunSnapshot]


# JSON ---------------------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    """A timestamp as the snapshot's JSON writes it (ISO 8601, UTC as ``Z``; microseconds only
    when not zero: what the validated models wrote)."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


# One function per part, each a dict display (a thousand runs hold ~12,000 parts).
def _agent(a: AgentSnapshot) -> dict[str, Any]:
    return {"agent_name": a[0], "status": a[1], "last_signal_at": iso(a[2]),
            "pending_guidance": a[3], "completed": a[4], "validation_status": a[5],
            "control_thread_id": a[6]}  # fmt: skip


def _asked(g: PendingGuidance) -> dict[str, Any]:
    return {"thread_id": g[0], "agent_name": g[1], "question": g[2], "context": g[3],
            "asked_at": iso(g[4]), "age_s": g[5], "request_event_id": g[6]}  # fmt: skip


def _thread(t: ThreadItem) -> dict[str, Any]:
    return {"thread_id": t[0], "title": t[1], "state": t[2], "priority": t[3],
            "assignee_name": t[4], "updated_at": iso(t[5]), "age_s": t[6],
            "is_unanswered": t[7]}  # fmt: skip


def _iso_once(moment: datetime, times: dict[datetime, str | None]) -> str | None:
    # iso(), remembered in ``times``: every run has the snapshot's time, and an SLA pass
    # raises many escalations at one time (isoformat costs more than the rest of a part)
    text = times.get(moment)
    if text is None:
        text = iso(moment)
        if moment.tzinfo is UTC:  # an equal time of another offset is written otherwise
            times[moment] = text
    return text


def _escalation(e: EscalationItem, times: dict[datetime, str | None]) -> dict[str, Any]:
    return {"thread_id": e[0], "tier": e[1], "reason": e[2], "subject": e[3],
            "since": _iso_once(e[4], times), "age_s": e[5], "raised": e[6],
            "agent_name": e[7]}  # fmt: skip


def _blocker(b: Blocker) -> dict[str, Any]:
    return {"kind": b[0], "reason": b[1], "fix": b[2], "message_id": b[3]}


def run_json(run: RunSnapshot, times: dict[datetime, str | None] | None = None) -> dict[str, Any]:
    """One run's snapshot as JSON data (``times``: the text of times written already, kept
    across the runs of one snapshot)."""
    times = {} if times is None else times
    return {
        "run_id": run.run_id,
        "status": run.status,
        "mode": run.mode,
        "tickets": list(run.tickets),
        "control_epoch": run.control_epoch,
        "updated_at": iso(run.updated_at),
        "brief": None if run.brief is None else dict(run.brief._asdict()),
        "agents": [_agent(a) for a in run.agents],
        "pending_guidance": [_asked(g) for g in run.pending_guidance],
        "open_threads": [_thread(t) for t in run.open_threads],
        "escalation_candidates": [_escalation(e, times) for e in run.escalation_candidates],
        "escalations": [_escalation(e, times) for e in run.escalations],
        "queue_counts": dict(run.queue_counts),
        "unanswered_count": run.unanswered_count,
        "blockers": [_blocker(b) for b in run.blockers],
        "last_event_sequence": run.last_event_sequence,
        "last_event_at": iso(run.last_event_at),
        "generated_at": _iso_once(run.generated_at, times),
    }


def to_json(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON data (what ``status --json`` prints)."""
    times: dict[datetime, str | None] = {}
    return {"generated_at": iso(snap.generated_at), "runs": [run_json(r, times) for r in snap.runs]}


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _escalation_of(e: dict[str, Any]) -> EscalationItem:
    return EscalationItem(e["thread_id"], e["tier"], e["reason"], e["subject"], _at(e["since"]),
                          e["age_s"], e["raised"], e.get("agent_name"))  # fmt: skip


def _agent_of(a: dict[str, Any]) -> AgentSnapshot:
    return AgentSnapshot(a["agent_name"], a["status"], _moment(a["last_signal_at"]),
                         a["pending_guidance"], a["completed"], a["validation_status"],
                         a["control_thread_id"])  # fmt: skip


def _asked_of(g: dict[str, Any]) -> PendingGuidance:
    return PendingGuidance(g["thread_id"], g["agent_name"], g["question"], g["context"],
                           _at(g["asked_at"]), g["age_s"], g["request_event_id"])  # fmt: skip


def _thread_of(t: dict[str, Any]) -> ThreadItem:
    return ThreadItem(t["thread_id"], t["title"], t["state"], t["priority"], t["assignee_name"],
                      _at(t["updated_at"]), t["age_s"], t["is_unanswered"])  # fmt: skip


def run_from_json(data: dict[str, Any]) -> RunSnapshot:
    """One run's snapshot from its JSON (:func:`run_json`): what the HTTP API answers."""
    brief = data.get("brief")
    return RunSnapshot(
        run_id=data["run_id"],
        status=data["status"],
        mode=data["mode"],
        tickets=list(data["tickets"]),
        control_epoch=data["control_epoch"],
        updated_at=_at(data["updated_at"]),
        brief=None if brief is None else BriefSummary(brief["goal"], brief["done_criteria"]),
        agents=[_agent_of(a) for a in data["agents"]],
        pending_guidance=[_asked_of(g) for g in data["pending_guidance"]],
        open_threads=[_thread_of(t) for t in data["open_threads"]],
        escalation_candidates=[_escalation_of(e) for e in data["escalation_candidates"]],
        escalations=[_escalation_of(e) for e in data["escalations"]],
        queue_counts=dict(data["queue_counts"]),
        unanswered_count=data["unanswered_count"],
        blockers=[
            Blocker(b["kind"], b["reason"], b.get("fix"), b.get("message_id"))
            for b in data["blockers"]
        ],
        last_event_sequence=data["last_event_sequence"],
        last_event_at=_moment(data["last_event_at"]),
        generated_at=_at(data["generated_at"]),
    )


def from_json(data: dict[str, Any]) -> Snapshot:
    """The snapshot from its JSON (:func:`to_json`): ``to_json(from_json(d)) == d``."""
    return Snapshot(_at(data["generated_at"]), [run_from_json(r) for r in data["runs"]])


# Clock ---------------------------------------------------------------------------------------


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
