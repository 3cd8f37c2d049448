"""One stack per broker and queue names: the claim ``metawsm up`` holds on its broker.

Queues are named by the topic prefixes alone (``forum.commands.*``, ``forum.events.*``), so two
stacks on one Redis database with the default prefixes would consume each other's messages: a
worker dead-letters a command its own ledger never accepted, and the stack that did accept it
waits for its reconciliation to publish it again. ``metawsm up`` uses the Redis on
``127.0.0.1:6379`` when one answers, which makes that easy to do by accident (two checkouts on
one machine). So ``up`` claims the broker for its database before it starts anything: a key
``metawsm:stack:<command prefix>`` holding the (masked) database URL, set only if absent, with
a time to live it renews while it runs and deleted when it stops (a killed ``up`` leaves it to
expire). A second stack on another database finds the claim and refuses, naming the database
that holds it and how to separate the two; a stack on the same database (``up`` restarted)
takes the claim over.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis

from metawsm.errors import BrokerShared, BrokerUnreachable
from metawsm.settings import Settings, mask_url

CLAIM_TTL_S = 30
SEPARATE_HINT = (
    "give this stack its own Redis database (METAWSM_BROKER_URL=redis://HOST:PORT/N with"
    " another N) or its own queue names (METAWSM_COMMAND_PREFIX, METAWSM_EVENT_PREFIX,"
    " METAWSM_INTEGRATION_PREFIX)"
)
# Deletes the claim only while it is still this stack's (a claim that expired and was taken by
# another stack is left alone).
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
# Renews the claim while it is this stack's, or takes it back when it expired (Redis away for
# longer than its time to live); a claim another stack took meanwhile stays that stack's.
_RENEW = (
    "local v = redis.call('GET', KEYS[1]) "
    "if v == false or v == ARGV[1] then "
    "return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end"
)


def claim_key(settings: Settings) -> str:
    """The Redis key of the claim on the queues of ``settings``' prefixes."""
    return f"metawsm:stack:{settings.command_prefix}"


def stack_name(settings: Settings) -> str:
    """What names a stack in its claim: its database's URL, password masked."""
    return mask_url(settings.database_url)


@contextmanager
def broker_claimed(settings: Settings, ttl_s: float = CLAIM_TTL_S) -> Iterator[None]:
    """Hold the claim on the broker while the block runs, renewed every third of ``ttl_s``.

    Raises:
        BrokerShared: another stack (another database) holds the claim.
    """
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=5, socket_connect_timeout=5)
    key, ours = claim_key(settings), stack_name(settings)
    ttl_ms = int(ttl_s * 1000)
    try:
        try:
            taken = client.execute_command("EVAL", _RENEW, 1, key, ours, ttl_ms)
            holder = None if taken is not None else client.get(key)
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnreachable(
                f"could not claim the broker {mask_url(settings.broker_url)}: {exc}"
            ) from exc
        if holder is not None:
            raise BrokerShared(
                f"the broker {mask_url(settings.broker_url)} and its queues"
                f" ({settings.command_prefix}.*) are used by another metawsm stack, on"
                f" {holder.decode(errors='replace')}: {SEPARATE_HINT}"
            )
        stop = threading.Event()
        renewer = threading.Thread(
            target=_renew, args=(client, key, ours, ttl_ms, stop), name="broker-claim", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            _release(client, key, ours)
    finally:
        client.close()


def _renew(
    client: redis.Redis[bytes], key: str, ours: str, ttl_ms: int, stop: threading.Event
) -> None:
    while not stop.wait(ttl_ms / 3000):
        with suppress(redis.RedisError, OSError):  # Redis away: again at the next turn
            client.execute_command("EVAL", _RENEW, 1, key, ours, ttl_ms)


def _release(client: redis.Redis[bytes], key: str, ours: str) -> None:
    with suppress(redis.RedisError, OSError):  # Redis away: the claim expires by itself
        client.execute_command("EVAL", _RELEASE, 1, key, ours)
