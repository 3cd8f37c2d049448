"""The claim ``metawsm up`` holds on its broker (metawsm/transport/broker_claim.py), against a
real redis-server: a stack on another database is refused while the claim is held or renewed,
the same database takes it over, and a claim nobody renews (a killed ``up``) expires."""

from __future__ import annotations

import pytest
import redis

from metawsm.errors import BrokerShared
from metawsm.settings import Settings
from metawsm.transport.broker_claim import broker_claimed, claim_keys
from tests.fixtures.conditions import wait_until
from tests.fixtures.database import settings_for


def _stack(redis_url: str, name: str, **overrides: str) -> Settings:
    return settings_for(f"sqlite:////stacks/{name}/metawsm.db", redis_url, **overrides)


def _holder(redis_url: str, settings: Settings) -> str | None:
    """Who holds every key of the claim of ``settings`` (None: nobody; each key the same)."""
    with redis.Redis.from_url(redis_url) as client:
        values = {client.get(key) for key in claim_keys(settings)}
    assert len(values) == 1, values
    value = values.pop()
    return None if value is None else value.decode()


def test_a_stack_on_another_database_is_refused_while_the_claim_is_held(redis_url: str) -> None:
    a, b = _stack(redis_url, "a"), _stack(redis_url, "b")
    with broker_claimed(a):
        assert _holder(redis_url, a) == "sqlite:////stacks/a/metawsm.db"
        with pytest.raises(BrokerShared) as refused, broker_claimed(b):
            pass
        message = str(refused.value)
        assert "used by another metawsm stack, on sqlite:////stacks/a/metawsm.db" in message
        assert "METAWSM_BROKER_URL" in message and "METAWSM_COMMAND_PREFIX" in message
        assert _holder(redis_url, a) == "sqlite:////stacks/a/metawsm.db"  # B changed nothing
    assert _holder(redis_url, a) is None  # released at the end
    with broker_claimed(b):
        assert _holder(redis_url, b) == "sqlite:////stacks/b/metawsm.db"


def test_the_same_database_takes_its_claim_over_and_other_queue_names_are_apart(
    redis_url: str,
) -> None:
    a = _stack(redis_url, "a")
    with broker_claimed(a), broker_claimed(_stack(redis_url, "a")):  # up restarted
        assert _holder(redis_url, a) == "sqlite:////stacks/a/metawsm.db"
        prefixes = {"command_prefix": "b.commands", "event_prefix": "b.events"}
        apart = _stack(redis_url, "b", **prefixes, integration_prefix="b.integration")
        with broker_claimed(apart):
            assert _holder(redis_url, apart) == "sqlite:////stacks/b/metawsm.db"
        # Other command queues but the same event queues: still shared, refused, nothing taken.
        events_shared = _stack(redis_url, "c", command_prefix="c.commands")
        with pytest.raises(BrokerShared) as refused, broker_claimed(events_shared):
            pass
        assert "its queues (forum.events.*) are used by another metawsm stack" in str(refused.value)
        assert _holder(redis_url, a) == "sqlite:////stacks/a/metawsm.db"
        with redis.Redis.from_url(redis_url) as client:
            assert client.get("metawsm:stack:c.commands") is None


def test_the_claim_is_renewed_while_held_and_a_claim_nobody_renews_expires(
    redis_url: str,
) -> None:
    a, b = _stack(redis_url, "a"), _stack(redis_url, "b")
    client = redis.Redis.from_url(redis_url)
    key = claim_keys(a)[0]
    with broker_claimed(a, ttl_s=0.6):
        renewals, last = [0], [client.pttl(key)]

        def renewed_thrice() -> bool:
            now = client.pttl(key)
            assert now > 0, "the claim expired while held"
            renewals[0] += now > last[0]
            last[0] = now
            return renewals[0] >= 3

        wait_until(renewed_thrice, 10, "three renewals of the claim")
    for each in claim_keys(a):  # left by a killed `up`
        client.set(each, "sqlite:////stacks/a/metawsm.db", px=600)
    with pytest.raises(BrokerShared), broker_claimed(b):
        pass
    wait_until(lambda: _holder(redis_url, a) is None, 10, "the claim nobody renews to expire")
    with broker_claimed(b):
        assert _holder(redis_url, b) == "sqlite:////stacks/b/metawsm.db"
    client.close()


def test_a_claim_taken_by_another_stack_while_ours_had_lapsed_stays_theirs(
    redis_url: str,
) -> None:
    a = _stack(redis_url, "a")
    client = redis.Redis.from_url(redis_url)
    key = claim_keys(a)[1]  # the events' key
    with broker_claimed(a, ttl_s=0.6):
        client.set(key, "sqlite:////stacks/b/metawsm.db", px=60_000)  # ours lapsed, B took it
        seen = [0]

        def renewal_turns_passed() -> bool:  # A's renewer runs every 0.2 s
            assert client.get(key) == b"sqlite:////stacks/b/metawsm.db"
            seen[0] += 1
            return client.pttl(key) < 59_000 and seen[0] > 3

        wait_until(renewal_turns_passed, 10, "A's renewer to have run a few turns")
    assert client.get(key) == b"sqlite:////stacks/b/metawsm.db"  # A's release left it too
    client.close()
