"""One stack per broker and queue names: the claim ``metawsm up`` holds on its broker.

Queues are named by the topic prefixes alone (``forum.commands.*``, ``forum.events.*``), so two
stacks on one Redis database with the default prefixes would consume each other's messages: a
worker dead-letters a command its own ledger never accepted, and the stack that did accept it
waits for its reconciliation to publish it again. ``metawsm up`` uses the Redis on
``127.0.0.1:6379`` when one answers, which makes that easy to do by accident (two checkouts on
one machine). So ``up`` claims the broker for its database before it starts anything: one key
``metawsm:stack:<prefix>`` per topic prefix (commands, events, integration), each holding the
(masked) database URL, set together only if none is another stack's, with a time to live it
renews while it runs, deleted when it stops (a killed ``up`` leaves them to expire). A second
stack on another database that shares any of those queues finds the claim and refuses, naming
the database that holds it and how to separate the two; a stack on the same database (``up``
restarted) takes the claim over.
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
# Deletes the claim's keys that are still this stack's (one that expired and was taken by
# another stack is left alone).
_RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
"""
# Takes or renews every key of the claim when none is another stack's, and answers nothing;
# else changes nothing and answers the first other stack's key and its holder. Renewing also
# takes back keys that expired (Redis away for longer than their time to live); a key another
# stack took meanwhile stays that stack's.
_TAKE = """
for _, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder and holder ~= ARGV[1] then return {key, holder} end
end
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
return false
"""


def claim_keys(settings: Settings) -> list[str]:
    """The Redis keys of the claim: one per topic prefix whose queues a stack consumes."""
    prefixes = (settings.command_prefix, settings.event_prefix, settings.integration_prefix)
    return [f"metawsm:stack:{prefix}" for prefix in prefixes]


def stack_name(settings: Settings) -> str:
    """What names a stack in its claim: its database's URL, password masked."""
    return mask_url(settings.database_url)


@contextmanager
def broker_claimed(settings: Settings, ttl_s: float = CLAIM_TTL_S) -> Iterator[None]:
    """Hold the claim on the broker while the block runs, renewed every third of ``ttl_s``.

    Raises:
        BrokerShared: another stack (another database) holds the claim.
        BrokerUnreachable: the broker did not answer the claim (exit 3, as for ``up``'s ping).
    """
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=5, socket_connect_timeout=5)
    keys, ours = claim_keys(settings), stack_name(settings)
    ttl_ms = int(ttl_s * 1000)
    try:
        try:
            other = client.execute_command("EVAL", _TAKE, len(keys), *keys, ours, ttl_ms)
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnreachable(
                f"could not claim the broker {mask_url(settings.broker_url)}: {exc}"
            ) from exc
        if other:
            key, holder = (part.decode(errors="replace") for part in other)
            raise BrokerShared(
                f"the broker {mask_url(settings.broker_url)} and its queues"
                f" ({key.removeprefix('metawsm:stack:')}.*) are used by another metawsm stack,"
                f" on {holder}: {SEPARATE_HINT}"
            )
        stop = threading.Event()
        renewer = threading.Thread(
            target=_renew, args=(client, keys, ours, ttl_ms, stop), name="broker-claim", daemon=True
        )
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            _release(client, keys, ours)
    finally:
        client.close()


def _renew(
    client: redis.Redis[bytes], keys: list[str], ours: str, ttl_ms: int, stop: threading.Event
) -> None:
    while not stop.wait(ttl_ms / 3000):
        with suppress(redis.RedisError, OSError):  # Redis away: again at the next turn
            client.execute_command("EVAL", _TAKE, len(keys), *keys, ours, ttl_ms)


def _release(client: redis.Redis[bytes], keys: list[str], ours: str) -> None:
    with suppress(redis.RedisError, OSError):  # Redis away: the claim expires by itself
        client.execute_command("EVAL", _RELEASE, len(keys), *keys, ours)
