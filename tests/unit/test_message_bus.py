"""The message bus built by the composition root is complete and names only real messages."""

from __future__ import annotations

from typing import Any

import pytest

from metawsm.bootstrap import message_bus, topics_for
from metawsm.messages.commands import COMMAND_MODELS, OpenThread
from metawsm.messages.common import Frozen
from metawsm.messages.events import EVENT_PAYLOADS, EVENT_TYPES, ThreadOpenedPayload
from metawsm.services.messagebus import MessageBus, Subscriber, missing_entries
from metawsm.settings import Settings
from metawsm.topics import PROJECTOR


def _noop(*_: Any, **__: Any) -> Any:
    return None


def test_every_command_has_a_handler_and_every_event_a_projector() -> None:
    assert missing_entries(message_bus()) == []


def test_every_command_type_resolves_to_its_handler() -> None:
    bus = message_bus()
    for name, model in COMMAND_MODELS.items():
        assert bus.handlers[model] is not None, name


def test_the_control_signal_event_reaches_the_projector_then_the_run_lifecycle() -> None:
    names = [s.name for s in message_bus().subscribers_of("forum.control.signal")]
    assert names == [PROJECTOR, "run_lifecycle"]


def test_topics_route_each_event_to_the_subscribers_of_the_bus() -> None:
    topics = topics_for(Settings())
    assert topics.integrations == ["escalation_notify", "run_lifecycle"]
    for event_type in EVENT_TYPES:
        routes = topics.event_routes(event_type)
        assert routes[0].subscriber == PROJECTOR, event_type
    escalation = topics.event_routes("forum.sla.escalation_requested")
    assert [r.topic for r in escalation] == [
        "forum.events.sla.escalation_requested",
        "forum.integration.escalation_notify",
    ]


# The check itself must see what is wrong, or the test above could never fail.


def _complete_maps() -> tuple[dict[type[Any], Any], dict[type[Frozen], list[Subscriber]]]:
    bus = message_bus()
    return dict(bus.handlers), {k: list(v) for k, v in bus.consumers.items()}


def test_a_command_without_a_handler_is_reported() -> None:
    handlers, consumers = _complete_maps()
    del handlers[OpenThread]
    assert missing_entries(MessageBus(handlers, consumers)) == ["command OpenThread has no handler"]


def test_an_event_without_a_consumer_is_reported() -> None:
    handlers, consumers = _complete_maps()
    del consumers[ThreadOpenedPayload]
    assert missing_entries(MessageBus(handlers, consumers)) == [
        "event payload ThreadOpenedPayload has no consumer"
    ]


@pytest.mark.parametrize("where", ["handlers", "consumers"])
def test_a_map_naming_something_that_is_not_a_message_is_reported(where: str) -> None:
    class NotAMessage(Frozen):
        """Stands for a type that is neither a command nor an event payload."""

    handlers, consumers = _complete_maps()
    if where == "handlers":
        handlers[NotAMessage] = _noop
    else:
        consumers[NotAMessage] = [Subscriber(PROJECTOR, _noop, True)]
    problems = missing_entries(MessageBus(handlers, consumers))
    assert len(problems) == 1
    assert "NotAMessage" in problems[0] and "which is not" in problems[0]


def test_an_event_not_projected_first_is_reported() -> None:
    handlers, consumers = _complete_maps()
    consumers[ThreadOpenedPayload] = [Subscriber("other", _noop, False)]
    assert missing_entries(MessageBus(handlers, consumers)) == [
        "event payload ThreadOpenedPayload is not projected first"
    ]


def test_every_message_model_is_known_to_the_check() -> None:
    # If a new command or event payload model is added, these sets grow with it.
    assert set(COMMAND_MODELS.values()) <= set(message_bus().handlers)
    assert set(EVENT_PAYLOADS.values()) <= set(message_bus().consumers)
