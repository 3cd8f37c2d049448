"""The broker adapter: publishes messages as Celery tasks by their stable names.

metawsm never imports the worker code: a client app built here sends ``topic`` as the task name
to the queue of the same name.

Every process publishes through a send-only app of its own, a worker too: a worker's consumer
needs socket timeouts longer than its BRPOP waits, a publish must give up after
``publish_timeout_s``. Whatever is published is already durable in the outbox, so a publish that
fails (or is skipped by the circuit breaker after a failure) only leaves the row to the drainer;
no caller waits on a Redis that does not answer for longer than that timeout.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from metawsm.errors import BrokerUnreachable
from metawsm.settings import Settings, mask_url
from metawsm.transport import kombu_redis_patch
from metawsm.transport.celery_config import celery_config
from metawsm.transport.circuit_breaker import CircuitBreaker


def make_client_app(settings: Settings) -> Celery:
    """A Celery app that only sends (never imported tasks, never consumes)."""
    kombu_redis_patch.install()
    app = Celery("metawsm-client", set_as_current=False)
    app.conf.update(celery_config(settings, client=True))
    return app


def make_publisher(settings: Settings) -> CeleryPublisher:
    """A publisher over a new send-only client app, with the publish timeout and circuit breaker
    of ``settings`` (module docstring)."""
    breaker = CircuitBreaker(settings.publish_breaker_s)
    return CeleryPublisher(make_client_app(settings), settings.broker_url, breaker)


def _summary(message_id: str, payload: dict[str, Any]) -> str:
    kind = payload.get("command_type") or payload.get("event_type") or "message"
    thread = payload.get("thread_id") or (payload.get("payload") or {}).get("thread_id")
    where = f" thread={thread}" if thread else ""
    return f"{{'message': <{kind} {message_id}{where}>}}"


class CeleryPublisher:
    """Publishes outbox messages through a send-only Celery app.

    After a broker failure ``breaker`` refuses publishes for a few seconds (they fail at once,
    the rows go to the drainer), then lets one through as a trial.
    """

    def __init__(self, app: Celery, broker_url: str, breaker: CircuitBreaker) -> None:
        self._app = app
        self._where = mask_url(broker_url)
        self._breaker = breaker

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Send ``payload`` as task ``topic`` on queue ``topic`` with task id ``message_id``.

        A ``redelivery`` carries ``redelivery=True`` beside the message: the task counts it
        before any work.

        Raises:
            BrokerUnreachable: Redis refused, dropped the connection or did not answer within
                the publish timeout; or a publish failed less than the breaker's spell ago and
                this one was not attempted.
        """
        refusal = self._breaker.refusal()
        if refusal is not None:
            raise BrokerUnreachable(f"broker unreachable at {self._where}: {refusal}")
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
            raise self._unreachable(exc) from exc
        except Exception as exc:
            # redis-py raises its own ConnectionError/TimeoutError types through kombu.
            if type(exc).__module__.startswith("redis"):
                raise self._unreachable(exc) from exc
            raise
        self._breaker.succeeded()

    def _unreachable(self, exc: BaseException) -> BrokerUnreachable:
        self._breaker.failed(str(exc))
        return BrokerUnreachable(f"broker unreachable at {self._where}: {exc}")

    def close(self) -> None:
        """Release the app's broker connections."""
        self._app.close()
