"""The snapshot's JSON (``to_json``) is what the validated contract writes, for hand-built and
random snapshots: every field, strictly typed, timestamps written as before."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from metawsm.domain.snapshot import (
    AgentSnapshot,
    Blocker,
    BriefSummary,
    EscalationItem,
    PendingGuidance,
    RunSnapshot,
    Snapshot,
    ThreadItem,
    from_json,
    to_json,
)
from tests.fixtures.snapshot_contract import as_contract_writes_it
from tests.fixtures.snapshots import NOW
from tests.unit.test_status_render import bare, full

TEXTS = ["", "plain", "ünïcödé ✓", 'it\'s "quoted"', "line\nbreak"]


def _moment(rng: random.Random) -> datetime:
    at = NOW - timedelta(seconds=rng.randint(0, 10**6))
    return at if rng.random() < 0.3 else at.replace(microsecond=rng.randint(0, 999_999))


def _maybe(rng: random.Random, value: Any) -> Any:
    return None if rng.random() < 0.3 else value


def _text(rng: random.Random) -> str:
    return rng.choice(TEXTS)


def _escalation(rng: random.Random, raised: bool) -> EscalationItem:
    return EscalationItem(_text(rng), rng.choice(("operator", "human")), _text(rng), _text(rng),
                          _moment(rng), rng.randint(0, 9999), raised,
                          _maybe(rng, _text(rng)))  # fmt: skip


def _run(rng: random.Random) -> RunSnapshot:
    def some(make: Any) -> list[Any]:
        return [make() for _ in range(rng.randint(0, 3))]

    return RunSnapshot(
        run_id=_text(rng),
        status=rng.choice(("running", "failed", "awaiting_guidance")),
        mode=rng.choice(("run", "bootstrap")),
        tickets=some(lambda: _text(rng)),
        control_epoch=rng.randint(1, 4),
        updated_at=_moment(rng),
        brief=_maybe(rng, BriefSummary(_text(rng), _text(rng))),
        agents=some(
            lambda: AgentSnapshot(
                _text(rng),
                "running",
                _maybe(rng, _moment(rng)),
                rng.random() < 0.5,
                rng.random() < 0.5,
                _maybe(rng, "passed"),
                _maybe(rng, _text(rng)),
            )
        ),
        pending_guidance=some(
            lambda: PendingGuidance(
                _text(rng),
                _text(rng),
                _text(rng),
                _maybe(rng, _text(rng)),
                _moment(rng),
                rng.randint(0, 99),
                _text(rng),
            )
        ),
        open_threads=some(
            lambda: ThreadItem(
                _text(rng),
                _text(rng),
                "new",
                "high",
                _maybe(rng, _text(rng)),
                _moment(rng),
                rng.randint(0, 99),
                rng.random() < 0.5,
            )
        ),
        escalation_candidates=some(lambda: _escalation(rng, False)),
        escalations=some(lambda: _escalation(rng, True)),
        queue_counts={_text(rng): rng.randint(0, 9) for _ in range(rng.randint(0, 3))},
        unanswered_count=rng.randint(0, 9),
        blockers=some(
            lambda: Blocker(
                rng.choice(("gate", "dead_letter")),
                _text(rng),
                _maybe(rng, _text(rng)),
                _maybe(rng, _text(rng)),
            )
        ),
        last_event_sequence=rng.randint(0, 10**9),
        last_event_at=_maybe(rng, _moment(rng)),
        generated_at=NOW,
    )


@pytest.mark.parametrize("seed", range(40))
def test_random_snapshots_are_written_as_the_contract_writes_them(seed: int) -> None:
    rng = random.Random(seed)
    snap = Snapshot(NOW, [_run(rng) for _ in range(rng.randint(0, 4))])
    data = to_json(snap)
    assert data == as_contract_writes_it(data)


def test_hand_built_runs_are_written_as_the_contract_writes_them() -> None:
    data = to_json(Snapshot(NOW, [full(), bare()]))
    assert data == as_contract_writes_it(data)
    assert data["generated_at"] == "2026-03-01T12:00:00Z"
    alice = data["runs"][0]["agents"][0]
    assert alice["last_signal_at"] == "2026-03-01T11:55:00.123456Z"


def test_every_part_is_written_with_exactly_its_fields() -> None:
    run = to_json(Snapshot(NOW, [full()]))["runs"][0]
    assert list(run) == list(RunSnapshot._fields)
    parts = {"agents": AgentSnapshot, "pending_guidance": PendingGuidance,
             "open_threads": ThreadItem, "escalations": EscalationItem,
             "escalation_candidates": EscalationItem, "blockers": Blocker}  # fmt: skip
    for key, kind in parts.items():
        assert run[key], key
        assert all(set(part) == set(kind._fields) for part in run[key]), key
    assert set(run["brief"]) == set(BriefSummary._fields)


def test_a_timestamp_not_in_utc_keeps_its_offset_as_the_contract_writes_it() -> None:
    elsewhere = datetime(2026, 3, 1, 13, 0, tzinfo=UTC).astimezone()  # the machine's zone
    snap = Snapshot(elsewhere, [])
    assert to_json(snap) == as_contract_writes_it(to_json(snap))


@pytest.mark.parametrize("seed", range(20))
def test_a_snapshot_read_back_from_its_json_is_the_same_snapshot(seed: int) -> None:
    # The command line over the HTTP API renders the snapshot the API sends as JSON.
    rng = random.Random(seed)
    snap = Snapshot(NOW, [_run(rng) for _ in range(rng.randint(1, 4))] + [full(), bare()])
    assert from_json(to_json(snap)) == snap
