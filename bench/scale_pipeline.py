"""The product's own write path, in one process, for building the scale datasets.

Every command goes through :func:`metawsm.services.submit.submit` (ledger row and outbox row in
one unit of work), and every message the unit of work publishes is delivered at once by the same
functions a worker calls: :func:`metawsm.services.delivery.deliver_command` for commands and
:func:`metawsm.services.delivery.deliver_event` for each subscriber of an event (the projector,
the run-lifecycle consumer, the escalation notifier). Nothing crosses a broker: the publisher
only queues the message in memory, and :meth:`Pipeline.drain` delivers the queue. The result is
a store exactly as workers would leave it: commands applied, events projected, outbox rows done.

The clock is simulated (:class:`SimClock`): each command moves it forward by a fixed step, so a
dataset is spread over weeks of activity and the SLA pass can be run with the clock moved on.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from metawsm.bootstrap import message_bus, topics_for
from metawsm.messages.commands import AnyCommand
from metawsm.messages.events import EVENT_TYPES
from metawsm.runtime import Runtime
from metawsm.services.delivery import Delivery, deliver_command, deliver_event
from metawsm.services.submit import submit
from metawsm.settings import Settings
from metawsm.topics import PROJECTOR


@dataclass
class SimClock:
    """A UTC clock that moves only when told to (``step_s`` per :meth:`tick`)."""

    now: datetime
    step_s: float = 1.0

    def __call__(self) -> datetime:
        """The current simulated time."""
        return self.now

    def tick(self, times: int = 1) -> None:
        """Move the clock forward by ``times`` steps."""
        self.now += timedelta(seconds=self.step_s * times)


@dataclass
class QueuePublisher:
    """A publisher that queues each message in memory for :meth:`Pipeline.drain`."""

    queue: deque[tuple[str, str, dict[str, Any], bool]] = field(default_factory=deque)

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Queue the message (the broker's job, here)."""
        self.queue.append((topic, message_id, payload, redelivery))


class Pipeline:
    """submit → deliver the command → deliver each event to each subscriber, in-process."""

    def __init__(self, engine: Engine, settings: Settings, clock: SimClock) -> None:
        self.bus = message_bus()
        topics = topics_for(settings, self.bus)
        self.publisher = QueuePublisher()
        self.clock = clock
        self.rt = Runtime(engine, settings, topics, self.publisher, clock)
        self.command_topics = set(topics.command_topics())
        # The subscriber behind each event topic (what a worker's task for that queue calls).
        self.subscriber_of = {
            route.topic: route.subscriber
            for event_type in EVENT_TYPES
            for route in topics.event_routes(event_type)
        }
        self.outcomes: Counter[str] = Counter()
        self.events_delivered = 0
        self.events_projected = 0  # each event has one projector delivery: events written

    def run(self, command: AnyCommand) -> None:
        """Accept ``command`` and apply everything it leads to; the clock moves one step."""
        submit(self.rt, command)
        self.drain()
        self.clock.tick()

    def drain(self) -> None:
        """Deliver every queued message (and whatever those deliveries publish) in order.

        Raises:
            RuntimeError: a delivery asked for a retry or was dead-lettered (the dataset would
                not be what it says).
        """
        queue = self.publisher.queue
        while queue:
            topic, message_id, payload, redelivery = queue.popleft()
            delivery = Delivery(message_id, topic, redelivery)
            if topic in self.command_topics:
                result = deliver_command(self.rt, self.bus, payload, delivery)
                self.outcomes[f"command.{result.status}"] += 1
            else:
                name = self.subscriber_of[topic]
                result = deliver_event(self.rt, self.bus, name, payload, delivery)
                self.events_delivered += 1
                self.events_projected += name == PROJECTOR
            if result.retry_in_s is not None or result.dead:
                raise RuntimeError(f"{topic} {message_id}: {result.status}: {result.error}")
