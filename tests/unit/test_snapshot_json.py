"""``status --json`` into a pipe writes the snapshot straight from its parts
(metawsm/cli/snapshot_json.py): byte for byte what ``compact(to_json(snap))`` writes."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from metawsm.cli.json_text import compact
from metawsm.cli.snapshot_json import compact_document_from, compact_snapshot, encode_compact
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
from metawsm.services.snapshot import snapshot_of
from metawsm.services.snapshot_docs import decode, encode
from metawsm.services.snapshot_parts import Clock
from metawsm.services.snapshot_reads import RunRow
from metawsm.settings import Settings

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


# status --json on a database: the JSON made straight from the runs' stored documents
# (compact_document_from) is what compact_snapshot writes of the typed snapshot made from the
# same documents at the same clock.


def _doc_time(rng: random.Random) -> datetime:
    # Mostly long past (every tier due), some within the tiers' minutes of ``BASE``, a few
    # after it (a clock behind the writer's: an age of 0).
    if rng.random() < 0.05:
        return BASE + timedelta(seconds=rng.randint(1, 90), microseconds=rng.choice([0, 5]))
    if rng.random() < 0.3:
        return BASE - timedelta(seconds=rng.randint(0, 7200), microseconds=rng.choice([0, 5]))
    return _time(rng)


def _document(rng: random.Random, status: str) -> list[Any]:
    asked = [
        [_maybe(rng, _text(rng)), _text(rng), _maybe(rng, _text(rng)), _maybe(rng, _text(rng)),
         _doc_time(rng), _maybe(rng, _text(rng))]
        for _ in range(rng.randint(0, 2))
    ]  # fmt: skip
    threads = [
        [_text(rng), _text(rng), rng.choice(["new", "waiting_human", "waiting_operator"]),
         rng.choice(["low", "normal", "high", "urgent"]), _maybe(rng, _text(rng)),
         _doc_time(rng), rng.random() < 0.5, _maybe(rng, _text(rng))]
        for _ in range(rng.randint(0, 4))
    ]  # fmt: skip
    raised = []
    for source in rng.sample(asked + threads, k=rng.randint(0, len(asked) + len(threads))):
        subject = source[5] if source in asked else ""  # a request's event, or a thread's ""
        for tier in rng.sample(["operator", "human"], k=rng.randint(1, 2)):
            raised.append([source[0], tier, _text(rng), subject or "", _doc_time(rng)])
    counts = {_text(rng): rng.randint(0, 9) for _ in range(rng.randint(0, 3))}
    if rng.random() < 0.7:  # as the reads sort them; else in any order
        counts = dict(sorted(counts.items()))
    doc = [
        1, status, "run", 1, _maybe(rng, [_text(rng), _text(rng)]),
        [[_text(rng), "running", _maybe(rng, _doc_time(rng)), rng.random() < 0.5,
          rng.random() < 0.5, _maybe(rng, "passed"), _maybe(rng, _text(rng))]
         for _ in range(rng.randint(0, 3))],
        asked, threads, raised, counts,
        [[rng.choice(["gate", "dead_letter"]), _text(rng), _maybe(rng, _text(rng)),
          _maybe(rng, _text(rng))] for _ in range(rng.randint(0, 3))],
        rng.randint(0, 10**9), _maybe(rng, _doc_time(rng)),
    ]  # fmt: skip
    return decode(encode(doc))  # as stored and read back: times as orjson writes them


@pytest.mark.parametrize("seed", range(200))
def test_the_json_made_from_the_documents_is_what_the_typed_snapshot_writes(seed: int) -> None:
    rng = random.Random(seed)
    now = BASE
    settings = Settings(database_url="sqlite:///unused.db", sla_minutes=rng.choice([1, 30, 600]))
    runs = []
    for _ in range(rng.randint(0, 5)):
        status = rng.choice(["running", "awaiting_guidance", "completed", "failed"])
        tickets = [_text(rng) for _ in range(rng.randint(0, 2))]
        run = RunRow(_text(rng), status, "run", tickets, 1, _time(rng), 0)
        runs.append((run, _document(rng, status)))
    typed = compact_snapshot(snapshot_of(runs, settings, now))
    assert encode_compact(compact_document_from(runs, Clock(settings, now))) == typed
