"""The worker's Celery app: configuration from settings, tasks registered by stable name.

``create_app(settings)`` is the factory; ``app`` (built on first attribute access through
``celery -A workers.app``) uses settings from the environment. Nothing connects at import: the
engine is built lazily in each worker process, after fork.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from beat import jobs
from beat.schedule import build_schedule
from metawsm.bootstrap import Container, build
from metawsm.settings import Settings, load_settings
from metawsm.transport import (
    kombu_quarantine,
    kombu_redis_patch,
    quiet_housekeeping,
    task_time_limits,
)
from metawsm.transport.celery_config import celery_config
from workers import heartbeat, tasks


class MetawsmCelery(Celery):
    """A Celery app that carries its metawsm container (one per process)."""

    container: Container


def create_app(settings: Settings) -> MetawsmCelery:
    """Build the worker app for ``settings`` with every task registered."""
    kombu_redis_patch.install()
    kombu_quarantine.install()
    app = MetawsmCelery("metawsm", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.conf.worker_consumer = "workers.quarantine:QuarantiningConsumer"
    app.container = build(settings)
    app.conf.beat_schedule = build_schedule(settings)
    # Beat records its ticks (its heartbeat) and wakes at least once per heartbeat interval.
    app.conf.beat_scheduler = "beat.scheduler:HeartbeatScheduler"
    app.conf.beat_max_loop_interval = settings.heartbeat_interval_s
    tasks.register(app, app.container)
    jobs.register(app, app.container)
    quiet_housekeeping.install(app)
    heartbeat.install(app, app.container)
    if (
        task_time_limits.install_if_supervised(app) is not None
    ):  # a `metawsm worker --pool solo` child
        # No Redis "unacked" bookkeeping (two round trips per message): what a solo worker
        # holds when it dies is re-driven from the outbox by reconciliation, which is what
        # recovers it first anyway; kombu's restore would come an hour later
        # (docs/performance.md, docs/contracts.md).
        options = dict(app.conf.broker_transport_options)
        app.conf.broker_transport_options = {**options, "ack_emulation": False}
    return track(app)


@worker_process_init.connect
def _reset_after_fork(**_: Any) -> None:
    # A forked child must never reuse the parent's pooled connections: drop any engine or
    # publisher built before the fork so each child creates its own on first use.
    for app in _APPS:
        for name in ("engine", "publisher", "runtime"):
            app.container.__dict__.pop(name, None)


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
