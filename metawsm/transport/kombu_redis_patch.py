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

Both replace private kombu API (``Channel._connparams``, ``Channel.conn_or_acquire``), so they
were written for one kombu release line: :data:`WRITTEN_FOR` (the dependency pin says the same).
:func:`install` refuses another line rather than patch code it was not checked against. Both
patches are idempotent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

# The kombu release line (major, minor) these patches were written and tested for.
WRITTEN_FOR = (5, 7)

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


class UnsupportedKombu(RuntimeError):
    """The installed kombu is not the release line the patches were written for."""


def check_kombu_version(version: str | None = None) -> None:
    """Refuse a kombu outside :data:`WRITTEN_FOR`.

    Raises:
        UnsupportedKombu: naming the installed version and the one expected.
    """
    version = version or str(getattr(kombu, "__version__", "0.0"))
    found = tuple(int(part) for part in version.split(".")[:2])
    if found != WRITTEN_FOR:
        expected = ".".join(map(str, WRITTEN_FOR))
        raise UnsupportedKombu(
            f"kombu {version} is installed, but metawsm's Redis channel patches were written for"
            f" kombu {expected}.x (metawsm/transport/kombu_redis_patch.py, kombu_quarantine.py);"
            f" install kombu {expected}.x or check the patches against {version}"
        )


def install() -> None:
    """Patch kombu's Redis channel (see the module docstring). Idempotent.

    Raises:
        UnsupportedKombu: the installed kombu is not the release line the patches target.
    """
    check_kombu_version()
    _CHANNEL._connparams = _connparams
    _CHANNEL.conn_or_acquire = _conn_or_acquire
