"""SLA tiers: who an item escalates to, and when (operator first, then human)."""

from __future__ import annotations

import pytest

from beat.schedule import build_schedule
from metawsm.domain.sla import ESCALATING_STATES, URGENT, Tier, due_tiers, tiers_for
from metawsm.settings import load_settings
from metawsm.transport.queues import ESCALATE_TASK, HOUSEKEEPING_QUEUE

SLA = 30
HUMAN = 60


def _names(tiers: list[Tier]) -> list[str]:
    return [t.name for t in tiers]


@pytest.mark.parametrize("priority", ["low", "normal"])
def test_ordinary_priorities_reach_the_operator_at_sla_minutes_and_a_human_later(
    priority: str,
) -> None:
    assert tiers_for(priority, SLA, HUMAN) == [Tier("operator", SLA), Tier("human", HUMAN)]


@pytest.mark.parametrize("priority", ["high", "urgent"])
def test_high_and_urgent_reach_the_operator_at_once_and_a_human_at_sla_minutes(
    priority: str,
) -> None:
    assert tiers_for(priority, SLA, HUMAN) == [Tier("operator", 0), Tier("human", SLA)]


def test_the_human_tier_never_comes_before_the_operator_tier() -> None:
    assert tiers_for("normal", 45, 10) == [Tier("operator", 45), Tier("human", 45)]


def test_nothing_is_due_before_the_operator_threshold() -> None:
    assert due_tiers(SLA * 60 - 1, "normal", SLA, HUMAN) == []
    assert due_tiers(0, "low", SLA, HUMAN) == []


def test_the_operator_tier_is_due_exactly_at_sla_minutes() -> None:
    assert _names(due_tiers(SLA * 60, "normal", SLA, HUMAN)) == ["operator"]
    assert _names(due_tiers(HUMAN * 60 - 1, "normal", SLA, HUMAN)) == ["operator"]


def test_both_tiers_are_due_from_the_human_threshold_on() -> None:
    assert _names(due_tiers(HUMAN * 60, "normal", SLA, HUMAN)) == ["operator", "human"]
    assert _names(due_tiers(10 * HUMAN * 60, "normal", SLA, HUMAN)) == ["operator", "human"]


@pytest.mark.parametrize("priority", sorted(URGENT))
def test_an_urgent_item_is_due_for_the_operator_at_age_zero_and_the_human_at_sla(
    priority: str,
) -> None:
    assert _names(due_tiers(0, priority, SLA, HUMAN)) == ["operator"]
    assert _names(due_tiers(SLA * 60 - 0.5, priority, SLA, HUMAN)) == ["operator"]
    assert _names(due_tiers(SLA * 60, priority, SLA, HUMAN)) == ["operator", "human"]


def test_due_tiers_keep_their_thresholds() -> None:
    assert due_tiers(HUMAN * 60, "normal", SLA, HUMAN) == [
        Tier("operator", SLA),
        Tier("human", HUMAN),
    ]


def test_only_new_and_waiting_human_threads_escalate() -> None:
    assert ESCALATING_STATES == ("new", "waiting_human")
    assert URGENT == ("high", "urgent")


def test_the_thresholds_come_from_the_settings_with_their_documented_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("SLA_MINUTES", "SLA_HUMAN_MINUTES", "ESCALATE_INTERVAL_S"):
        monkeypatch.delenv(f"METAWSM_{name}", raising=False)
    defaults = load_settings()
    assert (defaults.sla_minutes, defaults.sla_human_minutes) == (30, 60)
    assert defaults.escalate_interval_s == 30.0
    monkeypatch.setenv("METAWSM_SLA_MINUTES", "5")
    monkeypatch.setenv("METAWSM_SLA_HUMAN_MINUTES", "15")
    tuned = load_settings()
    assert (tuned.sla_minutes, tuned.sla_human_minutes) == (5, 15)


def test_beat_raises_escalations_every_escalate_interval_s() -> None:
    entry = build_schedule(load_settings(escalate_interval_s=7.0))["escalate-sla"]
    assert entry["task"] == ESCALATE_TASK
    assert entry["schedule"] == 7.0
    assert entry["options"]["queue"] == HOUSEKEEPING_QUEUE
