"""The broker adapter: publishes messages as Celery tasks by their stable names.

metawsm never imports the worker code: a client app built here sends ``topic`` as the task name
to the queue of the same name.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from metawsm.errors import BrokerUnreachable
from metawsm.settings import Settings, mask_url
from metawsm.transport import kombu_redis_patch
from metawsm.transport.celery_config import celery_config


def make_client_app(settings: Settings) -> Celery:
    """A Celery app that only sends (never imported tasks, never consumes)."""
    kombu_redis_patch.install()
    app = Celery("metawsm-client", set_as_current=False)
    app.conf.update(celery_config(settings, client=True))
    return app


def make_publisher(settings: Settings, app: Celery | None = None) -> CeleryPublisher:
    """A publisher over ``app`` (a worker's own), or over a new send-only client app."""
    return CeleryPublisher(
        app if app is not None else make_client_app(settings), settings.broker_url
    )


def _summary(message_id: str, payload: dict[str, Any]) -> str:
    kind = payload.get("command_type") or payload.get("event_type") or "message"
    thread = payload.get("thread_id") or (payload.get("payload") or {}).get("thread_id")
    where = f" thread={thread}" if thread else ""
    return f"{{'message': <{kind} {message_id}{where}>}}"


class CeleryPublisher:
    """Publishes outbox messages through a Celery app (the client's or the worker's own)."""

    def __init__(self, app: Celery, broker_url: str) -> None:
        self._app = app
        self._where = mask_url(broker_url)

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Send ``payload`` as task ``topic`` on queue ``topic`` with task id ``message_id``.

        A ``redelivery`` carries ``redelivery=True`` beside the message: the task counts it
        before any work.

        Raises:
            BrokerUnreachable: Redis refused, timed out or dropped the connection.
        """
        kwargs: dict[str, Any] = {"message": payload}
        if redelivery:
            kwargs["redelivery"] = True
        try:
            self._app.send_task(
                topic,
                kwargs=kwargs,
                queue=topic,
                task_id=message_id,
                # What task events, Flower and worker logs show of the arguments: the ids, not
                # the bodies (no post text in monitoring), and no repr of the whole payload on
                # every publish (docs/performance.md).
                argsrepr="()",
                kwargsrepr=_summary(message_id, payload),
            )
        except (OperationalError, KombuError, OSError, TimeoutError) as exc:
            raise BrokerUnreachable(f"broker unreachable at {self._where}: {exc}") from exc
        except Exception as exc:
            # redis-py raises its own ConnectionError/TimeoutError types through kombu.
            if type(exc).__module__.startswith("redis"):
                raise BrokerUnreachable(f"broker unreachable at {self._where}: {exc}") from exc
            raise

    def close(self) -> None:
        """Release the app's broker connections."""
        self._app.close()
