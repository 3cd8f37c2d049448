"""Celery configuration derived from the settings: one place, read by clients and workers.

Every value follows the facts sheet (shared/celery-redis-facts.md): JSON only, late acks with
prefetch 1, requeue on a lost worker (with delivery counts in the database as the poison guard),
socket timeouts and health checks so a silent Redis cannot hang a worker, and one visibility
timeout larger than the longest a task can hold a message.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from metawsm.settings import Settings
from metawsm.transport.queues import HOUSEKEEPING_QUEUE


def give_up_on_timeout(exc: BaseException, interval: float) -> None:
    """kombu's errback before it retries a publish: a timeout is not retried.

    One retry after reconnecting helps when a pooled connection was reset (Redis restarted: the
    new connection works at once). It does not help when Redis is silent (stopped, overloaded):
    the TCP connect still succeeds and the new connection's first read times out again, which
    would double the wait. The message is durable in the outbox, so the drainer publishes it.

    Raises:
        BaseException: ``exc`` itself, when it is (or was caused by) a timeout.
    """
    seen: BaseException | None = exc
    while seen is not None:  # kombu re-raises the driver's error as its own, ``from`` it
        if isinstance(seen, (TimeoutError, RedisTimeoutError)):
            raise exc
        seen = seen.__cause__


# How every publisher (a CLI's, an agent's, the one inside each worker) publishes: at most one
# retry after a reset connection, none after a timeout; each step bounded by the socket timeouts
# of transport_options(client=True). The message is already durable in the outbox: when Redis
# does not answer the drainer publishes it later, nobody waits for it.
CLIENT_PUBLISH_RETRY: dict[str, Any] = {
    "max_retries": 1,
    "interval_start": 0.1,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "errback": give_up_on_timeout,
}


def transport_options(settings: Settings, *, client: bool) -> dict[str, Any]:
    """Redis transport options: timeouts, keepalive, health checks, visibility timeout.

    A client's timeouts are ``publish_timeout_s`` (connect, then each read): a publish gives up
    that quickly on a Redis that does not answer. A worker's consumer waits in BRPOP and keeps
    the long timeouts of the facts sheet.
    """
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        "socket_timeout": settings.publish_timeout_s if client else 30.0,
        "socket_connect_timeout": settings.publish_timeout_s if client else 5.0,
        "socket_keepalive": True,
        # A client gives up on a silent Redis after one timeout (the drainer publishes later);
        # redis-py's retries on top of kombu's would hold a CLI ~10x the socket timeout.
        "retry_on_timeout": not client,
        "health_check_interval": 10 if client else 20,
        # No message priorities: each queue is one Redis list, so a worker's BRPOP names one key
        # per queue instead of four (kombu's default steps 0, 3, 6, 9).
        "priority_steps": [0],
    }


def celery_config(settings: Settings, *, client: bool = False) -> dict[str, Any]:
    """The Celery settings for a worker (or, with ``client``, for a process that only sends)."""
    options = transport_options(settings, client=client)
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": options["socket_connect_timeout"],
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(1, settings.task_time_limit_s - 10),
        "task_default_queue": HOUSEKEEPING_QUEUE,
        "task_create_missing_queues": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": CLIENT_PUBLISH_RETRY
        if client
        else {"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 2},
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
        "timezone": "UTC",
    }
