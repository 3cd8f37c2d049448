"""SLA rules: when a waiting thread or guidance request escalates, and to which tier."""

from __future__ import annotations

from dataclasses import dataclass

ESCALATING_STATES = ("new", "waiting_human")
URGENT = ("high", "urgent")


@dataclass(frozen=True)
class Tier:
    """An escalation tier and how long (minutes) something may wait before reaching it."""

    name: str
    after_minutes: int


def tiers_for(priority: str, sla_minutes: int, human_minutes: int) -> list[Tier]:
    """Tiers in order: operator first, then human. High and urgent reach the operator at once."""
    if priority in URGENT:
        return [Tier("operator", 0), Tier("human", sla_minutes)]
    return [Tier("operator", sla_minutes), Tier("human", max(human_minutes, sla_minutes))]


def due_tiers(age_s: float, priority: str, sla_minutes: int, human_minutes: int) -> list[Tier]:
    """Tiers whose threshold ``age_s`` has reached."""
    return [
        t for t in tiers_for(priority, sla_minutes, human_minutes) if age_s >= t.after_minutes * 60
    ]
