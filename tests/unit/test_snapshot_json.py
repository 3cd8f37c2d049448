"""``status --json`` into a pipe writes the snapshot straight from its parts
(metawsm/cli/snapshot_json.py): byte for byte what ``compact(to_json(snap))`` writes."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from metawsm.cli.json_text import compact
from metawsm.cli.snapshot_json import compact_snapshot
from metawsm.domain.snapshot import (
    AgentSnapshot,
    Blocker,
    BriefSummary,
    EscalationItem,
    PendingGuidance,
    RunSnapshot,
    Snapshot,
    ThreadItem,
    to_json,
)

TEXTS = ["", "plain", 'quote " and \\ and\nnewline', "ünïcödé ✓", "emoji 🚀", "</script>"]
BASE = datetime(2026, 12, 6, 21, 0, tzinfo=UTC)


def _text(rng: random.Random) -> str:
    return rng.choice(TEXTS) + str(rng.randint(0, 9))


def _maybe(rng: random.Random, value: Any) -> Any:
    return None if rng.random() < 0.3 else value


def _time(rng: random.Random) -> datetime:
    moment = BASE - timedelta(
        seconds=rng.randint(0, 10**7), microseconds=rng.choice([0, 7, 123456])
    )
    if rng.random() < 0.1:  # another offset is written as it is
        return moment.astimezone(timezone(timedelta(hours=rng.choice([-5, 2]))))
    return moment


def _escalation(rng: random.Random) -> EscalationItem:
    return EscalationItem(_text(rng), rng.choice(["warn", "breach"]), _text(rng), _text(rng),
                          _time(rng), rng.randint(0, 10**6), rng.random() < 0.5,
                          _maybe(rng, _text(rng)))  # fmt: skip


def _agent(rng: random.Random) -> AgentSnapshot:
    done = _maybe(rng, "passed")
    return AgentSnapshot(_text(rng), "running", _maybe(rng, _time(rng)), rng.random() < 0.5,
                         rng.random() < 0.5, done, _maybe(rng, _text(rng)))  # fmt: skip


def _asked(rng: random.Random) -> PendingGuidance:
    return PendingGuidance(_text(rng), _text(rng), _text(rng), _maybe(rng, _text(rng)),
                           _time(rng), rng.randint(0, 9999), _text(rng))  # fmt: skip


def _thread(rng: random.Random) -> ThreadItem:
    return ThreadItem(_text(rng), _text(rng), "new", "high", _maybe(rng, _text(rng)), _time(rng),
                      rng.randint(0, 9999), rng.random() < 0.5)  # fmt: skip


def _blocker(rng: random.Random) -> Blocker:
    return Blocker(_text(rng), _text(rng), _maybe(rng, _text(rng)), _maybe(rng, _text(rng)))


def _some(rng: random.Random, make: Callable[[random.Random], Any]) -> list[Any]:
    return [make(rng) for _ in range(rng.randint(0, 3))]


def _run(rng: random.Random, now: datetime) -> RunSnapshot:
    return RunSnapshot(
        run_id=_text(rng),
        status=rng.choice(["running", "awaiting_guidance", "completed"]),
        mode=rng.choice(["solo", "swarm"]),
        tickets=[_text(rng) for _ in range(rng.randint(0, 2))],
        control_epoch=rng.randint(0, 3),
        updated_at=_time(rng),
        brief=_maybe(rng, BriefSummary(_text(rng), _text(rng))),
        agents=_some(rng, _agent),
        pending_guidance=_some(rng, _asked),
        open_threads=_some(rng, _thread),
        escalation_candidates=_some(rng, _escalation),
        escalations=_some(rng, _escalation),
        queue_counts={_text(rng): rng.randint(0, 9) for _ in range(rng.randint(0, 3))},
        unanswered_count=rng.randint(0, 9),
        blockers=_some(rng, _blocker),
        last_event_sequence=rng.randint(0, 10**9),
        last_event_at=_maybe(rng, _time(rng)),
        generated_at=now,
    )


@pytest.mark.parametrize("seed", range(100))
def test_the_compact_snapshot_is_what_compact_to_json_writes(seed: int) -> None:
    rng = random.Random(seed)
    now = _time(rng)
    snap = Snapshot(now, [_run(rng, now) for _ in range(rng.randint(0, 5))])
    assert compact_snapshot(snap) == compact(to_json(snap)).encode()


def test_an_empty_snapshot() -> None:
    snap = Snapshot(BASE, [])
    assert compact_snapshot(snap) == b'{"generated_at":"2026-12-06T21:00:00Z","runs":[]}'
