"""kombu's Redis channel reads every element of a queue, whatever it holds.

kombu decodes each element it pops (``loads(bytes_to_str(item))`` in ``Channel._brpop_read`` and
``Channel._get``) and builds a message from it before any consumer hook runs. An element that is
not the JSON of a kombu envelope (``redis-cli LPUSH forum.commands.add_post garbage``) raises out
of the event loop; celery calls that unrecoverable and the worker exits; the supervisor of
``metawsm worker`` restarts it, the next such element kills it again, and after a few in a row
the supervisor gives up.

Here each popped element is checked first (:func:`read_element`): UTF-8, JSON, and an envelope
kombu can build a message from (properties with a delivery tag and delivery info, a body its
encoding decodes). An element that fails is delivered instead as a **quarantine envelope**: a
well-formed message of content type :data:`CONTENT_TYPE` whose body is the element exactly as it
was and whose :data:`REASON_HEADER` says what is wrong with it. Celery accepts only JSON, so it
hands that message to the consumer's decode-error hook, where the worker records it as a dead
letter (``workers/quarantine.py``). Nothing but JSON is ever deserialised.

While a popped element is being delivered, :func:`popped` gives its bytes and queue, so the
consumer can also keep exactly what was in Redis for a message it refuses later (pickled, naming
an unknown task, malformed headers).

How: kombu's reads (``Channel._brpop_read``, ``Channel._get``) run unchanged inside thin
wrappers that mark the read in progress; kombu's module-level ``bytes_to_str`` and ``loads``, which
those reads call on the popped element, are replaced by functions that behave exactly like
kombu's outside a read and, inside one, hand the element to :func:`read_element` instead of
raising. The transport's ``_deliver`` is wrapped to learn the queue. Nothing of kombu's code is
copied; what the seam relies on (the reads decoding with ``loads(bytes_to_str(item))``) is
checked by a test, and, like :mod:`metawsm.transport.kombu_redis_patch`, :func:`install` refuses
another kombu release line.
"""

from __future__ import annotations

import base64
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.utils.json import loads

from metawsm.transport.kombu_redis_patch import check_kombu_version

CONTENT_TYPE = "application/x-metawsm-quarantine"
REASON_HEADER = "x-metawsm-quarantine-reason"
REASON_LIMIT_CHARS = 500

_MODULE: Any = kombu_redis  # its helpers are imported names (no re-export for the type checker)
_CHANNEL: Any = kombu_redis.Channel
_TRANSPORT: Any = kombu_redis.Transport
# kombu's own reads and helpers, wrapped (never copied) by this module.
KOMBU_READS = {"_brpop_read": _CHANNEL._brpop_read, "_get": _CHANNEL._get}
_KOMBU_DELIVER = _TRANSPORT._deliver
_KOMBU_LOADS = _MODULE.loads
_KOMBU_BYTES_TO_STR = _MODULE.bytes_to_str


@dataclass(frozen=True)
class Popped:
    """An element as BRPOP returned it, and the queue it came from."""

    raw: bytes
    queue: str


_POPPED: ContextVar[Popped | None] = ContextVar("metawsm_popped_element", default=None)
# The channel whose read (BRPOP or RPOP of one element) is in progress in this context.
_READING: ContextVar[Any] = ContextVar("metawsm_reading_channel", default=None)


class _NotUtf8(str):
    """What ``bytes_to_str`` gives, during a read, for bytes that are not UTF-8: an empty text
    that carries the bytes, so ``loads`` can quarantine them as they were."""

    raw: bytes


class Unreadable(ValueError):
    """A queue element that kombu cannot turn into a message; the text says why."""


def popped() -> Popped | None:
    """The element whose message is being delivered now (None outside a delivery)."""
    return _POPPED.get()


def read_element(channel: Any, raw: bytes, queue: str) -> dict[str, Any]:
    """The envelope of ``raw``, or a quarantine envelope carrying it (module docstring)."""
    try:
        return envelope_of(channel, raw)
    except Unreadable as exc:
        return quarantine_envelope(raw, queue, str(exc))


def envelope_of(channel: Any, raw: bytes) -> dict[str, Any]:
    """The kombu envelope ``raw`` holds, checked as the channel and its consumer will use it.

    Raises:
        Unreadable: ``raw`` is not UTF-8, not JSON, or not an envelope kombu can read.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        payload = loads(text)
    except Exception as exc:  # ValueError, RecursionError, a type hook's error: all the input's
        raise Unreadable(f"not JSON ({type(exc).__name__}: {exc})") from exc
    problem = _envelope_problem(payload)
    if problem is None:
        try:
            channel.Message(payload, channel=channel)  # what the consumer callback builds
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        raise Unreadable(f"not a kombu message envelope ({problem})"[:REASON_LIMIT_CHARS])
    return payload  # type: ignore[no-any-return]


def _envelope_problem(payload: Any) -> str | None:
    """What the channel or its ack bookkeeping would trip on, before building the message."""
    if not isinstance(payload, dict):
        return f"a JSON {type(payload).__name__}, not an object"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "no properties object"
    if not isinstance(properties.get("delivery_tag"), str):
        return "no delivery_tag string in its properties"
    info = properties.get("delivery_info")
    if not isinstance(info, dict) or not {"exchange", "routing_key"} <= info.keys():
        return "no delivery_info with exchange and routing_key in its properties"
    if not isinstance(payload.get("headers") or {}, dict):
        return "headers that are not an object"
    for key in ("content-type", "content-encoding"):
        if not isinstance(payload.get(key) or "", str):
            return f"a {key} that is not a string"
    return None


def quarantine_envelope(raw: bytes, queue: str, reason: str) -> dict[str, Any]:
    """A well-formed message carrying ``raw`` as its body, refused by every JSON-only consumer."""
    return {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-encoding": "binary",
        "content-type": CONTENT_TYPE,
        "headers": {REASON_HEADER: reason[:REASON_LIMIT_CHARS]},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": queue},
            "delivery_mode": 2,
            "priority": 0,
        },
    }


def _as_bytes(item: Any) -> bytes:
    return item if isinstance(item, bytes) else str(item).encode()


def _bytes_to_str(value: Any) -> Any:
    """kombu's ``bytes_to_str``; during a read, bytes that are not UTF-8 become a marker that
    keeps them (kombu's would replace what it cannot decode, and the element would be lost)."""
    if _READING.get() is None or not isinstance(value, bytes):
        return _KOMBU_BYTES_TO_STR(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        marker = _NotUtf8()
        marker.raw = value
        return marker


def _loads(text: Any) -> Any:
    """kombu's ``loads``; during a read, the popped element's envelope or its quarantine."""
    channel = _READING.get()
    if channel is None:
        return _KOMBU_LOADS(text)
    raw = text.raw if isinstance(text, _NotUtf8) else _as_bytes(text)
    _POPPED.set(Popped(raw, ""))  # the queue is known when kombu delivers it (_deliver)
    return read_element(channel, raw, "")


def _with_queue(message: Any, queue: str) -> None:
    """Name the queue in a quarantine envelope and in the popped element."""
    element = _POPPED.get()
    if element is not None and not element.queue:
        _POPPED.set(Popped(element.raw, queue))
    if isinstance(message, dict) and message.get("content-type") == CONTENT_TYPE:
        message["properties"]["delivery_info"]["routing_key"] = queue


def _deliver(self: Any, message: Any, queue: str) -> Any:
    if _READING.get() is not None:
        _with_queue(message, queue)
    return _KOMBU_DELIVER(self, message, queue)


def _brpop_read(self: Any, **options: Any) -> Any:
    reading, element = _READING.set(self), _POPPED.set(None)
    try:
        return KOMBU_READS["_brpop_read"](self, **options)
    finally:
        _POPPED.reset(element)
        _READING.reset(reading)


def _get(self: Any, queue: str) -> Any:
    reading, element = _READING.set(self), _POPPED.set(None)
    try:
        message = KOMBU_READS["_get"](self, queue)
        _with_queue(message, queue)
        return message
    finally:
        _POPPED.reset(element)
        _READING.reset(reading)


def install() -> None:
    """Make kombu's Redis channel read any element (module docstring). Idempotent.

    Raises:
        UnsupportedKombu: the installed kombu is not the release line the wrappers were checked
            against.
    """
    check_kombu_version()
    _CHANNEL._brpop_read = _brpop_read
    _CHANNEL._get = _get
    _TRANSPORT._deliver = _deliver
    _MODULE.loads = _loads
    _MODULE.bytes_to_str = _bytes_to_str
