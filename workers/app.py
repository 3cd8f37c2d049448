"""The worker's Celery app: configuration from settings, tasks registered by stable name.

``create_app(settings)`` is the factory; ``app`` (built on first attribute access through
``celery -A workers.app``) uses settings from the environment. Nothing connects at import: the
engine is built lazily in each worker process, after fork.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init
from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

from beat import jobs
from beat.schedule import build_schedule
from metawsm.celery_config import celery_config
from metawsm.composition import Container, build
from metawsm.settings import Settings, load_settings
from workers import tasks


class MetawsmCelery(Celery):
    """A Celery app that carries its metawsm container (one per process)."""

    container: Container


def create_app(settings: Settings) -> MetawsmCelery:
    """Build the worker app for ``settings`` with every task registered."""
    tolerate_detached_redis_channels()
    app = MetawsmCelery("metawsm", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.container = build(settings, app=app)
    app.conf.beat_schedule = build_schedule(settings)
    tasks.register(app, app.container)
    jobs.register(app, app.container)
    return track(app)


_KOMBU_CONNPARAMS = kombu_redis.Channel._connparams  # type: ignore[attr-defined]


def _connparams(channel: Any, asynchronous: bool = False) -> Any:
    if getattr(channel.connection, "client", None) is None:
        # A channel of a connection already closed: a connection error, which celery handles
        # (reconnect; an ack that cannot be sent is logged and the message redelivered later).
        raise RedisConnectionError("the broker connection of this channel was closed")
    return _KOMBU_CONNPARAMS(channel, asynchronous=asynchronous)


def tolerate_detached_redis_channels() -> None:
    """Keep the worker alive when Redis drops while tasks run (celery 5.7 with kombu 5.7).

    On a broker connection loss celery's consumer collects the connection, which detaches the
    transport (``transport.client = None``), then still uses its channels: it closes the channel
    again (restoring unacked messages) and acks tasks that finish meanwhile. Each builds a new
    pool from the detached transport and fails with AttributeError, which celery treats as an
    unrecoverable error: the worker exits instead of reconnecting. Raising a connection error
    instead lets celery's own handling run. Redis is gone at that point, so nothing could have
    been restored or acked anyway: those messages come back after the visibility timeout, and
    reconciliation re-drives them from the outbox well before that. Idempotent.
    """
    kombu_redis.Channel._connparams = _connparams  # type: ignore[attr-defined]


@worker_process_init.connect
def _reset_after_fork(**_: Any) -> None:
    # A forked child must never reuse the parent's pooled connections: drop any engine built
    # before the fork so each child creates its own on first use.
    for app in _APPS:
        app.container.__dict__.pop("engine", None)
        app.container.__dict__.pop("runtime", None)


_APPS: list[MetawsmCelery] = []


def default_app() -> MetawsmCelery:
    """The app for the settings in the environment (for ``celery -A workers.app``)."""
    if not _APPS:
        create_app(load_settings())
    return _APPS[0]


def track(app: MetawsmCelery) -> MetawsmCelery:
    """Remember ``app`` so its engine is reset in forked children."""
    if app not in _APPS:
        _APPS.append(app)
    return app


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        return default_app()
    raise AttributeError(name)
