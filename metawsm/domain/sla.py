"""SLA rules: when a waiting thread or guidance request escalates, and to which tier."""

from collections.abc import Container, Mapping
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple, Protocol

from metawsm.domain.agent_control import AgentControl

ESCALATING_STATES = ("new", "waiting_human")
URGENT = ("high", "urgent")
TIER_NAMES = ("operator", "human")  # in order; every priority has both (tiers_for)


class Tier(NamedTuple):
    """An escalation tier and how long (minutes) something may wait before reaching it."""

    name: str
    after_minutes: int


def tiers_for(priority: str, sla_minutes: int, human_minutes: int) -> list[Tier]:
    """Tiers in order: operator first, then human. High and urgent reach the operator at once."""
    return list(_tiers(priority in URGENT, sla_minutes, human_minutes))


@lru_cache(maxsize=64)
def _tiers(urgent: bool, sla_minutes: int, human_minutes: int) -> tuple[Tier, ...]:
    # Asked for every waiting thread of every snapshot: the answer depends on three settings.
    if urgent:
        return (Tier("operator", 0), Tier("human", sla_minutes))
    return (Tier("operator", sla_minutes), Tier("human", max(human_minutes, sla_minutes)))


def due_tiers(age_s: float, priority: str, sla_minutes: int, human_minutes: int) -> list[Tier]:
    """Tiers whose threshold ``age_s`` has reached."""
    tiers = _tiers(priority in URGENT, sla_minutes, human_minutes)
    return [t for t in tiers if age_s >= t.after_minutes * 60]


class Candidate(NamedTuple):
    """Something waiting past the threshold of ``tier``."""

    thread_id: str
    tier: str
    subject: str
    reason: str
    since: datetime
    threshold_minutes: int
    run_id: str | None
    agent_name: str | None = None


def thread_due(
    now: datetime,
    view: "ThreadFacts",
    sla_minutes: int,
    human_minutes: int,
    raised: Container[str] = (),
) -> list[Candidate]:
    """The tiers a waiting thread has reached by ``now``, but those in ``raised``."""
    age = (now - view.updated_at).total_seconds()
    out = []
    for tier in due_tiers(age, view.priority, sla_minutes, human_minutes):
        if tier.name in raised:
            continue
        reason = (
            f"{view.priority} thread '{view.title}' waiting in {view.state} for"
            f" {int(age // 60)} min (tier {tier.name} at {tier.after_minutes} min)"
        )
        out.append(
            Candidate(
                view.thread_id,
                tier.name,
                "",
                reason,
                view.updated_at,
                tier.after_minutes,
                view.run_id,
                view.agent_name,
            )
        )
    return out


def guidance_due(
    now: datetime,
    run_id: str,
    controls: Mapping[str, AgentControl],
    sla_minutes: int,
    human_minutes: int,
) -> list[Candidate]:
    """Pending guidance requests of one run's agents past a tier's threshold (raised or not)."""
    out = []
    for state in controls.values():
        if not (state.pending and state.asked_at and state.thread_id and state.request_event_id):
            continue
        age = (now - state.asked_at).total_seconds()
        for tier in due_tiers(age, "normal", sla_minutes, human_minutes):
            reason = (
                f"agent {state.agent_name} has waited {int(age // 60)} min for guidance:"
                f" {state.question}"
            )
            out.append(
                Candidate(
                    state.thread_id,
                    tier.name,
                    state.request_event_id,
                    reason,
                    state.asked_at,
                    tier.after_minutes,
                    run_id,
                    state.agent_name,
                )
            )
    return out


class ThreadFacts(Protocol):
    """What the SLA rules use of a waiting thread (a view row)."""

    @property
    def thread_id(self) -> str: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def agent_name(self) -> str | None: ...
    @property
    def title(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def priority(self) -> str: ...
    @property
    def updated_at(self) -> datetime: ...
