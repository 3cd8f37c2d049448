"""The worker's consumer: what no task can take is quarantined, and the worker consumes on.

Celery's consumer has a hook for each message it cannot hand to a task: a body it may not or
cannot decode (``on_decode_error``: pickle and every other content type but JSON, including the
quarantine envelopes of ``metawsm/transport/kombu_quarantine.py``), a message naming no task
(``on_unknown_message``), a task no one registered (``on_unknown_task``), a malformed task
message (``on_invalid_task``). By default each logs and drops the message. Here each records it
as a dead letter of kind ``quarantine`` (``metawsm/services/quarantine.py``), with the element
exactly as it was in Redis, then drops it. What celery's checks miss (task headers or a body of
the wrong shape make the request constructor raise, which would stop the worker) is caught
around the task handler and quarantined the same way.

When the dead letter cannot be written (the database locked or away), the element is put back
at the end of its queue :data:`PUT_BACK_DELAY_S` later, to be met again: it is never dropped
unrecorded, and the worker does not spin on it meanwhile.
"""

from __future__ import annotations

import json
import logging
import traceback
from typing import TYPE_CHECKING, Any, cast

from celery.exceptions import InvalidTaskError
from kombu.exceptions import ContentDisallowed, DecodeError
from vine import promise

from metawsm.services import quarantine
from metawsm.transport import kombu_quarantine
from workers.consumer import EventBatchingConsumer

if TYPE_CHECKING:
    from workers.app import MetawsmCelery

log = logging.getLogger("metawsm.workers.quarantine")
PUT_BACK_DELAY_S = 1.0


class QuarantiningConsumer(EventBatchingConsumer):
    """The worker's consumer: task events in batches, bad messages quarantined (see above)."""

    app: Any
    connection_errors: tuple[type[BaseException], ...]

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        """A body celery may not or cannot decode: quarantine it."""
        if message.content_type == kombu_quarantine.CONTENT_TYPE:
            self._quarantine_unreadable(message)
        else:
            self._quarantine(message, _why(exc))

    def on_unknown_message(self, body: Any, message: Any) -> None:
        """A message that names no task: quarantine it."""
        self._quarantine(message, "not a task message: it names no task", body=body)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        """A task name no worker registered: quarantine the message."""
        name = _task_name(message, body)
        self._quarantine(message, f"unknown task {name!r}: no task of that name", body=body)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        """A task message celery refuses (a content type other than JSON, bad fields)."""
        self._quarantine(message, _why(exc), body=body)

    def create_task_handler(self, promise: Any = promise) -> Any:
        """Celery's task handler, with whatever a message makes it raise quarantined."""
        handle = super().create_task_handler(promise)

        def on_task_received(message: Any) -> Any:
            if message.content_type == kombu_quarantine.CONTENT_TYPE:
                return self._quarantine_unreadable(message)
            try:
                return handle(message)
            except Exception as exc:
                if message.acknowledged or self._broker_lost(exc):
                    raise  # handled already, or the broker went away (celery reconnects)
                reason = f"not a task message this worker can read ({type(exc).__name__}: {exc})"
                self._quarantine(message, reason, trace=traceback.format_exc())
                return None

        return on_task_received

    def _broker_lost(self, exc: Exception) -> bool:
        # kombu counts KeyError among the Redis transport's connection errors (a message for a
        # queue without consumers); raised by a task message's handler it is the message's fault.
        return isinstance(exc, self.connection_errors) and not isinstance(exc, KeyError)

    def _quarantine_unreadable(self, message: Any) -> None:
        """An element the channel could not read (a quarantine envelope carrying it)."""
        headers = message.headers if isinstance(message.headers, dict) else {}
        reason = str(headers.get(kombu_quarantine.REASON_HEADER) or "an unreadable element")
        self._quarantine(message, reason, raw=bytes(message.body or b""))

    def _quarantine(
        self, message: Any, reason: str, *, raw: bytes | None = None, body: Any = None,
        trace: str | None = None,
    ) -> None:  # fmt: skip
        element = kombu_quarantine.popped()
        queue = element.queue if element else _routing_key(message)
        if raw is None:
            raw = element.raw if element else _reencoded(message)
        item = quarantine.Quarantined(raw, queue, reason, _task_name(message, body), trace)
        try:
            message_id = quarantine.record(self._app.container.engine, item)
        except Exception as exc:  # the database is locked or away: keep the element for later
            log.error(
                "could not record a bad element of %s as a dead letter (%s): putting it back on"
                " its queue in %.1f s; it was: %s",
                queue, exc, PUT_BACK_DELAY_S, reason,
            )  # fmt: skip
            self._put_back(message.channel, raw, queue)
        else:
            log.error(
                "quarantined a bad element of %s: dead letter %s: %s", queue, message_id, reason
            )
        if not message.acknowledged:
            message.reject_log_error(log, self.connection_errors)

    @property
    def _app(self) -> MetawsmCelery:
        return cast("MetawsmCelery", self.app)

    def _put_back(self, channel: Any, raw: bytes, queue: str) -> None:
        def push() -> None:
            try:
                with channel.conn_or_acquire() as client:
                    client.lpush(queue, raw)
            except Exception:
                log.exception("could not put a bad element back on %s: it is lost", queue)

        if self.hub is None:
            push()
        else:
            self.hub.call_later(PUT_BACK_DELAY_S, push)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ContentDisallowed):
        return f"content refused, only JSON is accepted ({exc})"
    if isinstance(exc, DecodeError):
        return f"a body that cannot be decoded ({exc})"
    if isinstance(exc, InvalidTaskError):
        return f"an invalid task message ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _task_name(message: Any, body: Any) -> str:
    """The task a message names (protocol 2 headers, or a protocol 1 body), else ''."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    name = headers.get("task")
    if name is None and isinstance(body, dict):
        name = body.get("task")
    if name is None:
        return ""
    return name if isinstance(name, str) else repr(name)


def _routing_key(message: Any) -> str:
    info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
    return str(info.get("routing_key") or "")


def _reencoded(message: Any) -> bytes:
    """The message as JSON, when the element it came from is not at hand (not from BRPOP)."""
    raw = getattr(message, "_raw", None)
    if raw is None:
        return bytes(message.body or b"")
    return json.dumps(raw, default=str).encode()
