"""Topics: where each message travels.

A topic is also the Celery queue and the task name that consumes it, so Flower shows lag per
topic. Events fan out at the outbox: one row per subscriber (the projector on
``forum.events.<suffix>``, and integration consumers on ``forum.integration.<name>``). Which
subscribers an event type has comes from the message bus's consumer map (``bootstrap``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from metawsm.settings import Settings

# The message models are imported where a method needs them: a command line write only asks
# for its command's topic, and loading the event models would cost it ~20 ms.

PROJECTOR = "projector"


@dataclass(frozen=True)
class Route:
    """Where one outbox row goes: the topic (= queue = task name) and its subscriber."""

    topic: str
    subscriber: str


class Topics:
    """Topic names built from the configured prefixes and the event subscriptions.

    ``subscriptions``: event type → names of its subscribers, the projector first; or a function
    returning them, called the first time an event's routes are needed (building them imports
    every handler, which a CLI command that only submits never needs).
    """

    def __init__(
        self,
        settings: Settings,
        subscriptions: Mapping[str, Sequence[str]] | Callable[[], Mapping[str, Sequence[str]]],
    ) -> None:
        self.command_prefix = settings.command_prefix
        self.event_prefix = settings.event_prefix
        self.integration_prefix = settings.integration_prefix
        self._subscriptions = subscriptions

    @cached_property
    def _by_event_type(self) -> Mapping[str, Sequence[str]]:
        subscriptions = self._subscriptions
        return subscriptions() if callable(subscriptions) else subscriptions

    @cached_property
    def _routes(self) -> dict[str, list[Route]]:
        return {
            event_type: [self._route(event_type, name) for name in names]
            for event_type, names in self._by_event_type.items()
        }

    @cached_property
    def integrations(self) -> list[str]:
        """Names of the integration subscribers (every subscriber but the projector)."""
        return sorted(
            {name for names in self._by_event_type.values() for name in names} - {PROJECTOR}
        )

    def _route(self, event_type: str, subscriber: str) -> Route:
        if subscriber == PROJECTOR:
            return Route(self.event(event_type), PROJECTOR)
        return Route(self.integration(subscriber), subscriber)

    def command(self, command_type: str) -> str:
        """Topic of a command type, e.g. ``forum.commands.open_thread``."""
        return f"{self.command_prefix}.{command_type}"

    def event(self, event_type: str) -> str:
        """Projector topic of an event type, e.g. ``forum.events.thread.opened``."""
        from metawsm.messages.events import event_topic_suffix

        return f"{self.event_prefix}.{event_topic_suffix(event_type)}"

    def integration(self, name: str) -> str:
        """Topic of an integration consumer, e.g. ``forum.integration.run_lifecycle``."""
        return f"{self.integration_prefix}.{name}"

    def event_routes(self, event_type: str) -> list[Route]:
        """Every subscriber of an event type: the projector first, then integrations."""
        return self._routes.get(event_type, [])

    def command_topics(self) -> list[str]:
        """All command topics."""
        from metawsm.messages.commands import COMMAND_TYPES

        return [self.command(t) for t in COMMAND_TYPES]

    def event_topics(self) -> list[str]:
        """All projector topics."""
        from metawsm.messages.events import EVENT_TYPES

        return [self.event(t) for t in EVENT_TYPES]

    def integration_topics(self) -> list[str]:
        """All integration topics."""
        return [self.integration(n) for n in self.integrations]
