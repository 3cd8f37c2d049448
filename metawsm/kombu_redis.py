"""Two adjustments to kombu's Redis transport, installed by every app factory (never at import).

1. **Detached channels** (celery 5.7 with kombu 5.7): on a broker connection loss celery's
   consumer collects the connection, which detaches the transport (``transport.client = None``),
   then still uses its channels: it closes the channel again (restoring unacked messages) and
   acks tasks that finish meanwhile. Each builds a new pool from the detached transport and fails
   with AttributeError, which celery treats as unrecoverable: the worker exits instead of
   reconnecting. Raising a connection error instead lets celery's own handling run. Redis is gone
   at that point, so nothing could have been restored or acked anyway: those messages come back
   after the visibility timeout, and reconciliation re-drives them from the outbox well before.
2. **One client per channel.** kombu builds a new ``redis.Redis`` object for every publish, ack
   and task event (``Channel.conn_or_acquire``); building one (its response-callback table) costs
   more CPU than the Redis round trip it serves: a fifth of a worker's main process in a profile
   (docs/performance.md). The connections already come from the channel's pool; here the client
   object in front of that pool is kept too, and rebuilt when the channel gets a new pool (after
   a reconnect). ``redis.Redis`` is safe to share between threads.

Both are idempotent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

_CHANNEL: Any = kombu_redis.Channel
_KOMBU_CONNPARAMS = _CHANNEL._connparams
_CLIENT_ATTR = "_metawsm_client"


def _connparams(channel: Any, asynchronous: bool = False) -> Any:
    if getattr(channel.connection, "client", None) is None:
        # A channel of a connection already closed: a connection error, which celery handles
        # (reconnect; an ack that cannot be sent is logged and the message redelivered later).
        raise RedisConnectionError("the broker connection of this channel was closed")
    return _KOMBU_CONNPARAMS(channel, asynchronous=asynchronous)


@contextmanager
def _conn_or_acquire(channel: Any, client: Any = None) -> Iterator[Any]:
    if client:
        yield client
        return
    pool = channel.pool  # raises a connection error on a detached channel (above)
    shared = channel.__dict__.get(_CLIENT_ATTR)
    if shared is None or shared.connection_pool is not pool:
        shared = channel._create_client()
        channel.__dict__[_CLIENT_ATTR] = shared
    yield shared


def install() -> None:
    """Patch kombu's Redis channel (see the module docstring). Idempotent."""
    _CHANNEL._connparams = _connparams
    _CHANNEL.conn_or_acquire = _conn_or_acquire
