"""The composition root: builds the message bus, engine, topics, publisher and runtime of one
process, lazily.

The handler map (command class → handler) and the consumer map (event payload class →
subscribers) are written out here, once; nothing registers itself by being imported, and
``tests/unit/test_message_bus.py`` fails when a message has no entry or an entry names no
message. The CLI, each worker process (after fork) and beat call :func:`build` with their
settings; tests call it with their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from metawsm.settings import Settings

if TYPE_CHECKING:  # imported where used: a CLI read builds no bus, topics or publisher
    from sqlalchemy import Engine

    from metawsm.runtime import Runtime
    from metawsm.services.messagebus import MessageBus
    from metawsm.topics import Topics
    from metawsm.transport.publisher import TaskPublisher


def message_bus() -> MessageBus:
    """The bus: every command's handler and every event's subscribers (projector first)."""
    # Imported here, not at module level: the handlers pull in every service, which a CLI
    # read never needs (docs/performance.md, "Command-line start-up").
    from metawsm.messages import commands as c
    from metawsm.messages import events as e
    from metawsm.services import control, handlers, notify, projections
    from metawsm.services.messagebus import Handler, MessageBus, Subscriber
    from metawsm.topics import PROJECTOR

    projector = Subscriber(PROJECTOR, projections.consume, counts_delivery=True)
    # Database-only: its own transaction counts a first delivery.
    run_lifecycle = Subscriber("run_lifecycle", control.consume_lifecycle, counts_delivery=True)
    # Side effects outside the database (a command, a webhook): counted before it runs.
    escalation_notify = Subscriber("escalation_notify", notify.consume_escalation, False)
    command_handlers: dict[type[Any], Handler] = {
        c.OpenThread: handlers.open_thread,
        c.AddPost: handlers.add_post,
        c.AnswerThread: control.answer_thread,
        c.AssignThread: handlers.assign_thread,
        c.ChangeState: handlers.change_state,
        c.SetPriority: handlers.set_priority,
        c.CloseThread: handlers.close_thread,
        c.ControlSignal: control.control_signal,
    }
    projected = [projector]
    event_consumers: dict[type[Any], list[Subscriber]] = {
        e.ThreadOpenedPayload: projected,
        e.PostAddedPayload: projected,
        e.ControlSignalPostedPayload: [projector, run_lifecycle],
        e.AssignedPayload: projected,
        e.StateChangedPayload: projected,
        e.PriorityChangedPayload: projected,
        e.ThreadClosedPayload: projected,
        e.EscalationRequestedPayload: [projector, escalation_notify],
        e.RunStatusChangedPayload: projected,
        e.OperatorDecisionPayload: projected,
    }
    return MessageBus(command_handlers, event_consumers)


def topics_for(settings: Settings, bus: MessageBus | None = None) -> Topics:
    """Topic names for ``settings``, with the event subscriptions of ``bus`` (the default bus)."""
    from metawsm.topics import Topics

    return Topics(settings, (bus or message_bus()).subscriptions())


@dataclass
class Container:
    """Lazily built process-wide services; nothing connects until first use.

    The publisher sends through a broker connection of its own in every process (a worker's
    too, so a publish gives up after ``publish_timeout_s`` while the worker's consumer keeps its
    long socket timeouts).
    """

    settings: Settings

    @cached_property
    def bus(self) -> MessageBus:
        """The message bus (handler and consumer maps)."""
        return message_bus()

    @cached_property
    def engine(self) -> Engine:
        """The database engine (created on first use, in the process that uses it)."""
        from metawsm.storage.engine import build_engine

        return build_engine(self.settings)

    @cached_property
    def topics(self) -> Topics:
        """Topic names from the configured prefixes and the bus's subscriptions (the bus is
        built the first time an event is routed: submitting a command needs no handler)."""
        from metawsm.topics import Topics

        return Topics(self.settings, lambda: self.bus.subscriptions())

    @cached_property
    def publisher(self) -> TaskPublisher:
        """The publisher: its own broker connection, the publish timeout, a circuit breaker."""
        from metawsm.transport.publisher import make_publisher

        return make_publisher(self.settings)

    @cached_property
    def runtime(self) -> Runtime:
        """What every service takes: engine, settings, topics, publisher, clock."""
        from metawsm.runtime import Runtime

        return Runtime(
            engine=self.engine,
            settings=self.settings,
            topics=self.topics,
            publisher=self.publisher,
        )

    def close(self) -> None:
        """Dispose the engine and broker connections that were created."""
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "publisher" in self.__dict__:
            self.publisher.close()


def build(settings: Settings) -> Container:
    """Build the container for one process."""
    return Container(settings=settings)
