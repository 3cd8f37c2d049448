"""The failed-attempt limiter (services/failure_limiter.py), on a clock the test owns."""

from __future__ import annotations

import pytest

from metawsm.services.failure_limiter import FailureLimiter


def test_a_source_is_blocked_after_its_burst_of_failures_and_heard_again_after_a_refill() -> None:
    limiter = FailureLimiter(burst=3, per_minute=6)  # one attempt back every 10 s
    for _ in range(3):
        assert limiter.blocked("10.0.0.1", 0.0) == 0
        limiter.failed("10.0.0.1", 0.0)
    assert limiter.blocked("10.0.0.1", 0.0) == pytest.approx(10.0)
    assert limiter.blocked("10.0.0.1", 4.0) == pytest.approx(6.0)
    assert limiter.blocked("10.0.0.1", 10.0) == 0


def test_sources_are_limited_separately() -> None:
    limiter = FailureLimiter(burst=1, per_minute=1)
    limiter.failed("a", 0.0)
    assert limiter.blocked("a", 0.0) > 0
    assert limiter.blocked("b", 0.0) == 0


def test_the_number_of_sources_kept_is_bounded_oldest_dropped_first() -> None:
    limiter = FailureLimiter(burst=1, per_minute=1, max_sources=2)
    for source in ("a", "b", "c"):
        limiter.failed(source, 0.0)
    assert limiter.blocked("a", 0.0) == 0  # forgotten: starts full again
    assert limiter.blocked("b", 0.0) > 0 and limiter.blocked("c", 0.0) > 0


def test_a_refill_never_exceeds_the_burst() -> None:
    limiter = FailureLimiter(burst=2, per_minute=60)
    limiter.failed("a", 0.0)
    limiter.failed("a", 1_000.0)
    limiter.failed("a", 1_000.0)
    assert limiter.blocked("a", 1_000.0) > 0


@pytest.mark.parametrize("kw", [{"burst": 0}, {"per_minute": 0}, {"max_sources": 0}])
def test_bad_limits_are_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FailureLimiter(**kw)  # type: ignore[arg-type]
