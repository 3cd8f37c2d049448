"""The snapshot's parts, made from the facts read about the runs (services/snapshot_reads.py):
each run's agents, pending guidance, open threads, SLA candidates, raised escalations and
blockers, as the typed tuples of ``domain/snapshot.py``, positionally (thousands per snapshot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from metawsm.domain import sla
from metawsm.domain.agent_control import AgentControl
from metawsm.domain.gates import gates_of
from metawsm.domain.runs import SIGNAL_DRIVEN, RunStatus
from metawsm.domain.sla import ESCALATING_STATES, URGENT
from metawsm.domain.snapshot import (
    AgentSnapshot,
    Blocker,
    BriefSummary,
    EscalationItem,
    PendingGuidance,
    RunSnapshot,
    ThreadItem,
)
from metawsm.services.snapshot_reads import AgentRow, DeadLetter, Raised, RunRow, ViewRow
from metawsm.settings import Settings

DRIVEN_STATUSES = frozenset(s.value for s in SIGNAL_DRIVEN)
# A part is made as ``_new(Part, (every field, in order))``: the tuple made in C, not through
# the NamedTuple's generated ``__new__`` (a Python call, ~1,700 instructions more each; a
# 1,000-run snapshot makes ~15,000 parts). Nothing checks the number of fields here: a part
# short of one fails the snapshot tests (to_json reads each field by its position).
_new = tuple.__new__
_FAILED = RunStatus.FAILED.value


class Facts:
    """Everything read about the runs, keyed by run id (absent: nothing of that kind)."""

    # A plain class, not a dataclass: making a dataclass costs ~1 ms at import (it compiles
    # its methods), and every ``status``, ``watch`` and ``operator`` process imports this.
    __slots__ = ("agents", "ages", "briefs", "candidates", "controls", "counts", "dead", "last",
                 "raised", "views")  # fmt: skip

    def __init__(
        self,
        *,
        agents: dict[str, list[AgentRow]],
        controls: dict[str, dict[str, AgentControl]],
        briefs: dict[str, tuple[str, str]],
        views: dict[str, list[tuple[Any, ...]]],
        counts: dict[str, dict[str, int]],
        raised: dict[str, list[Raised]],
        dead: dict[str, list[DeadLetter]],
        last: dict[str, tuple[int, datetime | None]],
    ) -> None:
        self.agents, self.controls, self.briefs, self.views = agents, controls, briefs, views
        self.counts, self.raised, self.dead, self.last = counts, raised, dead, last
        self.candidates: dict[str, list[EscalationItem]] = {}
        self.ages: dict[datetime, int] = {}  # age_s of each raised_at seen


def candidates(
    settings: Settings,
    runs: Sequence[RunRow],
    facts: Facts,
    now: datetime,
) -> dict[str, list[EscalationItem]]:
    """What is past its SLA and not raised yet, per run: waiting threads, then guidance.

    From what was read already: a run's open views, and its raised escalations (each is
    raised with the run of what it escalates, services/escalation.py, so a run's escalations
    are those of its threads and guidance requests).
    """
    out: dict[str, list[EscalationItem]] = {}
    sla_m, human_m = settings.sla_minutes, settings.sla_human_minutes
    cutoff = now - timedelta(minutes=sla_m)  # no tier is due sooner (but high and urgent)
    for run in runs:
        rid = run.run_id
        found = _waiting(rid, facts, now, cutoff, sla_m, human_m)
        if run.status in DRIVEN_STATUSES:
            raised = {(e.thread_id, e.tier, e.subject) for e in facts.raised.get(rid, ())}
            asked = sla.guidance_due(now, rid, facts.controls[rid], sla_m, human_m)
            found += [c for c in asked if (c.thread_id, c.tier, c.subject) not in raised]
        if found:
            out[rid] = [_candidate(c, now) for c in found]
    return out


def _waiting(
    rid: str, facts: Facts, now: datetime, cutoff: datetime, sla_m: int, human_m: int
) -> list[sla.Candidate]:
    """The run's waiting threads past a tier they have not been escalated to."""
    tiers: dict[str, set[str]] = {}  # the tiers each thread was escalated to
    for e in facts.raised.get(rid, ()):
        if not e.subject:
            tiers.setdefault(e.thread_id, set()).add(e.tier)
    found: list[sla.Candidate] = []
    for tid, title, state, prio, _, at, _, agent in facts.views.get(rid, ()):
        if state in ESCALATING_STATES and (at <= cutoff or prio in URGENT):
            done = tiers.get(tid, ())
            if len(done) < len(sla.TIER_NAMES):  # else escalated to every tier already
                view = ViewRow(tid, rid, agent, title, state, prio, at)
                found += sla.thread_due(now, view, sla_m, human_m, done)
    return found


def _candidate(c: sla.Candidate, now: datetime) -> EscalationItem:
    return _new(EscalationItem, (c.thread_id, c.tier, c.reason, c.subject, c.since,
                                 _age(now, c.since), False, c.agent_name))  # fmt: skip


def _age(now: datetime, since: datetime) -> int:
    # Whole seconds (floored), never negative: a timedelta keeps 0 <= seconds < 86,400 and the
    # sign in days, so days * 86,400 + seconds is the floor; twice as fast as // and max().
    d = now - since
    return d.days * 86400 + d.seconds if d.days >= 0 else 0


def run_snapshot(run: RunRow, facts: Facts, now: datetime) -> RunSnapshot:
    rid = run.run_id
    controls = facts.controls[rid]
    threads = [
        _new(ThreadItem, (tid, title, state, prio, assignee, at, _age(now, at), unanswered))
        for tid, title, state, prio, assignee, at, unanswered, _ in facts.views.get(rid, ())
    ]
    brief = facts.briefs.get(rid)
    last_seq, last_at = facts.last.get(rid, (0, None))
    return _new(RunSnapshot, (
        rid,
        run.status,
        run.mode,
        list(run.tickets),
        run.control_epoch,
        run.updated_at,
        None if brief is None else _new(BriefSummary, brief),
        _agents(facts.agents.get(rid, ()), controls),
        _pending(controls, now),
        threads,
        facts.candidates.get(rid, []),
        _raised(facts.raised.get(rid, ()), now, facts.ages),
        facts.counts.get(rid, {}),
        sum(1 for t in threads if t.is_unanswered),
        _blockers(run, facts, controls),
        last_seq,
        last_at,
        now,
    ))  # fmt: skip


def _raised(
    rows: Sequence[Raised], now: datetime, ages: dict[datetime, int]
) -> list[EscalationItem]:
    # ``ages`` is shared by every run of the snapshot: an SLA pass raises many at one time
    out = []
    for tid, tier, reason, subject, at in rows:
        age = ages.get(at)
        if age is None:
            age = ages[at] = _age(now, at)
        out.append(_new(EscalationItem, (tid, tier, reason, subject, at, age, True, None)))
    return out


def _agents(rows: Sequence[AgentRow], controls: Mapping[str, AgentControl]) -> list[AgentSnapshot]:
    out = []
    for name, status, last_signal_at in rows:
        c = controls[name]
        out.append(_new(AgentSnapshot, (name, status, last_signal_at, c.pending, c.completed,
                                        c.validation_status, c.thread_id)))  # fmt: skip
    return out


def _pending(controls: Mapping[str, AgentControl], now: datetime) -> list[PendingGuidance]:
    return [
        _new(
            PendingGuidance,
            (
                c.thread_id or "",
                c.agent_name,
                c.question or "",
                c.context,
                c.asked_at,
                _age(now, c.asked_at),
                c.request_event_id or "",
            ),
        )
        for c in controls.values()
        if c.pending and c.asked_at is not None
    ]


def _blockers(run: RunRow, facts: Facts, controls: Mapping[str, AgentControl]) -> list[Blocker]:
    rid = run.run_id
    # gates_of names the failed agents of a failed run only: the others' are not looked for
    failed = (
        [a.agent_name for a in facts.agents.get(rid, ()) if a.status == "failed"]
        if run.status == _FAILED
        else []
    )
    brief = facts.briefs.get(rid)
    gates = gates_of(run, failed, brief[1] if brief else None, controls, unmet_only=True)
    # unpacked, not by attribute: a named field is a descriptor call, ~3,000 blockers
    out = [_new(Blocker, ("gate", reason, fix, None)) for _, _, reason, fix, _ in gates]
    out += [
        Blocker(
            "dead_letter",
            f"dead letter on {d.topic}: {d.error[:200]}",
            f"metawsm dlq redrive {d.message_id}",
            d.message_id,
        )
        for d in facts.dead.get(rid, ())
    ]
    return out
