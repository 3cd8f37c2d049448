"""The message bus: which handler takes each command and which consumers get each event.

Both maps are data, built in one place (:mod:`metawsm.bootstrap`) and passed in: nothing
registers itself by being imported. Commands map by class (``OpenThread`` → ``open_thread``);
events map by payload class (``ControlSignalPostedPayload`` → projector and run lifecycle),
since every event travels in one envelope, :class:`~metawsm.messages.events.Event`, whose
``event_type`` names its payload model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from metawsm.messages.commands import COMMAND_MODELS, AnyCommand
from metawsm.messages.common import Frozen
from metawsm.messages.events import EVENT_PAYLOADS, Event
from metawsm.runtime import Runtime

if TYPE_CHECKING:
    from metawsm.services.handlers import HandlerContext

from metawsm.topics import PROJECTOR

Handler = Callable[["HandlerContext", Any], str]


class Consume(Protocol):
    """Applies one event for a subscriber, once; False when it was already applied.

    ``count_delivery``: also count this delivery in the consumer's own transaction (asked only
    of subscribers with ``counts_delivery``).
    """

    def __call__(
        self, rt: Runtime, event: Event, message_id: str, *, count_delivery: bool = False
    ) -> bool:
        """Apply ``event``."""


@dataclass(frozen=True)
class Subscriber:
    """A consumer of events with its stable name (its topic and idempotency ledger).

    ``counts_delivery``: its transaction can count a first delivery itself (a database-only
    consumer); one with side effects outside the database is counted before it runs.
    """

    name: str
    consume: Consume
    counts_delivery: bool


class MessageBus:
    """Looks up the handler of a command and the subscribers of an event (module docstring)."""

    def __init__(
        self,
        handlers: Mapping[type[Any], Handler],
        consumers: Mapping[type[Frozen], Sequence[Subscriber]],
    ) -> None:
        command_types = {model: name for name, model in COMMAND_MODELS.items()}
        event_types = {model: name for name, model in EVENT_PAYLOADS.items()}
        # Keys that are not message models are left out here and reported by missing_entries.
        self._handlers = {
            command_types[model]: handler
            for model, handler in handlers.items()
            if model in command_types
        }
        self._by_event_type = {
            event_types[model]: list(subs)
            for model, subs in consumers.items()
            if model in event_types
        }
        self._subscribers = {s.name: s for subs in consumers.values() for s in subs}
        self.handlers = dict(handlers)
        self.consumers = {model: list(subs) for model, subs in consumers.items()}

    def handler_for(self, command: AnyCommand) -> Handler:
        """The handler of ``command``'s class."""
        return self._handlers[command.command_type]

    def subscribers_of(self, event_type: str) -> list[Subscriber]:
        """Every subscriber of an event type, the projector first."""
        return self._by_event_type.get(event_type, [])

    def subscriber(self, name: str) -> Subscriber:
        """The subscriber called ``name``."""
        return self._subscribers[name]

    def subscriber_names(self) -> list[str]:
        """Every subscriber's name, the projector first."""
        return sorted(self._subscribers, key=lambda name: (name != PROJECTOR, name))

    def subscriptions(self) -> dict[str, tuple[str, ...]]:
        """Event type → names of its subscribers (what the outbox fans each event out to)."""
        return {t: tuple(s.name for s in subs) for t, subs in self._by_event_type.items()}


def missing_entries(bus: MessageBus) -> list[str]:
    """What the bus lacks or names wrongly, as readable lines (empty when complete).

    Every command model of :data:`COMMAND_MODELS` needs exactly its handler, every event payload
    model of :data:`EVENT_PAYLOADS` at least the projector; a key that is not one of them is an
    error too.
    """
    problems = []
    commands = set(COMMAND_MODELS.values())
    payloads = set(EVENT_PAYLOADS.values())
    for model in commands - set(bus.handlers):
        problems.append(f"command {model.__name__} has no handler")
    for key in set(bus.handlers) - commands:
        problems.append(f"handler map names {key!r}, which is not a command model")
    for payload_model in payloads - set(bus.consumers):
        problems.append(f"event payload {payload_model.__name__} has no consumer")
    for key in set(bus.consumers) - payloads:
        problems.append(f"consumer map names {key!r}, which is not an event payload model")
    for payload_model, subs in bus.consumers.items():
        if not subs or subs[0].name != PROJECTOR:
            problems.append(f"event payload {payload_model.__name__} is not projected first")
    return sorted(problems)
