"""Is the broker there: one PING with a short timeout, for the exporter and ``metawsm health``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from metawsm.settings import mask_url


@dataclass(frozen=True)
class BrokerProbe:
    """What one PING found: ``latency_ms`` when Redis answered, else ``error`` (URL masked)."""

    up: bool
    latency_ms: float
    error: str | None = None


def probe_broker(url: str, timeout_s: float) -> BrokerProbe:
    """PING the Redis at ``url`` once, giving up after ``timeout_s`` (connect, then reply)."""
    client = redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    started = time.perf_counter()
    try:
        client.ping()
        return BrokerProbe(True, (time.perf_counter() - started) * 1000)
    except (redis.RedisError, OSError) as exc:
        elapsed_ms = (time.perf_counter() - started) * 1000
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return BrokerProbe(False, elapsed_ms, f"{mask_url(url)}: {reason}")
    finally:
        client.close()
