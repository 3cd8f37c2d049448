"""The publisher's circuit breaker and the publish retry policy, without a broker."""

from __future__ import annotations

import pytest
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from metawsm.transport.celery_config import CLIENT_PUBLISH_RETRY, give_up_on_timeout
from metawsm.transport.circuit_breaker import CircuitBreaker


class Clock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_closed_breaker_lets_every_call_through() -> None:
    breaker = CircuitBreaker(5.0, Clock())
    for _ in range(3):
        assert breaker.refusal() is None
        breaker.succeeded()


def test_after_a_failure_calls_are_refused_for_the_spell_and_say_why() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock)
    breaker.failed("Timeout reading from 127.0.0.1:6379")
    clock.now += 1.0
    assert breaker.refusal() == (
        "not attempted: publishing paused for 4.0 s more after a failure 1.0 s ago"
        " (Timeout reading from 127.0.0.1:6379)"
    )
    clock.now += 3.9
    assert breaker.refusal() is not None


def test_after_the_spell_one_trial_goes_through_while_the_others_are_still_refused() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock)
    breaker.failed("down")
    clock.now += 5.0
    assert breaker.refusal() is None  # the trial
    assert breaker.refusal() is not None  # others, while the trial runs
    breaker.succeeded()
    assert breaker.refusal() is None
    assert breaker.refusal() is None


def test_a_failed_trial_opens_the_breaker_for_another_spell() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock)
    breaker.failed("down")
    clock.now += 5.0
    assert breaker.refusal() is None
    breaker.failed("still down")
    clock.now += 4.9
    assert "(still down)" in (breaker.refusal() or "")
    clock.now += 0.1
    assert breaker.refusal() is None


def test_a_trial_that_never_reports_lets_another_caller_try_after_the_next_spell() -> None:
    clock = Clock()
    breaker = CircuitBreaker(5.0, clock)
    breaker.failed("down")
    clock.now += 5.0
    assert breaker.refusal() is None  # a trial that hangs or fails otherwise, never reporting
    clock.now += 5.0
    assert breaker.refusal() is None


def test_a_zero_spell_never_refuses() -> None:
    breaker = CircuitBreaker(0.0, Clock())
    breaker.failed("down")
    assert breaker.refusal() is None
    assert breaker.refusal() is None


def _caused_by(cause: BaseException) -> OperationalError:
    try:
        raise OperationalError(str(cause)) from cause
    except OperationalError as exc:
        return exc


@pytest.mark.parametrize(
    "error",
    [
        RedisTimeoutError("Timeout reading from 127.0.0.1:6379"),
        TimeoutError("timed out"),
        _caused_by(RedisTimeoutError("Timeout connecting to server")),
    ],
    ids=["redis", "socket", "wrapped by kombu"],
)
def test_a_publish_that_timed_out_is_not_retried(error: BaseException) -> None:
    assert CLIENT_PUBLISH_RETRY["errback"] is give_up_on_timeout
    with pytest.raises(type(error)):
        give_up_on_timeout(error, 0)


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Connection reset by peer"),
        _caused_by(RedisConnectionError("Error 111 connecting. Connection refused.")),
    ],
    ids=["reset", "refused"],
)
def test_a_publish_whose_connection_failed_at_once_is_retried(error: BaseException) -> None:
    give_up_on_timeout(error, 0)  # returns: kombu reconnects and retries once
