"""The broker adapter: publishes messages as Celery tasks by their stable names.

metawsm never imports the worker code: a client app built here sends ``topic`` as the task name
to the queue of the same name.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from metawsm.celery_config import celery_config
from metawsm.errors import BrokerUnreachable
from metawsm.settings import Settings, mask_url


def make_client_app(settings: Settings) -> Celery:
    """A Celery app that only sends (never imported tasks, never consumes)."""
    app = Celery("metawsm-client", set_as_current=False)
    app.conf.update(celery_config(settings, client=True))
    return app


class CeleryPublisher:
    """Publishes outbox messages through a Celery app (the client's or the worker's own)."""

    def __init__(self, app: Celery, broker_url: str) -> None:
        self._app = app
        self._where = mask_url(broker_url)

    def publish(self, topic: str, message_id: str, payload: dict[str, Any]) -> None:
        """Send ``payload`` as task ``topic`` on queue ``topic`` with task id ``message_id``.

        Raises:
            BrokerUnreachable: Redis refused, timed out or dropped the connection.
        """
        try:
            self._app.send_task(topic, kwargs={"message": payload}, queue=topic, task_id=message_id)
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
