"""A limiter of failed attempts per source (e.g. failed authentications per client address).

Each source has a bucket of ``burst`` attempts that refills at ``per_minute`` a minute; a
failure takes one, and a source with an empty bucket is refused until it refills. Only failures
are counted, so a client that authenticates correctly is never slowed down. In memory, per
process (the API keeps one), bounded: at most ``max_sources`` buckets, the least recently seen
dropped first (a dropped source starts full again, which only favours it).

Times are ``time.monotonic()`` seconds, passed in (tests give their own clock).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at_s: float


class FailureLimiter:
    """Allow at most ``burst`` failures at once per source, refilled at ``per_minute``."""

    def __init__(self, *, burst: int = 10, per_minute: float = 10.0, max_sources: int = 10_000):
        if burst < 1 or per_minute <= 0 or max_sources < 1:
            raise ValueError("burst >= 1, per_minute > 0 and max_sources >= 1 are required")
        self.burst = burst
        self.rate_per_s = per_minute / 60.0
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def blocked(self, source: str, now_s: float) -> float:
        """Seconds ``source`` must wait before its next attempt is heard (0: not blocked)."""
        tokens = self._refilled(source, now_s)
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate_per_s

    def failed(self, source: str, now_s: float) -> None:
        """Count one failed attempt of ``source`` at ``now_s``."""
        tokens = self._refilled(source, now_s)
        self._buckets[source] = _Bucket(max(0.0, tokens - 1), now_s)
        self._buckets.move_to_end(source)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)

    def _refilled(self, source: str, now_s: float) -> float:
        bucket = self._buckets.get(source)
        if bucket is None:
            return float(self.burst)
        elapsed = max(0.0, now_s - bucket.at_s)
        return min(float(self.burst), bucket.tokens + elapsed * self.rate_per_s)
