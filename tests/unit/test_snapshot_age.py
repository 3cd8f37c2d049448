"""A part's age: whole seconds, floored, never negative, however far apart the times are."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from metawsm.services.snapshot_parts import age_of

NOW = datetime(2026, 12, 6, 18, 0, 0, 123456, tzinfo=UTC)


def expected(now: datetime, since: datetime) -> int:
    """The definition: seconds between them, floored, and 0 for a time after ``now``."""
    return max(0, (now - since) // timedelta(seconds=1))


def test_age_is_the_floor_of_the_seconds_and_never_negative() -> None:
    rng = random.Random(12)
    edges = [timedelta(0), timedelta(microseconds=1), timedelta(microseconds=999_999),
             timedelta(seconds=1), timedelta(days=1), timedelta(days=1, microseconds=-1),
             timedelta(days=400, seconds=5, microseconds=7)]  # fmt: skip
    spans = edges + [-e for e in edges]
    spans += [timedelta(microseconds=rng.randint(-(10**14), 10**14)) for _ in range(5_000)]
    for span in spans:
        since = NOW - span
        assert age_of(NOW, since) == expected(NOW, since), span
