"""The snapshot's parts: each run's document made from the facts read about it
(services/snapshot_reads.py; :func:`doc_of`: what does not depend on the clock, stored by
services/snapshot_docs.py), and from a document and the clock its agents, pending guidance, open
threads, SLA candidates, raised escalations and blockers, as the typed tuples of
``domain/snapshot.py``, positionally (thousands per snapshot: :func:`run_snapshot`).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    __slots__ = ("agents", "briefs", "controls", "counts", "dead", "last", "raised", "views")

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


# The document of a run (stored in run_snapshot_docs, services/snapshot_docs.py): its parts that
# do not depend on the clock, as JSON data, positionally. FORMAT changes with the layout (a
# stored document of another format is remade). Its status, mode and epoch are those its
# blockers were made for: a run whose row has moved on (its own table has no trigger) is remade.
FORMAT = 1
# Where each part sits in a document (also read by cli/snapshot_json.py).
(DOC_FORMAT, DOC_STATUS, DOC_MODE, DOC_EPOCH, DOC_BRIEF, DOC_AGENTS, DOC_ASKED, DOC_THREADS,
 DOC_RAISED, DOC_COUNTS, DOC_BLOCKERS, DOC_LAST_SEQUENCE, DOC_LAST_AT) = range(13)  # fmt: skip


def doc_of(run: RunRow, facts: Facts) -> list[Any]:
    """The document of ``run`` from the facts read about it (JSON data: times as datetimes)."""
    rid = run.run_id
    controls = facts.controls[rid]
    brief = facts.briefs.get(rid)
    agents = []
    for name, status, last_signal_at in facts.agents.get(rid, ()):
        c = controls[name]
        agents.append((name, status, last_signal_at, c.pending, c.completed,
                       c.validation_status, c.thread_id))  # fmt: skip
    asked = [
        (c.thread_id, c.agent_name, c.question, c.context, c.asked_at, c.request_event_id)
        for c in controls.values()
        if c.pending and c.asked_at is not None
    ]
    return [
        FORMAT,
        run.status,
        run.mode,
        run.control_epoch,
        brief,
        agents,
        asked,
        facts.views.get(rid, []),  # thread, title, state, priority, assignee, at, unanswered, agent
        [tuple(r) for r in facts.raised.get(rid, ())],
        facts.counts.get(rid, {}),
        [tuple(b) for b in _blockers(run, facts, controls)],
        *facts.last.get(rid, (0, None)),  # its last event that is not an operator decision
    ]


def doc_fits(doc: Any, run: RunRow) -> bool:
    """True when ``doc`` (decoded) is of this :data:`FORMAT` and was made for ``run``'s status,
    mode and control epoch."""
    return (
        type(doc) is list
        and len(doc) == DOC_LAST_AT + 1
        and doc[DOC_FORMAT] == FORMAT
        and doc[DOC_STATUS] == run.status
        and doc[DOC_MODE] == run.mode
        and doc[DOC_EPOCH] == run.control_epoch
    )


class Clock:
    """What the parts of one snapshot share: its time, the SLA settings, and the times already
    parsed and ages already computed (an SLA pass raises many escalations at one time)."""

    __slots__ = ("ages", "cutoff", "human_m", "now", "sla_m", "times")

    def __init__(self, settings: Settings, now: datetime) -> None:
        self.now = now
        self.sla_m, self.human_m = settings.sla_minutes, settings.sla_human_minutes
        self.cutoff = now - timedelta(minutes=self.sla_m)  # no tier is due sooner (but urgent)
        self.times: dict[str, datetime] = {}
        self.ages: dict[datetime, int] = {}

    def time(self, text: str) -> datetime:
        """A stored time (ISO 8601 with its offset, as orjson writes it) as aware UTC."""
        moment = self.times.get(text)
        if moment is None:
            moment = self.times[text] = _fromiso(text)
        return moment

    def age(self, since: datetime) -> int:
        """Whole seconds from ``since`` to the snapshot's time (memoised)."""
        age = self.ages.get(since)
        if age is None:
            age = self.ages[since] = age_of(self.now, since)
        return age


_fromiso = datetime.fromisoformat


def run_snapshot(run: RunRow, doc: list[Any], clock: Clock) -> RunSnapshot:
    """The snapshot of ``run`` from its document (decoded, :func:`doc_fits`) and the snapshot's
    clock."""
    now, time, cutoff = clock.now, clock.time, clock.cutoff
    threads, due, unanswered_count = [], [], 0
    # (cli/snapshot_json.py writes the same parts as JSON from the document: a change here is made
    # there too; tests/unit/test_snapshot_json.py holds the two to the same bytes.)
    # The loop a snapshot runs most (~3 open threads a run): age_of inlined, each thread's time
    # parsed (its own: looking it up among the clock's shared ones costs more than it saves).
    for tid, title, state, prio, assignee, at_text, unanswered, agent in doc[DOC_THREADS]:
        at = _fromiso(at_text)
        d = now - at
        days = d.days
        age = days * 86400 + d.seconds if days >= 0 else 0
        threads.append(_new(ThreadItem, (tid, title, state, prio, assignee, at, age,
                                         unanswered)))  # fmt: skip
        unanswered_count += unanswered
        if state in ESCALATING_STATES and (at <= cutoff or prio in URGENT):
            due.append((tid, title, state, prio, at, agent))  # past a tier, maybe raised
    asked, raised = asked_and_raised(doc, clock)
    brief, last_at = doc[DOC_BRIEF], doc[DOC_LAST_AT]
    return _new(RunSnapshot, (
        run.run_id,
        run.status,
        run.mode,
        list(run.tickets),
        run.control_epoch,
        run.updated_at,
        None if brief is None else _new(BriefSummary, brief),
        _agents(doc),
        pending_guidance(asked, now) if asked else [],
        threads,
        candidates(run, due, raised, asked, clock) if due or asked else [],
        raised,
        doc[DOC_COUNTS],
        unanswered_count,
        [_new(Blocker, b) for b in doc[DOC_BLOCKERS]],  # made from the list itself
        doc[DOC_LAST_SEQUENCE],
        last_at and time(last_at),
        now,
    ))  # fmt: skip


def decision_snapshot(run: RunRow, doc: list[Any], clock: Clock) -> RunSnapshot:
    """The parts of :func:`run_snapshot` that the operator decides from
    (``domain.operator.decide``: the run's status and times, its agents, pending guidance and
    blockers); its brief, threads, escalations and counts left empty.

    For deciding only, never to be shown: two thirds of the whole snapshot's cost (an operator
    decides on every run each pass). tests/unit/test_operator_decide.py holds every decision
    made from it to the one made from the whole snapshot.
    """
    now = clock.now
    asked = _asked(doc, clock)
    last_at = doc[DOC_LAST_AT]
    return _new(RunSnapshot, (
        run.run_id, run.status, run.mode, list(run.tickets), run.control_epoch, run.updated_at,
        None,
        _agents(doc),
        pending_guidance(asked, now) if asked else [],
        [], [], [], {}, 0,
        [_new(Blocker, b) for b in doc[DOC_BLOCKERS]],
        doc[DOC_LAST_SEQUENCE],
        last_at and clock.time(last_at),
        now,
    ))  # fmt: skip


def _agents(doc: list[Any]) -> list[AgentSnapshot]:
    # an agent's last signal is its own time (parsed, not looked up in the clock's)
    return [
        _new(AgentSnapshot, (name, status, at and _fromiso(at), pending, completed, validation,
                             tid))
        for name, status, at, pending, completed, validation, tid in doc[DOC_AGENTS]
    ]  # fmt: skip


def asked_and_raised(
    doc: list[Any], clock: Clock
) -> tuple[list[tuple[Any, ...]], list[EscalationItem]]:
    """The document's pending guidance requests (thread, agent, question, context, time,
    request event) and its raised escalations, their times parsed (and the latter's ages)."""
    time = clock.time
    asked = _asked(doc, clock)
    raised = []
    for tid, tier, reason, subject, at_text in doc[DOC_RAISED]:
        at = time(at_text)
        raised.append(_new(EscalationItem, (tid, tier, reason, subject, at, clock.age(at),
                                            True, None)))  # fmt: skip
    return asked, raised


def _asked(doc: list[Any], clock: Clock) -> list[tuple[Any, ...]]:
    asked: list[tuple[Any, ...]] = doc[DOC_ASKED]  # most runs wait for no guidance: no list made
    if asked:
        time = clock.time
        asked = [
            (tid, agent, question, context, time(at), event_id)
            for tid, agent, question, context, at, event_id in asked
        ]
    return asked


def pending_guidance(asked: list[tuple[Any, ...]], now: datetime) -> list[PendingGuidance]:
    """The pending guidance requests of :func:`asked_and_raised`, with their ages at ``now``."""
    return [
        _new(
            PendingGuidance,
            (tid or "", agent, question or "", context, at, age_of(now, at), event_id or ""),
        )
        for tid, agent, question, context, at, event_id in asked
    ]


def candidates(
    run: RunRow,
    due: list[tuple[Any, ...]],
    raised: list[EscalationItem],
    asked: list[tuple[Any, ...]],
    clock: Clock,
) -> list[EscalationItem]:
    """What is past its SLA and not raised yet: waiting threads, then guidance.

    From the run's waiting threads past their first tier (``due``), its raised escalations
    (each is raised with the run of what it escalates, services/escalation.py, so a run's
    escalations are those of its threads and guidance requests) and its agents' pending
    guidance requests.
    """
    now, sla_m, human_m = clock.now, clock.sla_m, clock.human_m
    found = _waiting(run.run_id, due, raised, clock)
    if run.status in DRIVEN_STATUSES and asked:
        done = {(e.thread_id, e.tier, e.subject) for e in raised}
        # A request already escalated to every tier can yield nothing: only the others go to
        # the rules (most waiting requests of a long-lived store, ~1 in 2 runs at 1,000).
        controls = {
            agent: AgentControl(agent, tid, True, question, context, at, event_id)
            for tid, agent, question, context, at, event_id in asked
            if any((tid, tier, event_id) not in done for tier in sla.TIER_NAMES)
        }
        if controls:
            waited = sla.guidance_due(now, run.run_id, controls, sla_m, human_m)
            found += [c for c in waited if (c.thread_id, c.tier, c.subject) not in done]
    return [_candidate(c, now) for c in found]


def _waiting(
    rid: str, due: list[tuple[Any, ...]], raised: list[EscalationItem], clock: Clock
) -> list[sla.Candidate]:
    """The tiers the run's waiting threads past their first tier (``due``: thread, title,
    state, priority, time, agent) have reached and were not escalated to."""
    found: list[sla.Candidate] = []
    tiers: dict[str, set[str]] = {}  # the tiers each thread was escalated to
    if due:
        for e in raised:
            if not e.subject:
                tiers.setdefault(e.thread_id, set()).add(e.tier)
    for tid, title, state, prio, at, agent in due:
        done = tiers.get(tid, ())
        if len(done) < len(sla.TIER_NAMES):  # else escalated to every tier already
            view = _new(ViewRow, (tid, rid, agent, title, state, prio, at))
            found += sla.thread_due(clock.now, view, clock.sla_m, clock.human_m, done)
    return found


def _candidate(c: sla.Candidate, now: datetime) -> EscalationItem:
    return _new(EscalationItem, (c.thread_id, c.tier, c.reason, c.subject, c.since,
                                 age_of(now, c.since), False, c.agent_name))  # fmt: skip


def age_of(now: datetime, since: datetime) -> int:
    """Whole seconds from ``since`` to ``now``, floored, never negative."""
    # Whole seconds (floored), never negative: a timedelta keeps 0 <= seconds < 86,400 and the
    # sign in days, so days * 86,400 + seconds is the floor; twice as fast as // and max().
    d = now - since
    return d.days * 86400 + d.seconds if d.days >= 0 else 0


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
